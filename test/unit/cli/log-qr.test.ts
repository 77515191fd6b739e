import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encode } from 'uqr';
import { createLogger, formatTextLine } from '../../../src/cli/log.js';
import { renderQr } from '../../../src/cli/qr.js';
import type { Logger } from '../../../src/core/logger.js';

function capture(format: 'text' | 'json', level: 'debug' | 'info' = 'info'): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ format, level, destination: { write: (s: string) => lines.push(s) } });
  return { log, lines };
}

describe('createLogger', () => {
  it('text: one line per event with level, message and fields', () => {
    const { log, lines } = capture('text');
    log.info({ remote: '203.0.113.7:4433', rttMs: 41, note: 'two words' }, 'session open');
    log.debug({}, 'hidden at info');
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}session open remote=203\.0\.113\.7:4433 rttMs=41 note="two words"\n$/);
  });

  it('text: errors show message and code; control characters cannot forge lines', () => {
    const { log, lines } = capture('text');
    log.error({ err: Object.assign(new Error('dial failed'), { code: 'ERR_DIAL' }), host: 'a\nb' }, 'x\n2025 INFO forged');
    assert.equal(lines.length, 1);
    const line = lines[0] ?? '';
    assert.equal(line.split('\n').length, 2); // the text and the final ''
    assert.match(line, / ERROR x\\n2025 INFO forged err="dial failed" code=ERR_DIAL host="a\\nb"\n$/);
  });

  it('secret-named fields are redacted in both formats', () => {
    for (const format of ['text', 'json'] as const) {
      const { log, lines } = capture(format);
      log.warn({ key: 'K-SECRET', link: 'polytun://L-SECRET', user: { password: 'P-SECRET', name: 'alice' } }, 'careful');
      const out = lines.join('');
      assert.ok(!/SECRET/.test(out), out);
      assert.ok(out.includes('alice'));
    }
  });

  it('json: pino JSON lines; level filters', () => {
    const { log, lines } = capture('json', 'debug');
    log.debug({ a: 1 }, 'dbg');
    const rec = JSON.parse(lines[0] ?? '') as { level: number; msg: string; a: number };
    assert.deepEqual([rec.level, rec.msg, rec.a], [20, 'dbg', 1]);
    const child = log.child({ session: 's1' });
    child.info({}, 'c');
    assert.equal((JSON.parse(lines[1] ?? '') as { session: string }).session, 's1');
  });

  it('formatTextLine passes through what is not JSON', () => {
    assert.equal(formatTextLine('plain'), 'plain\n');
  });
});

describe('renderQr', () => {
  const text = 'polytun://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@vps.example:4433?pk=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA#default';

  /** Reads the plain rendering back into a module matrix (dark = true). */
  function readPlain(out: string, size: number): boolean[][] {
    const rows: boolean[][] = [];
    for (const line of out.trimEnd().split('\n')) {
      const top: boolean[] = [];
      const bottom: boolean[] = [];
      for (const ch of line.padEnd(size, ' ')) {
        // plain mode prints light modules: █ both light, ▀ top light, ▄ bottom light, ' ' both dark
        top.push(ch === ' ' || ch === '▄');
        bottom.push(ch === ' ' || ch === '▀');
      }
      rows.push(top, bottom);
    }
    return rows.slice(0, size);
  }

  it('plain rendering reproduces the QR matrix exactly', () => {
    const qr = encode(text, { ecc: 'M', border: 2 });
    const out = renderQr(text, { ansi: false });
    assert.equal(out.split('\n').length - 1, Math.ceil(qr.size / 2));
    assert.deepEqual(readPlain(out, qr.size), qr.data);
  });

  it('ANSI rendering paints every module with explicit colours', () => {
    const qr = encode(text, { ecc: 'M', border: 2 });
    const out = renderQr(text, { ansi: true });
    const lines = out.trimEnd().split('\n');
    assert.equal(lines.length, Math.ceil(qr.size / 2));
    for (const line of lines) {
      assert.equal(line.split('▀').length - 1, qr.size);
      assert.ok(line.endsWith('\x1b[0m'));
    }
    // The top-left finder pattern's corner is dark on dark; the quiet zone is light on light.
    const cells = (lines[1] ?? '').split('▀');
    assert.equal(cells[2], '\x1b[30m\x1b[40m');
    assert.equal((lines[0] ?? '').split('▀')[0], '\x1b[97m\x1b[107m');
  });
});
