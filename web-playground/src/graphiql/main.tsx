// GraphiQL, bundled (Monaco's workers included): nothing is fetched from a CDN. The header
// editor starts with the token the live editor stored for the signed-in user, and
// subscriptions run over graphql-ws with that token in connection_init.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import { createGraphiQLFetcher, type Fetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createClient } from 'graphql-ws';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { loadSession, wsUrl } from '../client/session';

const session = loadSession();
const headers = session
  ? JSON.stringify({ Authorization: `Bearer ${session.accessToken}` }, null, 2)
  : '{}';

// The Authorization the header editor holds (it applies to subscriptions too): sent in
// connection_init; the socket is reopened when it changes.
let editorAuthorization: string | undefined;
let socketAuthorization: string | undefined;
const currentAuthorization = () => {
  if (editorAuthorization !== undefined) return editorAuthorization;
  // Nothing in the editor: the signed-in user's token, read at each (re)connect so a token
  // the live editor refreshed meanwhile is used.
  const current = loadSession();
  return current ? `Bearer ${current.accessToken}` : '';
};

const wsClient = createClient({
  url: wsUrl('/graphql'),
  connectionParams: () => {
    socketAuthorization = currentAuthorization();
    return socketAuthorization ? { authorization: socketAuthorization } : {};
  },
});

const httpAndWs = createGraphiQLFetcher({ url: '/graphql', wsClient });
const fetcher: Fetcher = (params, options) => {
  const headers = options?.headers ?? {};
  const entry = Object.entries(headers).find(([name]) => name.toLowerCase() === 'authorization');
  // What the editor says, exactly: no Authorization there means anonymous.
  if (options?.headers) editorAuthorization = typeof entry?.[1] === 'string' ? entry[1] : '';
  if (socketAuthorization !== undefined && socketAuthorization !== currentAuthorization()) {
    wsClient.terminate();
  }
  return httpAndWs(params, options);
};

const defaultQuery = `# Welcome to CodeCrafter's API. ${
  session ? `Signed in as ${session.user.username}; the header editor holds your token.` : 'Sign in at / to get a token.'
}
# The Docs panel (book icon) shows every type and field.
query Me {
  me {
    username
    displayName
  }
  languages {
    language
    available
  }
}
`;

// `/graphiql?query=…` opens with that operation (shareable links).
const linked = new URLSearchParams(location.search).get('query') ?? undefined;

const root = document.getElementById('graphiql');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <GraphiQL
        fetcher={fetcher}
        defaultQuery={defaultQuery}
        initialQuery={linked}
        initialHeaders={headers}
        defaultHeaders={headers}
        shouldPersistHeaders={false}
      />
    </StrictMode>,
  );
}
