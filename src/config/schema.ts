/**
 * The config of both roles: TypeScript types, defaults and the validator.
 *
 * One YAML file per role, flat at the top level (`listen:`, `dataDir:` for a
 * server; `link:`, `socks:` for a client). Every key has a CLI flag (or
 * `--set key.path=VALUE`) and every flag has a key; flags override the file.
 * `validateConfig` turns the merged raw tree into a fully-defaulted, typed
 * config, or throws a ConfigValidationError listing every problem with its
 * file:line and key.
 *
 * Server example:                       Client example:
 *   listen: [tcp://0.0.0.0:4433]          link: polytun://…@vps.example:4433?pk=…
 *   dataDir: /var/lib/polytun             socks: 127.0.0.1:1080
 *   policy: { deny: ['*:25'] }            forwards: ['8080:intranet:80', '5353:10.0.0.1:53/udp']
 *   limits: { maxSessions: 500 }          status: 127.0.0.1:1099
 */
import type { ClientLink } from './link.js';
import {
  bool, int, listOf, object, oneOf, optional, orFalse, required, str, withDefault, ValidationContext,
  type Check, type ObjectOptions, type SourceMap,
} from './check.js';
import {
  forward, host, hostPort, isLoopbackHost, link, listenUrl, loopbackHostPort, policyEntry, portRanges,
  type ForwardSpec, type HostPort, type ListenUrl, type PortRangeList,
} from './values.js';
import { clientVpnProp, serverVpnProp, type ClientVpnConfig, type ServerVpnConfig } from './vpn-schema.js';
import { gatewayProp, type GatewayConfig } from './gateway-schema.js';
import { metricsProp, type MetricsConfig } from './metrics-schema.js';
import { clientUdpProp, serverUdpProp, type ClientUdpConfig, type ServerUdpConfig } from './udp-schema.js';
import { uiProp, type UiConfig } from './ui-schema.js';

import { pathSpec, type PathConfig } from './paths.js';
import { CIPHER_CHOICES, type CipherChoice } from '../secure/cipher.js';
import { MAX_PENDING_HANDSHAKES, MAX_STREAMS, SESSION_WINDOW, STREAM_WINDOW } from '../core/limits.js';

export type { ForwardSpec, HostPort, ListenUrl, PortRangeList } from './values.js';
export type { PathConfig } from './paths.js';
export type { ClientVpnConfig, ServerVpnConfig } from './vpn-schema.js';
export type { AdminListen, GatewayConfig } from './gateway-schema.js';
export type { MetricsConfig } from './metrics-schema.js';
export type { UiConfig } from './ui-schema.js';
export { ConfigValidationError, type SourceMap, type ConfigPath, type ConfigIssue } from './check.js';

/** Which program a config is for. */
export type Role = 'server' | 'client';
/** pino level names. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** `text`: one readable line per event; `json`: pino's JSON lines. */
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Every default in one place; the CLI help shows these same values. */
export const DEFAULTS = {
  socks: '127.0.0.1:1080',
  status: '127.0.0.1:1099',
  logLevel: 'info' as LogLevel,
  logFormat: 'text' as LogFormat,
  limits: {
    handshakeTimeoutMs: 10_000,
    maxPendingHandshakes: MAX_PENDING_HANDSHAKES,
    maxSessions: 10_000,
    streamWindow: STREAM_WINDOW,
    sessionWindow: SESSION_WINDOW,
    maxStreams: MAX_STREAMS,
    graceMs: 60_000,
    idleTimeoutMs: 0,
  },
  liveness: { intervalMs: 10_000, timeoutMs: 5_000, misses: 3 },
  records: { tlsBound: true, cipher: 'auto' as CipherChoice },
  reconnect: { refusedRetryMs: 60_000 },
  reverse: { enabled: false, bindHosts: ['127.0.0.1'], ports: '1024-65535' },
} as const;

/** `log:` — where the level and format of log lines are set. */
export interface LogConfig {
  /** Lowest level logged, on stderr (`--log-level`). @default 'info' */
  level: LogLevel;
  /** `text`: one readable line per event; `json`: pino's JSON lines (`--log-format`). @default 'text' */
  format: LogFormat;
}

/** `liveness:` — control-lane ping/pong that detects a dead path. */
export interface LivenessConfig {
  /** Time between pings. @default 10000 */
  intervalMs: number;
  /** How long to wait for each pong. @default 5000 */
  timeoutMs: number;
  /** Missed pongs before the path is declared dead. @default 3 */
  misses: number;
}

