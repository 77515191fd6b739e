import { useState } from 'preact/hooks';
import { ApiError, login } from './api';

/** The login form: the admin token (DATA_DIR/admin.token, printed at the first start). */
export function Login({ onIn }: { onIn: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(token.trim());
      setToken('');
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
        <h1>polytun server</h1>
        {/* For password managers: the token belongs to no user name, so one fixed hidden name. */}
        <input type="text" name="username" autocomplete="username" value="polytun-admin" hidden readOnly />
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="current-password" required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <p id="login-help" class="hint">
          The token is in <code>DATA_DIR/admin.token</code> (printed once when the server first started).
        </p>
        {error !== null && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
