// GraphiQL as the binary serves it, with every request that is not to the server blocked.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { launchBrowser, resultsDir, signedInContext, startServer, until, watchErrors } from './harness.mjs';

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

async function offlineGraphiQL(auth, query) {
  const context = await signedInContext(browser, auth);
  const blocked = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(server.url)) return route.continue();
    blocked.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  const errors = watchErrors(page, 'graphiql');
  await page.goto(`${server.url}/graphiql?query=${encodeURIComponent(query)}`);
  await page.locator('.graphiql-container').waitFor({ timeout: 30_000 });
  // Monaco is up once the operation shows in the query editor.
  const start = query.split(' ')[1];
  await until('the query editor', async () =>
    (await page.locator('.graphiql-query-editor .view-lines').innerText()).includes(start), 30_000);
  return { context, page, errors, blocked };
}

// Monaco draws spaces as no-break spaces.
const result = async (page) => (await page.locator('.result-window').innerText()).replace(/\u00a0/g, ' ');

test('GraphiQL loads offline, queries with the token, and receives a subscription event', async () => {
  const grace = await server.signUp('grace');
  const { project } = await server.gql(
    'mutation { project: createProject(input: { title: "Explored" }) { id } }',
    {},
    grace.accessToken,
  ).then((d) => ({ project: d.project.id }));

  // A query, with the header editor prefilled with the signed-in user's token.
  const first = await offlineGraphiQL(grace, 'query Me { me { username } }');
  await first.page.getByRole('button', { name: 'Headers' }).click();
  await until('the token in the header editor', async () =>
    (await first.page.locator('.graphiql-editor-tool').innerText()).replace(/\u00a0/g, ' ').includes(grace.accessToken.slice(0, 24)),
  );
  await first.page.locator('.graphiql-execute-button').click();
  await until('the answer to the query', async () => {
    const text = await result(first.page);
    if (process.env.TEST_LOG) console.log('result:', text);
    return text.includes('"username": "grace"');
  }, 30_000);

  await first.page.screenshot({ path: join(resultsDir, 'graphiql.png') });
  assert.deepEqual(first.errors, []);
  await first.context.close();

  // A subscription over graphql-ws (token in connection_init): a chat message arrives.
  const sub = await offlineGraphiQL(
    grace,
    `subscription Chat { projectEvents(projectId: "${project}") { __typename ... on MessagePosted { message { text } } } }`,
  );
  await sub.page.locator('.graphiql-execute-button').click();
  let sentAt = 0;
  await until('the subscription to start', async () => {
    // Until the subscription is live a message may pass unseen: send again now and then.
    if (Date.now() - sentAt < 1_000) return (await result(sub.page)).includes('hello from the test');
    sentAt = Date.now();
    await server.gql(
      'mutation($p: ID!) { sendMessage(projectId: $p, text: "hello from the test") { id } }',
      { p: project },
      grace.accessToken,
    );
    return (await result(sub.page)).includes('hello from the test');
  }, 30_000);
  await sub.page.screenshot({ path: join(resultsDir, 'graphiql-subscription.png') });
  // The docs explorer shows the SDL's descriptions (read by the standard introspection query).
  await sub.page.getByRole('button', { name: /documentation explorer/i }).click();
  await sub.page.locator('.graphiql-doc-explorer').getByText('Query', { exact: true }).first().click();
  await until('the schema in the docs explorer', () => sub.page.getByText('The signed-in user.').first().isVisible(), 30_000);
  await sub.page.screenshot({ path: join(resultsDir, 'graphiql-docs.png') });

  assert.deepEqual(sub.errors, []);
  await sub.context.close();
});
