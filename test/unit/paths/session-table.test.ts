/** The server's resume/join table: who may resume which session. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { SessionTable, type TableEntry } from '../../../src/paths/session-table.js';
import type { Session } from '../../../src/session/session.js';

/** Just what the table reads of a session. */
class FakeSession extends EventEmitter {
  state = 'open';
  constructor(readonly id: Buffer) {
    super();
  }
}

const entry = (id: number, key: string): TableEntry & { fake: FakeSession } => {
  const fake = new FakeSession(Buffer.alloc(16, id));
  return { fake, session: fake as unknown as Session, clientKey: Buffer.from(key), remote: 'a:1' };
};

describe('SessionTable', () => {
  it('a session is resumable by the key that opened it only, and not once closed', () => {
    const t = new SessionTable<ReturnType<typeof entry>>();
    const e = entry(1, 'alice');
    const key = t.open(e);
    assert.equal(key, e.session.id.toString('hex'));
    assert.equal(t.resumable(e.session.id, Buffer.from('alice')), e);
    assert.equal(t.resumable(e.session.id, Buffer.from('mallory')), undefined);
    assert.equal(t.resumable(Buffer.alloc(16, 9), Buffer.from('alice')), undefined);
    e.fake.state = 'closed';
    assert.equal(t.resumable(e.session.id, Buffer.from('alice')), undefined);
  });

  it('claim() updates where the session is reached from, or aborts the channel when it ended meanwhile', () => {
    const t = new SessionTable<ReturnType<typeof entry>>();
    const e = entry(2, 'bob');
    t.open(e);
    let aborted = 0;
    const channel = { abort: () => void aborted++ } as never;
    assert.equal(t.claim(e.session.id, channel, 'b:2'), e);
    assert.equal(e.remote, 'b:2');
    e.fake.emit('closed', new Error('gone'));
    assert.equal(t.size, 0, 'a closed session leaves the table');
    assert.equal(t.claim(e.session.id, channel, 'c:3'), undefined);
    assert.equal(aborted, 1);
  });
});
