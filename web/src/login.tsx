import { login } from './api';
import { LoginForm } from './login-form';

/** The login form: the admin token (DATA_DIR/admin.token, printed at the first start). */
export function Login({ onIn }: { onIn: () => void }) {
  return (
    <LoginForm
      title="polytun server"
      label="Admin token"
      // For password managers: the token belongs to no user name, so one fixed hidden name.
      username="polytun-admin"
      help={
        <>
          The token is in <code>DATA_DIR/admin.token</code> (printed once when the server first started).
        </>
      }
      login={(token) => login(token.trim())}
      onIn={onIn}
    />
  );
}
