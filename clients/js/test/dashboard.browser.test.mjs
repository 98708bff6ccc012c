// The /dashboard page in headless Chromium against the real server, to the page's contract:
// elements [data-stat="connections"], [data-stat="rooms"], [data-stat="onlineUsers"] and
// [data-stat="messagesIn"] whose text is the current number, refreshed at least every second.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Server, WAIT, client, launchBrowser, screenshot } from './helpers.mjs';

const STATS = ['connections', 'rooms', 'onlineUsers', 'messagesIn'];

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

test('the dashboard shows the live counters and they rise with new connections', async () => {
  const served = await fetch(`${server.http}/dashboard`);
  assert.equal(served.status, 200, 'GET /dashboard must serve the dashboard page');
  const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  page.setDefaultTimeout(WAIT);
  const response = await page.goto(`${server.http}/dashboard`);
  assert.equal(response.status(), 200, 'GET /dashboard');
  for (const stat of STATS) {
    await page.locator(`[data-stat="${stat}"]`).waitFor();
  }
  const read = async (stat) => {
    const text = await page.locator(`[data-stat="${stat}"]`).textContent();
    const value = Number(text.replace(/[^\d]/g, ''));
    assert.ok(Number.isFinite(value) && /\d/.test(text), `${stat} shows ${JSON.stringify(text)}`);
    return value;
  };
  const connections = await read('connections');
  const messagesIn = await read('messagesIn');

  for (const name of ['dash-a', 'dash-b']) {
    const c = client(server.url, { userId: name });
    clients.push(c);
    await c.connect();
    await c.room('ops').join();
  }
  const shows = (stat, atLeast) =>
    page.waitForFunction(
      ([name, value]) => {
        const text = document.querySelector(`[data-stat="${name}"]`)?.textContent ?? '';
        return Number(text.replace(/[^\d]/g, '')) >= value;
      },
      [stat, atLeast],
      { timeout: WAIT },
    );
  await shows('connections', connections + 2);
  await shows('onlineUsers', 2);
  await shows('rooms', 1);
  await shows('messagesIn', messagesIn + 2);
  await screenshot(page, 'dashboard');
});
