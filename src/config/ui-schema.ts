/**
 * The client's `ui:` section: the local dashboard and setup wizard's JSON
 * API (`--ui HOST:PORT`, src/ui/). Off unless `listen` is set; schema.ts
 * plugs the section in and checks that an address off loopback has a
 * password (a dashboard that can rewrite the config must not face the
 * network open).
 *
 *   ui:
 *     listen: 127.0.0.1:7080        # --ui HOST:PORT; off when absent
 *     passwordFile: ui.password     # --ui-password-file FILE (or password: …); required off loopback
 *     history: ~/.local/state/polytun/client-history.db   # per-path traffic, SQLite; false = none
 */
import { bool, object, optional, orFalse, str, withDefault, type Check } from './check.js';
import { hostPort, type HostPort } from './values.js';

/** `ui:` with every key present. */
export interface UiConfig {
  /** Serve the dashboard (web page at /, API under /api/) here (`--ui HOST:PORT`); undefined = off. Loopback unless a password is set. */
  listen: HostPort | undefined;
  /** The password of the dashboard's login (at least 8 characters). Keep the file mode 0600, or use `passwordFile`. */
  password: string | undefined;
  /** A file whose first line is the password (`--ui-password-file`); relative to the config file. */
  passwordFile: string | undefined;
  /**
   * SQLite file of the per-path traffic history (1-minute points for 7 days,
   * 1-hour points for 90 days); false = keep none. @default $XDG_STATE_HOME/polytun/client-history.db
   */
  history: string | false | undefined;
  /** Serve the setup wizard's routes (`/api/wizard/…`) on a running client too: they can rewrite this config. @default true */
  wizard: boolean;
}

/** Defaults of `ui:`. */
export const UI_DEFAULTS: UiConfig = { listen: undefined, password: undefined, passwordFile: undefined, history: undefined, wizard: true };

/** Shortest accepted dashboard password. */
export const MIN_UI_PASSWORD = 8;

const password: Check<string> = str(`a password of at least ${MIN_UI_PASSWORD} characters`, (s) => (s.length < MIN_UI_PASSWORD ? `the password is shorter than ${MIN_UI_PASSWORD} characters` : undefined), true);

/** The `ui:` prop of the client's shape. */
export const uiProp = withDefault(
  object({
    listen: optional(hostPort(true)),
    password: optional(password),
    passwordFile: optional(str('a file path')),
    history: optional(orFalse(str('a file path'))),
    wizard: withDefault(bool, () => UI_DEFAULTS.wizard),
  }),
  () => ({ ...UI_DEFAULTS }),
);
