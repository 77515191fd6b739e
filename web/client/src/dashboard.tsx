/**
 * The live view of a running client: its state, a topology like
 * OpenMPTCProuter's (this machine → each path → the server), throughput per
 * path (live from the SSE snapshots, and the kept history), the fronts in
 * use with their counters, and recent events (reconnects, failovers, paths
 * up and down).
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { Chart, type ChartSeries } from '../../src/chart';
import { Feedback } from '../../src/feedback';
import { bytes, duration, rate } from '../../src/format';
import { api, errorText, seriesId, type ClientStatus, type Front, type IdleState, type PathStatus, type TimelineEvent } from './api';

/** Seconds of live throughput kept. */
const WINDOW = 300;
const COLOURS = ['#1f6feb', '#1a7f37', '#bf3989', '#9a6700', '#8250df', '#cf222e'];

/** Live up/down rates of one path, from the byte counters of two snapshots. */
interface Sample {
  at: number;
  rates: Map<string, { up: number; down: number }>;
}

export function Dashboard() {
  const [st, setSt] = useState<ClientStatus | null>(null);
  const [idle, setIdle] = useState<IdleState | null>(null);
  const [live, setLive] = useState<'connecting' | 'live' | 'lost'>('connecting');
  const [samples, setSamples] = useState<Sample[]>([]);

  useEffect(() => {
    const es = new EventSource('/api/events');
    let last: { at: number; paths: Map<string, PathStatus> } | undefined;
    const kept: Sample[] = [];
    es.onopen = () => setLive('live');
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) return setLive('connecting');
      // Refused (logged out, too many views): a 401 on the next call takes the page to the login.
      setLive('lost');
      void api('GET', '/api/session').catch(() => {});
    };
    es.addEventListener('idle', (ev: MessageEvent<string>) => {
      setLive('live');
      setSt(null);
      setIdle(JSON.parse(ev.data) as IdleState);
    });
    es.addEventListener('status', (ev: MessageEvent<string>) => {
      const s = JSON.parse(ev.data) as ClientStatus;
      setLive('live');
      setIdle(null);
      setSt(s);
      const now = Date.now();
      const paths = new Map(s.paths.map((p) => [seriesId(p), p]));
      if (last !== undefined) {
        const dt = Math.max(0.001, (now - last.at) / 1000);
        const rates = new Map<string, { up: number; down: number }>();
        for (const [id, p] of paths) {
          const before = last.paths.get(id);
          // A new session restarts the counters: count from zero then.
          const up = before !== undefined && p.bytesSent >= before.bytesSent ? p.bytesSent - before.bytesSent : p.bytesSent;
          const down = before !== undefined && p.bytesReceived >= before.bytesReceived ? p.bytesReceived - before.bytesReceived : p.bytesReceived;
          rates.set(id, { up: up / dt, down: down / dt });
        }
        kept.push({ at: now, rates });
        if (kept.length > WINDOW) kept.shift();
        setSamples(kept.slice());
      }
      last = { at: now, paths };
    });
    return () => es.close();
  }, []);

  const latest = samples[samples.length - 1]?.rates;
  return (
    <section aria-labelledby="dash-h">
      <h2 id="dash-h">
        Dashboard <span class={`badge ${live}`}>{live === 'live' ? 'live' : live === 'lost' ? 'disconnected' : 'connecting…'}</span>
      </h2>
      {idle !== null && <Idle idle={idle} />}
      {st !== null && (
        <>
          <Summary st={st} />
          <Topology st={st} rates={latest} />
          <LiveChart samples={samples} />
          <History />
          <Fronts />
          <Timeline />
        </>
      )}
    </section>
  );
}

function Idle({ idle }: { idle: IdleState }) {
  return (
    <div class="card">
      {idle.state === 'starting' ? <p>The tunnel is starting…</p> : <p>No tunnel runs in this process yet.</p>}
      {idle.state === 'failed' && idle.error !== undefined && (
        <p class="error" role="alert">
          It failed: {idle.error}
        </p>
      )}
      <p>
        <a href="#/setup">Open the setup</a> to paste a link or provision from a server, check the connection and start it.
      </p>
    </div>
  );
}

