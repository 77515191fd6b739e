/**
 * The server's side of path keeping: its live sessions by id, which is where
 * a client's resume (a carrier reconnect after a path loss) and a path join
 * (bonding: another path into the same session) are looked up. A client may
 * only resume or join a session opened with its own static key, and never
 * one that is closed.
 *
 * It is a Map (id in hex → entry) so the rest of the server (gateway, admin
 * views, drain/close) keeps iterating it as before.
 */
import type { ClientHello } from '../secure/hello.js';
import type { RecordChannel } from '../secure/record-channel.js';
import type { Session } from '../session/session.js';

type Channel = RecordChannel;

/** What the table needs of an entry. */
export interface TableEntry {
  session: Session;
  /** The client's static public key: only it may resume or join. */
  clientKey: Buffer;
  /** Where the latest path came from. */
  remote: string;
}

export class SessionTable<E extends TableEntry> extends Map<string, E> {
  /**
   * The session a hello asks to resume or join, when this client may (its
   * key opened it, and it is not closed); undefined: reject as unknown.
   */
  resumable(resumeId: Buffer, clientKey: Buffer): E | undefined {
    const e = this.get(resumeId.toString('hex'));
    if (!e || !e.clientKey.equals(clientKey) || e.session.state === 'closed') return undefined;
    return e;
  }

  /**
   * The session a completed resume/join handshake is for, its `remote`
   * updated; undefined when that session ended during the handshake (the
   * channel is then aborted).
   */
  claim(sessionId: Buffer, channel: Channel, remote: string): E | undefined {
    const e = this.get(sessionId.toString('hex'));
    if (!e || e.session.state === 'closed') {
      channel.abort();
      return undefined;
    }
    e.remote = remote;
    return e;
  }

  /** Attaches the channel as the hello asks: a join adds a path (a backup one if so flagged), else it resumes the session. */
  attachPath(e: E, channel: Channel, hello: ClientHello, remote: string): void {
    e.session.attach(channel, hello.recvSeq, { join: hello.join === true, role: hello.backup ? 'backup' : 'primary', label: remote });
  }

  /** Adds a new session; it leaves the table when it closes. */
  open(entry: E): string {
    const key = entry.session.id.toString('hex');
    this.set(key, entry);
    entry.session.once('closed', () => this.delete(key));
    return key;
  }
}
