// `format: 'msgpack'` against the real server binary: the subprotocol and binary frames on the
// wire, the same API and events as JSON, bytes as Uint8Array (and as {"$bytes": base64} for a
// JSON client), history, errors and authentication; and the client's MessagePack codec at its
// edges.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { decodeMsgPack, encodeMsgPack } from '../dist/switchboard.js';
import { WAIT, client, mintToken, next, tracked, within } from './helpers.mjs';

const { server, make } = tracked();


const hex = (bytes) => Buffer.from(bytes).toString('hex');

test('the codec writes what the spec says and reads it back', () => {
  const cases = [
    [null, 'c0'],
    [true, 'c3'],
    [0, '00'],
    [127, '7f'],
    [128, 'cc80'],
    [256, 'cd0100'],
    [65536, 'ce00010000'],
    [2 ** 32, 'cf0000000100000000'],
    [-1, 'ff'],
    [-32, 'e0'],
    [-33, 'd0df'],
    [-129, 'd1ff7f'],
    [-32769, 'd2ffff7fff'],
    [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
    [1.5, 'cb3ff8000000000000'],
    ['', 'a0'],
    ['é', 'a2c3a9'],
    ['x'.repeat(32), 'd920' + '78'.repeat(32)],
    [[1, [2]], '920191' + '02'],
    [{ a: 1 }, '81a16101'],
    [new Uint8Array([1, 2]), 'c4020102'],
  ];
  for (const [value, bytes] of cases) {
    assert.equal(hex(encodeMsgPack(value)), bytes, JSON.stringify(value));
    assert.deepEqual(decodeMsgPack(Buffer.from(bytes, 'hex')), value, bytes);
  }
  // Long strings, arrays, maps and bytes take their 16- and 32-bit headers.
  for (const n of [300, 70_000]) {
    const value = {
      s: 'y'.repeat(n),
      a: new Array(n).fill(0),
      b: new Uint8Array(n).fill(9),
      m: Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i])),
    };
    assert.deepEqual(decodeMsgPack(encodeMsgPack(value)), value);
  }
});

test('the codec maps values as JSON.stringify does, and refuses what it cannot read', () => {
  const date = new Date(0);
  const encoded = encodeMsgPack({ when: date, gone: undefined, f: () => 1, list: [undefined], nan: NaN });
  assert.deepEqual(decodeMsgPack(encoded), { when: date.toJSON(), list: [null], nan: null });
  const view = new DataView(new Uint8Array([7, 8, 9]).buffer, 1, 2);
  assert.deepEqual(decodeMsgPack(encodeMsgPack(view)), new Uint8Array([8, 9]));
  // A Node Buffer is bytes, not what its toJSON makes of it.
  assert.deepEqual(decodeMsgPack(encodeMsgPack(Buffer.from('hi'))), new Uint8Array([104, 105]));
  const cycle = {};
  cycle.self = cycle;
  assert.throws(() => encodeMsgPack(cycle), /too deep/);
  for (const [bytes, error] of [
    ['', /truncated/],
    ['a561', /truncated/],
    ['dd ffffffff'.replace(' ', ''), /truncated/],
    ['0102', /after the MessagePack value/],
    ['d40100', /unsupported/],
    ['c1', /unsupported/],
    ['810102', /keys must be strings/],
    ['a2c328', /./],
    ['91'.repeat(200) + 'c0', /too deep/],
  ]) {
    assert.throws(() => decodeMsgPack(Buffer.from(bytes, 'hex')), error, bytes);
  }
  const proto = decodeMsgPack(encodeMsgPack(JSON.parse('{"__proto__": {"polluted": 1}}')));
  assert.equal({}.polluted, undefined);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
});

test('the server selects the subprotocol and sends binary frames', async () => {
  const s = await server();
  const raw = new WebSocket(`${s.url}?userId=raw`, 'switchboard.v1.msgpack');
  raw.binaryType = 'arraybuffer';
  const first = await within(
    new Promise((resolve, reject) => {
      raw.once('message', (data, isBinary) => resolve({ data, isBinary }));
      raw.once('error', reject);
    }),
    'the connect frame',
  );
  assert.equal(raw.protocol, 'switchboard.v1.msgpack');
  assert.equal(first.isBinary, true);
  const connect = decodeMsgPack(new Uint8Array(first.data));
  assert.equal(connect.type, 'connect');
  assert.equal(connect.payload.userId, 'raw');
  raw.close();
});

test('a msgpack client and a json client share a room, bytes included', async () => {
  const s = await server({ args: ['--history-size', '10'] });
  const packed = make(s.url, { userId: 'packed', format: 'msgpack' });
  const plain = make(s.url, { userId: 'plain' });
  assert.equal((await packed.connect()).userId, 'packed');
  await plain.connect();
  const joined = await packed.room('r').join();
  assert.deepEqual(joined.payload.members.map((m) => m.userId), ['packed']);
  await plain.room('r').join();

  const blob = new Uint8Array([0, 1, 2, 254, 255]);
  const toPlain = next(plain, 'message');
  const ack = await packed.request('message', { room: 'r', content: blob, n: [-1, 2.5, null] });
  assert.equal(ack.type, 'ack');
  assert.equal(ack.payload.offset, 1);
  const received = await toPlain;
  assert.deepEqual(received.payload.content, { $bytes: 'AAEC/v8=' });
  assert.deepEqual(received.payload.n, [-1, 2.5, null]);

  // A JSON client's bytes (a Uint8Array, or a Buffer, which is one) go as {"$bytes": ...}.
  const toPacked = next(packed, 'message');
  plain.room('r').send(Buffer.from([0, 1, 2]));
  const fromPlain = await toPacked;
  assert.ok(fromPlain.payload.content instanceof Uint8Array);
  assert.deepEqual(fromPlain.payload.content, new Uint8Array([0, 1, 2]));
  assert.equal(fromPlain.userId, 'plain');
  assert.equal(fromPlain.offset, 2);

  const page = await packed.history({ room: 'r' });
  assert.deepEqual(page.publications.map((f) => f.offset), [1, 2]);
  assert.deepEqual(page.publications[0].payload.content, blob);

  const publication = new Promise((resolve) => packed.channel('news').subscribe(resolve));
  await next(packed, 'subscribed');
  plain.publish('news', { big: 'z'.repeat(5000) });
  assert.equal((await within(publication, 'the publication')).payload.big.length, 5000);
  await assert.rejects(packed.request('message', { room: 'nowhere', content: 'x' }), {
    code: 'NOT_IN_ROOM',
  });
  const pong = await packed.request('ping', { timestamp: 42 });
  assert.equal(pong.payload.timestamp, 42);
});

test('a msgpack client authenticates with an auth frame and keeps its heartbeat', async () => {
  const secret = 'js-msgpack-secret-0123456789abcdef';
  const s = await server({ args: ['--jwt-secret', secret] });
  const packed = make(s.url, {
    format: 'msgpack',
    getToken: () => mintToken(secret, 'erin', 600).token,
    heartbeat: { interval: 50, timeout: WAIT },
  });
  assert.equal((await packed.connect()).userId, 'erin');
  // The client's own pings are answered: pongs reach it as MessagePack.
  await next(packed, 'pong', () => true);
  await packed.room('r').join();
  assert.equal(packed.state, 'connected');
});
