// client.rpc() against the real server binary and a real HTTP backend (its RPC proxy): the
// result's payload, the backend's error code, and a backend that is down.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { afterEach, test } from 'node:test';

import { SwitchboardError } from '../dist/switchboard.js';
import { Server, client, freePort } from './helpers.mjs';

const cleanup = [];

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** A backend answering `sum` with a result and anything else with a FORBIDDEN error. */
async function backend() {
  const http = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const frame = JSON.parse(body);
      const answer =
        frame.type === 'sum'
          ? { result: { sum: frame.payload.a + frame.payload.b, userId: frame.userId } }
          : { error: { code: 'FORBIDDEN', message: `no ${frame.type} for you` } };
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise((resolve) => http.close(resolve)));
  return `http://127.0.0.1:${http.address().port}/rpc`;
}

async function connected(rpcUrl) {
  const server = await Server.start({ args: ['--proxy-rpc-url', rpcUrl] });
  cleanup.push(() => server.stop());
  const alice = client(server.url, { userId: 'alice' });
  cleanup.push(() => alice.close());
  await alice.connect();
  return alice;
}

test('rpc resolves with the payload of the backend result', async () => {
  const alice = await connected(await backend());
  assert.deepEqual(await alice.rpc('sum', { a: 2, b: 3 }), { sum: 5, userId: 'alice' });
});

test('rpc rejects with the backend error code and message', async () => {
  const alice = await connected(await backend());
  await assert.rejects(alice.rpc('divide', { a: 1, b: 0 }), (error) => {
    assert.ok(error instanceof SwitchboardError);
    assert.equal(error.code, 'FORBIDDEN');
    assert.equal(error.message, 'no divide for you');
    return true;
  });
});

test('rpc rejects with INTERNAL when the backend is down', async () => {
  const port = await freePort();
  const alice = await connected(`http://127.0.0.1:${port}/rpc`);
  await assert.rejects(alice.rpc('sum', { a: 1, b: 1 }), (error) => {
    assert.equal(error.code, 'INTERNAL');
    assert.equal(error.message, 'backend unavailable');
    return true;
  });
});
