// The client against the real server binary: requests, errors, timeouts, reconnection with
// rejoin and queue flush, dead-server detection, the queue's overflow policy, terminal closes
// and the pool.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { SwitchboardError, SwitchboardPool, backoff } from '../dist/switchboard.js';
import { client, collect, freePort, next, tracked, until } from './helpers.mjs';

const { server, make, track } = tracked();

test('request resolves with the direct reply or the ack', async () => {
  const s = await server();
  const alice = make(s.url, { userId: 'alice' });
  const info = await alice.connect();
  assert.equal(info.userId, 'alice');
  const joined = await alice.room('general').join();
  assert.equal(joined.type, 'room_joined');
  assert.deepEqual(joined.payload.members.map((m) => m.userId), ['alice']);
  const pong = await alice.request('ping', { timestamp: 42 });
  assert.equal(pong.type, 'pong');
  assert.equal(pong.payload.timestamp, 42);
  const ack = await alice.request('message', { room: 'general', content: 'hi' });
  assert.equal(ack.type, 'ack');
  assert.equal(ack.payload.id, ack.id);
});

test('request rejects with the server error code', async () => {
  const s = await server();
  const alice = make(s.url, { userId: 'alice' });
  await alice.connect();
  const unrelated = collect(alice, 'error');
  await assert.rejects(alice.request('message', { room: 'nowhere', content: 'x' }), (error) => {
    assert.ok(error instanceof SwitchboardError);
    assert.equal(error.code, 'NOT_IN_ROOM');
    return true;
  });
  await assert.rejects(alice.request('no_such_type', {}), { code: 'UNKNOWN_TYPE' });
  assert.deepEqual(unrelated, [], 'answered errors are not also emitted as events');
  alice.send('message', { room: 'nowhere', content: 'x' });
  const event = await next(alice, 'error');
  assert.equal(event.payload.code, 'NOT_IN_ROOM');
});

test('request times out when the server does not answer, and leaves no queued frame', async () => {
  const s = await server();
  const alice = make(s.url, { userId: 'alice', heartbeat: false });
  await alice.connect();
  await s.pause();
  const started = Date.now();
  await assert.rejects(alice.request('ping', {}, { timeout: 300 }), { code: 'TIMEOUT' });
  assert.ok(Date.now() - started >= 290);
  s.resume();

  const offline = make(`ws://127.0.0.1:${await freePort()}/ws`);
  const queued = offline.request('ping', {}, { timeout: 100 });
  assert.equal(offline.queued, 1);
  await assert.rejects(queued, { code: 'TIMEOUT' });
  assert.equal(offline.queued, 0, 'a timed-out request is not sent later');
});

test('after a server restart rooms and channels are rejoined and queued messages arrive once', async () => {
  const first = await server();
  const port = first.port;
  // Alice's reconnects are held back until Bob is back in the room, so the test does not
  // depend on which of them reconnects first.
  let gateOpen = true;
  const deadPort = await freePort();
  class Gated extends WebSocket {
    constructor(url) {
      super(gateOpen ? url : url.replace(`:${port}/`, `:${deadPort}/`));
    }
  }
  const alice = make(first.url, { userId: 'alice', WebSocket: Gated });
  const bob = make(first.url, { userId: 'bob' });
  await Promise.all([alice.connect(), bob.connect()]);
  await alice.room('lobby').join();
  await bob.room('lobby').join();
  const news = [];
  await bob.channel('news').subscribe((frame) => news.push(frame.payload)).ready;
  const received = collect(bob, 'message');

  const down = Promise.all([next(alice, 'disconnected'), next(bob, 'disconnected')]);
  gateOpen = false;
  await first.stop();
  const [aliceDown] = await down;
  assert.equal(aliceDown.willReconnect, true);
  for (const text of ['one', 'two', 'three']) {
    assert.equal(alice.room('lobby').send(text), true);
  }
  assert.equal(alice.queued, 3);

  const bobBack = next(bob, 'room_joined', (f) => f.room === 'lobby');
  const bobSubscribed = next(bob, 'subscribed', (f) => f.payload.channel === 'news');
  const second = await server({ port });
  const rejoined = await bobBack;
  await bobSubscribed;
  assert.deepEqual(rejoined.payload.members.map((m) => m.userId), ['bob']);
  const aliceJoined = next(bob, 'user_joined', (f) => f.userId === 'alice');
  const aliceBack = next(alice, 'connected');
  gateOpen = true;
  const reconnected = await aliceBack;
  assert.equal(reconnected.reconnect, true);
  await aliceJoined;
  assert.equal(alice.queued, 0);

  // A marker sent after the flush: once Bob has it, every queued message has arrived.
  const marker = next(bob, 'message', (f) => f.payload.content === 'marker');
  await alice.request('message', { room: 'lobby', content: 'marker' });
  await marker;
  assert.deepEqual(
    received.map((f) => f.payload.content),
    ['one', 'two', 'three', 'marker'],
  );
  assert.ok(received.every((f) => f.userId === 'alice' && f.room === 'lobby'));

  alice.publish('news', { n: 1 });
  await until(bob, 'publish', () => news.length === 1, 'the resubscribed channel to deliver');
  assert.deepEqual(news, [{ n: 1 }]);
  assert.equal(second.port, port);
});

