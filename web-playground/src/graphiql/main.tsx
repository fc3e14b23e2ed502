// GraphiQL, bundled (Monaco's workers included): nothing is fetched from a CDN. The header
// editor starts with the token the live editor stored for the signed-in user, and
// subscriptions run over graphql-ws with that token in connection_init.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createClient } from 'graphql-ws';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { loadSession, wsUrl } from '../client/session';

const session = loadSession();
const headers = session
  ? JSON.stringify({ Authorization: `Bearer ${session.accessToken}` }, null, 2)
  : '{}';

const wsClient = createClient({
  url: wsUrl('/graphql'),
  // Read at each (re)connect, so a token the editor refreshed meanwhile is used.
  connectionParams: () => {
    const current = loadSession();
    return current ? { authorization: `Bearer ${current.accessToken}` } : {};
  },
});

const fetcher = createGraphiQLFetcher({ url: '/graphql', wsClient });

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
