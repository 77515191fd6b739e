/** Bonding path specs (`--path URL[,bind=…][,role=…][,weight=N][,mptcp]`): what parses, and the errors. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parsePathSpec } from '../../../src/config/paths.js';

describe('parsePathSpec', () => {
  test('tcp, tls and udp paths with their options', () => {
    assert.deepEqual(parsePathSpec('tcp://10.0.0.1:7000,bind=eth1,role=backup,weight=2,mptcp'), {
      scheme: 'tcp', host: '10.0.0.1', port: 7000, device: 'eth1', role: 'backup', weight: 2, mptcp: true, spec: 'tcp://10.0.0.1:7000,bind=eth1,role=backup,weight=2,mptcp',
    });
    const u = parsePathSpec('udp://[2001:db8::1]:7001,bind=192.0.2.5');
    assert.ok(typeof u !== 'string');
    assert.equal(u.scheme, 'udp');
    assert.equal(u.host, '2001:db8::1');
    assert.equal(u.localAddress, '192.0.2.5');
  });

  test('clear errors', () => {
    assert.match(parsePathSpec('ws://h:1') as string, /tcp:\/\/, tls:\/\/ or udp:\/\//);
    assert.match(parsePathSpec('udp://h:1,mptcp') as string, /mptcp is a TCP option/);
    assert.match(parsePathSpec('udp://h:1,bind=eth0') as string, /not supported on udp:\/\/ paths yet/);
    assert.match(parsePathSpec('tcp://h') as string, /needs a port/);
    assert.match(parsePathSpec('tcp://h:1,weight=0') as string, /bad weight/);
    assert.match(parsePathSpec('tcp://h:1,colour=red') as string, /unknown path option 'colour'/);
  });
});
