// The /demo/doc shared editor in headless Chromium against the real server: two people open
// the same document, each types, each sees the other's text (a remote edit keeps the caret
// between the same characters), both are in the "here now" list, and a closed tab leaves the
// other's list.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
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

/** A page of `doc` in its own browser context (its own storage, so its own random name),
 * renamed to `name`, once its editor is synced and enabled. */
async function person(doc, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 600 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  const response = await page.goto(`${server.http}/demo/doc?doc=${doc}`);
  assert.equal(response.status(), 200);
  await page.locator('#conn[data-state="connected"]').waitFor();
  await page.locator('#editor:enabled').waitFor();
  await page.fill('#name', name);
  await page.locator(`#people li[data-name="${name}"]`).waitFor();
  return { context, page, errors };
}

/** Resolves once the editor of `page` shows exactly `expected`. */
function shows(page, expected) {
  return page.waitForFunction((value) => document.getElementById('editor').value === value, expected, {
    polling: 'raf',
  });
}

test('two people edit /demo/doc together and see who is here', async () => {
  const doc = `doc-${randomUUID()}`;
  const alice = await person(doc, 'alice');
  const bob = await person(doc, 'bob');
  assert.equal(await bob.page.locator('#doc-title').textContent(), doc);

  await alice.page.locator('#people li[data-name="bob"]').waitFor();
  await bob.page.locator('#people li[data-name="alice"]').waitFor();

  // Alice types; bob sees it.
  await alice.page.locator('#editor').pressSequentially('world');
  await shows(bob.page, 'world');

  // Alice's caret goes to the start; bob appends after it. Her caret stays where it was, so
  // what she types next lands before "world".
  await alice.page.locator('#editor').press('Control+Home');
  await bob.page.locator('#editor').press('Control+End');
  await bob.page.locator('#editor').pressSequentially('!');
  await shows(alice.page, 'world!');
  await alice.page.locator('#editor').pressSequentially('Hello ');
  await shows(bob.page, 'Hello world!');

  // Bob types at the start, before alice's caret: her caret moves with her text, so her next
  // word lands after "Hello ", not three characters early.
  await bob.page.locator('#editor').press('Control+Home');
  await bob.page.locator('#editor').pressSequentially('>> ');
  await shows(alice.page, '>> Hello world!');
  await alice.page.locator('#editor').pressSequentially('big ');
  await shows(bob.page, '>> Hello big world!');

  // A new line from bob, at the end; both end with the same text.
  await bob.page.locator('#editor').press('Control+End');
  await bob.page.locator('#editor').pressSequentially('\nfrom bob');
  await shows(alice.page, '>> Hello big world!\nfrom bob');
  assert.equal(await bob.page.locator('#editor').inputValue(), '>> Hello big world!\nfrom bob');

  // Both are listed on both pages, each marked as "(you)" on their own.
  const people = (page) =>
    page.locator('#people li').evaluateAll((items) => items.map((li) => [li.dataset.name, li.children[1].textContent]));
  assert.deepEqual(await people(alice.page), [
    ['alice', 'alice (you)'],
    ['bob', 'bob'],
  ]);
  await screenshot(alice.page, 'doc');

  // Bob closes his tab: he leaves alice's list.
  await bob.context.close();
  await alice.page.locator('#people li[data-name="bob"]').waitFor({ state: 'detached' });
  assert.deepEqual(await people(alice.page), [['alice', 'alice (you)']]);
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});
