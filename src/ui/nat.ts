/**
 * The setup wizard's NAT item: for the endpoints that answered, this end's
 * address of the path beside the address the server sees it come from
 * (client/observed-address.ts). Equal: no NAT on the way. Different: a NAT,
 * and whether it kept the port. How the NAT maps one socket toward two
 * server addresses (endpoint-independent or not, what peer-to-peer needs)
 * is not told: every check dials from a socket of its own.
 */
import { formatHostPort, parseHostPort, type Destination } from '../core/address.js';
import type { CheckItem } from './types.js';

/** One endpoint's view. */
export interface NatSample {
  readonly carrier: string;
  /** This end's address of the path, host:port. */
  readonly local: string;
  /** Where the server sees it from; undefined when the server could not say (why in `error`). */
  readonly observed?: Destination;
  readonly error?: string;
}

const same = (a: Destination, b: Destination): boolean => a.host === b.host && a.port === b.port;

/** The NAT item from what each answered endpoint saw (udp samples first: a udp NAT is the one that matters for udp paths). */
export function natItem(samples: readonly NatSample[]): CheckItem {
  const base = { id: 'nat', title: 'NAT between this machine and the server' } as const;
  const seen = samples.filter((s) => s.observed !== undefined);
  const udp = seen.filter((s) => s.carrier === 'udp');
  const use = udp.length > 0 ? udp : seen;
  const first = use[0];
  if (first === undefined) {
    const why = samples.find((s) => s.error !== undefined)?.error;
    return { ...base, result: 'not_measured', detail: `not measured: ${why ?? 'no server answered the handshake'}` };
  }
  const over = udp.length > 0 ? 'udp' : `${first.carrier} (no udp endpoint answered)`;
  let local: Destination;
  try {
    local = parseHostPort(first.local);
  } catch {
    return { ...base, result: 'not_measured', detail: `not measured: this end's address of the path is unknown (${first.local})` };
  }
  const observed = first.observed as Destination;
  const pair = `this machine is ${formatHostPort(local)}, the server sees ${formatHostPort(observed)} (over ${over})`;
  const natted = use.filter((s) => {
    try {
      return !same(parseHostPort(s.local), s.observed as Destination);
    } catch {
      return true;
    }
  });
  if (natted.length === 0) return { ...base, result: 'pass', detail: `no NAT: ${pair}` };
  const kept = observed.port === local.port;
  return {
    ...base,
    result: 'pass',
    detail: `behind a NAT that ${kept ? 'kept the port' : 'rewrote the port'}: ${pair}; how it maps one socket toward two servers (what peer-to-peer paths need) is not measured`,
  };
}
