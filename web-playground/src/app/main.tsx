import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Api } from '../client/api';
import { App, ErrorBoundary } from './App';
import './styles.css';

const api = new Api('/graphql');
const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <ErrorBoundary>
        <App api={api} />
      </ErrorBoundary>
    </StrictMode>,
  );
}
