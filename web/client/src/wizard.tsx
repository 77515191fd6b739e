/**
 * The setup wizard: where the server is (a pasted link, a QR image, or
 * provisioning with a user and password), what runs on this machine
 * (SOCKS5, HTTP, forwards), which other networks to bond, the self-checks,
 * and one apply that writes the YAML config (mode 600) and starts the
 * tunnel. Every refusal shows the API's message, next to the field it
 * names where there is one.
 */
import { useEffect, useState } from 'preact/hooks';
import { Feedback } from '../../src/feedback';
import { api, ApiError, errorText, type CheckItem, type InterfaceInfo, type LinkSummary, type WizardState } from './api';
import { readQrImage } from './qr-image';

type Source = 'link' | 'qr' | 'provision';
type Issues = readonly { where: string; message: string }[];

/** The messages of the issues at `where` (or under it: config.forwards → config.forwards[1]). */
function issuesAt(issues: Issues, where: string): string[] {
  return issues.filter((i) => i.where === where || i.where.startsWith(`${where}[`) || i.where.startsWith(`${where}.`)).map((i) => `${i.where.replace(/^config\./, '')}: ${i.message}`);
}

function FieldError({ issues, where, id }: { issues: Issues; where: string; id: string }) {
  const m = issuesAt(issues, where);
  if (m.length === 0) return null;
  return (
    <p class="error field-error" id={id}>
      {m.join('; ')}
    </p>
  );
}

