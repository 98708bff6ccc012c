// Recovery (DESIGN.md §7) as an application sees it, against the real server binary: a client
// whose connection is cut while another client sends comes back with every missed message and
// publication once, in order, and a `recovery` event with `recovered: true`; after a server
// restart it is told `recovered: false`; `history()` returns what the server kept.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { client, collect, freePort, next, tracked, until } from './helpers.mjs';

const { server, make } = tracked({ args: ['--rate-limit', '0'] });


/** A WebSocket class whose connections the test can cut, and keep from coming back: while
 * the gate is shut, new sockets go to a port nobody listens on. */
async function cuttable(port) {
  const deadPort = await freePort();
  const gate = { open: true, live: new Set() };
  class Gated extends WebSocket {
    constructor(url) {
      super(gate.open ? url : url.replace(`:${port}/`, `:${deadPort}/`));
      gate.live.add(this);
      this.once('close', () => gate.live.delete(this));
    }
  }
  return {
    WebSocket: Gated,
    /** Drops every connection at once (no close handshake) and shuts the gate. */
    cut() {
      gate.open = false;
      for (const socket of gate.live) socket.terminate();
    },
    open() {
      gate.open = true;
    },
  };
}

/** What the application saw of the streams, in order. */
function watch(c) {
  const seen = [];
  c.on('message', (f) => seen.push(['message', f.offset, f.payload.content]));
  c.on('publish', (f) => seen.push(['publish', f.offset, f.payload]));
  c.on('recovery', (e) => seen.push(['recovery', e.room ?? e.channel, e.recovered]));
  return seen;
}

test('a cut connection comes back with every missed message once and in order', async () => {
  const s = await server();
  const network = await cuttable(s.port);
  const reader = make(s.url, { userId: 'reader', WebSocket: network.WebSocket });
  const writer = make(s.url, { userId: 'writer' });
  await Promise.all([reader.connect(), writer.connect()]);
  await reader.room('feed').join();
  await reader.channel('news').subscribe(() => {}).ready;
  await writer.room('feed').join();
  const seen = watch(reader);
  await writer.request('message', { room: 'feed', content: 'before' });
  await writer.request('publish', { channel: 'news', data: 'before' });
  // Its own message is not delivered back: the ack tells the client where it went.
  const mine = next(writer, 'message', (f) => f.payload.content === 'mine');
  reader.room('feed').send('mine');
  await mine;
  await reader.request('ping', {});
  const { epoch } = reader.room('feed').position;
  assert.deepEqual(reader.room('feed').position, { offset: 2, epoch });
  assert.deepEqual(seen, [
    ['message', 1, 'before'],
    ['publish', 1, 'before'],
  ]);

  const down = next(reader, 'disconnected');
  network.cut();
  await down;
  for (let n = 1; n <= 5; n++) {
    await writer.request('message', { room: 'feed', content: n });
    await writer.request('publish', { channel: 'news', data: n });
  }
  network.open();

  const expected = [
    ['message', 1, 'before'],
    ['publish', 1, 'before'],
    ['recovery', 'feed', true],
    ...[1, 2, 3, 4, 5].map((n) => ['message', n + 2, n]),
    ['recovery', 'news', true],
    ...[1, 2, 3, 4, 5].map((n) => ['publish', n + 1, n]),
  ];
  await until(reader, 'publish', () => seen.length >= expected.length, 'the replay');
  await reader.request('ping', {});
  assert.deepEqual(seen, expected, 'each missed message once, in order, its own not replayed');
  assert.deepEqual(reader.room('feed').position, { offset: 7, epoch });
  assert.equal(reader.channel('news').position.offset, 6);

  await writer.request('message', { room: 'feed', content: 'live' });
  await until(reader, 'message', () => seen.length === expected.length + 1, 'a live message');
  assert.deepEqual(seen.at(-1), ['message', 8, 'live']);
});

