/**
 * `polytun ui`: the dashboard API alone, with the setup wizard; the tunnel
 * a wizard's apply asks for runs in this same process (runClient with an
 * abort signal, showing itself on this dashboard instead of opening its
 * own --ui). A second apply stops the running tunnel and starts the new one.
 *
 *   tunnel state: none ─apply─▶ starting ─(session open)─▶ running
 *                                  │   └─(runClient failed)─▶ failed ─apply─▶ starting
 *                                  └─apply─▶ (old one stopped) starting
 */
import { formatHostPort } from '../core/address.js';
import { toError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ClientConfig } from '../config/schema.js';
import { readUiPassword, startUi } from '../ui/start.js';
import type { TunnelStarter, TunnelView } from '../ui/types.js';
import { defaultClientConfigFile } from '../ui/wizard.js';
import type { UiCommandOptions } from './cmd-ui.js';
import type { CliIo } from './io.js';
import { listenOrExplain } from './listen-errors.js';
import { createLogger } from './log.js';
import { runClient } from './run-client.js';
import { waitForShutdown } from './shutdown.js';

type StarterState = ReturnType<TunnelStarter['state']>;

/** Runs the applied config as an in-process client. */
class InProcessStarter implements TunnelStarter {
  view: TunnelView | undefined;
  private current: { ac: AbortController; done: Promise<void> } | undefined;
  private st: StarterState = { state: 'none' };

  constructor(
    private readonly io: CliIo,
    private readonly log: Logger,
  ) {}

  async start(config: ClientConfig, file: string): Promise<void> {
    await this.stop();
    const ac = new AbortController();
    this.st = { state: 'starting' };
    const attachUi = (v: TunnelView): (() => void) => {
      this.view = v;
      return () => {
        if (this.view === v) this.view = undefined;
      };
    };
    // The applied config's own ui.listen is this dashboard: the client attaches here instead.
    const done = runClient(config, this.io, { configFile: file, signal: ac.signal, attachUi }).then(
      () => {
        if (!ac.signal.aborted) this.st = { state: 'stopped' };
      },
      (err: unknown) => {
        this.st = { state: 'failed', error: toError(err).message };
        this.log.warn({ err: toError(err).message }, 'the tunnel started by the wizard stopped with an error');
      },
    );
    this.current = { ac, done };
  }

  /** Stops the running tunnel, if any, and waits for its cleanup. */
  async stop(): Promise<void> {
    const c = this.current;
    this.current = undefined;
    if (c === undefined) return;
    c.ac.abort();
    await c.done;
  }

  state(): StarterState {
    if (this.st.state === 'starting' && this.view?.status().state === 'open') return { state: 'running' };
    return this.st;
  }
}

export async function runUi(opts: UiCommandOptions, io: CliIo): Promise<void> {
  const log = createLogger({ level: opts.logLevel, format: 'text' });
  const shutdown = waitForShutdown(log);
  const password = await readUiPassword({ password: undefined, passwordFile: opts.passwordFile });
  const starter = new InProcessStarter(io, log);
  const configFile = opts.configFile ?? defaultClientConfigFile();
  const where = `--listen ${formatHostPort(opts.listen)}`;
  const ui = await listenOrExplain(where, () =>
    startUi({ listen: opts.listen, where, password, tunnel: () => starter.view, wizard: { configFile }, starter, logger: log }),
  );
  io.stdout.write(`polytun ui: open ${ui.url} in a browser for the setup wizard and dashboard (the config is written to ${configFile})\n`);
  const signal = await shutdown;
  log.info({ signal }, 'shutting down');
  await starter.stop();
  await ui.close();
}
