// The example backend (examples/backend) run for real with the real server, in the two setups
// its README shows: the backend as connect proxy (identity from its token or its session
// cookie), and the server verifying the backend's JWTs itself (--jwt-secret). Both also send
// webhooks to it and ask its join, subscribe and RPC proxies. The JS client checks what an
// application sees: getToken works, a webhook arrives and passes the example's signature
// check, `staff-…` rooms are for staff, and the RPC answers.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { Backend, Server, client, next } from './helpers.mjs';

const JWT_SECRET = 'example-jwt-secret-0123456789abcdef';
const WEBHOOK_SECRET = 'example-webhook-secret-0123456789';

const setups = {
  'the backend as connect proxy': (http) => ['--proxy-connect-url', `${http}/proxy/connect`],
  'the server verifying the backend\'s JWTs': () => ['--jwt-secret', JWT_SECRET],
};

for (const [name, identity] of Object.entries(setups)) {
  describe(name, () => {
    let backend;
    let server;
    const clients = [];

    before(async () => {
      backend = await Backend.start({
        BACKEND_JWT_SECRET: JWT_SECRET,
        BACKEND_WEBHOOK_SECRET: WEBHOOK_SECRET,
        BACKEND_STAFF_USERS: 'carol',
        BACKEND_TOKEN_TTL: '60',
      });
      const http = backend.http;
      server = await Server.start({
        args: [
          ...identity(http),
          '--webhook-url', `${http}/webhooks`,
          '--webhook-secret', WEBHOOK_SECRET,
          '--proxy-join-url', `${http}/proxy/join`,
          '--proxy-subscribe-url', `${http}/proxy/subscribe`,
          '--proxy-rpc-url', `${http}/proxy/rpc`,
        ],
      });
    });

    afterEach(() => {
      for (const made of clients.splice(0)) made.close();
    });

    after(async () => {
      await server?.stop();
      await backend?.stop();
    });

    /** A connected client of `user`, logged in at the backend, with its `getToken`. */
    async function connected(user) {
      const made = client(server.url, { getToken: backend.tokens(await backend.login(user)) });
      clients.push(made);
      const info = await made.connect();
      assert.equal(info.userId, user);
      return made;
    }

    test('getToken brings the backend\'s token and the server takes it', async () => {
      await connected('bob');
      await backend.line('token', (line) => line.user === 'bob');
    });

    test('a webhook arrives and the example accepts its signature', async () => {
      const bob = await connected('bob');
      await bob.room('lobby').join();
      const added = await backend.line('webhook', (e) => e.name === 'member_added' && e.room === 'lobby');
      assert.equal(added.userId, 'bob');
      await backend.line('webhook', (e) => e.name === 'room_occupied' && e.room === 'lobby');
      assert.deepEqual(backend.lines.filter((line) => line.kind === 'webhook_refused'), []);
    });

    test('staff-… rooms and channels are refused with FORBIDDEN to others, allowed to staff', async () => {
      const bob = await connected('bob');
      await assert.rejects(bob.room('staff-room').join(), { code: 'FORBIDDEN', message: 'staff only' });
      const subscribed = bob.request('subscribe', { channel: 'staff:alerts' });
      await assert.rejects(subscribed, { code: 'FORBIDDEN', message: 'staff only' });
      const carol = await connected('carol');
      const joined = await carol.room('staff-room').join();
      assert.equal(joined.payload.room, 'staff-room');
      await carol.request('subscribe', { channel: 'staff:alerts' });
    });

    test('the RPC proxy answers whoami and sum, and refuses a bad payload', async () => {
      const bob = await connected('bob');
      assert.deepEqual(await bob.rpc('whoami'), { userId: 'bob', staff: false });
      assert.deepEqual(await bob.rpc('sum', { a: 2, b: 3 }), { sum: 5 });
      await assert.rejects(bob.rpc('sum', { a: 'two' }), {
        code: 'INVALID_MESSAGE',
        message: 'sum needs numbers a and b',
      });
    });
  });
}

describe('the example backend on its own', () => {
  let backend;
  let server;
  const clients = [];

  before(async () => {
    backend = await Backend.start({ BACKEND_JWT_SECRET: JWT_SECRET, BACKEND_WEBHOOK_SECRET: WEBHOOK_SECRET });
    server = await Server.start({ args: ['--proxy-connect-url', `${backend.http}/proxy/connect`] });
  });

  after(async () => {
    for (const made of clients) made.close();
    await server?.stop();
    await backend?.stop();
  });

  test('the connect proxy knows a user by the session cookie of the upgrade', async () => {
    const cookie = await backend.login('dave');
    // What a browser on the backend's site does by itself: the upgrade carries the cookie.
    class WithCookie extends WebSocket {
      constructor(url, protocols) {
        super(url, protocols ?? [], { headers: { cookie } });
      }
    }
    const dave = client(server.url, { WebSocket: WithCookie });
    clients.push(dave);
    assert.equal((await dave.connect()).userId, 'dave');
    await backend.line('connect', (line) => line.user === 'dave' && line.by === 'cookie');
  });

  test('the connect proxy refuses a client with neither session nor token', async () => {
    const mallory = client(server.url, { token: 'not-a-token-of-ours' });
    clients.push(mallory);
    const closed = next(mallory, 'closed');
    mallory.connect().catch(() => {});
    assert.deepEqual(await closed, { code: 1008, reason: 'log in first', willReconnect: false });
  });

  test('a webhook with a wrong signature or an old timestamp is refused', async () => {
    const post = (body, signature, timestamp) =>
      fetch(`${backend.http}/webhooks`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-switchboard-signature': signature,
          'x-switchboard-timestamp': String(timestamp),
        },
        body,
      });
    const sign = (body) => `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')}`;
    const now = Date.now();
    const fresh = JSON.stringify({ time: now, node: 'n', events: [] });
    assert.equal((await post(fresh, sign(`${fresh} `), now)).status, 401);
    await backend.line('webhook_refused', (line) => line.reason === 'wrong signature');
    const old = now - 10 * 60 * 1000;
    const replayed = JSON.stringify({ time: old, node: 'n', events: [] });
    assert.equal((await post(replayed, sign(replayed), old)).status, 401);
    await backend.line('webhook_refused', (line) => line.reason === 'stale timestamp');
    assert.equal((await post(fresh, sign(fresh), now)).status, 204);
  });

  test('GET /token answers 401 without a session, and CORS only to allowed origins', async () => {
    assert.equal((await fetch(`${backend.http}/token`)).status, 401);
    const cookie = await backend.login('erin');
    const allowed = await fetch(`${backend.http}/token`, {
      headers: { cookie, origin: 'http://127.0.0.1:3000' },
    });
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://127.0.0.1:3000');
    assert.equal(allowed.headers.get('access-control-allow-credentials'), 'true');
    const other = await fetch(`${backend.http}/token`, {
      headers: { cookie, origin: 'https://evil.example' },
    });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });
});
