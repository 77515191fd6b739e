/**
 * The polytun server's web dashboard: log in with the admin token, then
 * Overview (live, over SSE), Users and Sessions. Pages are chosen by the
 * URL fragment (#/users), so links and the back button work without a
 * server route per page. Every string from the server is rendered as text
 * by preact (nothing here sets innerHTML).
 */
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { logout, restore, whenLoggedOut } from './api';
import { Login } from './login';
import { Overview } from './overview';
import { Sessions } from './sessions';
import { TopBar } from './top-bar';
import { Users } from './users';

const PAGES = { overview: 'Overview', users: 'Users', sessions: 'Sessions' } as const;
type Page = keyof typeof PAGES;

function pageOf(hash: string): Page {
  const p = hash.replace(/^#\/?/, '');
  return p in PAGES ? (p as Page) : 'overview';
}

function App() {
  const [phase, setPhase] = useState<'checking' | 'out' | 'in'>('checking');
  const [page, setPage] = useState<Page>(pageOf(location.hash));

  useEffect(() => {
    whenLoggedOut(() => setPhase('out'));
    void restore().then((ok) => setPhase(ok ? 'in' : 'out'));
    const onHash = () => setPage(pageOf(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    document.title = phase === 'in' ? `${PAGES[page]} · polytun server` : 'polytun server';
  }, [page, phase]);

  if (phase === 'checking') return <p class="hint center">Loading…</p>;
  if (phase === 'out') return <Login onIn={() => setPhase('in')} />;
  return (
    <>
      <TopBar brand="polytun server" pages={PAGES} page={page} onLogout={() => void logout().finally(() => setPhase('out'))} />
      <main>
        {page === 'overview' && <Overview />}
        {page === 'users' && <Users />}
        {page === 'sessions' && <Sessions />}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root !== null) render(<App />, root);
