/**
 * The polytun client's dashboard and setup wizard, served at `/` of
 * `polytun client … --ui HOST:PORT` and `polytun ui`. Two pages, chosen by
 * the URL fragment: Dashboard (live topology, throughput per path, history,
 * fronts, events) and Setup (the wizard). With a password the login comes
 * first. Every string from the API is rendered as text by preact (nothing
 * here sets innerHTML).
 */
import 'uplot/dist/uPlot.min.css';
import '../../src/style.css';
import './client.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, errorText, logout, session, whenLoggedOut } from './api';
import { Dashboard } from './dashboard';
import { Login } from './login';
import { TopBar } from '../../src/top-bar';
import { Wizard } from './wizard';

const PAGES = { dashboard: 'Dashboard', setup: 'Setup' } as const;
type Page = keyof typeof PAGES;

function pageOf(hash: string): Page | undefined {
  const p = hash.replace(/^#\/?/, '');
  return p in PAGES ? (p as Page) : undefined;
}

function App() {
  const [phase, setPhase] = useState<'checking' | 'out' | 'in'>('checking');
  const [passwordRequired, setPasswordRequired] = useState(false);
  const [page, setPage] = useState<Page>(pageOf(location.hash) ?? 'dashboard');
  const [error, setError] = useState<string | null>(null);

  const enter = async () => {
    setPhase('in');
    // No page named: the wizard while no tunnel runs, else the dashboard.
    if (pageOf(location.hash) !== undefined) return;
    try {
      await api('GET', '/api/status');
    } catch (err) {
      if (err instanceof ApiError && err.code === 'not_running') location.hash = '#/setup';
    }
  };

  useEffect(() => {
    whenLoggedOut(() => setPhase('out'));
    session().then(
      (s) => {
        setPasswordRequired(s.passwordRequired);
        if (s.passwordRequired && !s.authenticated) setPhase('out');
        else void enter();
      },
      (err: unknown) => setError(errorText(err)),
    );
    const onHash = () => setPage(pageOf(location.hash) ?? 'dashboard');
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    document.title = phase === 'in' ? `${PAGES[page]} · polytun client` : 'polytun client';
  }, [page, phase]);

  if (error !== null) return <p class="error center" role="alert">{error}</p>;
  if (phase === 'checking') return <p class="hint center">Loading…</p>;
  if (phase === 'out') return <Login onIn={() => void enter()} />;
  return (
    <>
      <TopBar brand="polytun client" pages={PAGES} page={page} onLogout={passwordRequired ? () => void logout().finally(() => setPhase('out')) : undefined} />
      <main>
        {page === 'dashboard' && <Dashboard />}
        {page === 'setup' && <Wizard />}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
