// The /demo chat in headless Chromium against the real server: two people join the same room,
// see each other in the member list with their presence, one types and sends, the other sees
// the typing indicator and the message.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Server, WAIT, launchBrowser, screenshot } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await Server.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page in its own browser context (its own tab visibility), logged in as `name`. */
async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  const response = await page.goto(`${server.http}/demo`);
  assert.equal(response.status(), 200);
  await page.fill('#name', name);
  await page.click('#enter');
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator(`#members li[data-user="${name}"]`).waitFor();
  return { page, errors };
}

test('two people chat in /demo with presence and a typing indicator', async () => {
  const alice = await person('alice');
  const bob = await person('bob');
  assert.equal(await bob.page.locator('#room-title').textContent(), '# general');

  await alice.page.locator('#members li[data-user="bob"][data-status="online"]').waitFor();
  await bob.page.locator('#members li[data-user="alice"][data-status="online"]').waitFor();
  await alice.page.locator('#messages li.system', { hasText: 'bob joined' }).waitFor();

  await alice.page.locator('#text').pressSequentially('Hello from alice');
  await bob.page.locator('#typing', { hasText: 'alice is typing…' }).waitFor();
  await alice.page.click('#send');
  const received = bob.page.locator('#messages li', { hasText: 'Hello from alice' });
  await received.waitFor();
  assert.equal(await received.locator('.from').textContent(), 'alice');
  await bob.page.locator('#typing:empty').waitFor();

  await bob.page.fill('#text', 'Hi alice! Lunch at noon?');
  await bob.page.click('#send');
  await alice.page.locator('#messages li', { hasText: 'Lunch at noon?' }).waitFor();

  await alice.page.selectOption('#status', 'away');
  await bob.page.locator('#members li[data-user="alice"][data-status="away"]').waitFor();
  await alice.page.locator('#text').pressSequentially('Sure');
  await bob.page.locator('#typing', { hasText: 'alice is typing…' }).waitFor();
  await screenshot(bob.page, 'demo');

  const members = await bob.page.locator('#members li').evaluateAll((items) =>
    items.map((li) => [li.dataset.user, li.dataset.status]),
  );
  assert.deepEqual(members, [
    ['alice', 'away'],
    ['bob', 'online'],
  ]);
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});
