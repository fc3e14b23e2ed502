// Starts the real `codecrafter` binary on a free port with a fresh data directory, and
// Debian's Chromium through playwright-core (never a downloaded browser).
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const playground = resolve(here, '../..');
export const resultsDir = join(playground, 'test-results');
mkdirSync(resultsDir, { recursive: true });

function binary() {
  if (process.env.CODECRAFTER_BIN) return process.env.CODECRAFTER_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? resolve(playground, '../target');
  return join(target, 'debug', 'codecrafter');
}

// BIND=127.0.0.1:0 would not tell us the port: take a free one first.
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

export async function until(what, check, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startServer(env = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'codecrafter-browser-'));
  const child = spawn(binary(), ['serve'], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CODECRAFTER_DATA_DIR: dataDir,
      BIND: `127.0.0.1:${port}`,
      RUST_LOG: process.env.TEST_LOG ? 'info' : 'warn',
      // The tests set up their scenes (dozens of chat messages, projects) faster than a
      // person would; the budgets of a real deployment would refuse them.
      RATE_LIMIT_PER_SECOND: '10000',
      RATE_LIMIT_BURST: '100000',
      RATE_LIMIT_AUTH_BURST: '100000',
      RATE_LIMIT_WRITES_BURST: '100000',
      RATE_LIMIT_UPDATES_BURST: '100000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  let failed = null;
  child.once('error', (error) => (failed = error));
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  if (process.env.TEST_LOG) child.stderr.pipe(process.stderr);
  const url = `http://127.0.0.1:${port}`;
  await until('the server to be ready', async () => {
    if (failed) throw new Error(`cannot start ${binary()}: ${failed.message}`);
    if (child.exitCode !== null) throw new Error(`the server exited: ${log}`);
    return (await fetch(`${url}/readyz`)).ok;
  }, 60_000);

  async function gql(query, variables = {}, token) {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const body = await response.json();
    if (body.errors) throw new Error(`${query}: ${JSON.stringify(body.errors)}`);
    return body.data;
  }

  async function signUp(username) {
    const data = await gql(
      `mutation($input: SignUpInput!) { signUp(input: $input) {
        accessToken accessTokenExpiresAt refreshToken user { id username displayName } } }`,
      { input: { username, email: `${username}@example.com`, password: 'correct horse battery', displayName: username } },
    );
    return data.signUp;
  }

  return {
    url,
    gql,
    signUp,
    log: () => log,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-gpu',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** A browser context already signed in as `auth` (the session the editor keeps). */
export async function signedInContext(browser, auth, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, ...options });
  const session = JSON.stringify({
    accessToken: auth.accessToken,
    accessTokenExpiresAt: auth.accessTokenExpiresAt,
    refreshToken: auth.refreshToken,
    user: auth.user,
  });
  await context.addInitScript((value) => {
    if (!localStorage.getItem('codecrafter.session')) localStorage.setItem('codecrafter.session', value);
  }, session);
  return context;
}

/** Fails the test on any error the page shows or throws. */
export function watchErrors(page, name) {
  const errors = [];
  page.on('pageerror', (error) => errors.push(`${name}: ${error.message}`));
  return errors;
}
