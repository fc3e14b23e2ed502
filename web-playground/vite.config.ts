import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// Two pages, one build: the live editor (index.html, also the SPA fallback) and GraphiQL.
// The output in dist/ is committed and embedded in the `codecrafter` binary; CI rebuilds it and
// fails when it differs, so the build must be deterministic (content hashes, no timestamps).
export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      input: {
        editor: resolve(import.meta.dirname, 'index.html'),
        graphiql: resolve(import.meta.dirname, 'graphiql.html'),
      },
    },
  },
  worker: { format: 'es' },
  server: {
    // `npm run dev` next to `cargo run`: the API is proxied, so the page stays same-origin.
    proxy: { '/graphql': { target: 'http://127.0.0.1:8080', ws: true } },
  },
  test: {
    include: ['tests/unit/**/*.test.ts'],
    environment: 'node',
  },
});
