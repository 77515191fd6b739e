import { useState } from 'preact/hooks';
import { Feedback } from '../../src/feedback';
import { ApiError, login } from './api';

/** The login form, when the dashboard has a password (ui.password / --ui-password-file). */
export function Login({ onIn }: { onIn: () => void }) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(password);
      setPassword('');
      onIn();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form onSubmit={(e) => void submit(e)} aria-describedby="login-help">
        <h1>polytun client</h1>
        <input type="text" name="username" autocomplete="username" value="polytun-client" hidden readOnly />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <p id="login-help" class="hint">
          The first line of the client's <code>--ui-password-file</code> (or <code>ui.password</code> in its config).
        </p>
        <Feedback error={error} note={null} />
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
