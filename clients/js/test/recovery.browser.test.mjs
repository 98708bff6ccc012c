// Recovery in headless Chromium: the /demo chat page goes offline (DevTools network emulation),
// another client sends messages, the page comes back online and shows the missed messages,
// each once and in order, and its own message only once.
//
// What the emulation does to an open WebSocket (checked in Chromium 156): nothing visible. The
// socket stays open, outgoing frames still reach the server, and incoming frames are held and
// delivered when the page is back online; only new connections fail. A page that kept its
// socket would therefore show the messages without any recovery. It is the client that drops
// the socket, on the browser's `offline` event (as it must: on a real network loss the socket
// can hang until the heartbeat notices), and the server then removes the page's connection
// (Bob sees Alice leave) before anything is sent. So what the page shows afterwards came through
// a new connection that rejoined with `since` and was replayed, nothing else.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Server, WAIT, client, launchBrowser, next, screenshot } from './helpers.mjs';

let server;
let browser;
const clients = [];

before(async () => {
  server = await Server.start({ args: ['--rate-limit', '0'] });
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await server?.stop();
});

/** The network conditions of `page`'s tab, through the DevTools protocol. */
async function network(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  return (offline) =>
    cdp.send('Network.emulateNetworkConditions', {
      offline,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: -1,
    });
}

/** The texts of the chat messages the page shows, in order (system lines left out). */
function shown(page) {
  return page.locator('#messages li:not(.system) .text').allTextContents();
}

test('a page that goes offline shows what it missed once it is back online', async () => {
  const page = await browser.newPage({ viewport: { width: 1100, height: 600 } });
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  await page.goto(`${server.http}/demo`);
  await page.fill('#name', 'alice');
  await page.click('#enter');
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#members li[data-user="alice"]').waitFor();

  const bob = client(server.url, { userId: 'bob' });
  clients.push(bob);
  await bob.connect();
  await bob.room('general').join();
  await bob.request('message', { room: 'general', content: 'before' });
  await page.locator('#messages li', { hasText: 'before' }).waitFor();
  const mine = next(bob, 'message', (f) => f.payload.content === 'mine');
  await page.fill('#text', 'mine');
  await page.click('#send');
  await mine;

  const setOffline = await network(page);
  const aliceGone = next(bob, 'user_left', (f) => f.userId === 'alice');
  await setOffline(true);
  await page.locator('#conn[data-state="waiting"]').waitFor();
  await aliceGone;
  for (const text of ['missed 1', 'missed 2', 'missed 3']) {
    await bob.request('message', { room: 'general', content: text });
  }
  assert.deepEqual(await shown(page), ['before', 'mine'], 'nothing arrives while offline');

  const aliceBack = next(bob, 'user_joined', (f) => f.userId === 'alice');
  await setOffline(false);
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#messages li', { hasText: 'missed 3' }).waitFor();
  await aliceBack;
  // A message sent after the replay: once the page shows it, everything before it is there.
  await bob.request('message', { room: 'general', content: 'live' });
  await page.locator('#messages li', { hasText: 'live' }).waitFor();
  const expected = ['before', 'mine', 'missed 1', 'missed 2', 'missed 3', 'live'];
  assert.deepEqual(await shown(page), expected, 'each once, in order, its own not replayed');
  assert.equal(await page.locator('#messages li.system', { hasText: 'may be missing' }).count(), 0);
  await screenshot(page, 'recovery');
  assert.deepEqual(errors, []);
});
