/**
 * Issue "hardening": the soak, CI-sized. Real server and clients (tcp and
 * wss), ~1,000 concurrent streams of bulk, interactive, paused and slow
 * users, random carrier cuts and one 75 s server outage. The 30-minute run is
 * `node --import tsx scripts/soak.ts --minutes 30`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, stopAll } from '../helpers/cli.js';
import { runSoak } from '../soak/harness.js';

before(() => ensureBuilt());
after(() => stopAll());

const SECONDS = Number(process.env.POLYTUN_SOAK_SECONDS ?? 180);

describe('e2e: soak', () => {
  it(`${SECONDS} s of mixed streams over tcp and wss with carrier cuts and a 75 s server outage`, async () => {
    // Debug logs name each stream reset and its code; a broken stream's report carries the lines of its lifetime.
    const report = await runSoak({ seconds: SECONDS, logLevel: 'debug', log: (l) => console.log(`# ${l}`) });
    const { brokenOutsideOutage: outside, corrupt } = report.streams;
    console.log(`# soak report: ${JSON.stringify({ ...report, streams: { ...report.streams, brokenOutsideOutage: outside.length, corrupt: corrupt.length } })}`);
    for (const r of [...corrupt, ...outside].slice(0, 10)) console.log(`# soak stream: ${JSON.stringify(r)}`);
    // No byte lost, duplicated or changed on any stream.
    assert.deepEqual(report.streams.corrupt, []);
    // Carrier cuts are resumed: only the server outage may break streams.
    assert.deepEqual(report.streams.brokenOutsideOutage, []);
    // Both clients came back by themselves after the outage.
    assert.deepEqual(Object.keys(report.outage.backAt).sort(), ['tcp', 'wss']);
    // Work got done on every kind of stream that can finish.
    for (const k of ['bulk-down', 'bulk-up'] as const) assert.ok(report.byKind[k].done > 0, `${k}: none finished`);
    assert.ok(report.cuts > 0, 'no carrier was cut');
    for (const [name, c] of Object.entries(report.clients)) {
      // fds back to baseline once every stream is closed.
      assert.ok(c.fds.end <= c.fds.baseline + 2, `${name} client: ${c.fds.end} fds at the end, ${c.fds.baseline} at the start`);
      // Memory flat after warm-up: the end is not far above the first warm sample.
      assert.ok(c.rssMiB.end <= c.rssMiB.warm * 1.5 + 32, `${name} client RSS grew from ${c.rssMiB.warm} to ${c.rssMiB.end} MiB`);
    }
    assert.ok(report.server.fds.end <= report.server.fds.baseline + 2, `server: ${report.server.fds.end} fds at the end, ${report.server.fds.baseline} at the start`);
  });
});