test('a hung server is detected by the heartbeat and the client reconnects after it resumes', async () => {
  const s = await server();
  const alice = make(s.url, {
    userId: 'alice',
    heartbeat: { interval: 200, timeout: 300 },
    connectTimeout: 500,
  });
  await alice.connect();
  await alice.room('lobby').join();
  const down = next(alice, 'disconnected');
  await s.pause();
  const stopped = Date.now();
  const info = await down;
  const detectedIn = Date.now() - stopped;
  assert.equal(info.willReconnect, true);
  assert.match(info.reason, /no answer to ping/);
  // Bounded: quiet interval + pong deadline, plus scheduling slack on a loaded machine.
  assert.ok(detectedIn < 3_000, `detected after ${detectedIn} ms`);
  // The server accepts TCP in the kernel but never answers the handshake: the connect deadline
  // gives up on those attempts.
  await next(alice, 'disconnected', (d) => /no connect frame/.test(d.reason));

  const back = next(alice, 'connected');
  const rejoined = next(alice, 'room_joined', (f) => f.room === 'lobby');
  s.resume();
  assert.equal((await back).reconnect, true);
  await rejoined;
});

test('the queue keeps the oldest frames and refuses the newest when full, then flushes in order', async () => {
  const s = await server();
  const receiver = make(s.url, { userId: 'receiver' });
  await receiver.connect();
  const got = [];
  await receiver.channel('feed').subscribe((frame) => got.push(frame.payload)).ready;

  const sender = make(s.url, { userId: 'sender', maxQueue: 3 });
  const dropped = collect(sender, 'dropped');
  const results = [1, 2, 3, 4, 5].map((n) => sender.publish('feed', n));
  assert.deepEqual(results, [true, true, true, false, false]);
  assert.deepEqual(dropped.map((d) => d.payload.data), [4, 5]);
  assert.equal(sender.queued, 3);
  await assert.rejects(sender.request('ping', {}), { code: 'QUEUE_FULL' });

  await sender.connect();
  await sender.request('publish', { channel: 'feed', data: 'end' });
  await until(receiver, 'publish', () => got.includes('end'), 'the last publication');
  assert.deepEqual(got, [1, 2, 3, 'end']);
});

test('no reconnect after close(), after close 1008, or after maxAttempts failures', async () => {
  // The test calls the server API without a key.
  const s = await server({ args: ['--api-insecure'] });
  const alice = make(s.url, { userId: 'alice' });
  await alice.connect();
  const closed = next(alice, 'closed');
  alice.close();
  assert.equal((await closed).willReconnect, false);
  assert.equal(alice.state, 'closed');
  assert.equal(alice.send('broadcast', { content: 'x' }), false);
  await assert.rejects(alice.request('ping', {}), { code: 'CLOSED' });

  const mallory = make(s.url, { userId: 'mallory' });
  await mallory.connect();
  const refused = next(mallory, 'closed');
  const response = await fetch(`${s.http}/api/users/mallory/disconnect`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'banned' }),
  });
  assert.equal(response.status, 200);
  const info = await refused;
  assert.deepEqual(info, { code: 1008, reason: 'banned', willReconnect: false });

  const nowhere = make(`ws://127.0.0.1:${await freePort()}/ws`, {
    reconnect: { baseDelay: 10, maxDelay: 20, maxAttempts: 2 },
  });
  const attempts = collect(nowhere, 'reconnecting');
  await assert.rejects(nowhere.connect(), { code: 'CLOSED' });
  assert.deepEqual(attempts.map((a) => a.attempt), [1, 2]);
});

test('backoff grows by the multiplier up to the maximum, less at most the jitter share', () => {
  const plain = { baseDelay: 100, maxDelay: 1000, multiplier: 3, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3].map((n) => backoff(n, plain)), [100, 300, 900, 1000]);
  for (let i = 0; i < 100; i++) {
    const delay = backoff(2, { baseDelay: 100, multiplier: 2, jitter: 0.5 });
    assert.ok(delay >= 200 && delay <= 400, `${delay}`);
  }
});

test('the pool spreads sends round-robin over its connections', async () => {
  const s = await server();
  const receiver = make(s.url, { userId: 'receiver' });
  await receiver.connect();
  const got = [];
  await receiver.channel('jobs').subscribe((frame) => got.push(frame)).ready;

  const pool = new SwitchboardPool({
    size: 3,
    client: (i) => ({ url: s.url, userId: `producer-${i}`, WebSocket }),
  });
  pool.clients.forEach(track);
  assert.throws(() => new SwitchboardPool({ size: 0, client: () => ({ url: s.url }) }), RangeError);
  await pool.connect();
  for (let n = 0; n < 6; n++) pool.publish('jobs', n);
  await pool.request('publish', { channel: 'jobs', data: 6 });
  await until(receiver, 'publish', () => got.length === 7, 'seven publications');
  // Each connection delivers in order; across connections the arrival order may vary.
  assert.deepEqual(
    got.map((f) => [f.payload, f.userId]).sort((a, b) => a[0] - b[0]),
    [
      [0, 'producer-0'],
      [1, 'producer-1'],
      [2, 'producer-2'],
      [3, 'producer-0'],
      [4, 'producer-1'],
      [5, 'producer-2'],
      [6, 'producer-0'],
    ],
  );
});
