/**
 * The long soak by hand: `node --import tsx scripts/soak.ts --minutes 30
 * [--streams 500] [--outage-at 0.3|none]`. Builds dist/ first; prints progress and
 * a JSON report; exits 1 if a stream lost or changed a byte, broke outside
 * the outage, or a client did not come back.
 */
import { parseArgs } from 'node:util';
import { ensureBuilt, stopAll } from '../test/helpers/cli.js';
import { runSoak } from '../test/soak/harness.js';

const { values } = parseArgs({
  options: { minutes: { type: 'string', default: '30' }, streams: { type: 'string', default: '500' }, 'outage-at': { type: 'string', default: '0.3' } },
});
ensureBuilt();
const report = await runSoak({
  seconds: Number(values.minutes) * 60,
  streamsPerClient: Number(values.streams),
  outageAt: values['outage-at'] === 'none' ? null : Number(values['outage-at']),
  log: (l) => console.log(`${new Date().toISOString()} ${l}`),
});
console.log(JSON.stringify(report, null, 2));
await stopAll();
const ok = report.streams.corrupt.length === 0 && report.streams.brokenOutsideOutage.length === 0 && (values['outage-at'] === 'none' || Object.keys(report.outage.backAt).length === 2);
process.exit(ok ? 0 : 1);
