// Tokens against the real server binary: `getToken` is asked on connect (its token goes in the
// `auth` frame, not the URL), on `token_expiring` (the client sends `refresh` and the
// connection outlives its first token) and on every reconnect; a fixed `token` still works,
// in the `auth` frame or, with `tokenInUrl`, the URL.
//
// Tokens live a few seconds (`exp` has second granularity). The server's expiry sweep is the
// clock: a witness connection whose token expires with the client's first one is closed with
// 1008 "token expired", which proves the sweep went past that expiry.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocket from 'ws';

import { collect, mintToken, next, signToken, tracked } from './helpers.mjs';

const SECRET = 'js-test-secret-0123456789abcdef';
const { server, make } = tracked({ args: ['--jwt-secret', SECRET, '--token-expiry-grace', '2s'] });


/** A `ws` WebSocket that records the URL of every socket it opens. */
function recording(urls) {
  return class extends WebSocket {
    constructor(url) {
      super(url);
      urls.push(url);
    }
  };
}

test('getToken is asked on connect and its token goes in the auth frame', async () => {
  const s = await server();
  const urls = [];
  let calls = 0;
  const alice = make(s.url, {
    WebSocket: recording(urls),
    getToken: async () => {
      calls += 1;
      return mintToken(SECRET, 'alice', 600).token;
    },
  });
  const info = await alice.connect();
  assert.equal(info.userId, 'alice');
  assert.equal(calls, 1);
  assert.equal(urls.length, 1);
  assert.equal(new URL(urls[0]).searchParams.has('token'), false);
});

test('on token_expiring getToken is asked again and the connection outlives its token', async () => {
  const s = await server();
  const first = mintToken(SECRET, 'alice', 4);
  let calls = 0;
  const alice = make(s.url, {
    getToken: () => {
      calls += 1;
      return calls === 1 ? first.token : mintToken(SECRET, 'alice', 600).token;
    },
  });
  const lost = collect(alice, 'disconnected');
  await alice.connect();
  // No getToken: closed for good when its token expires, with alice's first one.
  const witness = make(s.url, { token: signToken(SECRET, { sub: 'witness', exp: first.exp }) });
  await witness.connect();
  const expiring = await next(alice, 'token_expiring');
  assert.equal(expiring.payload.expiresAt, first.exp * 1000);
  const closed = await next(witness, 'closed');
  assert.deepEqual([closed.code, closed.reason], [1008, 'token expired']);
  assert.equal(calls, 2);
  const pong = await alice.request('ping', {});
  assert.equal(pong.type, 'pong');
  assert.deepEqual(lost, []);
});

test('getToken is asked on every reconnect', async () => {
  const s = await server();
  let calls = 0;
  const alice = make(s.url, {
    getToken: async () => {
      calls += 1;
      return mintToken(SECRET, 'alice', 600).token;
    },
  });
  await alice.connect();
  const port = s.port;
  await s.stop();
  await server({ port });
  const back = await next(alice, 'connected', (event) => event.reconnect);
  assert.equal(back.userId, 'alice');
  assert.equal(calls >= 2, true, `getToken called ${calls} times`);
});

test('a fixed token works in the auth frame and, with tokenInUrl, in the URL', async () => {
  const s = await server();
  for (const tokenInUrl of [false, true]) {
    const urls = [];
    const bob = make(s.url, {
      WebSocket: recording(urls),
      token: mintToken(SECRET, 'bob', 600).token,
      tokenInUrl,
    });
    const info = await bob.connect();
    assert.equal(info.userId, 'bob');
    assert.equal(new URL(urls[0]).searchParams.has('token'), tokenInUrl);
  }
});