const STATE_TEXT: Record<string, string> = { open: 'connected', connecting: 'connecting…', detached: 'path lost, resuming…', reconnecting: 'reconnecting…', closing: 'closing', draining: 'draining' };

function Summary({ st }: { st: ClientStatus }) {
  const ok = st.state === 'open';
  return (
    <dl class="figures">
      <div>
        <dt>State</dt>
        <dd class={ok ? 'ok' : 'warn'} data-figure="state">
          {STATE_TEXT[st.state] ?? st.state}
        </dd>
      </div>
      <div>
        <dt>Server</dt>
        <dd class="small" data-figure="server">
          {st.server} <span class="hint">({st.carrier})</span>
        </dd>
      </div>
      <div>
        <dt>Session age</dt>
        <dd data-figure="age">{duration(st.sessionAgeMs)}</dd>
      </div>
      <div>
        <dt>Round trip</dt>
        <dd data-figure="rtt">{st.rttMs !== undefined ? `${st.rttMs.toFixed(1)} ms` : '–'}</dd>
      </div>
      <div>
        <dt>Traffic</dt>
        <dd class="small">
          ↑ {bytes(st.bytesSent)} · ↓ {bytes(st.bytesReceived)}
        </dd>
      </div>
      <div>
        <dt>Streams · reconnects</dt>
        <dd data-figure="streams">
          {st.streams} · {st.reconnects}
        </dd>
      </div>
      {st.lastError !== undefined && (
        <div class="wide">
          <dt>Last error</dt>
          <dd class="small warn">{st.lastError}</dd>
        </div>
      )}
    </dl>
  );
}

function lossText(p: PathStatus): string {
  const l = p.transport?.lossRate;
  if (typeof l === 'number') return `${(l * 100).toFixed(l < 0.01 ? 2 : 1)} %`;
  return p.carrier === 'udp' ? '–' : 'n/a (TCP hides it)';
}

/** This machine → each path → the server. */
function Topology({ st, rates }: { st: ClientStatus; rates: Map<string, { up: number; down: number }> | undefined }) {
  return (
    <section class="card" aria-labelledby="topo-h">
      <h3 id="topo-h">Topology</h3>
      <div class="topo">
        <div class="node">
          <strong>This machine</strong>
        </div>
        <ol class="links" aria-label="Paths">
          {st.paths.length === 0 && <li class="link down">no path up: {STATE_TEXT[st.state] ?? st.state}</li>}
          {st.paths.map((p) => {
            const r = rates?.get(seriesId(p));
            return (
              <li key={p.id} class={`link ${p.state === 'up' && p.pingsMissed === 0 ? 'up' : 'degraded'}`} data-path={seriesId(p)}>
                <span class="wire" aria-hidden="true" />
                <div class="path-card">
                  <div class="path-head">
                    <strong class="anywhere">{p.label}</strong> <span class="badge">{p.carrier}</span> <span class="badge">{p.role}</span>
                  </div>
                  <dl class="path-figures">
                    <div>
                      <dt>State</dt>
                      <dd data-field="state">{p.state}{p.pingsMissed > 0 ? ` (${p.pingsMissed} pings missed)` : ''}</dd>
                    </div>
                    <div>
                      <dt>RTT</dt>
                      <dd data-field="rtt">{p.rttMs !== undefined && p.rttMs !== null ? `${p.rttMs.toFixed(1)} ms` : '–'}</dd>
                    </div>
                    <div>
                      <dt>Loss</dt>
                      <dd>{lossText(p)}</dd>
                    </div>
                    <div>
                      <dt>Rate</dt>
                      <dd data-field="rate">{r === undefined ? '–' : `↑ ${rate(r.up)} · ↓ ${rate(r.down)}`}</dd>
                    </div>
                  </dl>
                </div>
                <span class="wire" aria-hidden="true" />
              </li>
            );
          })}
        </ol>
        <div class="node">
          <strong>Server</strong>
          <span class="anywhere">{st.server}</span>
        </div>
      </div>
    </section>
  );
}

