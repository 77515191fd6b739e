import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, ApiError, type SessionInfo } from './api';
import { bytes, duration, rate, when } from './format';
import { Feedback } from './feedback';

/** How often the list is read again while the page is open. */
const REFRESH_MS = 3000;

function rtt(ms: number | null): string {
  return ms === null ? '–' : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}

/** The live sessions: who, from where, carrier, paths, streams, since when; kick one. */
export function Sessions() {
  const [list, setList] = useState<SessionInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const r = await api<{ sessions: SessionInfo[] }>('GET', '/api/sessions');
      setList(r.sessions);
      setError(null);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  }, []);

  useEffect(() => {
    void load();
    const t = setInterval(() => void load(), REFRESH_MS);
    return () => clearInterval(t);
  }, [load]);

  const kick = async (s: SessionInfo) => {
    try {
      await api('DELETE', `/api/sessions/${encodeURIComponent(s.id)}`);
      setNote(`Session ${s.id.slice(0, 8)} of ${s.userName ?? 'an unknown user'} closed.`);
      await load();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };

  const now = Date.now();
  return (
    <section aria-labelledby="sessions-h">
      <h2 id="sessions-h">Sessions {list && <span class="count">({list.length})</span>}</h2>
      <Feedback error={error} note={note} />
      {list !== null && list.length === 0 && <p class="hint">No live session.</p>}
      {list !== null && list.length > 0 && (
        <div class="table-wrap">
          <table class="sessions">
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">From</th>
                <th scope="col">Carrier</th>
                <th scope="col">Paths</th>
                <th scope="col">Streams</th>
                <th scope="col">Traffic</th>
                <th scope="col">Since</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((s) => (
                <tr key={s.id} data-session={s.id}>
                  <td data-label="User">{s.userName ?? '(unknown)'}</td>
                  <td data-label="From">{s.remote}</td>
                  <td data-label="Carrier">{s.carrier ?? '–'}</td>
                  <td data-label="Paths">
                    {s.pathList && s.pathList.length > 0 ? (
                      <ul class="paths">
                        {s.pathList.map((p, i) => (
                          <li key={i}>
                            {p.carrier} {p.remote} · {p.role}
                            {p.state === 'up' ? '' : ` (${p.state})`} · RTT {rtt(p.rttMs)} · {rate(p.rateBytesPerSec)}
                          </li>
                        ))}
                      </ul>
                    ) : (
                      `${s.paths} · RTT ${rtt(s.rttMs)}`
                    )}
                  </td>
                  <td data-label="Streams">{s.streams}</td>
                  <td data-label="Traffic">
                    {bytes(s.bytesReceived)} in · {bytes(s.bytesSent)} out
                  </td>
                  <td data-label="Since">
                    <time dateTime={new Date(s.startedAt).toISOString()} title={when(s.startedAt)}>
                      {duration(now - s.startedAt)} ago
                    </time>
                  </td>
                  <td>
                    <button type="button" class="danger" onClick={() => void kick(s)} aria-label={`Kick session ${s.id.slice(0, 8)} of ${s.userName ?? 'unknown user'}`}>
                      Kick
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
