/**
 * ClientVpn.start up to the point where it would create the TUN (so no root
 * needed): what the server answers decides whether the VPN comes up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ClientVpn, VpnRefusedError } from '../../../src/client/vpn.js';
import { TimeoutError } from '../../../src/core/errors.js';
import { isVpnOpen, encodeRefuse, VpnRefuseCode } from '../../../src/tun/vpn-wire.js';
import { makePair } from '../../helpers/session-pair.js';

const stateDir = mkdtempSync(join(tmpdir(), 'polytun-vpn-start-'));
after(() => rmSync(stateDir, { recursive: true, force: true }));

describe('ClientVpn.start against servers that give no VPN', () => {
  it('a server without VPN mode (stream refused) → VpnRefusedError naming --tun; nothing left behind', async () => {
    const pair = await makePair();
    try {
      (await pair.serverSession).onStream((s) => {
        s.on('error', () => undefined); // the reset below is our own
        s.reset(1); // what a session without a handler for kind 0x10 does (the proxy resets it too)
      });
      await assert.rejects(
        ClientVpn.start({ client: pair.client, serverHosts: ['127.0.0.1'], stateDir, tunName: 'ptx0' }),
        (e: unknown) => e instanceof VpnRefusedError && e.refuseCode === 0 && /--tun/.test(e.message),
      );
      assert.deepEqual(readdirSync(stateDir), []);
    } finally {
      await pair.close();
    }
  });

  it('a REFUSE message → VpnRefusedError with its code and reason', async () => {
    const pair = await makePair();
    try {
      (await pair.serverSession).onStream((s) => {
        assert.ok(isVpnOpen(s.openPayload));
        s.end(encodeRefuse(VpnRefuseCode.poolExhausted, 'pool 10.8.0.0/24 exhausted'));
        s.resume();
      });
      await assert.rejects(
        ClientVpn.start({ client: pair.client, serverHosts: ['127.0.0.1'], stateDir, tunName: 'ptx1' }),
        (e: unknown) => e instanceof VpnRefusedError && e.refuseCode === VpnRefuseCode.poolExhausted && /exhausted/.test(e.message),
      );
    } finally {
      await pair.close();
    }
  });

  it('no answer → TimeoutError after configTimeoutMs', async () => {
    const pair = await makePair();
    try {
      (await pair.serverSession).onStream((s) => s.resume());
      await assert.rejects(ClientVpn.start({ client: pair.client, serverHosts: ['127.0.0.1'], stateDir, tunName: 'ptx2', configTimeoutMs: 200 }), TimeoutError);
    } finally {
      await pair.close();
    }
  });
});