function LiveChart({ samples }: { samples: Sample[] }) {
  const ids = useMemo(() => [...new Set(samples.flatMap((s) => [...s.rates.keys()]))], [samples]);
  const series: ChartSeries[] = ids.flatMap((id, i) => [
    { label: `${id} ↑`, stroke: COLOURS[(2 * i) % COLOURS.length] as string },
    { label: `${id} ↓`, stroke: COLOURS[(2 * i + 1) % COLOURS.length] as string },
  ]);
  const data: uPlot.AlignedData = [
    samples.map((s) => s.at / 1000),
    ...ids.flatMap((id) => [samples.map((s) => s.rates.get(id)?.up ?? null), samples.map((s) => s.rates.get(id)?.down ?? null)]),
  ];
  if (ids.length === 0) return <p class="hint">The throughput chart starts with the second snapshot.</p>;
  // A new path adds series: the chart is built again for it.
  return <Chart key={ids.join('\n')} title="Throughput per path, last 5 minutes" data={data} series={series} format={rate} timeIncrs={[1, 5, 10, 15, 30, 60, 120, 300]} />;
}

const RANGES = [
  { label: 'Last hour', ms: 3_600_000, res: 60 },
  { label: 'Last day', ms: 86_400_000, res: 60 },
  { label: 'Last week', ms: 7 * 86_400_000, res: 3600 },
  { label: 'Last 90 days', ms: 90 * 86_400_000, res: 3600 },
] as const;

/** A path's kept traffic (1-minute points for 7 days, 1-hour points for 90), as rates. */
function History() {
  const [paths, setPaths] = useState<string[] | null>(null);
  const [kept, setKept] = useState(true);
  const [path, setPath] = useState<string>('');
  const [range, setRange] = useState(0);
  const [data, setData] = useState<uPlot.AlignedData | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    api<{ paths: string[]; history: boolean }>('GET', '/api/paths').then(
      (r) => {
        setKept(r.history);
        if (!r.history) return;
        setPaths(r.paths);
        setPath((p) => p || (r.paths[0] ?? ''));
      },
      (err: unknown) => setError(errorText(err)),
    );
  }, []);

  useEffect(() => {
    if (path === '') return;
    const r = RANGES[range] ?? RANGES[0];
    const to = Date.now();
    const from = to - r.ms;
    let gone = false;
    setError(null);
    api<{ points: { at: number; up: number; down: number }[] }>('GET', `/api/history?path=${encodeURIComponent(path)}&res=${r.res}&from=${from}&to=${to}`).then(
      (h) => {
        if (gone) return;
        // Empty buckets are absent from the answer: draw them as zero.
        const step = r.res * 1000;
        const byAt = new Map(h.points.map((p) => [Math.floor(p.at / step) * step, p]));
        const xs: number[] = [];
        const up: number[] = [];
        const down: number[] = [];
        for (let t = Math.floor(from / step) * step; t <= to; t += step) {
          const p = byAt.get(t);
          xs.push(t / 1000);
          up.push((p?.up ?? 0) / r.res);
          down.push((p?.down ?? 0) / r.res);
        }
        setData([xs, up, down]);
      },
      (err: unknown) => !gone && setError(errorText(err)),
    );
    return () => {
      gone = true;
    };
  }, [path, range]);

  return (
    <section class="card" aria-labelledby="hist-h">
      <h3 id="hist-h">History</h3>
      {!kept && (
        <p class="hint">
          This client keeps no traffic history (<code>ui.history: false</code> in its config): remove that key to keep 90 days of it.
        </p>
      )}
      {paths !== null && paths.length === 0 && <p class="hint">No path has moved traffic yet.</p>}
      {paths !== null && paths.length > 0 && (
        <>
          <label for="hist-path">Path</label>
          <select id="hist-path" value={path} onChange={(e) => setPath(e.currentTarget.value)}>
            {paths.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
          <div class="segmented" role="group" aria-label="Time range">
            {RANGES.map((r, i) => (
              <button key={r.label} type="button" aria-pressed={i === range} onClick={() => setRange(i)}>
                {r.label}
              </button>
            ))}
          </div>
        </>
      )}
      <Feedback error={error} note={null} />
      {data !== null && (
        <Chart
          key={`${path}\n${range}`}
          title={`${path}: ${RANGES[range]?.label.toLowerCase() ?? ''}, average per ${RANGES[range]?.res === 60 ? 'minute' : 'hour'}`}
          data={data}
          series={[
            { label: 'up', stroke: '#1f6feb' },
            { label: 'down', stroke: '#1a7f37' },
          ]}
          format={rate}
        />
      )}
    </section>
  );
}

