/**
 * The interface this machine would send to a server from, and its MTU: the
 * first hop of the path, so an upper bound of the path MTU (the hops beyond
 * it are not probed). Found without sending a packet: a UDP socket
 * connect()ed to the server makes the kernel pick the route and the source
 * address, whose interface os.networkInterfaces() names; its MTU is in
 * /sys/class/net (Linux).
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import { linkMtu } from './wizard.js';

/** The first hop toward a server. */
export interface FirstHop {
  /** The interface name, e.g. eth0. */
  readonly iface: string;
  /** Its MTU, bytes. */
  readonly mtu: number;
  readonly family: 'IPv4' | 'IPv6';
}

/** Finds the first hop toward host:port; undefined when there is no route or the MTU cannot be read. */
export async function firstHop(host: string, port: number): Promise<FirstHop | undefined> {
  let addr: { address: string; family: number };
  try {
    addr = await lookup(host);
  } catch {
    return undefined;
  }
  const sock = createSocket(addr.family === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(port, addr.address, () => resolve());
    });
    const local = sock.address().address;
    for (const [name, list] of Object.entries(networkInterfaces())) {
      if (!(list ?? []).some((a) => a.address === local)) continue;
      const mtu = linkMtu(name);
      return mtu === undefined ? undefined : { iface: name, mtu, family: addr.family === 6 ? 'IPv6' : 'IPv4' };
    }
    return undefined;
  } catch {
    return undefined; // no route (ENETUNREACH): the reach check says so
  } finally {
    sock.close();
  }
}
