/**
 * The server's log of what its policy refused: at INFO, one line per
 * (user, rule, target) and interval with a count of the repeats, saying
 * which rule refused what and which flag would allow it:
 *
 *   INFO  policy refused connect to 10.0.0.5:22: private address (10.0.0.0/8), refused by default; --allow 10.0.0.5:22 on the server allows it user=alice …
 *
 * The client only gets a status byte (0x02, "not allowed by ruleset"), so
 * this line is where an administrator finds the reason. One limiter serves
 * every session, so a client retrying in a loop, or reconnecting, cannot
 * flood the log either.
 */
import { formatHostPort } from '../core/address.js';
import { LogLimiter } from '../core/log-limiter.js';
import type { Logger } from '../core/logger.js';
import type { PolicyDecision } from './policy.js';

const DEFAULT_RANGE: Readonly<Record<string, string>> = {
  loopback: 'loopback address',
  private: 'private address',
  'unique-local': 'private (unique-local) address',
  'link-local': 'link-local address',
  cgnat: 'carrier-grade NAT address',
  'own-address': "one of the server's own addresses",
  'this-network': "'this network' address",
  multicast: 'multicast address',
  broadcast: 'broadcast address',
  documentation: 'documentation address',
};

/** Why `d` refused `target` and what would allow it: the part after "refused X: ". */
export function describeDenial(d: PolicyDecision, target: { host: string; port: number }): string {
  const t = formatHostPort(target);
  const rule = d.rule ? ` (${d.rule})` : '';
  switch (d.reason) {
    case 'deny-rule':
      return `explicit deny entry${rule}; deny entries beat --allow: remove it from --deny / policy.deny to allow it`;
    case 'port-not-allowed':
      return `port ${target.port} is outside policy.allowPorts; add it there to allow it`;
    case 'not-allowed':
      return `not on the allow list (policy.otherwise: deny); --allow ${t} on the server allows it`;
    case 'bad-name':
    case 'bad-address':
    case 'bad-port':
      return `not a valid destination (${d.reason})`;
    default:
      return `${DEFAULT_RANGE[d.reason] ?? `${d.reason} address`}${rule}, refused by default; --allow ${t} on the server allows it`;
  }
}

const limiter = new LogLimiter({ intervalMs: 60_000 });

/** Logs a refusal at INFO, rate-limited per (user, rule, target). `what`: 'connect', 'udp', … */
export function logDenial(log: Logger, user: string | undefined, what: string, target: { host: string; port: number }, d: PolicyDecision): void {
  const key = `${user ?? ''}|${what}|${d.reason}|${d.rule ?? ''}|${formatHostPort(target)}`;
  limiter.log(log, 'info', key, { denied: what, target: formatHostPort(target), reason: d.reason, ...(d.rule ? { rule: d.rule } : {}) }, `policy refused ${what} to ${formatHostPort(target)}: ${describeDenial(d, target)}`);
}

/** Logs a refused -R at INFO, rate-limited per (user, why, address). */
export function logBindDenial(log: Logger, user: string | undefined, bind: { host: string; port: number }, why: string): void {
  const hint = why === 'reverse forwards are disabled'
    ? 'start the server with --reverse to allow -R'
    : 'see reverse.bindHosts and reverse.ports in the server config';
  limiter.log(log, 'info', `${user ?? ''}|bind|${why}|${formatHostPort(bind)}`, { denied: 'bind', bind: formatHostPort(bind), why }, `refused a -R listener on ${formatHostPort(bind)}: ${why}; ${hint}`);
}