/** Polls `path` every `ms` while shown. */
function usePoll<T>(path: string, ms: number): { data: T | null; error: string | null } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    let gone = false;
    const tick = () =>
      api<T>('GET', path).then(
        (d) => {
          if (gone) return;
          setData(d);
          setError(null);
        },
        (err: unknown) => !gone && setError(errorText(err)),
      ).finally(() => {
        if (!gone) timer.current = window.setTimeout(tick, ms);
      });
    void tick();
    return () => {
      gone = true;
      clearTimeout(timer.current);
    };
  }, [path, ms]);
  return { data, error };
}

const FRONT_NAMES: Record<string, string> = { socks5: 'SOCKS5 proxy', http: 'HTTP proxy', forward: 'Forward (-L)', 'forward-udp': 'UDP forward (-L …/udp)', reverse: 'Reverse forward (-R)', vpn: 'VPN (TUN)', status: 'Status endpoint', metrics: 'Prometheus metrics', ui: 'This dashboard' };

function Fronts() {
  const { data, error } = usePoll<{ fronts: Front[] }>('/api/fronts', 5000);
  return (
    <section class="card" aria-labelledby="fronts-h">
      <h3 id="fronts-h">Fronts</h3>
      <Feedback error={error} note={null} />
      {data !== null && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Front</th>
                <th>Listens on</th>
                <th>Counters</th>
              </tr>
            </thead>
            <tbody>
              {data.fronts.map((f, i) => (
                <tr key={i} data-front={f.kind}>
                  <td data-label="Front">{FRONT_NAMES[f.kind] ?? f.kind}</td>
                  <td data-label="Listens on" class="anywhere">
                    <code>{f.listen}</code>
                  </td>
                  <td data-label="Counters">
                    {f.counters === undefined
                      ? '–'
                      : Object.entries(f.counters)
                          .map(([k, v]) => `${k} ${v}`)
                          .join(' · ')}
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

function Timeline() {
  const { data, error } = usePoll<{ events: TimelineEvent[] }>('/api/timeline', 5000);
  const events = data === null ? [] : data.events.slice(-50).reverse();
  return (
    <section class="card" aria-labelledby="events-h">
      <h3 id="events-h">Events</h3>
      <p class="hint">Connections, resumes, new sessions, failovers to another server, paths up and down; newest first.</p>
      <Feedback error={error} note={null} />
      {data !== null && events.length === 0 && <p class="hint">Nothing yet.</p>}
      <ol class="timeline">
        {events.map((e, i) => (
          <li key={`${e.at}-${i}`} data-kind={e.kind}>
            <time dateTime={new Date(e.at).toISOString()}>{new Date(e.at).toLocaleTimeString()}</time> <span class={`badge ev-${e.kind}`}>{e.kind}</span> {e.message}
          </li>
        ))}
      </ol>
    </section>
  );
}