/** `records:` — how records are protected (both roles). */
export interface RecordsConfig {
  /**
   * Over tls:// or wss:// whose TLS session is proven end to end (no
   * TLS-terminating front between client and server), let TLS alone protect
   * the records instead of encrypting them twice. Either side can say
   * false; then records keep their own AEAD. @default true
   */
  tlsBound: boolean;
  /**
   * The records' own cipher (`--cipher`): `auto` takes AES-256-GCM when both
   * ends have AES acceleration (x86-64 AES-NI + PCLMULQDQ, arm64 AES +
   * PMULL) and ChaCha20-Poly1305 otherwise, as TLS 1.3 stacks do;
   * `chacha20-poly1305` or `aes-256-gcm` forces one, and a peer that cannot
   * use it is refused (typed reject `cipherMismatch`). A peer that predates
   * the choice always gets ChaCha20-Poly1305. @default 'auto'
   */
  cipher: CipherChoice;
}

/** `limits:` shared by both roles. */
export interface CommonLimits {
  /** A handshake that has not finished after this long is dropped. @default 10000 */
  handshakeTimeoutMs: number;
  /** Receive window per stream, bytes. @default 1 MiB */
  streamWindow: number;
  /** Receive window per session, bytes. @default 16 MiB */
  sessionWindow: number;
  /** Concurrent streams per session. @default 1024 */
  maxStreams: number;
  /** How long a session whose path died waits to be resumed. @default 60000 */
  graceMs: number;
  /** Close a session with no open stream after this long; 0 = never. @default 0 */
  idleTimeoutMs: number;
}

/** Server `limits:`. */
export interface ServerLimits extends CommonLimits {
  /** Handshakes in progress at once; more connections are dropped. @default 256 */
  maxPendingHandshakes: number;
  /** Sessions at once; a client over the limit is refused as busy. @default 10000 */
  maxSessions: number;
}

/** Server `reverse:` — whether clients may open `-R` listeners on the server. */
export interface ReverseConfig {
  /** Let clients open `-R` listeners on this server (`--reverse`). @default false */
  enabled: boolean;
  /** Addresses a client may bind. @default ['127.0.0.1'] */
  bindHosts: string[];
  /** Ports a client may bind. @default [[1024, 65535]] */
  ports: PortRangeList;
}

/** The whole server config, every key present. */
export interface ServerConfig {
  role: 'server';
  /** Carriers and addresses to accept clients on (`--listen`). At least one. */
  listen: ListenUrl[];
  /** Keys and users (`--data-dir`). */
  dataDir: string;
  /** Host name put in client links when a listen address is a wildcard (`--host`). */
  publicHost: string | undefined;
  /** Certificate and key files for tls:// (`--cert`, `--key`); undefined = self-signed. */
  tls: {
    /** TLS certificate chain, PEM (`--cert`). */
    cert: string;
    /** Private key of the certificate, PEM (`--key`). */
    key: string;
  } | undefined;
  /**
   * Destination policy on top of the default one, which refuses loopback,
   * private, link-local, multicast and reserved addresses and the server's
   * own; see src/server/policy.ts. Precedence: deny > allow > default ranges.
   */
  policy: {
    /** Destinations clients may reach even in the default deny ranges (`--allow`): `CIDR`, `IP`, `HOST` or `*.suffix`, each with optional `:PORTS`. */
    allow: string[];
    /** Destinations clients may never reach (`--deny`); beats `allow`. Same forms as `allow`. */
    deny: string[];
  };
  reverse: ReverseConfig;
  /** VPN mode (`--tun CIDR`…), undefined when off; see vpn-schema.ts. */
  vpn: ServerVpnConfig | undefined;
  /** Multi-user gateway: user store, admin API, controller, decoy (`--store`, `--admin`…); see gateway-schema.ts. */
  gateway: GatewayConfig;
  /** Bounds on handshakes, sessions, streams and windows; the offender is refused or reset, not the process. */
  limits: ServerLimits;
  liveness: LivenessConfig;
  records: RecordsConfig;
  /** `udp:` — the udp carrier's transport (`--cc`, `--udp-max-rate`); see udp-schema.ts. */
  udp: ServerUdpConfig;
  log: LogConfig;
  /** `metrics:` — the Prometheus endpoint (`--metrics`): GET /metrics in the text format, off by default. */
  metrics: MetricsConfig;
}

/** `bonding:` — when a (re)joined path carries traffic, and commands run on path changes. */
export interface BondingConfig {
  /** A path carries traffic after answering pings for this long (hysteresis). @default 0 */
  upAfterMs: number;
  /** Run this shell command when a path comes up; env POLYTUN_PATH, POLYTUN_PATH_STATE. */
  onUp: string | undefined;
  /** Run this shell command when a path goes down. */
  onDown: string | undefined;
}

