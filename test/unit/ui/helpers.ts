/** Shared bits of the dashboard API tests: a link, a fake tunnel, requests that pass the guard. */
import type { FastifyInstance } from 'fastify';
import { encodeLink } from '../../../src/config/link.js';
import { encodeKey, generateKeyPair } from '../../../src/secure/keys.js';
import type { TunnelView } from '../../../src/ui/types.js';

/** A well-formed link to `host:port` over `carrier` (keys made up). */
export function makeLink(host = '127.0.0.1', port = 4433, carrier: 'tcp' | 'udp' | 'tls' = 'tcp'): string {
  return encodeLink({ credential: encodeKey(generateKeyPair().privateKey), credentialKind: 'key', host, port, serverKey: encodeKey(generateKeyPair().publicKey), carrier });
}

/** A tunnel view with one path, whose status counts the calls. */
export function fakeTunnel(): TunnelView & { calls: number } {
  const t = {
    calls: 0,
    status() {
      t.calls++;
      return { role: 'client' as const, state: 'open', server: '127.0.0.1:4433', carrier: 'tcp', bytesSent: t.calls, paths: [] };
    },
    fronts: () => [{ kind: 'socks5', listen: '127.0.0.1:1080', counters: { connections: 2, accepted: 5 } }],
    events: () => [{ at: 1, kind: 'connected' as const, message: 'connected to 127.0.0.1:4433', server: '127.0.0.1:4433' }],
    pathIds: () => ['tcp://127.0.0.1:4433'],
    history: undefined,
    configFile: undefined,
  };
  return t;
}

export const HOST = '127.0.0.1:7080';

/** The CSRF token GET /api/session hands out (password-less), or after a login (pass its cookie). */
export async function csrfOf(app: FastifyInstance, cookie?: string): Promise<string> {
  const r = await app.inject({ method: 'GET', url: '/api/session', headers: { host: HOST, ...(cookie ? { cookie } : {}) } });
  const csrf = (r.json() as { csrf?: string }).csrf;
  if (csrf === undefined) throw new Error(`no csrf: ${r.body}`);
  return csrf;
}
