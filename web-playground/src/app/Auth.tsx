import { useState, type FormEvent } from 'react';
import type { Api } from '../client/api';
import { ApiError } from '../client/errors';
import type { Notify } from './App';

export function AuthForm({ api, notify, inviting }: { api: Api; notify: Notify; inviting: boolean }) {
  const [mode, setMode] = useState<'signIn' | 'signUp'>('signIn');
  const [login, setLogin] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    try {
      if (mode === 'signIn') await api.signIn({ login, password });
      else await api.signUp({ username: login, email, password });
    } catch (error) {
      notify(
        error instanceof ApiError && error.code === 'UNAUTHENTICATED'
          ? new ApiError(error.message, error.code, { ...error.extensions, signingIn: true })
          : error,
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="auth">
      <h1>{mode === 'signIn' ? 'Sign in' : 'Create an account'}</h1>
      {inviting && <p>Sign in or create an account to join the project you were invited to.</p>}
      <form onSubmit={(event) => void submit(event)}>
        <label>
          {mode === 'signIn' ? 'Username or email' : 'Username'}
          <input name="login" value={login} onChange={(e) => setLogin(e.target.value)} autoComplete="username" required />
        </label>
        {mode === 'signUp' && (
          <label>
            Email
            <input name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
          </label>
        )}
        <label>
          Password
          <input
            name="password"
            type="password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            autoComplete={mode === 'signIn' ? 'current-password' : 'new-password'}
            required
          />
        </label>
        <button type="submit" disabled={busy}>
          {mode === 'signIn' ? 'Sign in' : 'Sign up'}
        </button>
      </form>
      <button className="link" onClick={() => setMode(mode === 'signIn' ? 'signUp' : 'signIn')}>
        {mode === 'signIn' ? 'No account yet? Sign up' : 'Have an account? Sign in'}
      </button>
    </main>
  );
}