/** The whole client config, every key present. */
export interface ClientConfig {
  role: 'client';
  /** The server and credentials (the LINK argument). */
  link: ClientLink;
  /** SOCKS5 front (`--socks`), false = off. @default 127.0.0.1:1080 */
  socks: HostPort | false;
  /** SOCKS5 username/password (RFC 1929) (`--socks-auth USER:PASS`). */
  socksAuth: {
    /** SOCKS5 username, 1 to 255 bytes. */
    username: string;
    /** SOCKS5 password, 1 to 255 bytes. Keep the file mode 0600. */
    password: string;
  } | undefined;
  /** HTTP CONNECT front (`--http`), false = off. @default false */
  http: HostPort | false;
  /** Local forwards (`-L`). */
  forwards: ForwardSpec[];
  /** Reverse forwards (`-R`): the server listens, we connect. */
  reverse: ForwardSpec[];
  /** Local status endpoint (`--status`), loopback only; false = off. @default 127.0.0.1:1099 */
  status: HostPort | false;
  /** Further network paths bonded into the session (`--path`). */
  paths: PathConfig[];
  /** Bonding: link tracker and hooks. */
  bonding: BondingConfig;
  /** Use kernel MPTCP sockets for the link's own TCP path (`--mptcp`). @default false */
  mptcp: boolean;
  /** Backup servers, in order, used when the link's server stops answering (`--backup-server`). */
  backupServers: ClientLink[];
  /** Moving between the link's server and the backup servers. */
  failover: {
    /** Move to the next server after the session has had no path this long (`--failover-after`). @default 5000 */
    afterMs: number;
    /** Move back to the first server once it has answered for this long (`--failback-after`). @default 30000 */
    failbackAfterMs: number;
  };
  /**
   * `reconnect:` — after the server refuses the user (unknown key, disabled,
   * expired, over quota) or ends its session for such a reason (kicked,
   * quota, expiry), log it once and try again every `refusedRetryMs`
   * (`--refused-retry`), so a router comes back by itself when the user is
   * re-enabled; 0 = exit with a non-zero status instead. @default 60000
   *
   * `retry` (`--retry N`): when the server cannot be reached (at start, or
   * to open a new session after one was lost for good), try again this many
   * times in a row, with backoff (1 s doubling to 30 s, jittered), then
   * exit with status 1; 0 = exit at the first failure (the behaviour before
   * retries existed). Absent = never give up. Refusals do not count.
   */
  reconnect: {
    /** Retry interval after a refusal or kick, ms (`--refused-retry`); 0 = exit with status 1 instead. @default 60000 */
    refusedRetryMs: number;
    /** Failed retries in a row (at start, or opening a new session after an outage) before the client exits with status 1 (`--retry`); 0 = exit at the first failure. @default unlimited */
    retry?: number | undefined;
  };
  /** VPN mode (`--tun`…), undefined when off; see vpn-schema.ts. */
  vpn: ClientVpnConfig | undefined;
  /** Bounds on handshakes, streams and windows (the server has its own). */
  limits: CommonLimits;
  liveness: LivenessConfig;
  records: RecordsConfig;
  /** `udp:` — the udp carrier's transport (`--cc`, `--udp-mode`); see udp-schema.ts. */
  udp: ClientUdpConfig;
  log: LogConfig;
  /** `metrics:` — the Prometheus endpoint (`--metrics`): GET /metrics in the text format, off by default. */
  metrics: MetricsConfig;
  /** `ui:` — the local dashboard and setup wizard (`--ui`: a web page and its API), off by default; see ui-schema.ts. */
  ui: UiConfig;
}

/** The typed config of `role`. */
export type ConfigFor<R extends Role> = R extends 'server' ? ServerConfig : ClientConfig;

const MS_MAX = 24 * 3600 * 1000;
const L = DEFAULTS.limits;
const commonLimits = {
  handshakeTimeoutMs: withDefault(int(100, MS_MAX), () => L.handshakeTimeoutMs),
  streamWindow: withDefault(int(16 * 1024, 1 << 30), () => L.streamWindow),
  sessionWindow: withDefault(int(16 * 1024, 2 ** 31), () => L.sessionWindow),
  maxStreams: withDefault(int(1, 1 << 20), () => L.maxStreams),
  graceMs: withDefault(int(0, MS_MAX), () => L.graceMs),
  idleTimeoutMs: withDefault(int(0, MS_MAX), () => L.idleTimeoutMs),
};
const serverOnlyLimits = {
  maxPendingHandshakes: withDefault(int(1, 1 << 20), () => L.maxPendingHandshakes),
  maxSessions: withDefault(int(1, 1 << 24), () => L.maxSessions),
};

