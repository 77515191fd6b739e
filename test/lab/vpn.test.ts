/**
 * Lab test of VPN mode (root only): real `polytun server --tun … --nat` and
 * `polytun client --tun` processes in network namespaces this test creates
 * (test/helpers/vpn-lab.ts), a target namespace behind the server, and one
 * in-process server for what no kernel would send (malformed packets).
 *
 *   ns C: polytun client, TUN ptc ── veth ── ns S: polytun server, TUN pts, NAT ── veth ── ns T: target
 *
 * Traffic goes only to addresses inside these namespaces and to loopback;
 * everything is removed in after(), also on failure.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { nativeAvailable, nativeUnavailableReason } from '../../src/native/addon.js';
import { ensureBuilt, have } from '../helpers/cli.js';
import { BULK_ECHO, HTTP_GET, SERVER_IP, SERVER_IP2, TARGET, TARGET_IP, TARGET_NET, VpnLab, until, type LabProc } from '../helpers/vpn-lab.js';
import { inProcessMalformedCheck } from './vpn-inprocess.js';

/** The clients' status endpoint, on the client namespace's own loopback. */
const STATUS_PORT = 1099;

/** A route the server pushes (nothing lives there; it only has to appear and go away). */
const PUSHED_NET = '10.241.9.0/24';

const skipReason =
  process.getuid?.() !== 0
    ? 'needs root (network namespaces, TUN devices, iptables)'
    : !existsSync('/dev/net/tun')
      ? '/dev/net/tun missing (modprobe tun)'
      : !nativeAvailable
        ? `native addon unavailable: ${nativeUnavailableReason} (npm run build:native)`
        : !have('iptables') || !have('ip6tables') || !have('ping')
          ? 'iptables/ip6tables/ping missing (scripts/install-test-deps.sh)'
          : undefined;
if (skipReason !== undefined) console.log(`# vpn lab skipped: ${skipReason}`);

// Sends one UDP datagram (optionally from a given source address) and prints the reply or "timeout"
// after waitMs (default 20 s: a hang guard for a reply that must come; absence checks pass a short one).
const UDP_SEND = `
const [host, port, payload, bind, waitMs] = process.argv.slice(1);
const s = require('node:dgram').createSocket('udp4');
const t = setTimeout(() => { console.log('timeout'); s.close(); }, Number(waitMs || 20000));
s.on('message', (m) => { clearTimeout(t); console.log(m.toString()); s.close(); });
s.bind(0, bind || undefined, () => s.send(payload, Number(port), host));
`;

// One TCP connection held across the outage: "before" echoed, then on "go" from stdin, "after".
const TCP_HOLDER = `
const sock = require('node:net').connect(7000, process.argv[1]);
let buf = '';
sock.on('data', (c) => { buf += c; for (const w of ['before', 'after']) if (buf.includes(w + '\\n')) { console.log('ok ' + w); buf = buf.replace(w + '\\n', ''); if (w === 'after') sock.end(); } });
sock.on('error', (e) => console.log('error ' + e.message));
sock.on('connect', () => sock.write('before\\n'));
process.stdin.on('data', () => sock.write('after\\n'));
`;

