import { useEffect, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { api, type LiveSnapshot } from './api';
import { Chart } from './chart';
import { bytes, rate } from './format';

/** Seconds of throughput the chart keeps. */
const WINDOW = 300;

/** The live overview: one snapshot a second over SSE (GET /api/events). */
export function Overview() {
  const [snap, setSnap] = useState<LiveSnapshot | null>(null);
  const [live, setLive] = useState<'connecting' | 'live' | 'lost'>('connecting');
  const [data, setData] = useState<uPlot.AlignedData>([[], [], []]);

  useEffect(() => {
    const es = new EventSource('/api/events');
    const xs: number[] = [];
    const ins: number[] = [];
    const outs: number[] = [];
    es.onopen = () => setLive('live');
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) return setLive('connecting');
      // The server refused the stream (logged out, expired, too many open): a 401 here takes the page to the login form.
      setLive('lost');
      void api('GET', '/api/status').catch(() => {});
    };
    es.onmessage = (ev: MessageEvent<string>) => {
      const s = JSON.parse(ev.data) as LiveSnapshot;
      setSnap(s);
      setLive('live');
      xs.push(s.at / 1000);
      ins.push(s.rateIn);
      outs.push(s.rateOut);
      if (xs.length > WINDOW) {
        xs.shift();
        ins.shift();
        outs.shift();
      }
      setData([xs.slice(), ins.slice(), outs.slice()]);
    };
    return () => es.close();
  }, []);

  return (
    <section aria-labelledby="overview-h">
      <h2 id="overview-h">
        Overview <span class={`badge ${live}`}>{live === 'live' ? 'live' : live === 'lost' ? 'disconnected' : 'connecting…'}</span>
      </h2>
      {snap?.draining === true && <p class="warn">The gateway is draining: it refuses new sessions while the live ones finish.</p>}
      <dl class="figures">
        <div>
          <dt>Sessions</dt>
          <dd data-figure="sessions">{snap?.sessions ?? '–'}</dd>
        </div>
        <div>
          <dt>Users online</dt>
          <dd data-figure="users">{snap?.usersOnline ?? '–'}</dd>
        </div>
        <div>
          <dt>In (from clients)</dt>
          <dd data-figure="rate-in">{snap ? rate(snap.rateIn) : '–'}</dd>
        </div>
        <div>
          <dt>Out (to clients)</dt>
          <dd data-figure="rate-out">{snap ? rate(snap.rateOut) : '–'}</dd>
        </div>
        <div>
          <dt>Live sessions' traffic</dt>
          <dd>{snap ? `${bytes(snap.bytesIn)} in · ${bytes(snap.bytesOut)} out` : '–'}</dd>
        </div>
      </dl>
      <Chart
        title="Throughput, last 5 minutes"
        data={data}
        series={[
          { label: 'in', stroke: '#1a7f37' },
          { label: 'out', stroke: '#1f6feb' },
        ]}
        format={rate}
        timeIncrs={[1, 2, 5, 10, 15, 30, 60, 120, 300]}
      />
      <h3>Listeners</h3>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Carrier</th>
              <th scope="col">Address</th>
              <th scope="col">Live paths on this carrier</th>
            </tr>
          </thead>
          <tbody>
            {(snap?.listeners ?? []).map((l) => (
              <tr key={`${l.carrier}-${l.address}-${l.port}`}>
                <td data-label="Carrier">{l.carrier}</td>
                <td data-label="Address">
                  {l.address}:{l.port}
                </td>
                <td data-label="Live paths">{l.paths}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {snap && (
        <p class="hint">
          Handshakes since start: {Object.entries(snap.counters).map(([k, v]) => `${k} ${v}`).join(' · ')}
        </p>
      )}
    </section>
  );
}
