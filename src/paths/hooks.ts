/**
 * Path hooks (`bonding.onUp` / `bonding.onDown`): a shell command run when a
 * path of the session comes up or goes down, with POLYTUN_PATH (its label)
 * and POLYTUN_PATH_STATE (up|down) in its environment — for a router that
 * adjusts routes or lights a LED per WAN link. Fire and forget: a hook that
 * fails is logged, never waited for.
 */
import { spawn } from 'node:child_process';
import type { Logger } from '../core/logger.js';
import type { PathStats, Session } from '../session/session.js';
import type { PathSupervisor } from './supervisor.js';

export interface PathHooks {
  /** Run when a path is up. */
  onUp?: string | undefined;
  /** Run when a path is closed. */
  onDown?: string | undefined;
}

/** Runs `cmd` for `path` going `state`. */
function runHook(cmd: string | undefined, path: string, state: 'up' | 'down', log: Logger): void {
  if (!cmd) return;
  const child = spawn('sh', ['-c', cmd], { stdio: 'ignore', env: { ...process.env, POLYTUN_PATH: path, POLYTUN_PATH_STATE: state } });
  child.on('error', (err) => log.warn({ err: err.message, cmd }, 'path hook failed to start'));
  child.on('exit', (code) => {
    if (code !== 0) log.warn({ code, cmd }, 'path hook exited with an error');
  });
}

/** Runs the hooks for every path of every session `supervisor` hands over. */
export function runPathHooks(supervisor: PathSupervisor, hooks: PathHooks, log: Logger): void {
  if (!hooks.onUp && !hooks.onDown) return;
  supervisor.on('session', (s: Session) => {
    // Paths attached before the session was handed over (the first one) count as up now.
    for (const st of s.stats.paths) if (st.state === 'up') runHook(hooks.onUp, st.label, 'up', log);
    s.on('pathUp', (st: PathStats) => runHook(hooks.onUp, st.label, 'up', log));
    s.on('path', (st: PathStats) => {
      if (st.state === 'up') runHook(hooks.onUp, st.label, 'up', log);
    });
    s.on('pathClosed', (st: PathStats) => runHook(hooks.onDown, st.label, 'down', log));
  });
}
