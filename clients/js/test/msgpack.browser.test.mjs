// MessagePack in headless Chromium: a page that imports /client.js with `format: 'msgpack'`
// (the browser's own WebSocket, subprotocol switchboard.v1.msgpack, binaryType arraybuffer)
// exchanges room messages with a JSON client in Node, bytes included: the page's Uint8Array
// reaches the JSON client as {"$bytes": base64}, and the JSON client's bytes reach the page as
// a Uint8Array.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Server, WAIT, client, launchBrowser, next } from './helpers.mjs';

let server;
let browser;
const clients = [];

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await server?.stop();
});

test('a page speaks MessagePack with the browser WebSocket, bytes included', async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(`${server.http}/health`);
  const plain = client(server.url, { userId: 'plain' });
  clients.push(plain);
  await plain.connect();
  await plain.room('r').join();

  const fromPage = next(plain, 'message');
  await page.evaluate(async (url) => {
    const { SwitchboardClient } = await import('/client.js');
    const state = { received: [] };
    window.state = state;
    const client = new SwitchboardClient({ url, userId: 'page', format: 'msgpack' });
    client.on('message', (frame) => {
      const content = frame.payload.content;
      state.received.push({ bytes: content instanceof Uint8Array, values: Array.from(content) });
    });
    await client.connect();
    await client.room('r').join();
    await client.request('message', { room: 'r', content: new Uint8Array([1, 2, 250]) });
  }, server.url);
  const message = await fromPage;
  assert.equal(message.userId, 'page');
  assert.deepEqual(message.payload.content, { $bytes: 'AQL6' });

  plain.room('r').send(new Uint8Array([9, 8, 7]));
  await page.waitForFunction(() => window.state.received.length > 0, null, { timeout: WAIT });
  const state = await page.evaluate(() => window.state);
  assert.deepEqual(state.received, [{ bytes: true, values: [9, 8, 7] }]);
  assert.deepEqual(errors, []);
});