describe('VPN mode (lab: client ns — server ns — target ns)', { skip: skipReason ?? false }, () => {
  const tag = randomBytes(3).toString('hex');
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-vpn-data-'));
  const stateDir = mkdtempSync(join(tmpdir(), 'polytun-vpn-state-'));
  let lab: VpnLab;
  let server: LabProc;
  let target: LabProc;
  let link: string;
  let routesBefore: { v4: unknown; v6: unknown };
  const liveness = ['--set', 'liveness.intervalMs=1000', '--set', 'liveness.timeoutMs=1000', '--set', 'liveness.misses=2'];

  const routes = async (): Promise<{ v4: unknown; v6: unknown }> => ({
    v4: JSON.parse(await lab.exec(lab.c, 'ip', ['-4', '-j', 'route'])) as unknown,
    v6: JSON.parse(await lab.exec(lab.c, 'ip', ['-6', '-j', 'route'])) as unknown,
  });
  const ifindex = async (ns: string, dev: string): Promise<number> => ((JSON.parse(await lab.exec(ns, 'ip', ['-j', 'link', 'show', 'dev', dev])) as { ifindex: number }[])[0] as { ifindex: number }).ifindex;
  const startClient = (name: string, extra: string[]): LabProc =>
    lab.polytun(lab.c, name, ['client', link, '--tun', '--tun-name', 'ptc', '--no-socks', '--status', `127.0.0.1:${STATUS_PORT}`, '--log-format', 'json', '--set', `vpn.stateDir=${stateDir}`, ...liveness, ...extra]);
  const httpRemote = async (): Promise<string> => (JSON.parse(await lab.node(lab.c, HTTP_GET, [`http://${TARGET_IP}:8080/`])) as { remote: string }).remote;
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  /**
   * Resolves once the client's status endpoint answers. run-client installs
   * its SIGTERM handler in the same macrotask as that endpoint starts
   * listening, and a request is served in a later one: stopping the client
   * after this tests the clean exit, not a startup race (a signal that early
   * would kill it outright; the next start would then undo its changes).
   */
  const statusUp = (): Promise<unknown> =>
    until('the client status endpoint', async () => {
      const body = await lab.node(lab.c, HTTP_GET, [`http://127.0.0.1:${STATUS_PORT}/status`]);
      return (JSON.parse(body) as { role?: string }).role === 'client';
    });
  /** SIGTERM, then the exit code, with the signal and the log in the failure message. */
  const term = async (c: LabProc): Promise<void> => {
    const code = await c.stop('SIGTERM');
    assert.equal(code, 0, `${c.name} exit ${code} signal ${c.child.signalCode}\n${c.err.slice(-20).join('\n')}`);
  };
  const vpnUp = async (c: LabProc): Promise<Record<string, unknown>> => {
    const up = await c.waitLog('vpn up');
    await statusUp();
    return up;
  };

  before(async () => {
    ensureBuilt();
    lab = await VpnLab.create(tag);
    target = lab.spawn(lab.t as string, 'target', process.execPath, ['-e', TARGET, TARGET_IP]);
    await target.waitFor('target ready', (l) => l === 'ready');
    routesBefore = await routes();
    server = lab.polytun(lab.s, 'server', [
      'server', '--listen', `tcp://${SERVER_IP}:4433`, '--data-dir', dataDir, '--tun', '10.250.0.0/24,fd50:250::/64', '--nat',
      '--allow', TARGET_NET, '--allow', 'fd50:250::1', '--tun-name', 'pts', '--push-route', PUSHED_NET, '--push-dns', TARGET_IP,
      '--log-format', 'json', ...liveness,
    ]);
    link = await server.waitFor('a link on stdout', (l) => l.startsWith('polytun://'));
    await server.waitLog('vpn ready');
  });

  after(async () => {
    await lab?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('server: TUN on the pool gateway, with offload, exactly one MASQUERADE rule per family, forwarding on', async () => {
    assert.equal((await server.waitLog('vpn ready')).offload, true);
    const addrs = JSON.parse(await lab.exec(lab.s, 'ip', ['-j', 'addr', 'show', 'dev', 'pts'])) as { mtu: number; addr_info: { local: string; prefixlen: number }[] }[];
    assert.equal(addrs[0]?.mtu, 1400);
    const local = addrs[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`) ?? [];
    assert.ok(local.includes('10.250.0.1/24') && local.includes('fd50:250::1/64'), local.join(' '));
    const nat4 = (await lab.exec(lab.s, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING'])).split('\n').filter((l) => l.startsWith('-A'));
    const nat6 = (await lab.exec(lab.s, 'ip6tables', ['-t', 'nat', '-S', 'POSTROUTING'])).split('\n').filter((l) => l.startsWith('-A'));
    assert.deepEqual(nat4, ['-A POSTROUTING -s 10.250.0.0/24 ! -o pts -j MASQUERADE']);
    assert.deepEqual(nat6, ['-A POSTROUTING -s fd50:250::/64 ! -o pts -j MASQUERADE']);
    assert.equal((await lab.exec(lab.s, 'cat', ['/proc/sys/net/ipv4/ip_forward'])).trim(), '1');
  });

  let client: LabProc;

  it('client --route: TCP and UDP reach the target through the tunnel; the target sees the server (NAT); IPv6 rides it too', async () => {
    client = startClient('client', ['--route', TARGET_NET]);
    const up = await vpnUp(client);
    assert.deepEqual([up.addr4, up.addr6, up.mtu, up.offload], ['10.250.0.2', 'fd50:250::2', 1400, true]);
    const r = (await routes()).v4 as { dst: string; dev: string }[];
    assert.ok(r.some((x) => x.dst === TARGET_NET && x.dev === 'ptc'), JSON.stringify(r));
    assert.ok(r.some((x) => x.dst === PUSHED_NET && x.dev === 'ptc'), 'the pushed route');
    const dns = await client.waitLog('vpn: server suggests DNS servers (not applied; use --apply-dns)');
    assert.deepEqual(dns.dns, [TARGET_IP]);
    // Through the tunnel the source is the pool address, masqueraded to the server's address;
    // a packet routed outside the tunnel would arrive from the client's own veth address.
    assert.equal(await httpRemote(), SERVER_IP2);
    assert.equal((await lab.node(lab.c, UDP_SEND, [TARGET_IP, '9000', `hello-${tag}`])).trim(), `echo:hello-${tag}`);
    assert.ok(target.out.includes(`udp ${SERVER_IP2} hello-${tag}`), target.out.join('\n'));
    const ping6 = await lab.exec(lab.c, 'ping', ['-6', '-c', '2', '-W', '3', 'fd50:250::1']);
    assert.match(ping6, /2 received/);
  });

  it("a ping to the server's tunnel address is answered, though the policy (no --allow for it) refuses the address", async () => {
    const ping4 = await lab.exec(lab.c, 'ping', ['-4', '-c', '2', '-W', '3', '10.250.0.1']);
    assert.match(ping4, /2 received/);
  });

  it("a --route the server's policy refuses: refused at connect time, with the route and --allow named on both sides", async () => {
    const refused = lab.polytun(lab.c, 'refused-route', [
      'client', link, '--tun', '--tun-name', 'ptr', '--no-socks', '--no-status', '--log-format', 'json', '--set', `vpn.stateDir=${stateDir}`, '--route', '10.99.0.0/24',
    ]);
    const code = await refused.exited;
    assert.equal(code, 1, refused.err.join('\n'));
    const said = refused.err.join('\n');
    assert.match(said, /polytun: server refused VPN mode: route 10\.99\.0\.0\/24: the server's policy refuses 10\.99\.0\.1 \(private\); on the server, --allow 10\.99\.0\.0\/24 lets VPN clients reach it/);
    const logged = await server.waitLog("vpn: refusing a client: route 10.99.0.0/24: the server's policy refuses 10.99.0.1 (private); on the server, --allow 10.99.0.0/24 lets VPN clients reach it");
    assert.equal(logged.route, '10.99.0.0/24');
    assert.equal(client.child.exitCode, null, 'the other client is untouched');
  });

  it('bulk TCP (offload: super-packets both ways through the tunnel, NAT and forwarding): 4 MiB echoed by the target arrive intact', async () => {
    const out = await lab.node(lab.c, BULK_ECHO, [TARGET_IP, String(4 << 20)]);
    assert.equal(out.trim(), 'intact');
  });

  it('cutting the carrier for 5 s: the flow resumes without a restart, and neither TUN device ever went away', async () => {
    const idxC = await ifindex(lab.c, 'ptc');
    const idxS = await ifindex(lab.s, 'pts');
    const holder = lab.spawn(lab.c, 'tcp-holder', process.execPath, ['-e', TCP_HOLDER, TARGET_IP]);
    await holder.waitFor('first echo', (l) => l === 'ok before');
    const drop = (op: '-I' | '-D'): Promise<unknown> =>
      Promise.all([
        lab.exec(lab.c, 'iptables', [op, 'OUTPUT', '-p', 'tcp', '-d', SERVER_IP, '--dport', '4433', '-j', 'DROP']),
        lab.exec(lab.c, 'iptables', [op, 'INPUT', '-p', 'tcp', '-s', SERVER_IP, '--sport', '4433', '-j', 'DROP']),
      ]);
    await drop('-I');
    const pinger = lab.spawn(lab.c, 'ping', 'ping', ['-i', '0.2', '-W', '1', TARGET_IP]);
    try {
      // At least 5 s, and long enough for the client to notice (liveness: 2 missed pongs of 1 s).
      await Promise.all([sleep(5000), client.waitFor('the reconnecting log line', (l) => l.includes('"msg":"connection to server lost; reconnecting'), 20_000)]);
    } finally {
      await drop('-D');
    }
    await client.waitLog('connected (session resumed)', {}, 30_000);
    holder.child.stdin?.write('go\n');
    await holder.waitFor('echo after the outage on the same TCP connection', (l) => l === 'ok after', 60_000);
    await pinger.stop('SIGINT');
    assert.equal(await ifindex(lab.c, 'ptc'), idxC, 'client TUN was recreated');
    assert.equal(await ifindex(lab.s, 'pts'), idxS, 'server TUN was recreated');
    assert.equal(client.child.exitCode, null);
    assert.equal(server.child.exitCode, null);
    assert.equal(await httpRemote(), SERVER_IP2);
  });

  it('anti-spoofing: a packet whose source is not the lease is dropped, counted, and never reaches the target', async () => {
    await lab.exec(lab.c, 'ip', ['addr', 'add', '10.250.0.77/32', 'dev', 'ptc']);
    try {
      assert.equal((await lab.node(lab.c, UDP_SEND, [TARGET_IP, '9000', `spoofed-${tag}`, '10.250.0.77', '3000'])).trim(), 'timeout');
    } finally {
      await lab.exec(lab.c, 'ip', ['addr', 'del', '10.250.0.77/32', 'dev', 'ptc']);
    }
    assert.equal((await lab.node(lab.c, UDP_SEND, [TARGET_IP, '9000', `legit-${tag}`])).trim(), `echo:legit-${tag}`);
    const drop = await server.waitLog('vpn: dropped a packet from a client', { reason: 'spoofed', src: '10.250.0.77' });
    assert.ok(Number(drop.total) >= 1);
    assert.equal(drop.dst, TARGET_IP);
    assert.ok(target.out.some((l) => l.endsWith(`legit-${tag}`)));
    assert.ok(!target.out.some((l) => l.includes(`spoofed-${tag}`)), 'the spoofed datagram reached the target');
  });

  it('SIGTERM: the client leaves the routing table exactly as it found it', async () => {
    await term(client);
    assert.deepEqual(await routes(), routesBefore);
    const closed = client.logs().find((l) => l.msg === 'vpn closed; routing restored');
    assert.ok(closed, 'no closing stats');
    assert.ok(Number(closed.dropped) > 0, 'packets sent during the outage were dropped (not queued)');
    assert.ok(Number(closed.superPackets) > 0, 'TCP went as super-packets');
    assert.deepEqual(readdirSync(stateDir), []);
    await server.waitLog('vpn client down', { addr4: '10.250.0.2' });
  });

  it('--redirect-gateway: all traffic goes through the tunnel and leaves the server by NAT; routing restored on exit', async () => {
    const resolvConf = join(stateDir, '..', `resolv-${tag}.conf`);
    writeFileSync(resolvConf, 'nameserver 192.0.2.53\n');
    const c = startClient('client-rg', ['--redirect-gateway', '--apply-dns', '--set', `vpn.resolvConf=${resolvConf}`]);
    const up = await vpnUp(c);
    assert.equal(readFileSync(resolvConf, 'utf8').split('\n').filter((l) => l.startsWith('nameserver')).join(), `nameserver ${TARGET_IP}`);
    assert.equal(up.addr4, '10.250.0.2', 'sticky lease: the same user gets the same address back');
    const r = await routes();
    const v4 = r.v4 as { dst: string; dev: string; gateway?: string }[];
    const v6 = r.v6 as { dst: string; dev: string }[];
    for (const dst of ['0.0.0.0/1', '128.0.0.0/1']) assert.ok(v4.some((x) => x.dst === dst && x.dev === 'ptc'), dst);
    // Pinned the way the kernel reached the server before (here: on-link through vc, also the default gateway).
    assert.ok(v4.some((x) => x.dst === SERVER_IP && x.dev === 'vc'), 'server pinned outside the tunnel');
    for (const dst of ['::/1', '8000::/1']) assert.ok(v6.some((x) => x.dst === dst && x.dev === 'ptc'), dst);
    assert.equal(await httpRemote(), SERVER_IP2);
    await term(c);
    assert.deepEqual(await routes(), routesBefore);
    assert.equal(readFileSync(resolvConf, 'utf8'), 'nameserver 192.0.2.53\n', 'resolv.conf restored');
    rmSync(resolvConf);
  });

  it('after a crash (SIGKILL) the next start undoes what the crashed run left, then exits cleanly', async () => {
    const crashed = startClient('client-crash', ['--redirect-gateway']);
    await vpnUp(crashed);
    await crashed.stop('SIGKILL');
    const left = (await routes()).v4 as { dst: string }[];
    assert.ok(left.some((x) => x.dst === SERVER_IP), 'the host route outlives the crash (the TUN routes die with the device)');
    assert.notDeepEqual({ v4: left }, { v4: routesBefore.v4 });
    assert.equal(readdirSync(stateDir).length, 1, 'state file of the crashed run');
    const next = startClient('client-next', ['--redirect-gateway']);
    await next.waitLog('a previous VPN run did not exit cleanly; undoing what it changed');
    await vpnUp(next);
    await term(next);
    assert.deepEqual(await routes(), routesBefore);
    assert.deepEqual(readdirSync(stateDir), []);
  });

  it('malformed and oversize packets from a session are dropped and counted (in-process server, real TUN)', async () => {
    await inProcessMalformedCheck(lab, tag, dataDir);
  });

  it('server: SIGKILL leaves the NAT rule; the next start removes it before adding its own; SIGTERM removes it exactly', async () => {
    const nat = async (): Promise<string[]> => (await lab.exec(lab.s, 'iptables', ['-t', 'nat', '-S', 'POSTROUTING'])).split('\n').filter((l) => l.startsWith('-A'));
    await server.stop('SIGKILL');
    assert.equal((await nat()).length, 1);
    const again = lab.polytun(lab.s, 'server-2', ['server', '--listen', `tcp://${SERVER_IP}:4433`, '--data-dir', dataDir, '--tun', '10.250.0.0/24,fd50:250::/64', '--nat', '--tun-name', 'pts', '--log-format', 'json']);
    await again.waitLog('a previous VPN run did not exit cleanly; undoing what it changed');
    // A restart prints no links (only a first start does); the same data dir and port keep the first one valid.
    await again.waitFor('the restart line on stdout', (l) => l.startsWith('# ') && l.includes('polytun link --data-dir'));
    const againLink = link;
    // A session served proves the server is past its startup tick (SIGTERM handler installed).
    const probe = lab.polytun(lab.c, 'probe', ['client', againLink, '--no-socks', '--status', `127.0.0.1:${STATUS_PORT}`, '--log-format', 'json']);
    await statusUp();
    await term(probe);
    assert.deepEqual(await nat(), ['-A POSTROUTING -s 10.250.0.0/24 ! -o pts -j MASQUERADE']);
    await term(again);
    assert.deepEqual(await nat(), []);
    assert.deepEqual((await lab.exec(lab.s, 'ip6tables', ['-t', 'nat', '-S', 'POSTROUTING'])).split('\n').filter((l) => l.startsWith('-A')), []);
    assert.equal((await lab.exec(lab.s, 'cat', ['/proc/sys/net/ipv4/ip_forward'])).trim(), '0');
  });
});
