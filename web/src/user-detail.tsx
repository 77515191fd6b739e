import { useCallback, useEffect, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { api, ApiError, type HistoryPoint, type User } from './api';
import { Chart } from './chart';
import { bytes, dateValue, when } from './format';
import { Qr } from './qr';
import { expiryMs, quotaBytes, quotaText, udpRate } from './users';
import { Feedback } from './feedback';

type Range = 'hour' | 'day' | 'month';
const RANGES: Record<Range, { label: string; ms: number; res: 60 | 3600 }> = {
  hour: { label: 'Hour', ms: 3_600_000, res: 60 },
  day: { label: 'Day', ms: 86_400_000, res: 60 },
  month: { label: 'Month', ms: 30 * 86_400_000, res: 3600 },
};

function message(err: unknown): string {
  return err instanceof ApiError ? err.message : String(err);
}

/** The history points spread over every bucket of the range (the API leaves out buckets without traffic). */
function series(points: HistoryPoint[], from: number, to: number, res: number): uPlot.AlignedData {
  const step = res * 1000;
  const start = Math.floor(from / step) * step;
  const byAt = new Map(points.map((p) => [p.at, p]));
  const xs: number[] = [];
  const up: number[] = [];
  const down: number[] = [];
  for (let t = start; t < to; t += step) {
    const p = byAt.get(t);
    xs.push(t / 1000);
    up.push(p?.up ?? 0);
    down.push(p?.down ?? 0);
  }
  return [xs, up, down];
}

/** One user: edit, disable, kick, delete; its traffic over time; its links as text and QR, hidden until asked. */
export function UserDetail({ id, fresh, onChanged, onDeleted }: { id: string; fresh: string[] | null; onChanged: () => void; onDeleted: () => void }) {
  const [user, setUser] = useState<User | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [quota, setQuota] = useState('');
  const [expiry, setExpiry] = useState('');
  const [udpCap, setUdpCap] = useState('');
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [links, setLinks] = useState<string[] | null>(null);
  const [range, setRange] = useState<Range>('hour');
  const [history, setHistory] = useState<uPlot.AlignedData | null>(null);
  const [historyNote, setHistoryNote] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const u = await api<User>('GET', `/api/users/${encodeURIComponent(id)}`);
      setUser(u);
      setQuota(quotaText(u.quotaBytes));
      setExpiry(dateValue(u.expiresAt));
      setUdpCap(u.udpMaxRate === null ? '' : String(Math.round((u.udpMaxRate * 8) / 1e4) / 100));
    } catch (err) {
      setError(message(err));
    }
  }, [id]);

  const loadHistory = useCallback(async () => {
    const r = RANGES[range];
    const to = Date.now();
    const from = to - r.ms;
    try {
      const h = await api<{ points: HistoryPoint[] }>('GET', `/api/users/${encodeURIComponent(id)}/traffic/history?from=${from}&to=${to}&res=${r.res}`);
      setHistory(series(h.points, from, to, r.res));
      setHistoryNote(h.points.length === 0 ? 'No traffic in this range.' : null);
    } catch (err) {
      setHistory(null);
      setHistoryNote(message(err));
    }
  }, [id, range]);

  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => {
    void loadHistory();
  }, [loadHistory]);

  const act = async (what: () => Promise<string>) => {
    setError(null);
    setNote(null);
    try {
      setNote(await what());
      await load();
      onChanged();
    } catch (err) {
      setError(message(err));
    }
  };

  const save = (e: Event) => {
    e.preventDefault();
    void act(async () => {
      await api('PATCH', `/api/users/${encodeURIComponent(id)}`, { quotaBytes: quotaBytes(quota), expiresAt: expiryMs(expiry), udpMaxRate: udpRate(udpCap) });
      return 'Saved.';
    });
  };

  const showLinks = async () => {
    setError(null);
    if (fresh !== null) return setLinks(fresh);
    try {
      const r = await api<{ links: string[]; hasSecret: boolean }>('GET', `/api/users/${encodeURIComponent(id)}/links`);
      setLinks(r.links);
      if (!r.hasSecret) setNote('The server holds only this user\u2019s public key: it has no link to give.');
    } catch (err) {
      setError(message(err));
    }
  };

  const remove = async () => {
    try {
      const r = await api<{ kicked: number }>('DELETE', `/api/users/${encodeURIComponent(id)}`);
      setNote(`Deleted (${r.kicked} session${r.kicked === 1 ? '' : 's'} closed).`);
      onDeleted();
    } catch (err) {
      setError(message(err));
    }
  };

  if (user === null) return <aside class="card detail">{error ?? 'Loading…'}</aside>;
  return (
    <aside class="card detail" aria-labelledby="detail-h">
      <h3 id="detail-h">{user.name}</h3>
      <p class="hint">
        {user.kind} user · {user.enabled ? 'enabled' : 'disabled'} · created {when(user.createdAt)} · {bytes(user.bytesUp)} up, {bytes(user.bytesDown)} down
      </p>
      <Feedback error={error} note={note} />
      <div class="actions">
        <button type="button" onClick={() => void act(async () => (await api<{ kicked: number }>('POST', `/api/users/${encodeURIComponent(id)}/kick`)).kicked + ' session(s) closed.')}>
          Kick sessions
        </button>
        <button
          type="button"
          onClick={() =>
            void act(async () => {
              await api('PATCH', `/api/users/${encodeURIComponent(id)}`, { enabled: !user.enabled });
              return user.enabled ? 'Disabled: new sessions are refused (live ones go on until kicked).' : 'Enabled.';
            })
          }
        >
          {user.enabled ? 'Disable' : 'Enable'}
        </button>
        {confirmDelete ? (
          <>
            <button type="button" class="danger" onClick={() => void remove()}>
              Really delete {user.name}
            </button>
            <button type="button" onClick={() => setConfirmDelete(false)}>
              Cancel
            </button>
          </>
        ) : (
          <button type="button" class="danger" onClick={() => setConfirmDelete(true)}>
            Delete…
          </button>
        )}
      </div>
      <form onSubmit={save} class="edit">
        <label for="edit-quota">Quota, GiB (empty: none)</label>
        <input id="edit-quota" inputMode="decimal" value={quota} onInput={(e) => setQuota(e.currentTarget.value)} />
        <label for="edit-expiry">Expires on (empty: never)</label>
        <input id="edit-expiry" type="date" value={expiry} onInput={(e) => setExpiry(e.currentTarget.value)} />
        <label for="edit-udp-cap">UDP cap, Mbit/s</label>
        <input id="edit-udp-cap" inputMode="decimal" value={udpCap} onInput={(e) => setUdpCap(e.currentTarget.value)} aria-describedby="udp-cap-help" />
        <p id="udp-cap-help" class="hint">UDP cap: the highest <code>--cc fixed:RATE</code> this user's udp clients may make the server send at, from their next session on; empty: the server's own cap alone.</p>
        <button type="submit">Save</button>
      </form>
      <h4>Traffic</h4>
      <div class="segmented" role="group" aria-label="Range">
        {(Object.keys(RANGES) as Range[]).map((r) => (
          <button type="button" key={r} aria-pressed={r === range} onClick={() => setRange(r)}>
            {RANGES[r].label}
          </button>
        ))}
        <button
          type="button"
          onClick={() => {
            void load();
            void loadHistory();
          }}
        >
          Refresh
        </button>
      </div>
      {history !== null && (
        <Chart
          key={range}
          title={`Traffic of ${user.name}, per ${RANGES[range].res === 60 ? 'minute' : 'hour'}`}
          data={history}
          series={[
            { label: 'up', stroke: '#1a7f37' },
            { label: 'down', stroke: '#1f6feb' },
          ]}
          format={bytes}
          height={180}
        />
      )}
      {historyNote !== null && <p class="hint">{historyNote}</p>}
      <h4>Client link</h4>
      {links === null ? (
        <>
          <p class="masked" aria-label="link hidden">
            polytun://••••••••••••••••
          </p>
          <button type="button" onClick={() => void showLinks()}>
            Show link and QR code
          </button>
        </>
      ) : (
        <>
          {links.map((l, i) => (
            <div class="link-box" key={i}>
              <code class="link-text">{l}</code>
              <Qr text={l} label={`QR code of link ${i + 1}`} />
            </div>
          ))}
          <button type="button" onClick={() => setLinks(null)}>
            Hide
          </button>
        </>
      )}
    </aside>
  );
}
