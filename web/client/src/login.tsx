import { LoginForm } from '../../src/login-form';
import { login } from './api';

/** The login form, when the dashboard has a password (ui.password / --ui-password-file). */
export function Login({ onIn }: { onIn: () => void }) {
  return (
    <LoginForm
      title="polytun client"
      label="Password"
      username="polytun-client"
      help={
        <>
          The first line of the client's <code>--ui-password-file</code> (or <code>ui.password</code> in its config).
        </>
      }
      login={login}
      onIn={onIn}
    />
  );
}
