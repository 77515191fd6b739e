/**
 * The decoy in a real browser: Debian's Chromium, driven by playwright-core
 * (which downloads no browser), opens a `polytun server --listen wss://…
 * --decoy DIR` like any visitor would. It must see the decoy site — the
 * site's page at `/`, the site's 404 elsewhere, also on a real user's path —
 * and the server must log nothing that says a tunnel lives there.
 *
 * Skipped, saying why, when /usr/bin/chromium is absent (scripts/install-test-deps.sh installs it).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type BrowserContext } from 'playwright-core';
import { decodeLink } from '../../src/config/link.js';
import { ensureBuilt, ROOT } from '../helpers/cli.js';
import { startGateway, type GatewayProc } from '../helpers/gateway.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (run scripts/install-test-deps.sh)`;
const SITE = join(ROOT, 'test/fixtures/decoy-site');
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe('decoy in a real browser', { skip }, () => {
  let gw: GatewayProc;
  let browser: BrowserContext;
  let base: string;
  const scratch = mkdtempSync(join(tmpdir(), 'polytun-browser-'));

  before(async () => {
    ensureBuilt();
    gw = await startGateway({ listen: ['wss://127.0.0.1:0'], admin: false, extra: ['--decoy', SITE] });
    const link = decodeLink(gw.links[0] as string);
    base = `https://127.0.0.1:${link.port}`;
    browser = await chromium.launchPersistentContext(join(scratch, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      // A fresh profile (the folder above) and no traffic of its own: only our requests reach the server.
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      ignoreHTTPSErrors: true,
    });
  });
  after(async () => {
    await browser?.close();
    await gw?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('shows the decoy site at /, its 404 on an unknown path and on a user\'s path, and the server logs no error', async () => {
    const page = await browser.newPage();
    const home = await page.goto(`${base}/`);
    assert.equal(home?.status(), 200);
    assert.equal(await page.title(), 'Hollow Oak Pottery — handmade stoneware');
    assert.match(await page.locator('h1').innerText(), /Hollow Oak Pottery/);
    assert.equal((await home?.allHeaders())?.server, 'nginx');
    const shot = join(scratch, 'decoy.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.deepEqual(readFileSync(shot).subarray(0, 8), PNG);

    const unknown = await page.goto(`${base}/unknown-path`);
    assert.equal(unknown?.status(), 404);
    assert.equal(await page.title(), '404 Not Found');
    assert.match(await page.locator('body').innerText(), /404 Not Found\s+nginx/);

    // A user's path is a tunnel only for a WebSocket upgrade; a browser GET gets the site's 404 like any other.
    const userPath = decodeLink(gw.links[0] as string).path as string;
    const user = await page.goto(`${base}${userPath}`);
    assert.equal(user?.status(), 404);
    assert.equal(await page.title(), '404 Not Found');
    await page.close();

    assert.doesNotMatch(gw.log(), /\b(WARN|ERROR|FATAL)\b/, gw.log());
    assert.match(gw.log(), /decoy request/, 'the requests did reach the server');
  });
});
