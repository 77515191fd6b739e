/**
 * Local port forwards (`-L [BIND:]PORT:HOST:PORT[/udp]`): a local listener
 * whose every connection, or every distinct UDP sender, is carried to
 * HOST:PORT as seen from the server. Also the parser for `-L` / `-R` specs.
 *
 * TCP connections are 0-RTT: the first bytes leave with the OPEN, without
 * waiting for the server's status; a refusal closes the local connection
 * and logs one line.
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { isIP, isIPv6, type Socket } from 'node:net';
import { AddressError, formatHostPort, makeDestination, type Destination } from '../core/address.js';
import { ConfigError, isBenignClose, toError } from '../core/errors.js';
import { nullLogger, type Logger } from '../core/logger.js';
import type { ProxyClient } from './proxy-client.js';
import { splice } from './splice.js';
import { TcpFront, type ListenAddress } from './tcp-front.js';
import type { UdpAssociation } from './udp-flows.js';
import { RefusalLog } from './refusal.js';

/** A parsed `-L` / `-R` argument. */
export interface ForwardSpec {
  /** Where to listen: locally for -L, on the server for -R. Host defaults to 127.0.0.1. */
  bind: ListenAddress;
  /** Where connections go: from the server for -L, from this machine for -R. */
  target: Destination;
  protocol: 'tcp' | 'udp';
}

/**
 * Parses `[BIND:]PORT:HOST:PORT[/udp|/tcp]`. IPv6 hosts go in brackets
 * (`[::1]:8080:[2001:db8::1]:80`); BIND `*` or empty means every interface
 * (0.0.0.0); BIND PORT 0 picks a free port.
 * @throws ConfigError naming `flag` and what is wrong
 */
export function parseForwardSpec(spec: string, flag = '-L'): ForwardSpec {
  const bad = (msg: string): never => {
    throw new ConfigError(flag, `${JSON.stringify(spec)}: ${msg} (expected [BIND:]PORT:HOST:PORT[/udp])`);
  };
  let body = spec;
  let protocol: 'tcp' | 'udp' = 'tcp';
  const slash = spec.lastIndexOf('/');
  if (slash >= 0) {
    const p = spec.slice(slash + 1).toLowerCase();
    if (p !== 'udp' && p !== 'tcp') bad(`unknown protocol ${JSON.stringify(p)}; use /udp or /tcp`);
    protocol = p as 'tcp' | 'udp';
    body = spec.slice(0, slash);
  }
  const parts = splitOutsideBrackets(body, bad);
  if (parts.length !== 3 && parts.length !== 4) {
    bad(parts.length > 4 ? 'too many fields; IPv6 addresses must be written in brackets' : 'too few fields');
  }
  const [bindHostText, bindPortText, hostText, portText] = parts.length === 4 ? parts : ['127.0.0.1', ...parts];
  const bindHost = bindHostText === '' || bindHostText === '*' ? '0.0.0.0' : unbracket(bindHostText as string, 'bind address', bad);
  if (classifyLiteral(bindHost) === 'domain' && bindHost !== 'localhost') bad(`bind address ${JSON.stringify(bindHost)} is not an IP address`);
  const bindPort = parsePort(bindPortText as string, 'bind port', true, bad);
  const host = unbracket(hostText as string, 'host', bad);
  const port = parsePort(portText as string, 'port', false, bad);
  let target: Destination;
  try {
    target = makeDestination(host, port);
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    return bad(`bad host: ${err.message}`);
  }
  return { bind: { host: bindHost, port: bindPort }, target, protocol };
}

function splitOutsideBrackets(s: string, bad: (msg: string) => never): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i] as string;
    if (c === '[') {
      const close = s.indexOf(']', i);
      if (close < 0) bad("missing ']'");
      cur += s.slice(i, close + 1);
      i = close;
    } else if (c === ':') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

function unbracket(text: string, what: string, bad: (msg: string) => never): string {
  if (text === '') bad(`empty ${what}`);
  if (!text.startsWith('[')) return text;
  const inner = text.slice(1, -1);
  if (!text.endsWith(']') || isIP(inner) !== 6) bad(`${what} ${text}: brackets must hold an IPv6 address`);
  return inner;
}

function classifyLiteral(host: string): 'ip' | 'domain' {
  return isIP(host) === 0 ? 'domain' : 'ip';
}

function parsePort(text: string, what: string, zeroOk: boolean, bad: (msg: string) => never): number {
  if (!/^[0-9]{1,5}$/.test(text)) bad(`${what} ${JSON.stringify(text)} is not a number`);
  const n = Number(text);
  if (n > 65535 || (n === 0 && !zeroOk)) bad(`${what} ${n} is out of range (1-65535)`);
  return n;
}

/** Options of {@link LocalForward}. */
export interface LocalForwardInit {
  /** Local listen address (port 0 picks a free one). */
  listen: ListenAddress;
  /** Destination as the server sees it. */
  target: Destination;
  /** @default 'tcp' */
  protocol?: 'tcp' | 'udp';
  proxy: ProxyClient;
  logger?: Logger;
  /** TCP connections, or UDP senders, at once. @default 1024 */
  maxConnections?: number;
  /** A UDP sender's association ends after this long without traffic either way. @default 60000 */
  udpIdleMs?: number;
}

