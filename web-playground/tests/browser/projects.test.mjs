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

  // Forking the public project gives the guest a project of their own.
  await guestPage.goto(server.url);
  await guestPage.getByTestId('project-row').filter({ hasText: 'Open Garden' }).first().getByRole('button', { name: 'Fork' }).click();
  await guestPage.waitForURL((url) => url.pathname.startsWith('/p/') && !url.pathname.endsWith(open));
  await guestPage.getByRole('tab', { name: 'Members' }).waitFor();

  assert.deepEqual(await guestPage.getByTestId('notice').allTextContents(), []);
  assert.deepEqual(errors, []);
  await guestCtx.close();
  await ownerCtx.close();
});
