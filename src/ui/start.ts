/**
 * Starting the dashboard API on its address: the password read (from
 * `ui.password` or the first line of `ui.passwordFile`), the bind checked
 * (off loopback only with a password — the config refuses it before, this
 * is the second lock), the API built and listening.
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { formatHostPort } from '../core/address.js';
import { ConfigError } from '../core/errors.js';
import { nullLogger } from '../core/logger.js';
import { isLoopbackHost, type HostPort } from '../config/values.js';
import { MIN_UI_PASSWORD, type UiConfig } from '../config/ui-schema.js';
import { buildUiApi, type UiApiInit } from './server.js';

/** The password of `ui`: its `password`, or the first line of its `passwordFile`; undefined when neither is set. */
export async function readUiPassword(ui: Pick<UiConfig, 'password' | 'passwordFile'>): Promise<string | undefined> {
  if (ui.password !== undefined) return ui.password;
  if (ui.passwordFile === undefined) return undefined;
  const where = `--ui-password-file ${ui.passwordFile}`;
  let text: string;
  try {
    text = await readFile(ui.passwordFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(where, `cannot read it (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code)}): write the password on its first line, mode 600`);
  }
  const pw = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (pw.length < MIN_UI_PASSWORD) throw new ConfigError(where, `the password on its first line is shorter than ${MIN_UI_PASSWORD} characters`);
  return pw;
}

/** Options of {@link startUi}. */
export interface StartUiInit extends Omit<UiApiInit, 'anyHost' | 'password'> {
  readonly listen: HostPort;
  /** From {@link readUiPassword}. */
  readonly password: string | undefined;
  /** The flag a listen error names. @default `--ui HOST:PORT` */
  readonly where?: string;
}

/** A listening dashboard API. */
export interface UiServer {
  readonly address: HostPort;
  /** http://HOST:PORT/ to open in a browser. */
  readonly url: string;
  /** Stops listening and ends the live views. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the API.
 * @throws ConfigError for a non-loopback bind without a password, or when it cannot listen (errno kept for listen-errors.ts).
 */
export async function startUi(init: StartUiInit): Promise<UiServer> {
  const where = init.where ?? `--ui ${formatHostPort(init.listen)}`;
  const loopback = isLoopbackHost(init.listen.host);
  if (!loopback && init.password === undefined) throw new ConfigError(where, 'a dashboard off loopback needs a password: add --ui-password-file FILE (or ui.password), or listen on 127.0.0.1');
  const { listen, where: _w, password, ...rest } = init;
  const app = buildUiApi({ ...rest, password, anyHost: !loopback });
  try {
    await app.listen({ host: listen.host, port: listen.port });
  } catch (err) {
    await app.close();
    throw Object.assign(new ConfigError(where, `cannot listen: ${(err as Error).message}`), { errno: (err as NodeJS.ErrnoException).code });
  }
  const a = app.server.address() as AddressInfo;
  const address = { host: a.address, port: a.port };
  (init.logger ?? nullLogger).info({ url: `http://${formatHostPort(address)}/`, login: password !== undefined }, 'dashboard listening (open its url in a browser)');
  let closing: Promise<void> | undefined;
  return {
    address,
    url: `http://${formatHostPort(address)}/`,
    close() {
      closing ??= app.close();
      return closing;
    },
  };
}
