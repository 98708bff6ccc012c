// The SSE fallback in headless Chromium: a page whose WebSocket can never open (the page
// replaces `window.WebSocket` with one that fails, as a proxy that refuses upgrades would make
// it) loads `/client.js`, which falls back to SSE by itself and says so in a `transport` event;
// the page then chats in a room with a Node.js client on a WebSocket, both ways. The page comes
// from another server (another origin) that the chat server's allowlist names, so the stream
// and the POSTs (preflighted: the session header) pass the CORS checks for real.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  BlockedWebSocket,
  Server,
  WAIT,
  client,
  launchBrowser,
  next,
  within,
} from './helpers.mjs';

let pages;
let server;
let browser;
const clients = [];

before(async () => {
  pages = await Server.start();
  server = await Server.start({ args: ['--allowed-origins', pages.http] });
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await server?.stop();
  await pages?.stop();
});

test('a page without WebSockets falls back to SSE and chats both ways', async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(`${pages.http}/health`);
  await page.evaluate(`window.WebSocket = ${BlockedWebSocket};`);
  await within(
    page.evaluate(async (url) => {
      const { SwitchboardClient } = await import('/client.js');
      const state = { transports: [], received: [] };
      window.state = state;
      const client = new SwitchboardClient({ url, userId: 'page' });
      window.client = client;
      client.on('transport', (event) => state.transports.push(event));
      client.on('message', (frame) => state.received.push(frame.payload.content));
      await client.connect();
      state.transport = client.transport;
      await client.room('general').join();
    }, server.url),
    'the page to connect and join',
  );

  const bob = client(server.url, { userId: 'bob' });
  clients.push(bob);
  await bob.connect();
  await bob.room('general').join();
  const fromPage = next(bob, 'message');
  await page.evaluate(() => window.client.room('general').send('hello from the page'));
  const message = await fromPage;
  assert.equal(message.userId, 'page');
  assert.equal(message.payload.content, 'hello from the page');

  await bob.request('message', { room: 'general', content: 'hello page' });
  await page.waitForFunction(() => window.state.received.length > 0, null, { timeout: WAIT });
  const state = await page.evaluate(() => window.state);
  assert.equal(state.transport, 'sse');
  assert.equal(state.transports.length, 1);
  assert.equal(state.transports[0].name, 'sse');
  assert.deepEqual(state.received, ['hello page']);
  assert.deepEqual(errors, []);
});
