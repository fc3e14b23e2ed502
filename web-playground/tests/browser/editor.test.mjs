// Two people editing one project in the live editor, in two browser contexts.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { launchBrowser, resultsDir, signedInContext, startServer, until, watchErrors } from './harness.mjs';

let server;
let browser;
// Short-lived access tokens, so the pages refresh them (and reopen their sockets) mid-test.
const TOKEN_TTL_SECS = 20;

before(async () => {
  server = await startServer({ ACCESS_TOKEN_TTL_SECS: String(TOKEN_TTL_SECS) });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const editorText = (page) => page.evaluate(() => window.codecrafterEditorText?.() ?? null);

let reader; // a page whose (refreshed) token the test borrows to read the server's copy

async function storedText(_token, projectId, path) {
  const token = await reader.evaluate(() => JSON.parse(localStorage.getItem('codecrafter.session')).accessToken);
  const data = await server.gql(
    'query($p: ID!, $path: String!) { file(projectId: $p, path: $path) { content } }',
    { p: projectId, path },
    token,
  );
  return data.file.content;
}

/** Both pages show the same text, equal to what the server stores. */
async function converged(pages, token, projectId, path, check = () => true) {
  let seen = '';
  try {
    return await until('both pages to converge with the server', async () => {
      const texts = await Promise.all(pages.map(editorText));
      const stored = await storedText(token, projectId, path);
      const states = await Promise.all(pages.map((p) => p.getByTestId('connection').innerText()));
      const notices = await Promise.all(pages.map((p) => p.getByTestId('notice').allTextContents()));
      seen = JSON.stringify({ texts, stored, states, notices });
      return texts.every((t) => t === stored) && check(stored) ? stored : false;
    }, 60_000); // generous: CI machines are shared
  } catch (error) {
    throw new Error(`${error.message}: ${seen}`);
  }
}

async function placeCursorAfter(page, marker) {
  await page.evaluate((m) => {
    const content = document.querySelector('.cm-content');
    const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.textContent.indexOf(m);
      if (at >= 0) {
        const range = document.createRange();
        range.setStart(node, at + m.length);
        range.collapse(true);
        const selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        return;
      }
    }
    throw new Error(`no ${m} in the editor`);
  }, marker);
  await page.locator('.cm-content').focus();
}

test('two people edit, see each other, run, go offline, and restore a version', async () => {
  // Ada signs up through the page and creates the project there.
  const ctxA = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const pageA = await ctxA.newPage();
  const errorsA = watchErrors(pageA, 'ada');
  reader = pageA;
  await pageA.goto(server.url);
  await pageA.getByRole('button', { name: 'No account yet? Sign up' }).click();
  await pageA.getByLabel('Username').fill('ada');
  await pageA.getByLabel('Email').fill('ada@example.com');
  await pageA.getByLabel('Password').fill('correct horse battery');
  await pageA.getByRole('button', { name: 'Sign up' }).click();
  await pageA.getByLabel('Title').fill('Pairing');
  await pageA.getByRole('button', { name: 'Create' }).click();
  await pageA.waitForURL(/\/p\//);
  const projectId = new URL(pageA.url()).pathname.split('/')[2];
  const ada = await pageA.evaluate(() => JSON.parse(localStorage.getItem('codecrafter.session')));

  // A file, made in the page.
  pageA.once('dialog', (dialog) => void dialog.accept('main.py'));
  await pageA.getByRole('button', { name: 'New file' }).click();
  await pageA.locator('.cm-content').waitFor();
  await pageA.locator('.cm-content').focus();
  await pageA.keyboard.type("# ADA\nprint('hello', 6 * 7)\n# BOB\n");

  // Bob is added by name in the members panel, then opens the project.
  const bob = await server.signUp('bob');
  await pageA.getByRole('tab', { name: 'Members' }).click();
  await pageA.getByLabel('Add by username').fill('bob');
  await pageA.getByRole('button', { name: 'Add', exact: true }).click();
  await until('bob in the members list', () => pageA.getByText('@bob').isVisible());

  const ctxB = await signedInContext(browser, bob);
  const pageB = await ctxB.newPage();
  const errorsB = watchErrors(pageB, 'bob');
  await pageB.goto(`${server.url}/p/${projectId}`);
  await pageB.locator('.cm-content').waitFor();
  await converged([pageA, pageB], ada.accessToken, projectId, 'main.py', (t) => t.includes('# BOB'));

  // Both type at once, 300 characters each, 20 ms apart, at different places.
  const adaText = 'a'.repeat(100) + 'b'.repeat(100) + 'c'.repeat(100);
  const bobText = 'x'.repeat(100) + 'y'.repeat(100) + 'z'.repeat(100);
  await placeCursorAfter(pageA, '# ADA');
  await placeCursorAfter(pageB, '# BOB');
  const typing = Promise.all([
    pageA.keyboard.type(adaText, { delay: 20 }),
    pageB.keyboard.type(bobText, { delay: 20 }),
  ]);
  // While they type, each sees that the other is typing.
  await until('ada typing, on bob\'s page', async () => (await pageB.getByTestId('presence').innerText()).includes('ada · typing'));
  await until('bob typing, on ada\'s page', async () => (await pageA.getByTestId('presence').innerText()).includes('bob · typing'));
  await typing;
  const together = await converged([pageA, pageB], ada.accessToken, projectId, 'main.py', (t) =>
    t.includes(`# ADA${adaText}`) && t.includes(`# BOB${bobText}`),
  );
  assert.equal(together, `# ADA${adaText}\nprint('hello', 6 * 7)\n# BOB${bobText}\n`);

  // Each sees the other's cursor, with the other's name.
  await until('bob\'s cursor on ada\'s page', () => pageA.locator('.cc-remote-name', { hasText: 'bob' }).isVisible());
  await until('ada\'s cursor on bob\'s page', () => pageB.locator('.cc-remote-name', { hasText: 'ada' }).isVisible());
  await pageA.screenshot({ path: join(resultsDir, 'editor-two-cursors.png') });
  await pageB.screenshot({ path: join(resultsDir, 'editor-two-cursors-bob.png') });

  // A Python run started on one page streams into both.
  await pageA.getByRole('tab', { name: 'Run' }).click();
  await pageA.getByTestId('run').click();
  for (const page of [pageA, pageB]) {
    await until('the run output on both pages', async () =>
      (await page.getByTestId('run-output').textContent())?.includes('hello 42'), 60_000);
    await until('the run to finish', async () => (await page.getByTestId('run-status').textContent()) === 'SUCCEEDED', 60_000);
  }

  // Ctrl+Enter in the editor runs the file, with what is typed as stdin; a run can be cancelled.
  await pageB.getByLabel('Input (stdin)').fill('ignored');
  await placeCursorAfter(pageB, '# BOB');
  // A new run shows (by its id: on a fast machine a run may be over before its status is seen).
  const previousRun = await pageB.getByTestId('run-view').getAttribute('data-run');
  await pageB.keyboard.press('Control+Enter');
  await until('bob\'s run to start', async () => (await pageB.getByTestId('run-view').getAttribute('data-run')) !== previousRun);
  await until('bob\'s run to finish', async () => (await pageB.getByTestId('run-status').textContent()) === 'SUCCEEDED', 60_000);
  const slow = await server.gql(
    'mutation($p: ID!) { runCode(projectId: $p, language: PYTHON, source: "import time\\nprint(1, flush=True)\\ntime.sleep(30)") { id } }',
    { p: projectId },
    await reader.evaluate(() => JSON.parse(localStorage.getItem('codecrafter.session')).accessToken),
  );
  await until('the slow run on ada\'s page', async () => {
    const [status, output] = [await pageA.getByTestId('run-status').textContent(), await pageA.getByTestId('run-output').textContent()];
    if (process.env.TEST_LOG) console.log('slow run:', status, JSON.stringify(output));
    return status === 'RUNNING' && output === '1\n';
  }, 60_000);
  await pageA.getByTestId('cancel-run').click();
  for (const page of [pageA, pageB]) {
    await until('the cancelled run on both pages', async () => (await page.getByTestId('run-status').textContent()) === 'CANCELLED', 30_000);
  }
  assert.ok(slow.runCode.id);

  // Bob goes offline and edits; Ada edits meanwhile; Bob comes back: both converge.
  await ctxB.setOffline(true);
  await until('bob\'s page to show it is offline', async () =>
    (await pageB.getByTestId('connection').getAttribute('data-state')) === 'offline');
  await placeCursorAfter(pageB, 'zzz');
  await pageB.keyboard.type(' offline-bob');
  await placeCursorAfter(pageA, 'ccc');
  await pageA.keyboard.type(' online-ada');
  await until('ada\'s edit stored', async () => (await storedText(ada.accessToken, projectId, 'main.py')).includes('online-ada'));
  assert.ok(!(await storedText(ada.accessToken, projectId, 'main.py')).includes('offline-bob'));
  await ctxB.setOffline(false);
  await converged([pageA, pageB], ada.accessToken, projectId, 'main.py', (t) =>
    t.includes('offline-bob') && t.includes('online-ada'),
  );

  // A version is created, the file changed, the version restored.
  await pageA.getByRole('tab', { name: 'Versions' }).click();
  await pageA.getByPlaceholder('Name this version').fill('before the change');
  await pageA.getByRole('button', { name: 'Save version' }).click();
  const saved = await storedText(ada.accessToken, projectId, 'main.py');
  const version = pageA.getByTestId('version').filter({ hasText: 'before the change' });
  await version.waitFor();
  await placeCursorAfter(pageA, 'online-ada');
  await pageA.keyboard.type(' to-be-undone');
  await converged([pageA, pageB], ada.accessToken, projectId, 'main.py', (t) => t.includes('to-be-undone'));
  await version.getByRole('button', { name: 'View' }).click();
  assert.equal(await pageA.getByTestId('version-content').textContent(), saved);
  await version.getByRole('button', { name: 'Restore' }).click();
  const restored = await converged([pageA, pageB], ada.accessToken, projectId, 'main.py', (t) => !t.includes('to-be-undone'));
  assert.equal(restored, saved);

  // The access tokens lived 20 s: the pages refreshed them (reopening their sockets) mid-test
  // and no edit was lost across it (every convergence above compared with the server).
  const adaNow = await pageA.evaluate(() => JSON.parse(localStorage.getItem('codecrafter.session')));
  assert.notEqual(adaNow.accessToken, ada.accessToken);
  assert.notEqual(adaNow.refreshToken, ada.refreshToken);

  // Nothing went wrong along the way, on either page.
  assert.deepEqual(await pageA.getByTestId('notice').allTextContents(), []);
  assert.deepEqual(await pageB.getByTestId('notice').allTextContents(), []);
  assert.deepEqual([...errorsA, ...errorsB], []);

  // Readable on a narrow window too.
  await pageB.setViewportSize({ width: 420, height: 800 });
  await pageB.screenshot({ path: join(resultsDir, 'editor-narrow.png'), fullPage: true });
  await ctxA.close();
  await ctxB.close();
});
