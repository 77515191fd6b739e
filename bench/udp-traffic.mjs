/**
 * The traffic ends of `npm run bench -- udp` (bench/udp.ts), one small
 * process each, started inside the lab namespaces with plain `node` (no tsx:
 * they start in a tenth of the time on a loaded machine):
 *
 *   node bench/udp-traffic.mjs serve HOST PORT               the target behind every tunnel
 *   node bench/udp-traffic.mjs down HOST PORT SENDMS STOPMS  ask the target for data, count it
 *   node bench/udp-traffic.mjs up HOST PORT SENDMS STOPMS TAG  send data to the target, which counts it
 *   node bench/udp-traffic.mjs echo HOST PORT MS EVERYMS     64-byte echoes every EVERYMS
 *
 * Every tunnel forwards to one target port (kcptun has one target per
 * server), so a connection starts with one header line naming what it wants:
 *
 *   "D <sendms>\n"          the target sends random bytes for <sendms>, then ends its side
 *   "U <stopms> <tag>\n"    the target counts what arrives and reports, as below, with `tag`
 *   "E\n"                   the target echoes every byte back
 *
 * The receiving end of bulk data prints one JSON line STOPMS after the first
 * byte (or when the stream ends or breaks first) and closes the connection:
 * {kind:'bulk', how, total, first, samples}, `first` the arrival of the first
 * byte in ms of the machine's monotonic clock (process.hrtime, shared by
 * all namespaces, so bench/udp.ts can line it up with the bridge's counters),
 * samples [ms since the first byte, bytes so far] at least 50 ms apart.
 * It does not wait for the sender's buffers to drain: at 10 % loss a plain
 * TCP sender's 4 MiB of socket buffer would take minutes. Data is random
 * (kcptun compresses by default) and sent as fast as the socket takes it.
 * The sender stops after SENDMS, which bench/udp.ts sets beyond STOPMS.
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { clearInterval, clearTimeout, setInterval, setTimeout } from 'node:timers';

const [mode, host, portText, ...rest] = process.argv.slice(2);
const port = Number(portText);
const DATA = randomBytes(1 << 20);
const CHUNK = 64 * 1024;
const ECHO_SIZE = 64;

const monotonicMs = () => Number(process.hrtime.bigint() / 1000n) / 1000;

/**
 * Counts what arrives on `s`; `report()` gives the line so far, and
 * `onFirst` runs at the first byte (to arm the STOPMS timer).
 */
function counter(s, onFirst = () => undefined) {
  let total = 0;
  let first = 0;
  let firstMono = 0;
  let lastSample = 0;
  const samples = [];
  const add = (n) => {
    const now = performance.now();
    if (first === 0) {
      first = now;
      firstMono = monotonicMs();
      lastSample = now;
      samples.push([0, 0]);
      onFirst();
    }
    total += n;
    if (now - lastSample >= 50) {
      samples.push([Math.round((now - first) * 10) / 10, total]);
      lastSample = now;
    }
  };
  s.on('data', (c) => add(c.length));
  return {
    add,
    report: (how, extra = {}) => {
      if (first !== 0) samples.push([Math.round((performance.now() - first) * 10) / 10, total]);
      return JSON.stringify({ kind: 'bulk', how, total, first: firstMono, samples, ...extra });
    },
  };
}

/**
 * Writes random data to `s` for `ms`, then ends it; also ends at the
 * deadline while a write waits for 'drain' (a stalled tunnel). Returns a
 * function telling how many bytes were handed to the socket so far.
 */
function pump(s, ms) {
  const end = performance.now() + ms;
  let off = 0;
  let written = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    s.end();
  };
  const timer = setTimeout(finish, ms);
  const loop = () => {
    while (!finished && performance.now() < end) {
      const chunk = DATA.subarray(off, off + CHUNK);
      off = (off + CHUNK) % DATA.length;
      written += chunk.length;
      if (!s.write(chunk)) {
        s.once('drain', loop);
        return;
      }
    }
    finish();
  };
  loop();
  return () => written;
}

/** Connects, retrying while nothing listens yet (a tunnel's entry port opens a moment after its process starts). */
function connect(onConnect, tries = 100) {
  const s = net.connect({ host, port, noDelay: true });
  let connected = false;
  s.once('connect', () => {
    connected = true;
    onConnect(s);
  });
  s.once('error', (err) => {
    if (connected) return; // the mode's own handlers decide
    if (err.code === 'ECONNREFUSED' && tries > 1) setTimeout(() => connect(onConnect, tries - 1), 100);
    else exit(JSON.stringify({ kind: 'error', error: `${err.code ?? ''} ${err.message}` }));
  });
}

