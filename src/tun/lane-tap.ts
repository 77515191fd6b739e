/**
 * Sharing a session's single datagram and stream handler slots.
 *
 * A session has one `onDatagram` and one `onStream` handler, and the proxy
 * (server: attachProxy; client: ProxyClient) takes both. The VPN needs one
 * datagram flows (VPN_FLOW, VPN_GSO_FLOW) and, on the server, the streams
 * whose OPEN kind is 0x10. A tap installs a demultiplexer in the slots and takes over the
 * session's setters, so a handler registered later receives everything the
 * tap does not claim:
 *
 * ```
 *   session ──datagram──▶ tap ── flow == VPN_FLOW ──▶ VPN
 *                                 └── otherwise ─────▶ handler set later (proxy)
 *   session ──stream────▶ tap ── claims(stream) ───▶ VPN
 *                                 └── otherwise ─────▶ handler set later, or refused
 * ```
 *
 * A tap must be installed before the other handlers (a handler set earlier
 * is replaced): the server taps in a `prependListener('session')`, the
 * client before it creates its ProxyClient and through `prependListener`.
 * Types are structural so that tun/ does not depend on session/.
 */

/** The handler slots of a session. */
export interface LaneSlots<S> {
  onDatagram(handler: (flow: number, payload: Buffer) => void): void;
  onStream(handler: (stream: S) => void): void;
}

/** What a tap takes. */
export interface LaneTapInit<S> {
  /** The datagram flow the tap owns. */
  flow: number;
  /** A second flow it owns. @default none */
  flow2?: number;
  /** Receives the flows' payloads (views into the record: copy to keep). */
  datagram: (payload: Buffer, flow: number) => void;
  /** Streams the tap owns; without it the tap leaves streams alone. */
  claims?: (stream: S) => boolean;
  /** Receives claimed streams. */
  stream?: (stream: S) => void;
  /** Refuses a stream nobody handles (the session would, had it no handler). */
  refuse?: (stream: S) => void;
}

const tapped = new WeakSet<object>();

/**
 * Installs a tap on `host` (once per host; a second call is ignored and
 * returns false). After this, `host.onDatagram(h)` / `host.onStream(h)` set
 * the handler for what the tap does not claim.
 */
export function tapLanes<S>(host: LaneSlots<S>, init: LaneTapInit<S>): boolean {
  if (tapped.has(host)) return false;
  tapped.add(host);
  const setDatagram = host.onDatagram.bind(host);
  let nextDatagram: ((flow: number, payload: Buffer) => void) | undefined;
  const flow2 = init.flow2 ?? init.flow;
  setDatagram((flow, payload) => {
    if (flow === init.flow || flow === flow2) init.datagram(payload, flow);
    else nextDatagram?.(flow, payload);
  });
  host.onDatagram = (h) => {
    nextDatagram = h;
  };
  const claims = init.claims;
  const onClaimed = init.stream;
  if (claims === undefined || onClaimed === undefined) return true;
  const setStream = host.onStream.bind(host);
  let nextStream: ((s: S) => void) | undefined;
  setStream((s) => {
    if (claims(s)) onClaimed(s);
    else if (nextStream) nextStream(s);
    else init.refuse?.(s);
  });
  host.onStream = (h) => {
    nextStream = h;
  };
  return true;
}
