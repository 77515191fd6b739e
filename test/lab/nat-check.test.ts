/**
 * Lab test (root only): the setup wizard's NAT item across a real NAT.
 *
 *   ns cli 10.62.1.2 ──veth── 10.62.1.1 ns nat 10.62.2.1 ──veth── 10.62.2.2 ns srv
 *                              iptables MASQUERADE out of the srv side
 *                                                            polytun server (tcp, udp)
 *
 * The checks run in the cli namespace (the real runChecks against the real
 * server over the real NAT): the server must see the router's address, and
 * the item must say "behind a NAT". Then the same from the nat namespace
 * itself (no NAT on its way): "no NAT".
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureBuilt, ROOT } from '../helpers/cli.js';
import { Lab, labUnavailableReason, type LabProc } from './netns.js';

const skip = labUnavailableReason();
if (skip !== undefined) console.log(`# nat-check lab skipped: ${skip}`);

/** Runs the wizard's checks on `link` in namespace `ns` with the built code; returns the items. */
async function checksIn(lab: Lab, ns: string, link: string): Promise<{ id: string; result: string; detail: string }[]> {
  const script = `
    const { checkClientConfig } = await import(${JSON.stringify(join(ROOT, 'dist/ui/wizard.js'))});
    const { runChecks } = await import(${JSON.stringify(join(ROOT, 'dist/ui/checks.js'))});
    const c = checkClientConfig({ link: process.argv[1] });
    if (!c.ok) throw new Error(JSON.stringify(c.issues));
    process.stdout.write(JSON.stringify(await runChecks(c.config, { speedBudgetMs: 0 })));
  `;
  const out = await lab.run(ns, process.execPath, ['--input-type=module', '-e', script, link], { timeoutMs: 30_000 });
  return JSON.parse(out) as { id: string; result: string; detail: string }[];
}

describe('wizard NAT check across a real NAT', { skip: skip ?? false }, () => {
  const lab = new Lab('natck');
  const dataDir = mkdtempSync(join(tmpdir(), 'polytun-natck-'));
  let cli: string;
  let nat: string;
  let server: LabProc;
  let udpLink: string;

  before(async () => {
    ensureBuilt();
    cli = await lab.host('cli');
    nat = await lab.host('nat');
    const srv = await lab.host('srv');
    await lab.link(cli, nat, { a: '10.62.1.2/24', b: '10.62.1.1/24' });
    const out = await lab.link(nat, srv, { a: '10.62.2.1/24', b: '10.62.2.2/24' });
    await lab.run(cli, 'ip', ['route', 'add', 'default', 'via', '10.62.1.1']);
    await lab.run(nat, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    await lab.run(nat, 'iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-o', out.aIf, '-j', 'MASQUERADE']);
    server = lab.spawn(srv, process.execPath, [join(ROOT, 'bin/polytun.js'), 'server', '--listen', 'udp://10.62.2.2:4433', '--data-dir', dataDir], { name: 'server' });
    udpLink = (await server.waitForLine(/^(polytun:\/\/\S+)$/))[1] as string;
  });
  after(async () => {
    await lab.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('behind the MASQUERADE the server sees the router, and the item says so', async () => {
    const items = await checksIn(lab, cli, udpLink);
    const reach = items.find((i) => i.id === 'reach:link');
    assert.equal(reach?.result, 'pass', JSON.stringify(items));
    const item = items.find((i) => i.id === 'nat');
    assert.equal(item?.result, 'pass', JSON.stringify(item));
    assert.match(item?.detail ?? '', /^behind a NAT that (kept|rewrote) the port: this machine is 10\.62\.1\.2:\d+, the server sees 10\.62\.2\.1:\d+ \(over udp\)/);
  });

  it('from the router itself, no NAT on the way', async () => {
    const item = (await checksIn(lab, nat, udpLink)).find((i) => i.id === 'nat');
    assert.match(item?.detail ?? '', /^no NAT: this machine is 10\.62\.2\.1:(\d+), the server sees 10\.62\.2\.1:\1 \(over udp\)$/);
  });
});
