// Collaborative documents (DESIGN.md §8) with the real npm `yjs` and `y-websocket` packages,
// unchanged, against the real server binary: an application switches to Switchboard by
// pointing WebsocketProvider at ws://host/yjs. Concurrent edits converge, a late joiner gets
// the whole document, awareness appears and disappears with its client, a server restarted
// with the same --data-dir still has the content, and in a cluster (a real redis-server)
// clients on different nodes converge and a node that never had the document serves it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';

import { Server, freePort, within } from './helpers.mjs';

const servers = [];
const providers = [];
const children = [];

afterEach(async () => {
  closeProviders();
  for (const server of servers.splice(0)) await server.stop();
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
    await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve()));
  }
});

/** A redis-server child on a free port, keeping nothing on disk; resolves once it listens. */
async function redisServer() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await within(
    new Promise((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
      child.stdout.on('data', (data) => {
        if (String(data).includes('Ready to accept connections')) resolve();
      });
    }),
    'redis-server to listen',
  );
  return `redis://127.0.0.1:${port}`;
}

/** Closes every open provider and its document. The document too: its awareness runs an
 * interval timer until the document is destroyed, which would keep the test process alive. */
function closeProviders() {
  for (const provider of providers.splice(0)) {
    provider.destroy();
    provider.doc.destroy();
  }
}

async function server(args = []) {
  const started = await Server.start({ args });
  servers.push(started);
  return started;
}

/** A document synced with `docName` on `server` through y-websocket's provider. */
async function open(server, docName, params = {}) {
  const doc = new Y.Doc();
  const provider = new WebsocketProvider(`ws://127.0.0.1:${server.port}/yjs`, docName, doc, {
    WebSocketPolyfill: WebSocket,
    params,
    maxBackoffTime: 200,
  });
  providers.push(provider);
  if (!provider.synced) {
    await within(new Promise((resolve) => provider.once('sync', resolve)), `${docName} to sync`);
  }
  return { doc, provider, text: doc.getText('text') };
}

/** Resolves once `check()` holds, re-checking on every change of `doc`. */
function until(doc, check, what) {
  return within(
    new Promise((resolve) => {
      if (check()) return resolve();
      const onUpdate = () => {
        if (check()) {
          doc.off('update', onUpdate);
          resolve();
        }
      };
      doc.on('update', onUpdate);
    }),
    what,
  );
}

test('two clients editing the same text concurrently converge', async () => {
  const s = await server();
  const ana = await open(s, 'notes');
  const ben = await open(s, 'notes');
  // Both type at once, before either has seen the other's edit.
  for (let i = 0; i < 20; i++) {
    ana.text.insert(0, 'a');
    ben.text.insert(ben.text.length, 'b');
  }
  const both = (side) => side.text.length === 40;
  await until(ana.doc, () => both(ana), 'ana to get every edit');
  await until(ben.doc, () => both(ben), 'ben to get every edit');
  assert.equal(ana.text.toString(), ben.text.toString());
  assert.match(ana.text.toString(), /^(?=(?:[^a]*a){20})(?=(?:[^b]*b){20})/);
});

test('a late joiner gets the whole document', async () => {
  const s = await server();
  const first = await open(s, 'handbook');
  const content = 'x'.repeat(100 * 1024);
  first.text.insert(0, content);
  first.doc.getMap('meta').set('title', 'Handbook');
  const late = await open(s, 'handbook');
  await until(late.doc, () => late.text.length === content.length, 'the late joiner to get 100 KB');
  assert.equal(late.text.toString(), content);
  assert.equal(late.doc.getMap('meta').get('title'), 'Handbook');
});

test('awareness appears, and disappears when its client disconnects', async () => {
  const s = await server();
  const ana = await open(s, 'cursors');
  const ben = await open(s, 'cursors');
  const anaId = ana.doc.clientID;
  const seen = (state) => ben.provider.awareness.getStates().get(anaId)?.user?.name === state;
  const change = (check, what) =>
    within(
      new Promise((resolve) => {
        if (check()) return resolve();
        const onChange = () => {
          if (check()) {
            ben.provider.awareness.off('change', onChange);
            resolve();
          }
        };
        ben.provider.awareness.on('change', onChange);
      }),
      what,
    );
  ana.provider.awareness.setLocalStateField('user', { name: 'Ana', color: '#f00' });
  await change(() => seen('Ana'), "ana's cursor to appear");
  // A hard disconnect: the server removes the state for her (no ghost cursor).
  ana.provider.ws.terminate();
  ana.provider.shouldConnect = false;
  await change(() => !ben.provider.awareness.getStates().has(anaId), "ana's cursor to go");
});

test('a server restarted with the same --data-dir keeps the content', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-yjs-'));
  try {
    const first = await server(['--data-dir', dir]);
    const writer = await open(first, 'kept');
    writer.text.insert(0, 'survives restarts');
    const reader = await open(first, 'kept');
    await until(reader.doc, () => reader.text.toString() === 'survives restarts', 'the reader');
    // A graceful stop (SIGTERM) saves what is open.
    first.signal('SIGTERM');
    await within(first.exited, 'the server to stop');
    closeProviders();

    const second = await server(['--data-dir', dir]);
    const back = await open(second, 'kept');
    assert.equal(back.text.toString(), 'survives restarts');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('in a cluster, clients on different nodes converge and a new node serves the document', async () => {
  const redis = await redisServer();
  const a = await server(['--redis-url', redis, '--node-id', 'a']);
  const b = await server(['--redis-url', redis, '--node-id', 'b']);
  const onA = await open(a, 'shared');
  const onB = await open(b, 'shared');
  onA.text.insert(0, 'from a. ');
  onB.text.insert(0, 'from b. ');
  const whole = (side) => side.text.length === 16;
  await until(onA.doc, () => whole(onA), 'node a to get both edits');
  await until(onB.doc, () => whole(onB), 'node b to get both edits');
  assert.equal(onA.text.toString(), onB.text.toString());
  const c = await server(['--redis-url', redis, '--node-id', 'c']);
  const onC = await open(c, 'shared');
  await until(onC.doc, () => whole(onC), 'node c to load the document');
  assert.equal(onC.text.toString(), onA.text.toString());
});