interface UdpFlow {
  assoc: UdpAssociation;
  timer: NodeJS.Timeout;
}

/** See the file comment. */
export class LocalForward {
  private readonly log: Logger;
  private readonly tcp: TcpFront | undefined;
  private udp: UdpSocket | undefined;
  private readonly flows = new Map<string, UdpFlow>();
  private readonly where: string;
  /** A refused target is refused for every connection: one line per interval, with a count. */
  private readonly refusals: RefusalLog;

  constructor(private readonly init: LocalForwardInit) {
    this.where = `${formatHostPort(init.listen)} → ${formatHostPort(init.target)}`;
    this.log = (init.logger ?? nullLogger).child({ forward: this.where });
    this.refusals = new RefusalLog(this.log);
    if ((init.protocol ?? 'tcp') === 'tcp') {
      this.tcp = new TcpFront({
        name: 'forward',
        listen: init.listen,
        maxConnections: init.maxConnections ?? 1024,
        logger: this.log,
        onConnection: (sock) => this.onConnection(sock),
      });
    }
  }

  /** Listens (TCP) or binds (UDP). Rejects with the listen error (EADDRINUSE …). */
  async start(): Promise<void> {
    if (this.tcp) return this.tcp.start();
    if (this.udp) return;
    const udp = createSocket({ type: isIPv6(this.init.listen.host) ? 'udp6' : 'udp4' });
    this.udp = udp;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(this.init.listen.port, this.init.listen.host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (err) => this.log.warn({ err: err.message }, 'udp forward socket error'));
    udp.on('message', (msg, rinfo) => this.onDatagram(udp, msg, rinfo));
    this.log.info({ listen: this.address }, 'udp forward listening');
  }

  /** The bound local address (after start). */
  get address(): ListenAddress {
    if (this.tcp) return this.tcp.address;
    const a = this.udp?.address();
    if (!a) throw new ConfigError('forward', 'not started');
    return { host: a.address, port: a.port };
  }

  /** TCP: open connections and accepted since start; UDP: live senders (for the dashboard). */
  get counters(): Record<string, number> {
    return this.tcp ? { connections: this.tcp.connections, accepted: this.tcp.accepted } : { senders: this.flows.size };
  }

  /** Stops listening and closes every connection and association. Idempotent. */
  async close(): Promise<void> {
    this.refusals.flush();
    if (this.tcp) return this.tcp.close();
    const udp = this.udp;
    this.udp = undefined;
    for (const f of this.flows.values()) {
      clearTimeout(f.timer);
      f.assoc.close();
    }
    this.flows.clear();
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
  }

  /**
   * Most forwarded clients speak first (HTTP, TLS, iperf3): their first bytes
   * arrive one event-loop turn after the accept. Opening the stream after that
   * turn sends them with the OPEN, in one record; a client that waits for the
   * server to speak first loses one turn (tens of microseconds).
   */
  private onConnection(sock: Socket): void {
    setImmediate(() => setImmediate(() => this.open(sock)));
  }

  private open(sock: Socket): void {
    if (sock.destroyed) return;
    const target = this.init.target;
    const initial = sock.readableLength > 0 ? (sock.read() as Buffer | null) : null;
    this.init.proxy.connect(target, initial ? { initial } : {}).then(
      ({ stream, status }) => {
        // Local → server starts now (0-RTT); server → local once the status said yes.
        const link = splice(sock, stream, {
          deferBtoA: true,
          onDone: (err) => {
            if (err && !isBenignClose(err)) this.log.debug({ err: err.message }, 'forwarded connection ended with an error');
          },
        });
        status.then(
          (code) => {
            if (code === 0) return link.startBtoA();
            this.refusals.status('-L', target, code);
            link.destroy();
          },
          (err: unknown) => {
            this.log.warn({ err: toError(err).message }, `forward to ${formatHostPort(target)} failed`);
            link.destroy(toError(err));
          },
        );
      },
      (err: unknown) => {
        this.refusals.local('-L', target, err);
        sock.destroy();
      },
    );
  }

  private onDatagram(udp: UdpSocket, msg: Buffer, rinfo: RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      if (this.flows.size >= (this.init.maxConnections ?? 1024)) {
        this.log.debug({ from: key }, 'udp forward: too many senders; datagram dropped');
        return;
      }
      flow = this.openFlow(udp, key, rinfo);
    }
    flow.timer.refresh();
    if (!flow.assoc.send(this.init.target, msg)) this.log.debug({ size: msg.length }, 'udp forward: datagram dropped (no path, queue full or too large)');
  }

  private openFlow(udp: UdpSocket, key: string, rinfo: RemoteInfo): UdpFlow {
    const assoc = this.init.proxy.udpAssociation();
    const timer = setTimeout(() => {
      this.flows.delete(key);
      assoc.close();
      this.log.debug({ from: key }, 'udp forward: sender idle; association closed');
    }, this.init.udpIdleMs ?? 60_000);
    timer.unref();
    const flow: UdpFlow = { assoc, timer };
    assoc.onMessage((_src, data) => {
      timer.refresh();
      // The payload is a view into the session's record; send() is asynchronous.
      udp.send(Buffer.from(data), rinfo.port, rinfo.address, (err) => {
        if (err) this.log.debug({ err: err.message }, 'udp forward: reply not delivered');
      });
    });
    this.flows.set(key, flow);
    return flow;
  }
}
