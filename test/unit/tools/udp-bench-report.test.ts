/**
 * The arithmetic of `npm run bench -- udp` (bench/udp-report.ts): which
 * cells a spec selects, goodput and wire bytes taken over the same window,
 * echo percentiles with unanswered probes counted, and the goal lines.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { echoFigures, figures, formatUdp, interpolate, selectCells, type BulkReport, type Figures, type UdpBenchResult, type WirePoint } from '../../../bench/udp-report.js';

describe('udp bench report', () => {
  it('selects cells by rate:loss, with * and none, and refuses unknown ones', () => {
    assert.equal(selectCells(undefined).length, 12);
    assert.deepEqual(selectCells('40:2').map((c) => c.key), ['40:2']);
    assert.deepEqual(selectCells('100:*').map((c) => c.key), ['100:0', '100:1', '100:2', '100:5', '100:10', '100:ge']);
    assert.deepEqual(selectCells('*:ge').map((c) => c.key), ['40:ge', '100:ge']);
    assert.deepEqual(selectCells('none'), []);
    assert.throws(() => selectCells('40:3'), /no cell 40:3/);
  });

  it('interpolates linearly and stays flat beyond the ends', () => {
    const pts = [[0, 0], [100, 1000], [200, 1000], [300, 4000]] as const;
    assert.equal(interpolate(pts, -5), 0);
    assert.equal(interpolate(pts, 50), 500);
    assert.equal(interpolate(pts, 150), 1000);
    assert.equal(interpolate(pts, 250), 2500);
    assert.equal(interpolate(pts, 999), 4000);
  });

  it('takes goodput over a window after the first byte, wire bytes over the whole transfer', () => {
    // The receiver: 1 MB/s for 3 s, the first byte at 5000 ms on the shared clock. The bridge:
    // polled from 4000 ms (nothing yet), then 1.1 MB/s sent and 1.05 MB/s forwarded.
    const report: BulkReport = { kind: 'bulk', how: 'stop', total: 3e6, first: 5000, samples: [[0, 0], [1000, 1e6], [1500, 1.2e6], [2000, 2e6], [3000, 3e6]] };
    const wire: WirePoint[] = [4000, 5000, 6000, 7000, 8000, 9000].map((at) => ({ at, sent: Math.max(0, at - 5000) * 1100, forwarded: Math.max(0, at - 5000) * 1050, frames: { ab: 0, ba: 0 } }));
    const f = figures(report, 1000, 1000, 40, wire);
    assert.equal(f.usefulBytes, 1e6);
    assert.equal(f.goodputMbps, 8);
    assert.equal(f.share, 0.2);
    assert.ok(Math.abs(f.wireSent - 1.1) < 1e-9, String(f.wireSent));
    assert.ok(Math.abs(f.wireForwarded - 1.05) < 1e-9, String(f.wireForwarded));
    assert.equal(f.cutShort, undefined);
    assert.equal(f.trace, undefined);
    // A receiver that stopped early (a reset after 1.5 s) is flagged, and its wire counted up to then.
    const cut = figures({ ...report, how: 'close', samples: [[0, 0], [1500, 1.5e6]] }, 1000, 2000, 40, wire);
    assert.equal(cut.usefulBytes, 0.5e6);
    assert.match(cut.cutShort ?? '', /^close after 1\.5 s$/);
    assert.ok(Math.abs(cut.wireSent - 1.1) < 1e-9, String(cut.wireSent));
    assert.ok(Number.isNaN(figures(report, 1000, 1000, 1000).wireSent), 'no bridge, no wire figure');
  });

  it('echo percentiles skip the warm-up and count unanswered probes at their age', () => {
    // 10 probes 100 ms apart; the first two fall in the 200 ms omitted; the last one never came back.
    const sentAt = Array.from({ length: 10 }, (_, i) => i * 100);
    const rtts = [900, 900, 50, 51, 52, 53, 54, 55, 56];
    const f = echoFigures({ kind: 'echo', sentAt, rtts, outstanding: [700] }, 200);
    assert.equal(f.probes, 8);
    assert.equal(f.unanswered, 1);
    assert.equal(f.p50, 53);
    assert.equal(f.p99, 700);
    assert.equal(f.max, 700);
  });

  it('prints the goals from the udp column against kcptun', () => {
    const fig = (goodputMbps: number, wire = 1.05): Figures => ({ goodputMbps, share: goodputMbps / 40, wireSent: wire, wireForwarded: wire, usefulBytes: 1 });
    const r: UdpBenchResult = {
      seconds: 10, omitSeconds: 1, direction: 'down', delayMs: 25, queueMs: 100, tcpCc: 'cubic', echo: [], loopback: [], skipped: {},
      cells: [
        { key: '40:2', rateMbit: 40, loss: 2, columns: { udp: fig(37), 'kcptun-tuned': fig(35, 2.3), 'kcptun-default': fig(20, 1.9) } },
        { key: '40:10', rateMbit: 40, loss: 10, columns: { udp: fig(28) } },
      ],
    };
    const text = formatUdp(r).join('\n');
    assert.match(text, /goal 40 Mbit\/s at 2 %: goodput >= 0\.90 of the link \(0\.93\) -> met; >= x1\.0 kcptun fast3 \(x1\.06\) -> met; >= x1\.5 kcptun default \(x1\.85\) -> met; wire <= 1\.10 .* -> met/);
    assert.match(text, /goal 40 Mbit\/s at 10 %: goodput >= 0\.75 of the link \(0\.70\) -> NOT met/);
    assert.match(text, /^2 % {5}37\.0 0\.93 1\.05\/1\.05/m);
  });
});
