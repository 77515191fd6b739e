/**
 * The wizard's NAT item: the ADDRESS question over a real loopback session
 * (the server sees exactly the client's own address: no NAT), an older
 * server recognised, and the classification from the samples.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { observedAddresses } from '../../../src/client/observed-address.js';
import { NotOfferedError } from '../../../src/core/errors.js';
import { makeDestination, parseHostPort } from '../../../src/core/address.js';
import { EgressDialer } from '../../../src/server/egress.js';
import { DestinationPolicy } from '../../../src/server/policy.js';
import { attachProxy } from '../../../src/server/proxy-server.js';
import { ResetCode } from '../../../src/session/stream.js';
import { natItem } from '../../../src/ui/nat.js';
import { makePair } from '../../helpers/session-pair.js';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

describe('observed address', () => {
  it("over loopback TCP the server sees the client's own address of the path", async () => {
    const p = await makePair();
    cleanups.push(() => p.close());
    const ss = await p.serverSession;
    const policy = new DestinationPolicy({});
    const proxy = attachProxy(ss, { egress: new EgressDialer({ policy }), policy });
    cleanups.push(() => proxy.close());
    const seen = await observedAddresses(p.clientSession);
    const local = p.clientSession.stats.paths[0]?.local as string;
    assert.deepEqual(seen, [parseHostPort(local)]);
    assert.equal(natItem([{ carrier: 'tcp', local, observed: seen[0] as ReturnType<typeof makeDestination> }]).detail.startsWith('no NAT'), true);
  });

  it('a server without the question: NotOfferedError', async () => {
    const p = await makePair();
    cleanups.push(() => p.close());
    (await p.serverSession).lanes.streams([0x01], (s) => s.reset(ResetCode.refused));
    await assert.rejects(observedAddresses(p.clientSession), NotOfferedError);
  });
});

describe('NAT item', () => {
  const d = makeDestination;
  it('no NAT, a NAT that kept or rewrote the port, udp before tcp, and nothing measured', () => {
    assert.deepEqual(natItem([{ carrier: 'udp', local: '192.0.2.5:4000', observed: d('192.0.2.5', 4000) }]), {
      id: 'nat',
      title: 'NAT between this machine and the server',
      result: 'pass',
      detail: 'no NAT: this machine is 192.0.2.5:4000, the server sees 192.0.2.5:4000 (over udp)',
    });
    const kept = natItem([{ carrier: 'udp', local: '10.0.0.2:4000', observed: d('198.51.100.9', 4000) }]);
    assert.match(kept.detail, /^behind a NAT that kept the port: this machine is 10\.0\.0\.2:4000, the server sees 198\.51\.100\.9:4000 \(over udp\); how it maps/);
    const tcpFirst = natItem([
      { carrier: 'tcp', local: '10.0.0.2:5000', observed: d('10.0.0.2', 5000) },
      { carrier: 'udp', local: '10.0.0.2:4000', observed: d('198.51.100.9', 61000) },
    ]);
    assert.match(tcpFirst.detail, /^behind a NAT that rewrote the port: .*over udp\)/, 'the udp sample decides');
    assert.match(natItem([{ carrier: 'tcp', local: '10.0.0.2:5000', observed: d('198.51.100.9', 5000) }]).detail, /over tcp \(no udp endpoint answered\)/);
    const none = natItem([{ carrier: 'udp', local: '10.0.0.2:4000', error: 'the server does not tell observed addresses (it predates them): update it' }]);
    assert.equal(none.result, 'not_measured');
    assert.match(none.detail, /update it/);
    assert.equal(natItem([]).result, 'not_measured');
  });
});
