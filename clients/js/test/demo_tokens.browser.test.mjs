// The /demo chat in headless Chromium with tokens from the example backend (examples/backend):
// `?tokenUrl=…&loginUrl=…` makes the page log in at the backend (another origin, answering
// CORS) and take its tokens from the client's getToken. The backend's tokens live 4 s and the
// server closes an expired connection 2 s after `exp`: the page keeps its one WebSocket, renews
// its token on `token_expiring`, and shows a message sent after its first token's expiry.
//
// A witness connection whose token expires with the page's first one is closed by the server
// with 1008 "token expired": the expiry sweep has gone past it when the message is sent.
//
// With `?loginUrl=…` alone and the backend as the server's connect proxy, the page is known by
// the session cookie its WebSocket upgrade carries.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Backend,
  Server,
  WAIT,
  client,
  freePort,
  launchBrowser,
  next,
  screenshot,
  signToken,
} from './helpers.mjs';

const SECRET = 'demo-tokens-secret-0123456789abcdef';

let server;
let backend;
let browser;
const clients = [];

before(async () => {
  server = await Server.start({ args: ['--jwt-secret', SECRET, '--token-expiry-grace', '2s'] });
  backend = await Backend.start({
    BACKEND_JWT_SECRET: SECRET,
    BACKEND_WEBHOOK_SECRET: 'unused-here',
    BACKEND_TOKEN_TTL: '4',
    BACKEND_ALLOWED_ORIGINS: server.http,
  });
  browser = await launchBrowser();
});

after(async () => {
  for (const made of clients) made.close();
  await browser?.close();
  await backend?.stop();
  await server?.stop();
});

test('the demo keeps chatting across a token expiry because getToken is called', async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket));

  const query = new URLSearchParams({ tokenUrl: `${backend.http}/token`, loginUrl: `${backend.http}/login` });
  await page.goto(`${server.http}/demo?${query}`);
  await page.fill('#name', 'alice');
  await page.click('#enter');
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#members li[data-user="alice"]').waitFor();
  const first = await backend.line('token', (line) => line.user === 'alice');

  const witness = client(server.url, { token: signToken(SECRET, { sub: 'witness', exp: first.exp }) });
  clients.push(witness);
  // Waited for from now on, so that a slow step below cannot make the wait miss the close.
  const closed = next(witness, 'closed');
  await witness.connect();
  const bob = client(server.url, { getToken: backend.tokens(await backend.login('bob')) });
  clients.push(bob);
  await bob.connect();
  await bob.room('general').join();

  // The second token comes from getToken on `token_expiring`, over the same connection.
  await page.locator('#token[data-count="2"]').waitFor();
  const { code, reason } = await closed;
  assert.deepEqual([code, reason], [1008, 'token expired']);
  await bob.request('message', { room: 'general', content: 'after the expiry' });
  const received = page.locator('#messages li', { hasText: 'after the expiry' });
  await received.waitFor();
  assert.equal(await received.locator('.from').textContent(), 'bob');
  await screenshot(page, 'demo_tokens');

  assert.equal(sockets.length, 1, 'the page kept its one WebSocket');
  assert.equal(sockets[0].isClosed(), false);
  assert.equal(await page.locator('#conn').getAttribute('data-state'), 'connected');
  assert.equal(await page.locator('#errors').textContent(), '', 'the typing channel was granted');
  assert.deepEqual(errors, []);
});

test('with loginUrl alone the connect proxy knows the demo by its session cookie', async () => {
  // The backend must allow the page's origin and the server must know the backend's URL.
  const port = await freePort();
  const cookieBackend = await Backend.start({
    BACKEND_JWT_SECRET: SECRET,
    BACKEND_WEBHOOK_SECRET: 'unused-here',
    BACKEND_ALLOWED_ORIGINS: `http://127.0.0.1:${port}`,
  });
  try {
    const proxied = await Server.start({
      port,
      args: ['--proxy-connect-url', `${cookieBackend.http}/proxy/connect`],
    });
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(WAIT);
      const errors = [];
      page.on('pageerror', (error) => errors.push(error));
      const query = new URLSearchParams({ loginUrl: `${cookieBackend.http}/login` });
      await page.goto(`${proxied.http}/demo?${query}`);
      await page.fill('#name', 'carol');
      await page.click('#enter');
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('#members li[data-user="carol"]').waitFor();
      const admitted = await cookieBackend.line('connect', (line) => line.allowed);
      assert.deepEqual([admitted.user, admitted.by], ['carol', 'cookie']);
      assert.equal(await page.locator('#me').textContent(), 'carol');
      assert.equal(await page.locator('#errors').textContent(), '');
      assert.equal(await page.locator('#token').isHidden(), true);
      assert.deepEqual(errors, []);
      await page.close();
    } finally {
      await proxied.stop();
    }
  } finally {
    await cookieBackend.stop();
  }
});