test('recovery says false after a server restart and the client follows the new epoch', async () => {
  const first = await server();
  const port = first.port;
  const reader = make(first.url, { userId: 'reader' });
  await reader.connect();
  const joined = await reader.room('feed').join();
  assert.equal(joined.payload.offset, 0);
  assert.equal(joined.payload.recovered, undefined, 'no since, no verdict');
  const verdicts = [];
  reader.room('feed').on('recovery', (e) => verdicts.push(e));
  const writer = make(first.url, { userId: 'writer', reconnect: false });
  await writer.connect();
  await writer.room('feed').join();
  const before = next(reader, 'message');
  await writer.request('message', { room: 'feed', content: 'before' });
  assert.equal((await before).offset, 1);
  const old = reader.room('feed').position;

  const down = next(reader, 'disconnected');
  await first.stop();
  await down;
  const verdict = next(reader, 'recovery');
  const second = await server({ port });
  const event = await verdict;
  const { epoch } = event.position;
  assert.deepEqual(event, { room: 'feed', recovered: false, position: { offset: 0, epoch } });
  assert.notEqual(epoch, old.epoch);
  assert.deepEqual(verdicts, [event]);

  const again = make(second.url, { userId: 'writer' });
  await again.connect();
  await again.room('feed').join();
  const after = next(reader, 'message');
  await again.request('message', { room: 'feed', content: 'after' });
  assert.equal((await after).offset, 1);
  assert.deepEqual(reader.room('feed').position, { offset: 1, epoch });
});

test('history() returns the latest messages or those after a position, as delivered', async () => {
  const s = await server({ args: ['--history-size', '5'] });
  const reader = make(s.url, { userId: 'reader' });
  await reader.connect();
  await reader.room('feed').join();
  for (let n = 1; n <= 7; n++) {
    await reader.request('message', { room: 'feed', content: n });
    await reader.request('publish', { channel: 'news', data: n });
  }
  const page = await reader.history({ room: 'feed' });
  assert.equal(page.offset, 7);
  assert.equal(page.epoch, reader.room('feed').position.epoch);
  assert.deepEqual(
    page.publications.map((f) => [f.type, f.room, f.userId, f.offset, f.payload.content]),
    [3, 4, 5, 6, 7].map((n) => ['message', 'feed', 'reader', n, n]),
  );
  const news = await reader.history({ channel: 'news', limit: 1 });
  assert.deepEqual(news.publications.map((f) => f.payload), [7]);
  const since = { offset: 3, epoch: news.epoch };
  const after = await reader.history({ channel: 'news', limit: 2, since });
  assert.deepEqual(after.publications.map((f) => [f.offset, f.payload]), [[4, 4], [5, 5]]);
  await assert.rejects(reader.history({ channel: 'presence:someone' }), { code: 'FORBIDDEN' });
  await assert.rejects(reader.history({ room: 'feed', limit: 6 }), { code: 'INVALID_MESSAGE' });
});

test('a join made while disconnected asks for what was missed; a left room starts afresh', async () => {
  const s = await server();
  const network = await cuttable(s.port);
  const reader = make(s.url, { userId: 'reader', WebSocket: network.WebSocket });
  const writer = make(s.url, { userId: 'writer' });
  await Promise.all([reader.connect(), writer.connect()]);
  await reader.room('feed').join();
  await writer.room('feed').join();
  const seen = watch(reader);
  const down = next(reader, 'disconnected');
  network.cut();
  await down;
  await writer.request('message', { room: 'feed', content: 'missed' });
  // The application joins again while offline (a page that re-renders, say).
  const rejoined = reader.room('feed').join();
  network.open();
  assert.equal((await rejoined).payload.recovered, true);
  await until(reader, 'message', () => seen.length === 2, 'the missed message');
  assert.deepEqual(seen, [
    ['recovery', 'feed', true],
    ['message', 1, 'missed'],
  ]);

  await reader.room('feed').leave();
  assert.equal(reader.room('feed').position, undefined);
  const fresh = await reader.room('feed').join();
  assert.equal(fresh.payload.recovered, undefined);
  assert.deepEqual(reader.room('feed').position, { offset: 1, epoch: fresh.payload.epoch });
  const errors = collect(reader, 'error');
  await reader.request('ping', {});
  assert.deepEqual(errors, []);
});
