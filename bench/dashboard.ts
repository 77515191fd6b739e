/**
 * What the server's web dashboard costs the server with 1,000 live
 * sessions: its CPU (utime + stime from /proc) and RSS over a quiet window
 * with no page open, then with the Overview open (SSE, one snapshot a
 * second), then with the Sessions page open (the whole list read every
 * 3 s), each in Debian's Chromium driven by playwright-core. The sessions
 * are benchScale's: one wss session per user, idle streams on each.
 *
 *   npm run bench -- dashboard        BENCH_DASHBOARD_SESSIONS (1000), BENCH_DASHBOARD_SECONDS (20)
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { ensureWebBuilt } from '../test/helpers/web.js';
import { benchScale, rssOf, type ScaleServer } from './gateway.js';

const CHROMIUM = '/usr/bin/chromium';
/** Kernel clock ticks per second (USER_HZ; 100 on Linux everywhere but a few exotic builds). */
const HZ = 100;

/** One measured window. */
export interface DashboardWindow {
  readonly what: string;
  /** Server CPU over the window, % of one core. */
  readonly cpuPct: number;
  /** Server RSS at the end, MiB. */
  readonly rssMiB: number;
}

export interface DashboardResult {
  readonly sessions: number;
  readonly seconds: number;
  readonly windows: DashboardWindow[];
}

function cpuTicks(pid: number): number {
  // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function measure(pid: number, what: string, seconds: number): Promise<DashboardWindow> {
  const t0 = performance.now();
  const c0 = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = (cpuTicks(pid) - c0) / HZ;
  return { what, cpuPct: (100 * cpu) / ((performance.now() - t0) / 1000), rssMiB: rssOf(pid) / 2 ** 20 };
}

/** Why the bench cannot run here, or undefined. */
export function dashboardBenchUnavailable(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (scripts/install-test-deps.sh)`;
}

export async function benchDashboard(sessions = Number(process.env.BENCH_DASHBOARD_SESSIONS ?? 1000), seconds = Number(process.env.BENCH_DASHBOARD_SECONDS ?? 20)): Promise<DashboardResult> {
  ensureWebBuilt();
  const windows: DashboardWindow[] = [];
  await benchScale(sessions, 2, async (srv: ScaleServer) => {
    windows.push(await measure(srv.pid, 'no page open', seconds));
    const profile = mkdtempSync(join(tmpdir(), 'polytun-bench-dash-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${srv.admin}/`);
      await page.getByLabel('Admin token').fill(srv.token);
      await page.getByLabel('Admin token').press('Enter');
      await page.locator('.badge.live').waitFor();
      windows.push(await measure(srv.pid, 'Overview open (SSE, 1/s)', seconds));
      await page.getByRole('link', { name: 'Sessions' }).click();
      await page.locator('table tbody tr').nth(sessions - 1).waitFor({ timeout: 60_000 });
      windows.push(await measure(srv.pid, `Sessions open (${sessions} rows, read every 3 s)`, seconds));
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
  return { sessions, seconds, windows };
}

export function printDashboard(r: DashboardResult): void {
  const base = r.windows[0];
  for (const w of r.windows) {
    const extra = base === undefined || w === base ? '' : `  (+${(w.cpuPct - base.cpuPct).toFixed(1)} % CPU, +${(w.rssMiB - base.rssMiB).toFixed(1)} MiB)`;
    console.log(`${w.what.padEnd(44)} server CPU ${w.cpuPct.toFixed(1).padStart(5)} % of a core, RSS ${w.rssMiB.toFixed(1)} MiB${extra}`);
  }
}
