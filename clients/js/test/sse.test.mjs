// The SSE transport against the real server binary, in Node.js (which has fetch and streams
// but, in Node 20, no WebSocket and no EventSource): the automatic fallback when a WebSocket
// cannot be opened, the same API over SSE next to WebSocket clients, batched POSTs, tokens,
// the server's close event and reconnection.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SwitchboardClient } from '../dist/switchboard.js';
import {
  BlockedWebSocket,
  client,
  collect,
  mintToken,
  next,
  tracked,
  until,
} from './helpers.mjs';

const { server, track } = tracked();



/** `fetch` that counts the POSTs it makes. */
function countingFetch() {
  const counted = (url, init) => {
    if (init?.method === 'POST') counted.posts += 1;
    return fetch(url, init);
  };
  counted.posts = 0;
  return counted;
}

test('a client whose WebSocket cannot open falls back to SSE with the same API', async () => {
  const s = await server({ args: ['--rate-limit', '0'] });
  const alice = track(client(s.url, { userId: 'alice' }));
  await alice.connect();
  await alice.room('general').join();
  const fetchImpl = countingFetch();
  const bob = track(
    new SwitchboardClient({ url: s.url, userId: 'bob', WebSocket: BlockedWebSocket, fetch: fetchImpl }),
  );
  const transports = collect(bob, 'transport');
  const info = await bob.connect();
  assert.equal(info.userId, 'bob');
  assert.equal(typeof info.session, 'string');
  assert.equal(bob.transport, 'sse');
  assert.equal(transports.length, 1);
  assert.equal(transports[0].name, 'sse');
  assert.match(transports[0].reason, /closed before it opened/);

  const joined = await bob.room('general').join();
  assert.deepEqual(joined.payload.members.map((m) => m.userId).sort(), ['alice', 'bob']);
  const pong = await bob.request('ping', { timestamp: 7 });
  assert.equal(pong.payload.timestamp, 7);
  const fromAlice = next(bob, 'message');
  alice.room('general').send('hello over SSE');
  assert.equal((await fromAlice).payload.content, 'hello over SSE');

  // Frames sent while a POST is in flight go together in the next one, in order.
  const received = collect(alice, 'message');
  const before = fetchImpl.posts;
  for (let i = 0; i < 50; i += 1) bob.room('general').send(`m${i}`);
  await until(alice, 'message', () => received.length === 50, 'all 50 messages');
  assert.deepEqual(
    received.map((m) => m.payload.content),
    Array.from({ length: 50 }, (_, i) => `m${i}`),
  );
  assert.equal(fetchImpl.posts - before, 2, 'one POST for the first, one for the other 49');
});

test('without a WebSocket implementation the client uses SSE, with its token in the URL', async () => {
  const secret = 'js-sse-secret-0123456789abcdef0123';
  const s = await server({ args: ['--jwt-secret', secret] });
  const carol = track(
    new SwitchboardClient({ url: s.url, getToken: () => mintToken(secret, 'carol', 600).token }),
  );
  assert.equal(carol.transport, 'sse');
  const info = await carol.connect();
  assert.equal(info.userId, 'carol');
  // A refused token is final over SSE as over a WebSocket (HTTP 401: no reconnect).
  const mallory = track(new SwitchboardClient({ url: s.url, token: 'not-a-token', transport: 'sse' }));
  const closed = next(mallory, 'closed');
  await assert.rejects(mallory.connect());
  assert.equal((await closed).willReconnect, false);
});

test('over SSE the server close is seen and the client reconnects and rejoins', async () => {
  const s = await server();
  const port = s.port;
  const bob = track(client(s.url, { userId: 'bob', transport: 'sse' }));
  await bob.connect();
  await bob.room('general').join();
  const disconnected = next(bob, 'disconnected');
  s.signal('SIGTERM');
  const info = await disconnected;
  assert.equal(info.code, 1001);
  assert.equal(info.reason, 'server shutting down');
  assert.equal(info.willReconnect, true);
  await s.exited;

  const restarted = await server({ port });
  const reconnected = next(bob, 'connected');
  const recovery = next(bob, 'recovery');
  assert.equal((await reconnected).reconnect, true);
  assert.equal((await recovery).room, 'general');
  const alice = track(client(restarted.url, { userId: 'alice' }));
  await alice.connect();
  const members = await alice.room('general').join();
  assert.deepEqual(members.payload.members.map((m) => m.userId).sort(), ['alice', 'bob']);
});

test("transport: 'websocket' never falls back, and a fallback that fails tries a WebSocket again", async () => {
  const s = await server();
  const pinned = track(
    new SwitchboardClient({ url: s.url, WebSocket: BlockedWebSocket, transport: 'websocket', reconnect: false }),
  );
  const pinnedTransports = collect(pinned, 'transport');
  await assert.rejects(pinned.connect());
  assert.deepEqual(pinnedTransports, []);
  assert.equal(pinned.transport, 'websocket');

  // No server at all: neither transport opens, and the next attempt would start over with a
  // WebSocket (a client started while the server is down does not stay on SSE for good).
  const port = s.port;
  await s.stop();
  const early = track(
    new SwitchboardClient({ url: `ws://127.0.0.1:${port}/ws`, WebSocket: BlockedWebSocket, reconnect: false }),
  );
  const transports = collect(early, 'transport');
  await assert.rejects(early.connect());
  assert.deepEqual(
    transports.map((t) => t.name),
    ['sse', 'websocket'],
  );
  assert.equal(early.transport, 'websocket');
});
