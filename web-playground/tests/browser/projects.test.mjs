// Finding, joining, forking and sharing projects; chat with history.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, signedInContext, startServer, until, watchErrors } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('join a public project, accept an invite link, page the chat, fork', async () => {
  const owner = await server.signUp('olga');
  const guest = await server.signUp('gus');
  const create = async (title, isPublic) =>
    (await server.gql(
      'mutation($i: CreateProjectInput!) { createProject(input: $i) { id } }',
      { i: { title, isPublic } },
      owner.accessToken,
    )).createProject.id;
  const open = await create('Open Garden', true);
  const secret = await create('Secret Plans', false);
  for (let i = 1; i <= 35; i++) {
    await server.gql('mutation($p: ID!, $t: String!) { sendMessage(projectId: $p, text: $t) { id } }', { p: secret, t: `note ${i}` }, owner.accessToken);
  }

  // A wrong password is said in plain words.
  const stranger = await browser.newContext();
  const strangerPage = await stranger.newPage();
  await strangerPage.goto(server.url);
  await strangerPage.getByLabel('Username or email').fill('gus');
  await strangerPage.getByLabel('Password').fill('not the password');
  await strangerPage.getByRole('button', { name: 'Sign in' }).click();
  await strangerPage.getByTestId('notice').filter({ hasText: 'do not match' }).waitFor();
  await stranger.close();

  // The list pages: 20 at a time, more on demand.
  for (let i = 1; i <= 21; i++) await create(`Bulk ${i}`, true);
  const lister = await signedInContext(browser, guest);
  const listPage = await lister.newPage();
  await listPage.goto(server.url);
  await listPage.getByLabel('Search').fill('Bulk');
  await until('the first page', async () => (await listPage.getByTestId('project-row').count()) === 20);
  await listPage.getByRole('heading', { name: 'Projects (21)' }).waitFor();
  await listPage.getByRole('button', { name: 'Show more' }).click();
  await until('the second page', async () => (await listPage.getByTestId('project-row').count()) === 21);
  assert.equal(await listPage.getByRole('button', { name: 'Show more' }).count(), 0);
  await lister.close();

  // The guest finds the public project by searching, and joins it as a viewer.
  const guestCtx = await signedInContext(browser, guest);
  const guestPage = await guestCtx.newPage();
  const errors = watchErrors(guestPage, 'gus');
  await guestPage.goto(server.url);
  await guestPage.getByLabel('Search').fill('Garden');
  const row = guestPage.getByTestId('project-row').filter({ hasText: 'Open Garden' });
  await row.waitFor();
  assert.equal(await guestPage.getByTestId('project-row').count(), 1);
  await row.getByRole('button', { name: 'Join' }).click();
  await guestPage.waitForURL(`${server.url}/p/${open}`);
  await guestPage.getByText('Viewers cannot run code.').waitFor();

  // The owner makes an invite link to the private project in its members panel.
  const ownerCtx = await signedInContext(browser, owner);
  const ownerPage = await ownerCtx.newPage();
  await ownerPage.goto(`${server.url}/p/${secret}`);
  await ownerPage.getByRole('tab', { name: 'Members' }).click();
  await ownerPage.getByRole('button', { name: /Create an invite link/ }).click();
  const link = await until('the invite link', async () => ownerPage.getByLabel('Invite link').inputValue());
  assert.match(link, /\/invite\//);
  // A second link, revoked at once, stops being listed.
  await ownerPage.getByRole('button', { name: /Create an invite link/ }).click();
  await until('two invites listed', async () => (await ownerPage.getByRole('button', { name: 'Revoke' }).count()) === 2);
  await ownerPage.getByRole('button', { name: 'Revoke' }).first().click();
  await until('one invite listed', async () => (await ownerPage.getByRole('button', { name: 'Revoke' }).count()) === 1);

  // The guest opens it and is in, as an editor.
  await guestPage.goto(link);
  await guestPage.waitForURL(`${server.url}/p/${secret}`);
  await guestPage.getByRole('heading', { name: 'Secret Plans' }).waitFor();
  assert.equal(await guestPage.getByText('Viewers cannot run code.').isVisible(), false);

  // The chat shows the latest page, then older messages on demand; a new message reaches the owner.
  await guestPage.getByRole('tab', { name: 'Chat' }).click();
  await until('the latest messages', async () => (await guestPage.locator('.messages li').count()) === 30);
  assert.ok(await guestPage.getByText('note 35', { exact: true }).isVisible());
  await guestPage.getByRole('button', { name: 'Older messages' }).click();
  await until('the older messages', async () => (await guestPage.locator('.messages li').count()) === 35);
  await guestPage.getByPlaceholder('Say something').fill('hello from gus');
  await guestPage.getByRole('button', { name: 'Send' }).click();
  await ownerPage.getByRole('tab', { name: 'Chat' }).click();
  await ownerPage.getByText('hello from gus').waitFor();

  // The owner makes the guest a viewer, then removes them.
  await ownerPage.getByRole('tab', { name: 'Members' }).click();
  await ownerPage.getByLabel('Role of gus').selectOption('VIEWER');
  await until('gus a viewer', async () => {
    const data = await server.gql('query($p: ID!) { project(id: $p) { viewerRole } }', { p: secret }, guest.accessToken);
    return data.project.viewerRole === 'VIEWER';
  });
  await ownerPage.locator('.members li', { hasText: '@gus' }).getByRole('button', { name: 'Remove' }).click();
  await until('gus gone from the members', async () => (await ownerPage.getByText('@gus').count()) === 0);

  // Forking the public project gives the guest a project of their own.
  await guestPage.goto(server.url);
  await guestPage.getByTestId('project-row').filter({ hasText: 'Open Garden' }).first().getByRole('button', { name: 'Fork' }).click();
  await guestPage.waitForURL((url) => url.pathname.startsWith('/p/') && !url.pathname.endsWith(open));
  await guestPage.getByRole('tab', { name: 'Members' }).waitFor();

  // The file tree: create, switch, rename, delete (names asked in dialogs).
  const files = guestPage.getByRole('navigation', { name: 'Files' });
  for (const name of ['one.py', 'two.py']) {
    guestPage.once('dialog', (dialog) => void dialog.accept(name));
    await guestPage.getByRole('button', { name: 'New file' }).click();
    await files.getByRole('button', { name, exact: true }).waitFor();
  }
  await files.getByRole('button', { name: 'one.py', exact: true }).click();
  await until('one.py open', async () => (await guestPage.locator('.cm-content').getAttribute('aria-label')) === 'Editor for one.py');
  guestPage.once('dialog', (dialog) => void dialog.accept('renamed.py'));
  await guestPage.getByRole('button', { name: 'Rename one.py' }).click();
  await files.getByRole('button', { name: 'renamed.py', exact: true }).waitFor();
  guestPage.once('dialog', (dialog) => void dialog.accept());
  await guestPage.getByRole('button', { name: 'Delete two.py' }).click();
  await until('two.py gone', async () => (await files.getByRole('button', { name: 'two.py', exact: true }).count()) === 0);
  assert.deepEqual(await files.locator('button.file').allTextContents(), ['renamed.py']);

  assert.deepEqual(await guestPage.getByTestId('notice').allTextContents(), []);
  assert.deepEqual(errors, []);
  await guestCtx.close();
  await ownerCtx.close();
});
