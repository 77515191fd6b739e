/**
 * The client's web pages in a real browser (Debian's Chromium, driven by
 * playwright-core), against real processes:
 *
 *   chromium ──http──▶ polytun ui ─apply─▶ client.yaml (0600) ─▶ in-process client ═ tcp ═▶ polytun server ─▶ origin
 *   chromium ──http──▶ polytun client LINK --ui … --ui-password-file F ═ tcp ═▶ polytun server
 *
 * The wizard, from an empty config: a picture without a QR code is refused
 * with a sentence, the link is read from a QR image (drawn by uqr, decoded in
 * the page), a bad forward is named next to its field, the checks pass, the
 * apply writes the file (mode 600) and starts the tunnel, and HTTP goes
 * through it (a forward, and curl through the SOCKS5 front). The dashboard then shows the path in the topology with its
 * RTT and a live rate, the fronts' counters and the events. A client with a
 * password asks for it first. Screenshots of each page go to
 * $POLYTUN_ARTIFACTS (default test-artifacts/client-dashboard/), and the
 * console is checked for CSP violations and page errors.
 *
 * Skipped, saying why, when /usr/bin/chromium is absent (scripts/install-test-deps.sh installs it).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { renderSVG } from 'uqr';
import { ensureBuilt, freePort, have, polytun, ROOT, startClient, startServer, stopAll, waitForPort, type Proc, type Server } from '../helpers/cli.js';
import { ensureWebBuilt } from '../helpers/web.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (run scripts/install-test-deps.sh)` : !have('curl') ? 'curl is not installed (run scripts/install-test-deps.sh)' : false;
const ARTIFACTS = process.env.POLYTUN_ARTIFACTS ? join(process.env.POLYTUN_ARTIFACTS, 'client-dashboard') : join(ROOT, 'test-artifacts/client-dashboard');

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('latin1')));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

describe('client web dashboard and setup wizard in a real browser', { skip }, () => {
  const scratch = mkdtempSync(join(tmpdir(), 'polytun-client-dash-'));
  let server: Server;
  let origin: http.Server;
  let originPort: number;
  let browser: BrowserContext;
  const consoleLines: string[] = [];

  before(async () => {
    ensureBuilt();
    ensureWebBuilt();
    mkdirSync(ARTIFACTS, { recursive: true });
    // The in-process tunnel keeps its path history in the default place: this test's own folder.
    process.env.XDG_STATE_HOME = join(scratch, 'state');
    server = await startServer(['--allow', '127.0.0.1'], ['tcp://127.0.0.1:0']);
    origin = http.createServer((req, res) => res.end(req.url === '/big' ? Buffer.alloc(256 * 1024, 7) : `hello from origin ${req.url ?? ''}`));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
    browser = await chromium.launchPersistentContext(join(scratch, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
  });
  after(async () => {
    await browser?.close();
    await stopAll();
    origin?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const watch = (page: Page) => {
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  };
  const shot = (page: Page, name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const noViolations = () => {
    const bad = consoleLines.filter((l) => /Content Security Policy|pageerror|Uncaught/.test(l));
    assert.deepEqual(bad, [], 'no CSP violation and no page error');
  };

  /** A PNG of `svg` as the browser draws it (a screenshot of the element). */
  async function png(svg: string, file: string): Promise<string> {
    const p = await browser.newPage();
    await p.setContent(`<body style="margin:0;background:#fff">${svg}</body>`);
    await p.locator('svg').screenshot({ path: file });
    await p.close();
    return file;
  }

  it('polytun ui: the wizard from nothing to a working tunnel, then the live dashboard', async () => {
    const uiPort = await freePort();
    const file = join(scratch, 'wizard', 'client.yaml');
    const ui: Proc = polytun(['ui', '--listen', `127.0.0.1:${uiPort}`, '--config', file]);
    const rl = createInterface({ input: ui.child.stdout as NodeJS.ReadableStream });
    for await (const line of rl) if (line.includes(`http://127.0.0.1:${uiPort}/`)) break;
    const link = server.links[0] as string;
    const tcpPort = /@127\.0\.0\.1:(\d+)/.exec(link)?.[1];

    const page = await browser.newPage();
    watch(page);
    const home = await page.goto(`http://127.0.0.1:${uiPort}/`);
    assert.equal(home?.status(), 200);
    assert.match((await home?.allHeaders())?.['content-security-policy'] ?? '', /script-src 'self'/);
    // No tunnel yet: the page opens on the wizard.
    await page.getByRole('heading', { name: 'Setup', exact: true }).waitFor();
    assert.match(page.url(), /#\/setup$/);
    await shot(page, '1-setup-empty');

    // A picture without a QR code: a sentence that says so, nothing else happens.
    await page.getByRole('button', { name: 'QR code image' }).click();
    const blank = await png('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200" fill="#fff"/><circle cx="100" cy="100" r="40" fill="#888"/></svg>', join(scratch, 'blank.png'));
    await page.getByLabel('A picture of the QR code').setInputFiles(blank);
    await page.getByRole('alert').filter({ hasText: 'no QR code found in blank.png' }).waitFor();

    // The link's QR code, drawn by another library and decoded in the page.
    const qr = await png(renderSVG(link, { border: 2, pixelSize: 6 }), join(scratch, 'link-qr.png'));
    await page.getByLabel('A picture of the QR code').setInputFiles(qr);
    await page.getByRole('status').filter({ hasText: 'Read from the QR code.' }).waitFor();
    assert.equal(await page.locator('[data-field=server]').innerText(), `127.0.0.1:${tcpPort} tcp`);
    await page.getByRole('button', { name: 'Paste a link' }).click();
    // The link field holds what the code said, hidden until asked.
    assert.equal(await page.locator('#link').getAttribute('type'), 'password');
    assert.equal(await page.locator('#link').inputValue(), link);

    // Fronts: a SOCKS port and a forward to the origin, first mistyped.
    const socks = await freePort();
    const status = await freePort();
    const fwd = await freePort();
    await page.getByLabel('SOCKS5 listens on').fill(`127.0.0.1:${socks}`);
    await page.getByLabel('Status endpoint listens on').fill(`127.0.0.1:${status}`);
    await page.getByLabel('Port forwards, one per line').fill('not-a-forward');
    await page.getByRole('button', { name: 'Run the checks' }).click();
    // The refusal is shown next to the field it names.
    await page.locator('#fwd-issue').filter({ hasText: 'forwards[0]' }).waitFor();
    assert.equal(await page.getByLabel('Port forwards, one per line').getAttribute('aria-invalid'), 'true');
    await shot(page, '2-setup-bad-forward');

    await page.getByLabel('Port forwards, one per line').fill(`${fwd}:127.0.0.1:${originPort}`);
    await page.getByRole('button', { name: 'Run the checks' }).click();
    await page.locator('table.checks').waitFor();
    assert.equal(await page.locator('[data-check="reach:link"] .badge').innerText(), 'pass');
    assert.equal(await page.locator('[data-check="udp"] .badge').innerText(), 'not offered');
    // The speed through the server, both ways, with figures.
    assert.equal(await page.locator('[data-check="speed:link"] .badge').innerText(), 'pass');
    assert.match(await page.locator('[data-check="speed:link"]').innerText(), /↓ [\d.]+ Mbit\/s, ↑ [\d.]+ Mbit\/s/);
    await shot(page, '3-setup-checked');

    await page.getByRole('button', { name: 'Write the config and start' }).click();
    await page.locator('.applied').filter({ hasText: `Written to ${file}` }).waitFor();
    assert.equal(statSync(file).mode & 0o777, 0o600, 'the config is mode 600');
    await waitForPort(fwd, '127.0.0.1', ui);
    assert.equal(await get(fwd, '/through-the-tunnel'), 'hello from origin /through-the-tunnel');
    // And curl through the SOCKS5 front the wizard set up (the server resolves and dials the origin).
    await waitForPort(socks, '127.0.0.1', ui);
    // (Asynchronously: the origin answers from this process's event loop.)
    const curl = await promisify(execFile)('curl', ['-sS', '--max-time', '20', '--socks5-hostname', `127.0.0.1:${socks}`, `http://127.0.0.1:${originPort}/via-socks`], { encoding: 'utf8' });
    assert.equal(curl.stdout, 'hello from origin /via-socks');
    await shot(page, '4-setup-applied');

    // The dashboard: connected, the path in the topology with its RTT.
    await page.getByRole('link', { name: 'Open the dashboard' }).click();
    await page.locator('[data-figure=state]').filter({ hasText: 'connected' }).waitFor();
    const path = page.locator(`li.link[data-path="tcp://127.0.0.1:${tcpPort}"]`);
    await path.locator('[data-field=state]').filter({ hasText: 'up' }).waitFor();
    await path.locator('[data-field=rtt]').filter({ hasText: / ms$/ }).waitFor();
    // Traffic moves: the path's live download rate leaves zero while it flows.
    let flowing = true;
    const pump = (async () => {
      while (flowing) assert.equal((await get(fwd, '/big')).length, 256 * 1024);
    })();
    try {
      await path.locator('[data-field=rate]').filter({ hasText: /↓ (?!0 B\/s)\d/ }).waitFor();
    } finally {
      flowing = false;
      await pump;
    }
    // The fronts with their counters, and the events.
    await page.locator('tr[data-front=forward]').filter({ hasText: /accepted [1-9]/ }).waitFor();
    await page.locator('tr[data-front=socks5]').filter({ hasText: `127.0.0.1:${socks}` }).waitFor();
    await page.locator('ol.timeline li[data-kind=connected]').first().waitFor();
    await shot(page, '5-dashboard');

    // A phone: one column, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = (await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')) as number;
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone's screen`);
    await shot(page, '6-dashboard-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
    noViolations();
    await page.close();
    await ui.stop();
  });

  it('polytun client --ui with a password: the login first, a wrong password refused, then the dashboard', async () => {
    const uiPort = await freePort();
    const socks = await freePort();
    const pwFile = join(scratch, 'ui-password');
    writeFileSync(pwFile, 'correct horse battery\n', { mode: 0o600 });
    await startClient(server.links[0] as string, ['--socks', `127.0.0.1:${socks}`, '--ui', `127.0.0.1:${uiPort}`, '--ui-password-file', pwFile, '--set', 'ui.history=false'], socks);
    await waitForPort(uiPort);
    const page = await browser.newPage();
    watch(page);
    await page.goto(`http://127.0.0.1:${uiPort}/`);
    await page.getByLabel('Password').fill('wrong password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'wrong password' }).waitFor();
    await shot(page, '7-login-wrong');
    await page.getByLabel('Password').fill('correct horse battery');
    await page.getByLabel('Password').press('Enter');
    await page.locator('[data-figure=state]').filter({ hasText: 'connected' }).waitFor();
    const cookie = (await browser.cookies(`http://127.0.0.1:${uiPort}`)).find((c) => c.name === 'polytun_ui');
    assert.ok(cookie !== undefined && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookie));
    // The history is off on this client: the page says so instead of drawing an empty graph.
    await page.getByText('keeps no traffic history (ui.history: false').waitFor();
    await shot(page, '8-dashboard-after-login');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Password').waitFor();
    noViolations();
    await page.close();
  });
});
