// Tokens in headless Chromium: a page whose client gets its tokens from `getToken` (here a
// function the test exposes to the page, standing in for the application's backend) keeps
// working across its first token's expiry: on `token_expiring` the client asks for a new
// token and sends `refresh`, and messages sent to the page's room after that expiry arrive.
//
// A witness connection whose token expires with the page's first one is closed by the server
// with 1008 "token expired": the expiry sweep has gone past it when the message is sent.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Server,
  WAIT,
  client,
  launchBrowser,
  mintToken,
  next,
  signToken,
} from './helpers.mjs';

const SECRET = 'js-browser-secret-0123456789abcdef';

let server;
let browser;
const clients = [];

before(async () => {
  server = await Server.start({ args: ['--jwt-secret', SECRET, '--token-expiry-grace', '2s'] });
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await server?.stop();
});

test('a page keeps working across a token expiry because getToken is called', async () => {
  const page = await browser.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  const first = mintToken(SECRET, 'alice', 4);
  let issued = 0;
  await page.exposeFunction('issueToken', () => {
    issued += 1;
    return issued === 1 ? first.token : mintToken(SECRET, 'alice', 600).token;
  });
  await page.goto(`${server.http}/health`);
  await page.evaluate(async (url) => {
    const { SwitchboardClient } = await import('/client.js');
    const state = { received: [], expiring: [], disconnects: 0 };
    window.state = state;
    const client = new SwitchboardClient({ url, getToken: () => window.issueToken() });
    client.on('token_expiring', (frame) => state.expiring.push(frame.payload.expiresAt));
    client.on('disconnected', () => {
      state.disconnects += 1;
    });
    client.on('message', (frame) => state.received.push(frame.payload.content));
    await client.connect();
    await client.room('general').join();
  }, server.url);

  const witness = client(server.url, { token: signToken(SECRET, { sub: 'witness', exp: first.exp }) });
  clients.push(witness);
  await witness.connect();
  const bob = client(server.url, { token: mintToken(SECRET, 'bob', 600).token });
  clients.push(bob);
  await bob.connect();
  await bob.room('general').join();

  await page.waitForFunction(() => window.state.expiring.length > 0, null, { timeout: WAIT });
  const closed = await next(witness, 'closed');
  assert.deepEqual([closed.code, closed.reason], [1008, 'token expired']);
  await bob.request('message', { room: 'general', content: 'after the expiry' });
  await page.waitForFunction(() => window.state.received.length > 0, null, { timeout: WAIT });
  const state = await page.evaluate(() => window.state);
  assert.deepEqual(state.expiring, [first.exp * 1000]);
  assert.deepEqual(state.received, ['after the expiry']);
  assert.equal(state.disconnects, 0, 'the page kept its connection');
  assert.equal(issued, 2, 'getToken on connect and on token_expiring');
  assert.deepEqual(errors, []);
});
