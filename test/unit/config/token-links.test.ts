/**
 * Token users on a shared ws/wss path, client side: the link of a token user
 * without a path of its own carries the token and the server's token path
 * (and round-trips), `userLinks` hands out exactly those links, and a client
 * built from a token link sends `Authorization: Bearer <value derived from
 * the token>` in the upgrade, while a key link sends none.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, describe, it } from 'node:test';
import { WsServer } from '../../../src/carriers/ws-server.js';
import type { Listener } from '../../../src/carriers/types.js';
import { carrierForLink } from '../../../src/config/dial-link.js';
import { decodeLink, encodeLink, type ClientLink } from '../../../src/config/link.js';
import { linkEndpoints, userLinks } from '../../../src/config/links.js';
import { encodeKey, generateKeyPair, generateToken, keyPairFromToken, wsBearerFromToken } from '../../../src/secure/keys.js';

const PK = Buffer.alloc(32, 0x22).toString('base64url');
const TOKEN = generateToken();
const KEY = encodeKey(generateKeyPair().privateKey);

describe('token links', () => {
  it('a token link on the shared path round-trips: same token, kind, path; canonical text is stable', () => {
    const link: ClientLink = { credential: TOKEN, credentialKind: 'token', host: 'gw.example', port: 443, serverKey: PK, carrier: 'wss', sni: 'gw.example', path: '/tunnel', name: 'tina' };
    const text = encodeLink(link);
    assert.equal(text, `polytun://${TOKEN}@gw.example:443?pk=${PK}&t=wss&sni=gw.example&path=%2Ftunnel&cred=t#tina`);
    const back = decodeLink(text);
    assert.deepEqual(back, link);
    assert.equal(encodeLink(back), text);
  });

  it('userLinks: a token user without a path gets the token path; a key user none; an own path wins; no token path, no link', () => {
    const eps = linkEndpoints(['tcp://127.0.0.1:4433', 'wss://127.0.0.1:8443'], undefined, { wsTokenPath: '/tunnel' });
    assert.deepEqual(eps.map((e) => e.path), [undefined, '/tunnel']);
    const token = userLinks({ name: 'tina', credential: TOKEN, credentialKind: 'token' }, eps, PK).map((l) => decodeLink(l));
    assert.deepEqual(token.map((l) => [l.carrier, l.credential, l.credentialKind, l.path]), [['tcp', TOKEN, 'token', undefined], ['wss', TOKEN, 'token', '/tunnel']]);
    const key = userLinks({ name: 'kim', credential: KEY, credentialKind: 'key' }, eps, PK).map((l) => decodeLink(l));
    assert.deepEqual(key.map((l) => l.carrier), ['tcp']);
    const own = userLinks({ name: 'tina', credential: TOKEN, credentialKind: 'token', wssPath: '/u/own' }, eps, PK).map((l) => decodeLink(l));
    assert.equal(own[1]?.path, '/u/own');
    assert.equal(linkEndpoints(['wss://127.0.0.1:8443'])[0]?.path, '/', 'the default token path');
    const off = linkEndpoints(['wss://127.0.0.1:8443'], undefined, { wsTokenPath: false });
    assert.deepEqual(userLinks({ name: 'tina', credential: TOKEN, credentialKind: 'token' }, off, PK), []);
  });

  it('the bearer value is derived from the token: stable, not the token, not its key', () => {
    const b = wsBearerFromToken(TOKEN);
    assert.match(b, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(wsBearerFromToken(TOKEN), b);
    assert.notEqual(b, TOKEN);
    assert.notEqual(b, keyPairFromToken(TOKEN).privateKey.toString('base64url'));
    assert.notEqual(wsBearerFromToken(`${TOKEN}x`), b);
  });
});

describe('a client built from a link sends the bearer value in the upgrade', () => {
  const seen: (string | undefined)[] = [];
  let listener: Listener | undefined;
  after(async () => {
    await listener?.close();
  });

  it('token link: Authorization: Bearer <derived value>; key link: no Authorization', async () => {
    const server = new WsServer({
      route: (req: IncomingMessage) => {
        seen.push(req.headers.authorization);
        return { accept: true };
      },
    });
    listener = await server.listen({ host: '127.0.0.1', port: 0 }, (c) => c.stream.destroy());
    const base = { host: '127.0.0.1', port: listener.address.port, serverKey: PK, carrier: 'ws', path: '/tunnel' } as const;
    const dial = async (credential: string, credentialKind: 'token' | 'key'): Promise<void> => {
      const c = carrierForLink({ ...base, credential, credentialKind });
      assert.equal(c.kind, 'stream');
      if (c.kind === 'stream') (await c.dial({ host: '127.0.0.1', port: base.port })).stream.destroy();
    };
    await dial(TOKEN, 'token');
    await dial(KEY, 'key');
    assert.deepEqual(seen, [`Bearer ${wsBearerFromToken(TOKEN)}`, undefined]);
  });
});
