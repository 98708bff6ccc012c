// Test harness: the real switchboard binary as a child process on a loopback port, clients
// that use the `ws` package (Node 20 has no global WebSocket), and waits on events with a
// deadline so a missing event fails the test instead of hanging it.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { afterEach } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { SwitchboardClient } from '../dist/switchboard.js';

/** How long any single wait may take before the test fails. */
export const WAIT = 10_000;

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/** The server binary: $SWITCHBOARD_BIN, or the workspace's debug build. */
export function binary() {
  const path = process.env.SWITCHBOARD_BIN ?? `${repo}target/debug/switchboard`;
  if (!existsSync(path)) {
    throw new Error(`no server binary at ${path}: run cargo build -p switchboard or set SWITCHBOARD_BIN`);
  }
  return path;
}

/** A free loopback port (bound and released, so a server can take it next). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A running server; `stop()` kills it by PID and waits for the exit. */
export class Server {
  constructor(child, port) {
    this.child = child;
    this.port = port;
    this.url = `ws://127.0.0.1:${port}/ws`;
    this.http = `http://127.0.0.1:${port}`;
    this.exited = new Promise((resolve) => child.once('exit', resolve));
  }

  /** Starts the binary on `port` (0: any) with JSON logs; resolves once it listens. */
  static async start({ port = 0, args = [] } = {}) {
    const env = { ...process.env };
    for (const key of ['PORT', 'HOST', 'RUST_LOG', 'REDIS_URL', 'SWITCHBOARD_CONFIG']) delete env[key];
    const child = spawn(
      binary(),
      ['--host', '127.0.0.1', '--port', String(port), '--log-format', 'json', ...args],
      { env, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const lines = createInterface({ input: child.stderr });
    const listening = await within(
      new Promise((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
        lines.on('line', (line) => {
          let entry;
          try {
            entry = JSON.parse(line);
          } catch {
            return;
          }
          if (entry.fields?.message === 'switchboard listening') resolve(entry.fields.address);
        });
      }),
      'the server to listen',
    );
    return new Server(child, Number(listening.split(':').pop()));
  }

  /** Sends a signal to the server's process. */
  signal(name) {
    process.kill(this.child.pid, name);
  }

  /** Freezes the process (SIGSTOP: TCP stays open, nothing answers); resolves once every
   * thread has stopped, so no frame sent afterwards can be served. */
  async pause() {
    this.signal('SIGSTOP');
    const tasks = `/proc/${this.child.pid}/task`;
    const deadline = Date.now() + WAIT;
    const running = () =>
      readdirSync(tasks).some((task) => {
        const stat = readFileSync(`${tasks}/${task}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'T';
      });
    while (running()) {
      if (Date.now() > deadline) throw new Error('the server did not stop');
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Resumes a paused process. */
  resume() {
    this.signal('SIGCONT');
  }

  /** Kills the process (SIGKILL: no clean shutdown) and waits until it is gone. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.signal('SIGKILL');
    }
    await this.exited;
  }
}

/**
 * The servers and clients of a test file, killed and closed after each test. `args` go before
 * each server's own.
 */
export function tracked({ args: common = [] } = {}) {
  const servers = [];
  const clients = [];
  afterEach(async () => {
    for (const made of clients.splice(0)) made.close();
    for (const started of servers.splice(0)) await started.stop();
  });
  const track = (made) => {
    clients.push(made);
    return made;
  };
  return {
    /** Starts a server (see `Server.start`). */
    async server(options = {}) {
      const started = await Server.start({ ...options, args: [...common, ...(options.args ?? [])] });
      servers.push(started);
      return started;
    },
    /** A test client (see `client`). */
    make: (url, options) => track(client(url, options)),
    /** Closes `made` after the test. */
    track,
  };
}

/**
 * A WebSocket that can never be opened, as behind a proxy that refuses upgrades. Self-contained,
 * so that a browser page can be given it from its source (`${BlockedWebSocket}`).
 */
export class BlockedWebSocket {
  constructor() {
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    setTimeout(() => {
      this.readyState = 3;
      this.onerror?.({ message: 'blocked' });
      this.onclose?.({ code: 1006, reason: '' });
    });
  }

  send() {
    throw new Error('not open');
  }

  close() {}
}

/** A client for tests: the ws implementation, fast reconnects, and the given options. */
export function client(url, options = {}) {
  return new SwitchboardClient({
    url,
    WebSocket,
    reconnect: { baseDelay: 20, maxDelay: 200 },
    ...options,
  });
}

/** Rejects with a clear message if `promise` takes longer than `ms`. */
export function within(promise, what, ms = WAIT) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The next `type` event of `client` that satisfies `accept`. */
export function next(client, type, accept = () => true, ms = WAIT) {
  let off;
  const event = new Promise((resolve) => {
    off = client.on(type, (value) => {
      if (accept(value)) resolve(value);
    });
  });
  return within(event, `${type} event`, ms).finally(() => off());
}

/** Collects every `type` event of `client`. */
export function collect(client, type) {
  const seen = [];
  client.on(type, (value) => seen.push(value));
  return seen;
}

/** Resolves once `condition()` holds; re-checked on every `type` event of `client`. */
export async function until(client, type, condition, what, ms = WAIT) {
  if (condition()) return;
  await next(client, type, () => condition(), ms).catch(() => {
    throw new Error(`timed out waiting for ${what}`);
  });
}

/** Chromium from Debian (never a downloaded browser), headless. */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** Saves a screenshot of `page` as target/screenshots/NAME.png (a test artefact). */
export async function screenshot(page, name) {
  const dir = `${repo}target/screenshots`;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: `${dir}/${name}.png` });
}

/** An HS256 JWT for `sub`, signed with `secret`, expiring `ttl` seconds from now (second
 * granularity, as `exp` is), with `extra` claims. Returns the token and its `exp`. */
export function mintToken(secret, sub, ttl, extra = {}) {
  const exp = Math.floor(Date.now() / 1000) + ttl;
  return { token: signToken(secret, { sub, exp, ...extra }), exp };
}

/** An HS256 JWT of `claims`, signed with `secret`. */
export function signToken(secret, claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  const signature = createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${signature}`;
}

/**
 * The example backend (`examples/backend/server.mjs`) as a child process on a free loopback
 * port, with `env` as its settings. It prints one `<kind> <json>` line per thing it does; the
 * lines are kept, and `line()` waits for one. `stop()` kills it by PID.
 */
export class Backend {
  constructor(child) {
    this.child = child;
    /** `http://127.0.0.1:PORT`, once it listens. */
    this.http = null;
    this.lines = [];
    this.listeners = new Set();
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    createInterface({ input: child.stdout }).on('line', (text) => {
      const space = text.indexOf(' ');
      const line = { kind: text.slice(0, space), details: JSON.parse(text.slice(space + 1)) };
      this.lines.push(line);
      for (const listener of this.listeners) listener(line);
    });
  }

  /** Starts the backend; resolves once it listens. */
  static async start(env) {
    const child = spawn(process.execPath, [`${repo}examples/backend/server.mjs`], {
      env: { PATH: process.env.PATH, BACKEND_HOST: '127.0.0.1', BACKEND_PORT: '0', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const backend = new Backend(child);
    // Settles only on an exit before listening: a later exit rejects nothing.
    const failed = new Promise((_, reject) => {
      child.once('exit', (code) => {
        if (backend.http === null) reject(new Error(`the backend exited with ${code} before listening`));
      });
    });
    const listening = await Promise.race([backend.line('listening'), failed]);
    backend.http = listening.url;
    return backend;
  }

  /** The details of the first line (printed before or after the call) of `kind` that
   * satisfies `accept`. */
  line(kind, accept = () => true) {
    const matches = (line) => line.kind === kind && accept(line.details);
    const seen = this.lines.find(matches);
    if (seen) return Promise.resolve(seen.details);
    let listener;
    const printed = new Promise((resolve) => {
      listener = (line) => {
        if (matches(line)) resolve(line.details);
      };
      this.listeners.add(listener);
    });
    return within(printed, `a backend line "${kind}"`).finally(() => this.listeners.delete(listener));
  }

  /** Logs `user` in (the backend's trivial login); resolves with the session cookie. */
  async login(user) {
    const response = await fetch(`${this.http}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user }),
    });
    if (!response.ok) throw new Error(`login of ${user}: HTTP ${response.status}`);
    return response.headers.get('set-cookie').split(';')[0];
  }

  /** A `getToken` for a client: a fresh token of `cookie`'s session from `GET /token`. */
  tokens(cookie) {
    return async () => {
      const response = await fetch(`${this.http}/token`, { headers: { cookie } });
      if (!response.ok) throw new Error(`GET /token: HTTP ${response.status}`);
      return (await response.json()).token;
    };
  }

  /** Kills the process and waits until it is gone. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      process.kill(this.child.pid, 'SIGKILL');
    }
    await this.exited;
  }
}