export function Wizard() {
  const [state, setState] = useState<WizardState | null>(null);
  const [off, setOff] = useState<string | null>(null);
  const [source, setSource] = useState<Source>('link');
  const [link, setLink] = useState('');
  const [showLink, setShowLink] = useState(false);
  const [backups, setBackups] = useState<string[]>([]);
  const [summary, setSummary] = useState<LinkSummary | null>(null);
  const [serverError, setServerError] = useState<string | null>(null);
  const [serverNote, setServerNote] = useState<string | null>(null);
  const [busy, setBusy] = useState<null | 'link' | 'qr' | 'provision' | 'check' | 'apply' | 'start'>(null);
  const [prov, setProv] = useState({ host: '', port: '', user: '', password: '', fp: '', insecureHttp: false });

  const [socksOn, setSocksOn] = useState(true);
  const [socks, setSocks] = useState('127.0.0.1:1080');
  const [httpOn, setHttpOn] = useState(false);
  const [http, setHttp] = useState('127.0.0.1:8080');
  const [forwards, setForwards] = useState('');
  const [statusOn, setStatusOn] = useState(true);
  const [status, setStatus] = useState('127.0.0.1:1099');

  const [ifaces, setIfaces] = useState<InterfaceInfo[] | null>(null);
  const [bond, setBond] = useState<string[]>([]);

  const [issues, setIssues] = useState<Issues>([]);
  const [checks, setChecks] = useState<{ ok: boolean; items: CheckItem[] } | null>(null);
  const [checkError, setCheckError] = useState<string | null>(null);
  const [applied, setApplied] = useState<{ file: string; started: boolean; command: string; message?: string; state?: { state: string; error?: string } } | null>(null);
  const [applyError, setApplyError] = useState<string | null>(null);

  useEffect(() => {
    api<WizardState>('GET', '/api/wizard/state').then(setState, (err: unknown) => {
      if (err instanceof ApiError && err.status === 404) setOff('The setup is off on this client (ui.wizard: false in its config): edit the config file instead.');
      else setOff(errorText(err));
    });
    api<{ interfaces: InterfaceInfo[] }>('GET', '/api/wizard/interfaces').then(
      (r) => setIfaces(r.interfaces),
      () => setIfaces([]),
    );
  }, []);

  if (off !== null) return <p class="card">{off}</p>;

  const readLink = async (text: string, how: 'link' | 'qr') => {
    setServerError(null);
    setServerNote(null);
    setSummary(null);
    setBackups([]);
    setBusy(how);
    try {
      const r = await api<{ summary: LinkSummary }>('POST', '/api/wizard/link', { link: text.trim() });
      setSummary(r.summary);
      setServerNote(how === 'qr' ? 'Read from the QR code.' : 'The link is valid.');
    } catch (err) {
      setServerError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const onQr = async (e: Event) => {
    const file = (e.currentTarget as HTMLInputElement).files?.[0];
    if (file === undefined) return;
    setServerError(null);
    setServerNote(null);
    setBusy('qr');
    let text: string;
    try {
      text = await readQrImage(file);
    } catch (err) {
      setBusy(null);
      setServerError(errorText(err));
      return;
    }
    setLink(text);
    await readLink(text, 'qr');
  };

  const provision = async (e: Event) => {
    e.preventDefault();
    setServerError(null);
    setServerNote(null);
    setSummary(null);
    setBusy('provision');
    try {
      const port = prov.port.trim() === '' ? undefined : Number(prov.port);
      if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) throw new Error('the port is a number from 1 to 65535 (or empty for 443)');
      const r = await api<{ file: string; user: string; links: string[]; summaries: LinkSummary[]; config: { link: string; backupServers?: string[] } }>('POST', '/api/wizard/provision', {
        host: prov.host.trim(),
        ...(port !== undefined ? { port } : {}),
        user: prov.user.trim(),
        password: prov.password,
        ...(prov.fp.trim() !== '' ? { fp: prov.fp.trim() } : {}),
        ...(prov.insecureHttp ? { insecureHttp: true } : {}),
      });
      setLink(r.config.link);
      setBackups(r.config.backupServers ?? []);
      setSummary(r.summaries[0] ?? null);
      setProv((p) => ({ ...p, password: '' }));
      setServerNote(`Provisioned user ${r.user}: ${r.links.length} server${r.links.length === 1 ? '' : 's'} (also saved to ${r.file}).`);
    } catch (err) {
      setServerError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const bondIfaces = (ifaces ?? []).filter((i) => !i.internal && i.bindHint !== undefined);
  const pathSpec = (i: InterfaceInfo): string => (summary === null ? '' : `${summary.carrier}://${summary.server},${i.bindHint ?? `bind=${i.name}`}`);

  const config = () => ({
    link: link.trim(),
    ...(backups.length > 0 ? { backupServers: backups } : {}),
    socks: socksOn ? socks.trim() : false,
    http: httpOn ? http.trim() : false,
    status: statusOn ? status.trim() : false,
    forwards: forwards
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
    paths: bondIfaces.filter((i) => bond.includes(i.name)).map(pathSpec),
  });

  const check = async () => {
    setCheckError(null);
    setChecks(null);
    setIssues([]);
    setBusy('check');
    try {
      setChecks(await api<{ ok: boolean; items: CheckItem[] }>('POST', '/api/wizard/check', { config: config() }));
    } catch (err) {
      if (err instanceof ApiError) setIssues(err.issues);
      setCheckError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const apply = async () => {
    setApplyError(null);
    setApplied(null);
    setIssues([]);
    setBusy('apply');
    try {
      const r = await api<{ file: string; started: boolean; command: string; message?: string; state?: { state: string; error?: string } }>('POST', '/api/wizard/apply', { config: config() });
      setApplied(r);
      setState((s) => (s === null ? s : { ...s, exists: true }));
    } catch (err) {
      if (err instanceof ApiError) setIssues(err.issues);
      setApplyError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const startSaved = async () => {
    setApplyError(null);
    setBusy('start');
    try {
      const r = await api<{ file: string; started: boolean; state: { state: string; error?: string } }>('POST', '/api/wizard/start', {});
      setApplied({ ...r, command: '' });
    } catch (err) {
      setApplyError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const ready = summary !== null && link.trim() !== '';
  return (
    <section aria-labelledby="setup-h" class="wizard">
      <h2 id="setup-h">Setup</h2>
      {state !== null && (
        <p class="hint">
          The config is written to <code>{state.configFile}</code>
          {state.exists ? ' (it exists: applying replaces it)' : ''}.
          {state.exists && state.tunnel.state === 'none' && (
            <>
              {' '}
              <button type="button" class="link" disabled={busy !== null} onClick={() => void startSaved()}>
                Start the saved config as it is
              </button>
            </>
          )}
        </p>
      )}

      <section class="card" aria-labelledby="step1-h">
        <h3 id="step1-h">1. The server</h3>
        <div class="segmented" role="group" aria-label="How to find the server">
          {(
            [
              ['link', 'Paste a link'],
              ['qr', 'QR code image'],
              ['provision', 'User and password'],
            ] as const
          ).map(([k, label]) => (
            <button key={k} type="button" aria-pressed={source === k} onClick={() => setSource(k)}>
              {label}
            </button>
          ))}
        </div>
        {source === 'link' && (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              void readLink(link, 'link');
            }}
          >
            <label for="link">polytun:// link</label>
            <div class="inline">
              {showLink ? (
                <input id="link" type="text" autocomplete="off" spellcheck={false} placeholder="polytun://…" value={link} onInput={(e) => setLink(e.currentTarget.value)} aria-describedby="link-help" />
              ) : (
                <input id="link" type="password" autocomplete="off" spellcheck={false} placeholder="polytun://…" value={link} onInput={(e) => setLink(e.currentTarget.value)} aria-describedby="link-help" />
              )}
              <button type="button" aria-pressed={showLink} onClick={() => setShowLink(!showLink)}>
                {showLink ? 'Hide' : 'Show'}
              </button>
            </div>
            <p id="link-help" class="hint">
              The link the server printed (<code>polytun link</code>) or its admin page shows. It holds your key: it stays hidden unless you ask.
            </p>
            <button type="submit" disabled={busy !== null || link.trim() === ''}>
              {busy === 'link' ? 'Reading…' : 'Use this link'}
            </button>
          </form>
        )}
        {source === 'qr' && (
          <div>
            <label for="qr">A picture of the QR code</label>
            <input id="qr" type="file" accept="image/*" onChange={(e) => void onQr(e)} aria-describedby="qr-help" />
            <p id="qr-help" class="hint">
              A screenshot or photo of the code on the server's admin page. It is read in this page; the picture goes nowhere.
            </p>
            {busy === 'qr' && <p role="status">Reading the QR code…</p>}
          </div>
        )}
        {source === 'provision' && (
          <form class="grid2" onSubmit={(e) => void provision(e)}>
            <div>
              <label for="p-host">Server</label>
              <input id="p-host" required placeholder="vps.example.com" value={prov.host} onInput={(e) => setProv({ ...prov, host: e.currentTarget.value })} />
            </div>
            <div>
              <label for="p-port">Admin port</label>
              <input id="p-port" inputMode="numeric" placeholder="443" value={prov.port} onInput={(e) => setProv({ ...prov, port: e.currentTarget.value })} />
            </div>
            <div>
              <label for="p-user">User</label>
              <input id="p-user" required autocomplete="username" value={prov.user} onInput={(e) => setProv({ ...prov, user: e.currentTarget.value })} />
            </div>
            <div>
              <label for="p-pass">Password</label>
              <input id="p-pass" required type="password" autocomplete="current-password" value={prov.password} onInput={(e) => setProv({ ...prov, password: e.currentTarget.value })} />
            </div>
            <div class="span2">
              <label for="p-fp">Certificate SHA-256 (for a self-signed server)</label>
              <input id="p-fp" spellcheck={false} placeholder="fp=… from the server's tls or wss link" value={prov.fp} onInput={(e) => setProv({ ...prov, fp: e.currentTarget.value })} />
            </div>
            <label class="check span2">
              <input type="checkbox" checked={prov.insecureHttp} onChange={(e) => setProv({ ...prov, insecureHttp: e.currentTarget.checked })} /> Plain http (the password crosses the network in clear: only on a network you trust)
            </label>
            <button type="submit" class="span2" disabled={busy !== null}>
              {busy === 'provision' ? 'Asking the server…' : 'Get my config from the server'}
            </button>
          </form>
        )}
        <Feedback error={serverError} note={serverNote} />
        <FieldError issues={issues} where="config.link" id="link-issue" />
        {summary !== null && (
          <dl class="summary" aria-label="The server">
            <dt>Server</dt>
            <dd data-field="server">
              {summary.server} <span class="badge">{summary.carrier}</span>
            </dd>
            {summary.name !== undefined && (
              <>
                <dt>Name</dt>
                <dd>{summary.name}</dd>
              </>
            )}
            <dt>Credential</dt>
            <dd>{summary.credential}</dd>
            <dt>Server key</dt>
            <dd>
              <code>{summary.serverKeyFingerprint}</code> <span class="hint">(SHA-256, first 16 hex digits)</span>
            </dd>
            {summary.certificatePin !== undefined && (
              <>
                <dt>Certificate pin</dt>
                <dd class="anywhere">
                  <code>{summary.certificatePin}</code>
                </dd>
              </>
            )}
            {backups.length > 0 && (
              <>
                <dt>Backup servers</dt>
                <dd>{backups.length}</dd>
              </>
            )}
          </dl>
        )}
      </section>

      <section class="card" aria-labelledby="step2-h">
        <h3 id="step2-h">2. On this machine</h3>
        <label class="check">
          <input type="checkbox" checked={socksOn} onChange={(e) => setSocksOn(e.currentTarget.checked)} /> SOCKS5 proxy (browsers, curl <code>--socks5-hostname</code>)
        </label>
        {socksOn && (
          <>
            <label for="socks">SOCKS5 listens on</label>
            <input id="socks" value={socks} onInput={(e) => setSocks(e.currentTarget.value)} aria-invalid={issuesAt(issues, 'config.socks').length > 0} aria-describedby="socks-issue" />
            <FieldError issues={issues} where="config.socks" id="socks-issue" />
          </>
        )}
        <label class="check">
          <input type="checkbox" checked={httpOn} onChange={(e) => setHttpOn(e.currentTarget.checked)} /> HTTP proxy (CONNECT)
        </label>
        {httpOn && (
          <>
            <label for="http">HTTP proxy listens on</label>
            <input id="http" value={http} onInput={(e) => setHttp(e.currentTarget.value)} aria-invalid={issuesAt(issues, 'config.http').length > 0} aria-describedby="http-issue" />
            <FieldError issues={issues} where="config.http" id="http-issue" />
          </>
        )}
        <label for="forwards">Port forwards, one per line</label>
        <textarea id="forwards" rows={3} spellcheck={false} placeholder="8080:intranet.example:80&#10;5353:10.0.0.53:53/udp" value={forwards} onInput={(e) => setForwards(e.currentTarget.value)} aria-describedby="fwd-help fwd-issue" aria-invalid={issuesAt(issues, 'config.forwards').length > 0} />
        <p id="fwd-help" class="hint">
          <code>[BIND:]PORT:HOST:PORT[/udp]</code>: this machine's PORT reaches HOST:PORT from the server (the server's policy decides which hosts are allowed).
        </p>
        <FieldError issues={issues} where="config.forwards" id="fwd-issue" />
        <label class="check">
          <input type="checkbox" checked={statusOn} onChange={(e) => setStatusOn(e.currentTarget.checked)} /> Status endpoint for <code>polytun status</code> (loopback)
        </label>
        {statusOn && (
          <>
            <label for="status">Status endpoint listens on</label>
            <input id="status" value={status} onInput={(e) => setStatus(e.currentTarget.value)} aria-invalid={issuesAt(issues, 'config.status').length > 0} aria-describedby="status-issue" />
            <FieldError issues={issues} where="config.status" id="status-issue" />
          </>
        )}
      </section>

      <section class="card" aria-labelledby="step3-h">
        <h3 id="step3-h">3. Bond other networks</h3>
        <p class="hint">The link's own path takes the default route. Each network picked here adds one more path to the same server, from that interface's address; the session uses them together and survives losing any one.</p>
        {ifaces === null && <p class="hint">Looking at this machine's interfaces…</p>}
        {ifaces !== null && bondIfaces.length === 0 && <p class="hint">No other network interface with an IPv4 address was found.</p>}
        {summary === null && bondIfaces.length > 0 && <p class="hint">Choose the server first.</p>}
        <ul class="ifaces">
          {bondIfaces.map((i) => (
            <li key={i.name}>
              <label class="check">
                <input
                  type="checkbox"
                  disabled={summary === null}
                  checked={bond.includes(i.name)}
                  onChange={(e) => setBond(e.currentTarget.checked ? [...bond, i.name] : bond.filter((n) => n !== i.name))}
                />{' '}
                <strong>{i.name}</strong> <span class="hint">{i.addresses.map((a) => a.cidr ?? a.address).join(', ')}{i.mtu !== undefined ? ` · MTU ${i.mtu}` : ''}</span>
              </label>
              {bond.includes(i.name) && summary !== null && <code class="spec">{pathSpec(i)}</code>}
            </li>
          ))}
        </ul>
        <FieldError issues={issues} where="config.paths" id="paths-issue" />
      </section>

      <section class="card" aria-labelledby="step4-h">
        <h3 id="step4-h">4. Check</h3>
        <p class="hint">Dials the server on every carrier the config names and completes a handshake, looks at UDP, at a NAT on the way and at the MTU of the first hop, then measures the speed through each endpoint that answered (about 2 s each way).</p>
        <button type="button" disabled={!ready || busy !== null} onClick={() => void check()}>
          {busy === 'check' ? 'Checking… (about 5 s per server)' : 'Run the checks'}
        </button>
        <Feedback error={checkError} note={null} />
        {checks !== null && (
          <div class="table-wrap">
            <table class="checks">
              <caption class={checks.ok ? 'ok' : 'warn'}>{checks.ok ? 'Nothing failed.' : 'Something failed: see what to fix below.'}</caption>
              <thead>
                <tr>
                  <th>Check</th>
                  <th>Result</th>
                  <th>Detail</th>
                </tr>
              </thead>
              <tbody>
                {checks.items.map((c) => (
                  <tr key={c.id} data-check={c.id}>
                    <td data-label="Check">{c.title}</td>
                    <td data-label="Result">
                      <span class={`badge result-${c.result}`}>{c.result.replace('_', ' ')}</span>
                    </td>
                    <td data-label="Detail">
                      {c.detail}
                      {c.fix !== undefined && <p class="fix">To fix: {c.fix}</p>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section class="card" aria-labelledby="step5-h">
        <h3 id="step5-h">5. Apply</h3>
        <p class="hint">Writes the config file (mode 600) and starts the tunnel with it.</p>
        <button type="submit" disabled={!ready || busy !== null} onClick={() => void apply()}>
          {busy === 'apply' ? 'Applying…' : 'Write the config and start'}
        </button>
        <Feedback error={applyError} note={null} />
        {applied !== null && (
          <div role="status" class="applied">
            <p class="note">
              Written to <code>{applied.file}</code>.
              {applied.started ? ' The tunnel is starting.' : ` ${applied.message ?? ''}`}
            </p>
            {applied.state?.state === 'failed' && <p class="error">It failed to start: {applied.state.error}</p>}
            {applied.started && (
              <p>
                <a href="#/dashboard">Open the dashboard</a> to watch it connect. Later, run it as a service with <code>{applied.command || `polytun client --config ${applied.file}`}</code>.
              </p>
            )}
          </div>
        )}
      </section>
    </section>
  );
}
