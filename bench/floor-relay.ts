/**
 * Benchmark reference, not a product: the least a Node.js relay with
 * polytun's shape can do per connection. One plaintext TCP connection
 * between two processes carries every forwarded connection as a stream:
 *
 * ```
 *   client LISTEN SERVER_PORT:  accept ─▶ OPEN(+first bytes) / DATA / FIN frames ─▶
 *   server LISTEN TARGET_PORT:  ─▶ dial the target, DATA / FIN frames back
 * ```
 *
 * No crypto, no flow control, no policy, no error handling beyond not
 * crashing; frames are `type u8 | id u32 | length u16 | payload`. It uses
 * the same `net.Socket` API as polytun, so its CPU per connection is the
 * platform's floor for that design, measured in the same run as
 * shadowsocks-libev (bench/proxy.ts). Prints its port when ready.
 */
import net from 'node:net';

const [mode, listenArg, targetArg] = process.argv.slice(2);
const listenPort = Number(listenArg ?? 0);
const targetPort = Number(targetArg);
const OPEN = 1;
const DATA = 2;
const FIN = 3;
const HEAD = 7;

function frame(type: number, id: number, payload?: Buffer): Buffer {
  const b = Buffer.allocUnsafe(HEAD + (payload?.length ?? 0));
  b[0] = type;
  b.writeUInt32BE(id, 1);
  b.writeUInt16BE(payload?.length ?? 0, 5);
  payload?.copy(b, HEAD);
  return b;
}

/** Splits a carrier's byte stream into frames. */
function frames(onFrame: (type: number, id: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let rest: Buffer | undefined;
  return (chunk) => {
    const buf = rest ? Buffer.concat([rest, chunk]) : chunk;
    let o = 0;
    while (buf.length - o >= HEAD) {
      const len = buf.readUInt16BE(o + 5);
      if (buf.length - o < HEAD + len) break;
      onFrame(buf[o] as number, buf.readUInt32BE(o + 1), buf.subarray(o + HEAD, o + HEAD + len));
      o += HEAD + len;
    }
    rest = o < buf.length ? buf.subarray(o) : undefined;
  };
}

const conns = new Map<number, net.Socket>();
const ready = (srv: net.Server): void => console.log(`floor ${(srv.address() as net.AddressInfo).port}`);

if (mode === 'client') {
  const carrier = net.connect({ port: targetPort, host: '127.0.0.1', noDelay: true });
  carrier.on(
    'data',
    frames((type, id, payload) => {
      const s = conns.get(id);
      if (type === DATA) s?.write(Buffer.from(payload));
      else if (type === FIN) s?.end();
    }),
  );
  let next = 1;
  const srv = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => {
    const id = next++;
    let opened = false;
    conns.set(id, s);
    s.on('error', () => s.destroy());
    s.on('data', (d: Buffer) => {
      carrier.write(frame(opened ? DATA : OPEN, id, d));
      opened = true;
    });
    s.on('end', () => {
      if (!opened) carrier.write(frame(OPEN, id));
      carrier.write(frame(FIN, id));
    });
    s.on('close', () => conns.delete(id));
  });
  carrier.once('connect', () => srv.listen(listenPort, '127.0.0.1', () => ready(srv)));
} else {
  const srv = net.createServer({ noDelay: true }, (carrier) => {
    carrier.on(
      'data',
      frames((type, id, payload) => {
        if (type === OPEN) {
          const s = net.connect({ port: targetPort, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
          conns.set(id, s);
          if (payload.length > 0) s.write(Buffer.from(payload));
          s.on('error', () => s.destroy());
          s.on('data', (d: Buffer) => carrier.write(frame(DATA, id, d)));
          s.on('end', () => carrier.write(frame(FIN, id)));
          s.on('close', () => conns.delete(id));
        } else if (type === DATA) conns.get(id)?.write(Buffer.from(payload));
        else if (type === FIN) conns.get(id)?.end();
      }),
    );
  });
  srv.listen(listenPort, '127.0.0.1', () => ready(srv));
}
process.on('SIGTERM', () => process.exit(0));
