import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { Feedback } from './feedback';
import { ApiError } from './http';

/**
 * A login form with one secret field (the server's admin token, the
 * client's password): the error of a refused attempt, the field cleared on
 * success. `username` is a fixed hidden name for password managers.
 */
export function LoginForm(props: { title: string; label: string; username: string; help: ComponentChildren; login: (secret: string) => Promise<void>; onIn: () => void }) {
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await props.login(secret);
      setSecret('');
      props.onIn();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form onSubmit={(e) => void submit(e)} aria-describedby="login-help">
        <h1>{props.title}</h1>
        <input type="text" name="username" autocomplete="username" value={props.username} hidden readOnly />
        <label for="secret">{props.label}</label>
        <input id="secret" name="secret" type="password" autocomplete="current-password" required value={secret} onInput={(e) => setSecret(e.currentTarget.value)} />
        <p id="login-help" class="hint">
          {props.help}
        </p>
        <Feedback error={error} note={null} />
        <button type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
