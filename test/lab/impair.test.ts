/**
 * Lab test (root only) of the impair link emulator (native/tools/impair/):
 * hosts a and b joined through it (see test/helpers/impair-lab.ts), one lab
 * for the whole file, the impairments replaced before each case.
 *
 * Bands are wide (the machine is shared and loaded) but each is far from
 * what a broken feature gives: no rate limit runs at Gbit/s, no delay pings
 * in well under a millisecond, no loss keeps TCP at the link rate, random
 * loss has runs of about one packet. Counter checks against what the
 * receiver saw are exact, give or take datagrams the receiver's own socket
 * dropped (counted by the kernel, reported as rcvbufErrors).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { ensureImpairBuilt, ImpairLab, impairLabUnavailableReason, type DirCounters, type ImpairCounters } from '../helpers/impair-lab.js';
import { flowStats, iperf3, pingRtts, udpFlood } from '../helpers/lab-probes.js';

function have(cmd: string): boolean {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const buildSkip = (() => {
  try {
    ensureImpairBuilt();
    return undefined;
  } catch (err) {
    return `native/build/impair cannot be built here: ${(err as Error).message}`;
  }
})();
const labSkip = impairLabUnavailableReason() ?? (have('iperf3') && have('ping') ? undefined : 'iperf3 or ping missing (run scripts/install-test-deps.sh)');
if (buildSkip !== undefined) console.log(`# impair skipped: ${buildSkip}`);
else if (labSkip !== undefined) console.log(`# impair lab skipped: ${labSkip}`);

/** `after - before` of one direction's counters. */
function delta(before: DirCounters, after: DirCounters): DirCounters {
  const sub = <T extends Record<string, unknown>>(a: T, b: T): T =>
    Object.fromEntries(Object.entries(b).map(([k, v]) => [k, typeof v === 'number' ? v - (a[k] as number) : sub(a[k] as Record<string, unknown>, v as Record<string, unknown>)])) as T;
  return sub(before as unknown as Record<string, unknown>, after as unknown as Record<string, unknown>) as unknown as DirCounters;
}

