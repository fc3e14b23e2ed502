// The signed-in session, kept in localStorage so the editor and GraphiQL (and every tab)
// share one token. Key and shape are part of the page contract (GraphiQL reads it too).

export interface SessionUser {
  id: string;
  username: string;
  displayName: string;
}

export interface Session {
  accessToken: string;
  accessTokenExpiresAt: string;
  refreshToken: string;
  user: SessionUser;
}

export const SESSION_KEY = 'codecrafter.session';

export function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Partial<Session>;
    if (typeof parsed.accessToken !== 'string' || typeof parsed.refreshToken !== 'string' || !parsed.user) {
      return null;
    }
    return parsed as Session;
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (session) localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else localStorage.removeItem(SESSION_KEY);
}

/** Milliseconds from `now` until the access token should be refreshed: a third of its
 * lifetime (at most a minute) before it expires, so slow networks still make it. */
export function refreshDelay(session: Session, now: number, issuedAt: number): number {
  const expires = Date.parse(session.accessTokenExpiresAt);
  if (Number.isNaN(expires)) return 0;
  const lifetime = Math.max(0, expires - issuedAt);
  const margin = Math.min(60_000, lifetime / 3);
  return Math.max(0, expires - margin - now);
}

export function wsUrl(path = '/graphql'): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}