const liveness = object({
  intervalMs: withDefault(int(100, MS_MAX), () => DEFAULTS.liveness.intervalMs),
  timeoutMs: withDefault(int(100, MS_MAX), () => DEFAULTS.liveness.timeoutMs),
  misses: withDefault(int(1, 100), () => DEFAULTS.liveness.misses),
});
const records = object({
  tlsBound: withDefault(bool, () => DEFAULTS.records.tlsBound),
  cipher: withDefault(oneOf(CIPHER_CHOICES), () => DEFAULTS.records.cipher),
});
const log = object({
  level: withDefault(oneOf(LOG_LEVELS), () => DEFAULTS.logLevel),
  format: withDefault(oneOf(LOG_FORMATS), () => DEFAULTS.logFormat),
});
const defaultOf = <T>(check: Check<T>, raw: unknown): (() => T) => () => check(raw, [], new ValidationContext());

const defaultReversePorts = defaultOf(portRanges, [DEFAULTS.reverse.ports]);

const SERVER_ONLY = 'is a server setting (this is a client config)';
const CLIENT_ONLY = 'is a client setting (this is a server config)';

/** A SOCKS5 username or password: 1 to 255 bytes (RFC 1929). */
const rfc1929 = (what: string, secret: boolean): Check<string> =>
  str(`a ${what} of 1 to 255 bytes`, (s) => (Buffer.byteLength(s) > 255 ? `${what} is longer than 255 bytes` : undefined), secret);

const serverShape = object(
  {
    listen: required(listOf(listenUrl, 1), ' (at least one tcp://, tls://, ws:// or wss:// URL, or --listen)'),
    dataDir: required(str('a directory path'), ' (or --data-dir)'),
    publicHost: optional(host),
    tls: optional(object({ cert: required(str('a file path'), ' (or --cert)'), key: required(str('a file path'), ' (or --key)') })),
    policy: withDefault(
      object({ allow: withDefault(listOf(policyEntry), () => []), deny: withDefault(listOf(policyEntry), () => []) }),
      () => ({ allow: [], deny: [] }),
    ),
    reverse: withDefault(
      object({
        enabled: withDefault(bool, () => DEFAULTS.reverse.enabled),
        bindHosts: withDefault(listOf(host), () => [...DEFAULTS.reverse.bindHosts]),
        ports: withDefault(portRanges, defaultReversePorts),
      }),
      () => ({ enabled: DEFAULTS.reverse.enabled, bindHosts: [...DEFAULTS.reverse.bindHosts], ports: defaultReversePorts() }),
    ),
    vpn: serverVpnProp,
    gateway: gatewayProp,
    limits: withDefault(object({ ...commonLimits, ...serverOnlyLimits }), () => ({ ...L })),
    liveness: withDefault(liveness, () => ({ ...DEFAULTS.liveness })),
    records: withDefault(records, () => ({ ...DEFAULTS.records })),
    udp: serverUdpProp,
    log: withDefault(log, () => ({ level: DEFAULTS.logLevel, format: DEFAULTS.logFormat })),
    metrics: metricsProp,
  },
  misplaced(['link', 'socks', 'socksAuth', 'http', 'forwards', 'status', 'paths', 'bonding', 'mptcp', 'backupServers', 'failover', 'reconnect', 'ui'], CLIENT_ONLY),
);