/** Asserts `x` lies within `sigmas` standard deviations of a binomial(n, p) mean. */
function binomial(what: string, x: number, n: number, p: number, sigmas = 5): void {
  const mean = n * p;
  const sd = Math.sqrt(n * p * (1 - p));
  assert.ok(Math.abs(x - mean) <= sigmas * sd, `${what}: ${x} of ${n}, expected ${mean.toFixed(0)} ± ${(sigmas * sd).toFixed(0)}`);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('impair: command line', { skip: buildSkip ?? false }, () => {
  const cases: Array<[string[], RegExp]> = [
    [['--a', 'x', '--b', 'y', '--bogus', '1'], /unknown flag --bogus/],
    [['--a', 'x', '--b', 'y', '--loss', '2'], /--loss: 2 is outside \[0, 1\]/],
    [['--a', 'x', '--b', 'y', '--ab-delay-ms', 'soon'], /--ab-delay-ms: 'soon' is not a number/],
    [['--a', 'x', '--b', 'y', '--burst', '0.1'], /--burst: expected P,R\[,H\]/],
    [['--a', 'x', '--b', 'y', '--burst', '0.1,0'], /never recovers/],
    [['--a', 'x', '--b', 'y', '--queue-ms', '5', '--queue-bytes', '9000'], /pick one/],
    [['--a', 'x', '--b', 'y', '--rate-mbit'], /--rate-mbit needs a value/],
    [['--b', 'y', '--loss', '0.1'], /--a and --b .* are required/],
    [['--a', 'x', '--b', 'y', 'extra'], /unexpected argument 'extra'/],
  ];
  for (const [args, message] of cases) {
    it(`refuses ${args.slice(4).join(' ') || args.join(' ')} with exit code 2`, () => {
      const r = spawnSync(ensureImpairBuilt(), args, { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    });
  }
});

describe('impair lab: a and b through the emulator', { skip: buildSkip ?? labSkip ?? false }, () => {
  let il: ImpairLab;
  const LINK = 40e6;

  before(async () => {
    il = await ImpairLab.create('impair');
  });
  after(async () => {
    await il?.destroy();
    const final = il?.lastCounters;
    if (final) console.log(`# impair final counters: ${JSON.stringify(final)}`);
    assert.equal(final?.ab.drop.gso ?? 0, 0, 'super-frames reached the bridge: offloads were on');
  });

  it('refuses a bad command while running and keeps its settings', async () => {
    const before = await il.command('--ab-delay-ms 7');
    await assert.rejects(il.command('--ab-loss 1.5 --ab-delay-ms 9'), /--ab-loss: 1.5 is outside/);
    await assert.rejects(il.command('--seed 3'), /cannot change while running/);
    const after = await il.command('--ba-dup 0');
    assert.equal((after.ab as { delay_ms: number }).delay_ms, 7);
    assert.deepEqual(after.ab, before.ab);
  });

  it('TCP fills the rate limit; ping takes both one-way delays, each direction its own', async () => {
    await il.set({ delayMs: 25, rateMbit: 40, queueMs: 50 });
    // Reno in both TCP cases: the Mathis rate below is Reno's, and CUBIC's
    // HyStart once left slow start early on the loaded machine (delay noise)
    // and crawled at 10 Mbit/s for the whole run. The machine default may be
    // BBR, which ignores random loss.
    const tcp = await iperf3(il.lab, il.a, il.b, il.bAddr, { seconds: 3, omit: 1, congestion: 'reno' });
    console.log(`# TCP (reno) at 40 Mbit/s, 50 ms RTT, no loss: ${(tcp.receivedBps / 1e6).toFixed(1)} Mbit/s, ${tcp.retransmits} retransmits`);
    // Goodput is at most 1448/1514 of the frame rate (95.6 %).
    assert.ok(tcp.receivedBps > 0.7 * LINK && tcp.receivedBps < 1.0 * LINK, `${tcp.receivedBps / 1e6} Mbit/s through a 40 Mbit/s link`);

    await il.set({ delayMs: 25 });
    const rtt = await pingRtts(il.lab, il.a, il.bAddr, 5);
    await il.set({ delayMs: 25, ba: { delayMs: 5 } });
    const asym = await pingRtts(il.lab, il.a, il.bAddr, 5);
    await il.set({ delayMs: 25, jitterMs: 5 });
    const jit = await pingRtts(il.lab, il.a, il.bAddr, 10, 0.1);
    console.log(`# ping RTT ms: 25+25 ${rtt.join(' ')}; 25+5 ${asym.join(' ')}; 25±5 each way ${jit.join(' ')}`);
    assert.equal(rtt.length, 5);
    assert.ok(Math.min(...rtt) >= 49.9 && median(rtt) < 90, `RTT ${rtt.join(', ')} with 25 ms each way`);
    assert.equal(asym.length, 5);
    assert.ok(Math.min(...asym) >= 29.9 && median(asym) < 65, `RTT ${asym.join(', ')} with 25 ms a→b and 5 ms b→a`);
    assert.ok(jit.length >= 9 && Math.min(...jit) >= 39.9, `RTT ${jit.join(', ')} with 25 ± 5 ms each way`);
    assert.ok(Math.max(...jit) - Math.min(...jit) >= 4, `RTT ${jit.join(', ')}: jitter of ±5 ms each way should spread them`);
  });

  it('2 % loss per packet collapses Reno TCP to about the Mathis rate', async () => {
    await il.set({ delayMs: 25, rateMbit: 40, queueMs: 50, loss: 0.02 });
    const c0 = await il.counters();
    const tcp = await iperf3(il.lab, il.a, il.b, il.bAddr, { seconds: 3, congestion: 'reno' });
    const d = delta(c0.ab, (await il.counters()).ab);
    // Mathis: MSS/RTT × 1.22/√p = 1448 B × 8 / 50 ms × 1.22 / 0.141 ≈ 2 Mbit/s.
    console.log(`# TCP (reno) at 40 Mbit/s, 50 ms RTT, 2 % loss: ${(tcp.receivedBps / 1e6).toFixed(2)} Mbit/s, ${tcp.retransmits} retransmits, ${d.drop.loss} of ${d.rx} frames lost a→b`);
    assert.ok(tcp.receivedBps < 0.25 * LINK, `${tcp.receivedBps / 1e6} Mbit/s at 2 % loss: loss is not reaching TCP`);
    assert.ok(tcp.receivedBps > 0.1e6, `${tcp.receivedBps / 1e6} Mbit/s: TCP made no progress`);
    assert.ok(d.drop.loss > 0 && tcp.retransmits > 0, `${d.drop.loss} lost, ${tcp.retransmits} retransmitted`);
    assert.equal(d.drop.gso, 0);
  });

  /** Floods `count` datagrams a → b and returns what arrived with the a→b counters' change. */
  /**
   * Floods `count` datagrams a → b; returns what arrived, the a→b counters'
   * change, and the slack for comparing them: datagrams the receiver's socket
   * dropped, plus stray IP frames that crossed meanwhile (a retransmitted FIN
   * of an earlier case's TCP connection, say).
   */
  async function flood(count: number, size: number, perTick: number): Promise<{ f: ReturnType<typeof flowStats>; d: DirCounters; r: Awaited<ReturnType<typeof udpFlood>>; slack: number }> {
    const c0: ImpairCounters = await il.counters();
    const r = await udpFlood(il.lab, il.a, il.b, il.bAddr, { count, size, perTick });
    const d = delta(c0.ab, (await il.counters()).ab);
    assert.equal(r.sent, count);
    const stray = d.rx - d.non_ip - count;
    assert.ok(stray >= 0 && stray <= 10, `the bridge saw ${d.rx - d.non_ip} IP frames for ${count} datagrams`);
    return { f: flowStats(r.seqs, count), d, r, slack: r.rcvbufErrors + stray };
  }

  it('UDP: random loss, duplication and reordering happen as often as set, and the counters match the receiver', async () => {
    const N = 4000;
    await il.set({ delayMs: 5, loss: 0.1, dup: 0.05, reorder: 0.05, reorderMs: 10 });
    const { f, d, r, slack } = await flood(N, 100, 4);
    console.log(`# UDP ${N}: lost ${f.lost} (bridge ${d.drop.loss}), dups ${f.dups} (bridge ${d.dup}), late ${f.late} (bridge held ${d.reordered}), slack ${slack}, mean loss run ${mean(f.lossRuns).toFixed(2)}`);
    binomial('lost', d.drop.loss, N, 0.1);
    binomial('duplicated', d.dup, N - d.drop.loss, 0.05);
    binomial('held back', d.reordered, N - d.drop.loss, 0.05);
    assert.ok(Math.abs(f.lost - d.drop.loss) <= slack, `receiver lost ${f.lost}, bridge dropped ${d.drop.loss}`);
    assert.ok(Math.abs(f.dups - d.dup) <= slack, `receiver got ${f.dups} duplicates, bridge made ${d.dup}`);
    // Every held datagram is overtaken, except a few of the last 10 ms of the flood.
    assert.ok(f.late <= d.reordered && f.late >= d.reordered - 10 - slack, `${f.late} arrived late, bridge held ${d.reordered}`);
    assert.ok(mean(f.lossRuns) < 1.6, `independent loss in runs of ${mean(f.lossRuns)} on average`);
    assert.ok(Math.min(...r.owdUs) >= 5000, `one-way delay ${Math.min(...r.owdUs)} µs below the 5 ms set`);
  });

  it('UDP: Gilbert-Elliott loss comes in bursts of about 1/r packets', async () => {
    const N = 4000;
    const [p, rr] = [0.02, 0.25];
    await il.set({ delayMs: 5, burst: { p, r: rr } });
    const { f, d, slack } = await flood(N, 100, 4);
    const runs = mean(f.lossRuns);
    console.log(`# UDP ${N} with burst ${p},${rr}: lost ${f.lost} (bridge ${d.drop.burst}, stationary ${(N * p / (p + rr)).toFixed(0)}), mean loss run ${runs.toFixed(2)} (1/r = ${1 / rr})`);
    assert.equal(d.drop.loss, 0);
    assert.ok(Math.abs(f.lost - d.drop.burst) <= slack, `receiver lost ${f.lost}, bridge dropped ${d.drop.burst}`);
    // Stationary loss p/(p+r) = 7.4 %; bursts make the count vary far more than a binomial.
    assert.ok(d.drop.burst > 0.03 * N && d.drop.burst < 0.13 * N, `${d.drop.burst} of ${N} lost in bursts`);
    assert.ok(runs > 2.5 && runs < 6.5, `mean loss run ${runs}, expected about ${1 / rr}`);
  });

  // Bounds on rates and delays below leave room for a loaded machine (the suite runs beside
  // other work; 2 cores): each still fails if the emulator ignored the setting.
  it('UDP above the rate leaves at the rate, queued no longer than the bound (ms or bytes)', async () => {
    const rate = 10e6;
    const frameBits = (1000 + 42) * 8;
    const cases = [
      { init: { queueMs: 100 }, waitMs: 100 },
      { init: { queueBytes: 30_000 }, waitMs: (30_000 * 8 * 1000) / rate },
    ];
    for (const { init, waitMs } of cases) {
      await il.set({ delayMs: 5, rateMbit: rate / 1e6, ...init });
      // About 3 datagrams per ms offered: 2.5 times the rate.
      const { f, d, r, slack } = await flood(2000, 1000, 3);
      const bps = ((f.unique + f.dups - 1) * frameBits) / (r.spanNs / 1e9);
      const owdMs = median(r.owdUs) / 1000;
      console.log(`# UDP into 10 Mbit/s, queue ${JSON.stringify(init)}: ${(bps / 1e6).toFixed(2)} Mbit/s of frames out, ${d.drop.queue} of 2000 dropped by the queue, median one-way delay ${owdMs.toFixed(1)} ms`);
      // The rate is taken from the receiver's clock between its first and last frame: a loaded
      // receiver that reads its first frames late shortens that span (a loaded run measured 11.9).
      // Without the limit the 2.5-times offer would pass: 25 Mbit/s.
      assert.ok(bps > 0.85 * rate && bps < 1.25 * rate, `${bps / 1e6} Mbit/s out of a 10 Mbit/s bottleneck`);
      // The sender means to offer 2.5 times the rate; under load it offers less (a loaded
      // suite run saw 480 drops, not the ~1,000 of an idle machine), so only ask that the
      // queue dropped the overload rather than passing it or holding it without bound.
      assert.ok(d.drop.queue > 0.1 * 2000, `${d.drop.queue} queue drops at up to 2.5 times the rate`);
      assert.ok(Math.abs(f.lost - d.drop.queue) <= slack, `receiver lost ${f.lost}, queue dropped ${d.drop.queue}`);
      // A full queue adds its bound to the 5 ms delay (the receiver's event loop may add a little).
      // The upper bound leaves room for a loaded receiver's event loop: an unbounded queue would be seconds.
      assert.ok(owdMs > 5 + 0.6 * waitMs && owdMs < 5 + waitMs + 50, `median one-way delay ${owdMs} ms with a ${waitMs} ms queue`);
    }
  });
});
