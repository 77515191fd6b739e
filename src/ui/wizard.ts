/**
 * The setup wizard's pure parts: what a pasted link says (secrets masked),
 * this machine's network interfaces (for choosing paths to bond), and the
 * validated write of a new client config.
 *
 *   link ─▶ decodeLink ─▶ { server, carrier, serverKey + its fingerprint, credential masked }
 *   config (the YAML tree as JSON) ─▶ validateConfig('client') ─▶ issues, or YAML written atomically, mode 600
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { homedir, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { formatHostPort } from '../core/address.js';
import { ConfigError } from '../core/errors.js';
import { writeAtomic } from '../core/files.js';
import { decodeLink, type ClientLink } from '../config/link.js';
import { formatPath } from '../config/check.js';
import { ConfigValidationError, validateConfig, type ClientConfig, type ConfigIssue, type SourceMap } from '../config/schema.js';

/** What the wizard shows of a link. */
export interface LinkSummary {
  /** host:port. */
  readonly server: string;
  readonly carrier: ClientLink['carrier'];
  readonly name?: string;
  /** 'key' or 'token'. */
  readonly credentialKind: ClientLink['credentialKind'];
  /** The credential, masked: its kind and length only. */
  readonly credential: string;
  /** The server's public key (pinned by the link; public). */
  readonly serverKey: string;
  /** First 16 hex digits of SHA-256(server key): a short form to compare by eye. */
  readonly serverKeyFingerprint: string;
  /** The pinned certificate SHA-256 (tls/wss), if any. */
  readonly certificatePin?: string;
  readonly sni?: string;
  /** True when the link names a WebSocket path (it selects the user on a shared port: kept secret). */
  readonly hasWsPath: boolean;
}

/** Summarizes a link; throws ConfigError naming what is wrong (never quoting the credential). */
export function linkSummary(text: string, where = 'link'): LinkSummary {
  const l = decodeLink(text, where);
  return {
    server: formatHostPort({ host: l.host, port: l.port }),
    carrier: l.carrier,
    ...(l.name !== undefined ? { name: l.name } : {}),
    credentialKind: l.credentialKind,
    credential: `${l.credentialKind === 'key' ? 'private key' : 'token'}, ${l.credential.length} characters (hidden)`,
    serverKey: l.serverKey,
    serverKeyFingerprint: createHash('sha256').update(Buffer.from(l.serverKey, 'base64url')).digest('hex').slice(0, 16),
    ...(l.fingerprint !== undefined ? { certificatePin: l.fingerprint } : {}),
    ...(l.sni !== undefined ? { sni: l.sni } : {}),
    hasWsPath: l.path !== undefined,
  };
}

/** One address of an interface. */
export interface InterfaceAddress {
  readonly address: string;
  readonly family: 'IPv4' | 'IPv6';
  readonly cidr: string | null;
}

/** One network interface of this machine. */
export interface InterfaceInfo {
  readonly name: string;
  /** Loopback (never a path to the server). */
  readonly internal: boolean;
  readonly addresses: InterfaceAddress[];
  /** The interface's own MTU (/sys/class/net/NAME/mtu), when readable: the local link's, not the path's. */
  readonly mtu?: number;
  /** A --path spec that bonds this interface (by its first address), for the wizard to offer. */
  readonly bindHint?: string;
}

/** The MTU of interface `name` (/sys/class/net/NAME/mtu), when readable. */
export function linkMtu(name: string): number | undefined {
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(name)) return undefined;
  try {
    const n = Number(readFileSync(join('/sys/class/net', name, 'mtu'), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined; // not Linux, or the interface went away
  }
}

/** This machine's interfaces with their addresses, loopback last. */
export function listInterfaces(): InterfaceInfo[] {
  const out: InterfaceInfo[] = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const list = addrs ?? [];
    const internal = list.length > 0 && list.every((a) => a.internal);
    const addresses = list.map((a) => ({ address: a.address, family: a.family, cidr: a.cidr }));
    const mtu = linkMtu(name);
    const v4 = addresses.find((a) => a.family === 'IPv4');
    out.push({ name, internal, addresses, ...(mtu !== undefined ? { mtu } : {}), ...(!internal && v4 ? { bindHint: `bind=${v4.address}` } : {}) });
  }
  return out.sort((a, b) => Number(a.internal) - Number(b.internal) || a.name.localeCompare(b.name));
}

/** Locates issues of a config sent as JSON: `config.socks`, `config.forwards[1]`. */
const bodySourceMap: SourceMap = { locate: (path) => (path.length === 0 ? 'config' : `config.${formatPath(path)}`) };

/** The outcome of {@link checkClientConfig}. */
export type ConfigCheck = { ok: true; config: ClientConfig } | { ok: false; issues: ConfigIssue[] };

/**
 * Keys the wizard does not write: shell commands and file paths. Whoever
 * reaches this API (on loopback without a password: any local user) could
 * otherwise run commands, or have files created, overwritten or chmod-ed,
 * as the user the client runs as — root, for a VPN. They go in the file by
 * hand; `ui.history: false` is accepted.
 */
const NOT_THROUGH_WIZARD: readonly { path: readonly string[]; what: string }[] = [
  { path: ['bonding', 'onUp'], what: 'a shell command' },
  { path: ['bonding', 'onDown'], what: 'a shell command' },
  { path: ['vpn', 'stateDir'], what: 'a file path' },
  { path: ['vpn', 'resolvConf'], what: 'a file path' },
  { path: ['ui', 'passwordFile'], what: 'a file path' },
  { path: ['ui', 'history'], what: 'a file path' },
];

function refusedKeys(raw: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const k of NOT_THROUGH_WIZARD) {
    const [section, key] = k.path as [string, string];
    const v = (raw[section] as Record<string, unknown> | undefined)?.[key];
    if (v === undefined || v === false) continue;
    issues.push({ where: `config.${section}.${key}`, message: `is ${k.what}: the wizard does not set it (whoever reaches this API would run commands or write files as this user); add it to the config file by hand` });
  }
  return issues;
}

/** Validates a client config tree with the real schema, refusing the keys the wizard does not write (see NOT_THROUGH_WIZARD). */
export function checkClientConfig(raw: unknown): ConfigCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, issues: [{ where: 'config', message: 'expected an object: the YAML config as JSON (link, socks, forwards, …)' }] };
  let config: ClientConfig;
  try {
    config = validateConfig(raw, 'client', bodySourceMap);
  } catch (err) {
    if (err instanceof ConfigValidationError) return { ok: false, issues: [...err.issues, ...refusedKeys(raw as Record<string, unknown>)] };
    if (err instanceof ConfigError) return { ok: false, issues: [{ where: err.where, message: err.message.slice(err.where.length + 2) }] };
    throw err;
  }
  const refused = refusedKeys(raw as Record<string, unknown>);
  return refused.length > 0 ? { ok: false, issues: refused } : { ok: true, config };
}

/** Writes `raw` as the client's YAML config at `file`, atomically, mode 600 (the link inside is a secret). */
export async function writeClientConfig(file: string, raw: object, now = new Date()): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const header = `# polytun client config, written by the setup wizard on ${now.toISOString()}.\n# Holds the user's secret: keep it private (mode 0600). Run: polytun client --config ${file}\n`;
  await writeAtomic(file, header + stringify(raw));
}

/** Where the wizard writes a config when none was named: $XDG_CONFIG_HOME/polytun/client.yaml. */
export function defaultClientConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'polytun', 'client.yaml');
}