const clientLimitsCheck = object(commonLimits, misplaced(Object.keys(serverOnlyLimits), SERVER_ONLY));
const clientShape = object(
  {
    link: required(link, ' (the LINK argument or `link:` in the config file)'),
    socks: withDefault(orFalse(hostPort(true)), defaultOf(hostPort(true), DEFAULTS.socks)),
    socksAuth: optional(object({ username: required(rfc1929('username', false)), password: required(rfc1929('password', true)) })),
    http: withDefault(orFalse(hostPort(true)), () => false as const),
    forwards: withDefault(listOf(forward(true)), () => []),
    reverse: withDefault(listOf(forward(false)), () => []),
    status: withDefault(orFalse(loopbackHostPort()), defaultOf(hostPort(true), DEFAULTS.status)),
    vpn: clientVpnProp,
    paths: withDefault(listOf(pathSpec), () => []),
    bonding: withDefault(
      object({
        upAfterMs: withDefault(int(0, 3_600_000), () => 0),
        onUp: optional(str('a shell command')),
        onDown: optional(str('a shell command')),
      }),
      () => ({ upAfterMs: 0, onUp: undefined, onDown: undefined }),
    ),
    mptcp: withDefault(bool, () => false),
    backupServers: withDefault(listOf(link), () => []),
    failover: withDefault(
      object({ afterMs: withDefault(int(100, 3_600_000), () => 5000), failbackAfterMs: withDefault(int(0, 86_400_000), () => 30_000) }),
      () => ({ afterMs: 5000, failbackAfterMs: 30_000 }),
    ),
    reconnect: withDefault(
      object({ refusedRetryMs: withDefault(int(0, MS_MAX), () => DEFAULTS.reconnect.refusedRetryMs), retry: optional(int(0, 1_000_000_000)) }),
      (): ClientConfig['reconnect'] => ({ ...DEFAULTS.reconnect }),
    ),
    limits: withDefault(clientLimitsCheck, () => {
      const { maxPendingHandshakes: _p, maxSessions: _s, ...common } = L;
      return common;
    }),
    liveness: withDefault(liveness, () => ({ ...DEFAULTS.liveness })),
    records: withDefault(records, () => ({ ...DEFAULTS.records })),
    udp: clientUdpProp,
    log: withDefault(log, () => ({ level: DEFAULTS.logLevel, format: DEFAULTS.logFormat })),
    metrics: metricsProp,
    ui: uiProp,
  },
  misplaced(['listen', 'dataDir', 'publicHost', 'tls', 'policy'], SERVER_ONLY),
);

function misplaced(keys: readonly string[], why: string): ObjectOptions {
  return { misplaced: Object.fromEntries(keys.map((k) => [k, why])) };
}

/** Cross-field rules that one key's check cannot see. */
function crossChecks(cfg: ServerConfig | ClientConfig, ctx: ValidationContext): void {
  if (cfg.limits !== undefined && cfg.limits.sessionWindow < cfg.limits.streamWindow) {
    ctx.issue(['limits', 'sessionWindow'], `must be at least limits.streamWindow (${cfg.limits.streamWindow})`);
  }
  const m = cfg.metrics;
  if (m?.listen !== undefined && !m.allowRemote && !isLoopbackHost(m.listen.host)) {
    // The per-user metrics name users: serving them on the network is a choice, not a default.
    ctx.issue(['metrics', 'listen'], `must be a loopback address (127.0.0.1, ::1 or localhost) unless metrics.allowRemote is true (--metrics-allow-remote): the metrics name users; got ${m.listen.host}`);
  }
  if (cfg.role === 'client' && cfg.ui !== undefined) {
    const ui = cfg.ui;
    if (ui.password !== undefined && ui.passwordFile !== undefined) ctx.issue(['ui', 'passwordFile'], 'set ui.password or ui.passwordFile (--ui-password-file), not both');
    // The dashboard can rewrite the config and restart the tunnel: off loopback it needs a password.
    if (ui.listen !== undefined && !isLoopbackHost(ui.listen.host) && ui.password === undefined && ui.passwordFile === undefined) {
      ctx.issue(['ui', 'listen'], `${ui.listen.host} is not a loopback address: set a password (--ui-password-file FILE, or ui.password in --config), or listen on 127.0.0.1`);
    }
  }
  if (cfg.role === 'client' && Array.isArray(cfg.forwards)) {
    const seen = new Map<string, number>();
    cfg.forwards.forEach((f, i) => {
      if (f === undefined) return;
      const k = `${f.udp ? 'udp' : 'tcp'} ${f.bindHost} ${f.bindPort}`;
      const prev = seen.get(k);
      if (prev !== undefined) ctx.issue(['forwards', i], `listens on the same address as forwards[${prev}] (${f.bindHost}:${f.bindPort})`);
      else seen.set(k, i);
    });
  }
}

/**
 * Validates a raw config tree (parsed YAML, possibly merged with flags) for
 * `role` and returns it fully defaulted and typed. Relative paths are kept as
 * they are (the loader resolves file paths against the file's folder).
 * @throws ConfigValidationError listing every problem, located through `sourceMap`.
 */
export function validateConfig<R extends Role>(obj: unknown, role: R, sourceMap?: SourceMap): ConfigFor<R> {
  const ctx = new ValidationContext(sourceMap);
  const raw = obj === null || obj === undefined ? {} : obj;
  const cfg = (role === 'server' ? serverShape : clientShape)(raw, [], ctx) as Record<string, unknown> | undefined;
  if (cfg === undefined) {
    ctx.finish();
    return undefined as never;
  }
  const typed = { role, ...cfg } as unknown as ServerConfig | ClientConfig;
  crossChecks(typed, ctx);
  ctx.finish();
  return typed as ConfigFor<R>;
}
