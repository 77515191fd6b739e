/**
 * Shared fixtures of the admin API tests: a real SQLite store in a temporary
 * data dir, and a fake GatewayView that records kicks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { encodeKey, generateKeyPair } from '../../../src/secure/keys.js';
import { openStore, type UserStore } from '../../../src/store/index.js';
import type { GatewayEndpoint, GatewayStatus, GatewayView, SessionInfo } from '../../../src/admin/types.js';

/** A temporary data dir and a SQLite store in it, both removed after the test. */
export async function tempStore(t: TestContext): Promise<{ dir: string; store: UserStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'polytun-admin-'));
  const store = await openStore('', { dataDir: dir });
  t.after(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, store };
}

/** A 32-byte value as base64url (a fake certificate fingerprint). */
export const FINGERPRINT = Buffer.alloc(32, 7).toString('base64url');

/** The fake gateway. `live` is its session table; kicks remove from it and are recorded. */
export class FakeGateway implements GatewayView {
  readonly live: SessionInfo[] = [];
  readonly kicks: { id: string; reason: string }[] = [];
  readonly publicKey = encodeKey(generateKeyPair().publicKey);
  eps: GatewayEndpoint[] = [
    { carrier: 'tcp', host: 'gw.example', port: 7000 },
    { carrier: 'wss', host: 'gw.example', port: 443, sni: 'gw.example', fingerprint: FINGERPRINT, path: '/ws' },
  ];

  /** Adds a live session of `userId`. */
  addSession(id: string, userId: string | null, bytes = 100): SessionInfo {
    const s: SessionInfo = { id, userId, userName: null, remote: '127.0.0.1:40000', startedAt: 1, state: 'open', streams: 1, paths: 1, rttMs: 12, bytesSent: bytes, bytesReceived: bytes * 2 };
    this.live.push(s);
    return s;
  }

  sessions(): readonly SessionInfo[] {
    return [...this.live];
  }

  kickSession(id: string, reason: string): boolean {
    const i = this.live.findIndex((s) => s.id === id);
    if (i < 0) return false;
    this.live.splice(i, 1);
    this.kicks.push({ id, reason });
    return true;
  }

  kickUser(userId: string, reason: string): number {
    const mine = this.live.filter((s) => s.userId === userId);
    for (const s of mine) this.kickSession(s.id, reason);
    return mine.length;
  }

  status(): GatewayStatus {
    return { version: '0.1.0-test', startedAt: 5, draining: false, sessions: this.live.length, listeners: [{ carrier: 'tcp', address: '127.0.0.1', port: 7000 }], counters: { accepted: 3 } };
  }

  serverPublicKey(): string {
    return this.publicKey;
  }

  endpoints(): readonly GatewayEndpoint[] {
    return this.eps;
  }
}
