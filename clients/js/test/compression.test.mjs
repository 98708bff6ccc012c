// permessage-deflate with a third-party client: the `ws` package with `perMessageDeflate`
// negotiates it with the real server, and room messages above the threshold reach it
// compressed (ws inflates them) and from it compressed (the server inflates them).

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import WebSocket from 'ws';

import { Server, within } from './helpers.mjs';

const servers = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

/** A `ws` socket to `url` that offers permessage-deflate and compresses from `threshold` up. */
function deflating(url, threshold = 0) {
  return new WebSocket(url, { perMessageDeflate: { threshold } });
}

/** Resolves with the next frame of `type` that `socket` receives, parsed. */
function nextOfType(socket, type) {
  return within(
    new Promise((resolve) => {
      const onMessage = (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type === type) {
          socket.off('message', onMessage);
          resolve(frame);
        }
      };
      socket.on('message', onMessage);
    }),
    `a ${type} frame`,
  );
}

test('the ws package negotiates permessage-deflate and exchanges compressed room messages', async () => {
  const server = await Server.start();
  servers.push(server);
  const alice = deflating(`${server.url}?userId=alice`);
  const bob = deflating(`${server.url}?userId=bob`);
  const opened = (socket) => within(new Promise((resolve) => socket.once('open', resolve)), 'open');
  await Promise.all([opened(alice), opened(bob)]);
  assert.equal(alice.extensions, 'permessage-deflate');

  for (const socket of [alice, bob]) {
    const joined = nextOfType(socket, 'room_joined');
    socket.send(JSON.stringify({ type: 'join_room', payload: { room: 'zip' } }));
    await joined;
  }
  const content = 'compress me, '.repeat(400);
  const received = nextOfType(bob, 'message');
  alice.send(JSON.stringify({ type: 'message', payload: { room: 'zip', content } }));
  const before = bob._socket.bytesRead;
  const message = await received;
  assert.equal(message.payload.content, content);
  const onTheWire = bob._socket.bytesRead - before;
  assert.ok(onTheWire < content.length / 4, `${onTheWire} bytes on the wire: not compressed`);
  assert.equal(message.userId, 'alice');
  alice.close();
  bob.close();
});