let exiting = false;
/** Prints the one result line and exits (the first call wins). */
function exit(line) {
  if (exiting) return;
  exiting = true;
  process.stdout.write(`${line}\n`, () => process.exit(0));
}

function serve() {
  const srv = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    let head = Buffer.alloc(0);
    const onHead = (c) => {
      head = Buffer.concat([head, c]);
      const nl = head.indexOf(10);
      if (nl < 0) return;
      s.off('data', onHead);
      const [what, arg, tag] = head.subarray(0, nl).toString().split(' ');
      const restData = head.subarray(nl + 1);
      if (what === 'E') {
        if (restData.length > 0) s.write(restData);
        s.on('data', (d) => s.write(d));
      } else if (what === 'D') {
        pump(s, Number(arg));
      } else if (what === 'U') {
        let done = false;
        let timer;
        const report = (how) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          process.stdout.write(`${c.report(how, { tag })}\n`);
          s.destroy();
        };
        const c = counter(s, () => (timer = setTimeout(() => report('stop'), Number(arg))));
        if (restData.length > 0) c.add(restData.length);
        s.on('end', () => report('end'));
        s.on('close', () => report('close'));
      } else s.destroy();
    };
    s.on('data', onHead);
  });
  srv.listen(port, host, () => console.log(`target ready ${port}`));
}

/** Receives for STOPMS after the first byte; gives up when no byte came within SENDMS. */
function down(sendMs, stopMs) {
  connect((s) => {
    const done = (how) => {
      clearTimeout(timer);
      exit(c.report(how));
      s.destroy();
    };
    let timer = setTimeout(() => done('no data'), sendMs);
    const c = counter(s, () => {
      clearTimeout(timer);
      timer = setTimeout(() => done('stop'), stopMs);
    });
    s.on('end', () => done('end'));
    s.on('error', () => done('error'));
    s.on('close', () => done('close'));
    s.write(`D ${sendMs}\n`);
  });
}

/** Sends for SENDMS (the target stops counting STOPMS after the first byte and closes). */
function up(sendMs, stopMs, tag) {
  connect((s) => {
    s.on('error', () => s.destroy());
    s.on('close', () => exit(JSON.stringify({ kind: 'sent', written: written() })));
    s.resume();
    s.write(`U ${stopMs} ${tag}\n`);
    const written = pump(s, sendMs);
  });
}

/**
 * Probes of 64 bytes every `everyMs` on one connection; each one's round
 * trip ends when the echoed bytes up to its last have come back (TCP keeps
 * order). Probes still out at the end are reported with their age so far.
 */
function echo(ms, everyMs) {
  connect((s) => {
    const t0 = performance.now();
    const sentAt = [];
    const rtts = [];
    let got = 0;
    s.on('data', (c) => {
      got += c.length;
      const now = performance.now();
      while (rtts.length < sentAt.length && got >= ECHO_SIZE * (rtts.length + 1)) rtts.push(now - (sentAt[rtts.length] ?? now));
    });
    s.on('error', () => undefined);
    s.write('E\n');
    const probe = Buffer.alloc(ECHO_SIZE, 0x65);
    const tick = setInterval(() => {
      sentAt.push(performance.now());
      s.write(probe);
    }, everyMs);
    setTimeout(() => {
      clearInterval(tick);
      const now = performance.now();
      const round = (x) => Math.round(x * 100) / 100;
      exit(JSON.stringify({
        kind: 'echo',
        sentAt: sentAt.map((t) => round(t - t0)),
        rtts: rtts.map(round),
        outstanding: sentAt.slice(rtts.length).map((t) => round(now - t)),
      }));
      s.destroy();
    }, ms);
  });
}

if (mode === 'serve') serve();
else if (mode === 'down') down(Number(rest[0]), Number(rest[1]));
else if (mode === 'up') up(Number(rest[0]), Number(rest[1]), rest[2] ?? '-');
else if (mode === 'echo') echo(Number(rest[0]), Number(rest[1]));
else {
  console.error(`usage: udp-traffic.mjs serve|down|up|echo HOST PORT …; got ${mode}`);
  process.exit(2);
}
