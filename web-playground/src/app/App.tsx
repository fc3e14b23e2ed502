// The live editor's shell: sign-in, the project list, a project; errors as readable notices.
import { Component, useCallback, useEffect, useState, type ReactNode } from 'react';
import type { Api } from '../client/api';
import { describeError } from '../client/errors';
import type { Session } from '../client/session';
import { AcceptInviteDocument } from '../generated/graphql';
import { AuthForm } from './Auth';
import { ProjectList } from './Projects';
import { ProjectView } from './ProjectView';

export type Notify = (error: unknown) => void;

export class ErrorBoundary extends Component<{ children: ReactNode }, { failed: boolean }> {
  override state = { failed: false };

  static getDerivedStateFromError(): { failed: boolean } {
    return { failed: true };
  }

  override render(): ReactNode {
    if (this.state.failed) {
      return (
        <main className="fatal" role="alert">
          <h1>Something went wrong on this page.</h1>
          <p>Your edits are kept on the server as they were sent. Reload the page to continue.</p>
          <button onClick={() => location.reload()}>Reload</button>
        </main>
      );
    }
    return this.props.children;
  }
}

function usePath(): [string, (path: string) => void] {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  const navigate = useCallback((next: string) => {
    history.pushState(null, '', next);
    setPath(next);
  }, []);
  return [path, navigate];
}

export function App({ api }: { api: Api }) {
  const [session, setSession] = useState<Session | null>(api.current);
  const [path, navigate] = usePath();
  const [notices, setNotices] = useState<{ id: number; text: string }[]>([]);

  useEffect(() => api.onSession(setSession), [api]);

  const notify: Notify = useCallback((error: unknown) => {
    const text = describeError(error);
    const id = Date.now() + Math.random();
    setNotices((list) => [...list.slice(-3), { id, text }]);
    setTimeout(() => setNotices((list) => list.filter((n) => n.id !== id)), 8_000);
  }, []);

  const invite = /^\/invite\/([^/]+)$/.exec(path)?.[1];
  const projectId = /^\/p\/([^/]+)/.exec(path)?.[1];

  useEffect(() => {
    if (!session || !invite) return;
    api
      .request(AcceptInviteDocument, { token: decodeURIComponent(invite) })
      .then((data) => navigate(`/p/${data.acceptInvite.id}`))
      .catch((error: unknown) => {
        notify(error);
        navigate('/');
      });
  }, [api, session, invite, navigate, notify]);

  let body: ReactNode;
  if (!session) {
    body = <AuthForm api={api} notify={notify} inviting={Boolean(invite)} />;
  } else if (invite) {
    body = <p className="centered">Joining the project…</p>;
  } else if (projectId) {
    body = <ProjectView key={projectId} api={api} projectId={projectId} notify={notify} navigate={navigate} />;
  } else {
    body = <ProjectList api={api} notify={notify} navigate={navigate} />;
  }

  return (
    <div className="app">
      <header className="topbar">
        <a
          href="/"
          className="brand"
          onClick={(event) => {
            event.preventDefault();
            navigate('/');
          }}
        >
          CodeCrafter
        </a>
        <nav>
          <a href="/graphiql">GraphiQL</a>
          {session && (
            <>
              <span className="whoami" data-testid="whoami">
                {session.user.displayName || session.user.username}
              </span>
              <button onClick={() => void api.signOut().then(() => navigate('/'))}>Sign out</button>
            </>
          )}
        </nav>
      </header>
      <div className="notices" aria-live="assertive">
        {notices.map((notice) => (
          <div key={notice.id} className="notice" role="alert" data-testid="notice">
            {notice.text}
            <button aria-label="Dismiss" onClick={() => setNotices((list) => list.filter((n) => n.id !== notice.id))}>
              ×
            </button>
          </div>
        ))}
      </div>
      {body}
    </div>
  );
}
