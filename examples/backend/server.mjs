// An application backend for Switchboard, with Node.js alone (node:http, node:crypto): copy
// it and replace the parts marked "a real backend". It
//   - logs users in (trivially: any name, no password) with a signed session cookie,
//   - issues short-lived HS256 JWTs for the JS client's `getToken` (GET /token),
//   - receives webhooks, checking each request's signature and age (POST /webhooks),
//   - answers the proxies: who connects, whether a join or a subscribe may go ahead, and the
//     custom message types `whoami` and `sum` (POST /proxy/connect|join|subscribe|rpc).
// README.md beside it has the Switchboard flags for each setup. Settings are environment
// variables, read and checked at start; they start with BACKEND_ because the server reads
// unprefixed ones (JWT_SECRET, PORT) as its own older names. Every line it prints is
// `<kind> <json>`.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import {
  USER_NAME,
  cookie,
  readWebhook,
  signJwt,
  signSession,
  verifyJwt,
  verifySession,
} from './auth.mjs';

/** The session cookie's name. */
const SESSION_COOKIE = 'session';
/** How long a login lasts. */
const SESSION_TTL_MS = 24 * 60 * 60 * 1000;
/** Largest body taken by the login and the proxies (Switchboard's proxy requests are small). */
const SMALL_BODY = 64 * 1024;
/** Largest webhook body: up to 100 events, a `client_message` holding a client's frame. */
const WEBHOOK_BODY = 16 * 1024 * 1024;

const settings = readSettings(process.env);

/** An answer that ends a request early: a status and the JSON `{error: message}`. */
class Refusal extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Prints one line: the kind of what happened and its details. */
function log(kind, details) {
  console.log(`${kind} ${JSON.stringify(details)}`);
}

/** The settings from the environment; a bad one stops the backend with its name. */
function readSettings(env) {
  const fail = (name, why) => {
    console.error(`invalid setting ${name}: ${why}`);
    process.exit(2);
  };
  const integer = (name, fallback, min, max) => {
    const value = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
    if (!Number.isInteger(value) || value < min || value > max) {
      fail(name, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(env[name])}`);
    }
    return value;
  };
  const secret = (name) => env[name] || fail(name, 'required (the same value as the server\'s)');
  const list = (name, fallback) =>
    (env[name] ?? fallback).split(',').map((item) => item.trim()).filter(Boolean);
  return {
    host: env.BACKEND_HOST || '127.0.0.1',
    port: integer('BACKEND_PORT', 4000, 0, 65535),
    // The server's --jwt-secret: tokens this backend signs, the server verifies.
    jwtSecret: secret('BACKEND_JWT_SECRET'),
    // The server's --webhook-secret.
    webhookSecret: secret('BACKEND_WEBHOOK_SECRET'),
    // Only this backend reads sessions; a random key logs everyone out at a restart.
    sessionSecret: env.BACKEND_SESSION_SECRET || randomBytes(32).toString('hex'),
    tokenTtl: integer('BACKEND_TOKEN_TTL', 300, 1, 24 * 60 * 60),
    webhookMaxAgeMs: integer('BACKEND_WEBHOOK_MAX_AGE', 300, 1, 24 * 60 * 60) * 1000,
    staff: new Set(list('BACKEND_STAFF_USERS', 'admin')),
    allowedOrigins: new Set(list('BACKEND_ALLOWED_ORIGINS', 'http://127.0.0.1:3000,http://localhost:3000')),
  };
}

/** Whether `user` may enter `staff-…` rooms and `staff:…` channels. A real backend asks its
 * database. */
function isStaff(user) {
  return settings.staff.has(user);
}

/**
 * What `user` may do, in the shape of Switchboard's JWT claims (docs/security.md): the same
 * object goes into the tokens and into the connect proxy's answers. Every room (the join proxy
 * keeps `staff-…` rooms for staff), the demo's `typing:…` channels, `news:…` and the user's own
 * channel.
 */
function grants(user) {
  return {
    rooms: ['*'],
    channels: {
      subscribe: ['typing:*', 'news:*', 'staff:*', `user:${user}`],
      publish: ['typing:*'],
    },
  };
}

// ---- Login and tokens: called by browsers, so they answer CORS for ALLOWED_ORIGINS. ----

/** POST /login `{"user": "alice"}`: the trivial login of this example, which believes any
 * name. A real backend checks a password (or an identity provider) here. */
async function login(request) {
  if (!request.headers['content-type']?.startsWith('application/json')) {
    // A form cannot post JSON across origins without CORS's preflight: no login by CSRF.
    throw new Refusal(415, 'send JSON: {"user": "alice"}');
  }
  const { user } = await readJson(request, SMALL_BODY);
  if (typeof user !== 'string' || !USER_NAME.test(user)) {
    throw new Refusal(400, 'user must be 1 to 64 letters, digits, _ or -');
  }
  const session = signSession(settings.sessionSecret, user, Date.now() + SESSION_TTL_MS);
  log('login', { user });
  return {
    json: { user },
    headers: {
      'set-cookie':
        `${SESSION_COOKIE}=${session}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_TTL_MS / 1000}`,
    },
  };
}

/** GET /token: a JWT for the logged-in user, valid for TOKEN_TTL seconds; what `getToken`
 * returns to the JS client. */
function token(request) {
  const user = verifySession(settings.sessionSecret, cookie(request.headers.cookie, SESSION_COOKIE));
  if (!user) throw new Refusal(401, 'log in first (POST /login)');
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + settings.tokenTtl;
  const jwt = signJwt(settings.jwtSecret, { sub: user, iat, exp, ...grants(user) });
  log('token', { user, exp });
  return { json: { token: jwt, user, expiresAt: exp * 1000 }, headers: { 'cache-control': 'no-store' } };
}

// ---- Webhooks: called by Switchboard, signed. ----

/** POST /webhooks: a signed batch of events. Any 2xx takes them; anything else is retried. */
async function webhooks(request) {
  const raw = await readBody(request, WEBHOOK_BODY);
  const { webhookSecret, webhookMaxAgeMs } = settings;
  const { batch, refused } = readWebhook(webhookSecret, request.headers, raw, webhookMaxAgeMs);
  if (refused) {
    log('webhook_refused', { reason: refused });
    throw new Refusal(401, refused);
  }
  for (const event of batch.events) handleEvent(event);
  return { status: 204 };
}

/** One event of a verified batch (docs/webhooks.md has their fields). */
function handleEvent(event) {
  switch (event.name) {
    // A real backend would start or stop work for the room: a game loop, a recording.
    case 'room_occupied':
    case 'room_vacated':
    // ... keep "who is in the room" in its database, or notify the room's owner.
    case 'member_added':
    case 'member_removed':
    // ... show "last seen", or mail the user what they missed while offline.
    case 'presence_changed':
    // ... start or stop producing the channel's data (a price feed nobody watches).
    case 'channel_occupied':
    case 'channel_vacated':
    // ... act on a client's frame of a type listed in --webhook-client-types.
    case 'client_message':
      log('webhook', event);
      break;
    default:
      // A newer server's event: taken (so it is not sent again) and otherwise ignored.
      log('webhook_unknown', event);
  }
}

// ---- Proxies: called by Switchboard. They trust their caller: see README.md. ----

/** POST /proxy/connect: who is connecting, from the session cookie of the upgrade request
 * or from a token this backend issued (sent by the client in its `auth` frame). */
async function proxyConnect(request) {
  const ask = await readJson(request, SMALL_BODY);
  const claims = verifyJwt(settings.jwtSecret, ask.token);
  const session = cookie(ask.headers?.cookie, SESSION_COOKIE);
  const user = claims?.sub ?? verifySession(settings.sessionSecret, session);
  if (!user || !USER_NAME.test(user)) {
    log('connect', { allowed: false, transport: ask.transport, remoteAddr: ask.remoteAddr });
    return { json: { error: { code: 401, message: 'log in first' } } };
  }
  log('connect', { allowed: true, user, by: claims ? 'token' : 'cookie', transport: ask.transport });
  return { json: { result: { user, ...grants(user) } } };
}

/** POST /proxy/join: rooms named `staff-…` are for staff. */
async function proxyJoin(request) {
  const ask = await readJson(request, SMALL_BODY);
  return approve('join', ask, ask.room, 'staff-');
}

/** POST /proxy/subscribe: channels named `staff:…` are for staff. */
async function proxySubscribe(request) {
  const ask = await readJson(request, SMALL_BODY);
  return approve('subscribe', ask, ask.channel, 'staff:');
}

function approve(kind, ask, name, staffPrefix) {
  const allowed = typeof name === 'string' && (!name.startsWith(staffPrefix) || isStaff(ask.userId));
  log(kind, { user: ask.userId, name, allowed });
  // The message reaches the client in a FORBIDDEN error.
  return { json: allowed ? { result: {} } : { error: { message: 'staff only' } } };
}

/** The custom message types this backend answers: `{type, payload}` from the client, the
 * result goes back to it as a frame of the same type. */
const procedures = {
  whoami: (ask) => ({ result: { userId: ask.userId, staff: isStaff(ask.userId) } }),
  sum: (ask) => {
    const { a, b } = ask.payload ?? {};
    if (typeof a !== 'number' || typeof b !== 'number') {
      return { error: { code: 'INVALID_MESSAGE', message: 'sum needs numbers a and b' } };
    }
    return { result: { sum: a + b } };
  },
};

/** POST /proxy/rpc: a client frame of a type the server does not know. */
async function proxyRpc(request) {
  const ask = await readJson(request, SMALL_BODY);
  const procedure = Object.hasOwn(procedures, ask.type) ? procedures[ask.type] : null;
  const answer = procedure
    ? procedure(ask)
    : { error: { code: 'UNKNOWN_TYPE', message: `no procedure ${String(ask.type).slice(0, 64)}` } };
  log('rpc', { user: ask.userId, type: ask.type, ok: 'result' in answer });
  return { json: answer };
}

// ---- HTTP plumbing. ----

const routes = {
  'POST /login': login,
  'GET /token': token,
  'POST /webhooks': webhooks,
  'POST /proxy/connect': proxyConnect,
  'POST /proxy/join': proxyJoin,
  'POST /proxy/subscribe': proxySubscribe,
  'POST /proxy/rpc': proxyRpc,
};
/** The routes that browsers call from other origins. */
const browserPaths = new Set(['/login', '/token']);

/** The body, at most `limit` bytes (else 413). */
function readBody(request, limit) {
  if (Number(request.headers['content-length']) > limit) {
    return Promise.reject(new Refusal(413, 'body too large'));
  }
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Refusal(413, 'body too large'));
        // Read and drop the rest, so the answer can still be sent.
        request.removeAllListeners('data');
        request.resume();
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

async function readJson(request, limit) {
  const body = await readBody(request, limit);
  try {
    const value = JSON.parse(body.toString('utf8'));
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value;
  } catch {
    // Answered below, like any body that is not an object.
  }
  throw new Refusal(400, 'expected a JSON object');
}

/** CORS headers for a browser route when the request's origin is allowed. Credentials are
 * allowed, so the origin is named, never `*`. */
function cors(request, path) {
  const origin = request.headers.origin;
  if (!browserPaths.has(path) || !settings.allowedOrigins.has(origin)) return {};
  return {
    'access-control-allow-origin': origin,
    'access-control-allow-credentials': 'true',
    vary: 'Origin',
  };
}

async function handle(request, response) {
  let path;
  try {
    path = new URL(request.url, 'http://backend').pathname;
  } catch {
    response.writeHead(400).end();
    return;
  }
  const allowOrigin = cors(request, path);
  if (request.method === 'OPTIONS') {
    const preflight = Object.keys(allowOrigin).length === 0 ? {} : {
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'content-type',
      'access-control-max-age': '600',
    };
    response.writeHead(204, { ...allowOrigin, ...preflight }).end();
    return;
  }
  const route = routes[`${request.method} ${path}`];
  let answer;
  try {
    if (!route) throw new Refusal(404, 'no such endpoint');
    answer = await route(request);
  } catch (error) {
    if (!(error instanceof Refusal)) {
      log('failure', { path, error: String(error?.stack ?? error) });
    }
    const status = error instanceof Refusal ? error.status : 500;
    answer = { status, json: { error: error instanceof Refusal ? error.message : 'internal error' } };
  }
  const headers = { ...allowOrigin, ...answer.headers };
  if (answer.json === undefined) {
    response.writeHead(answer.status ?? 204, headers).end();
  } else {
    headers['content-type'] = 'application/json';
    response.writeHead(answer.status ?? 200, headers).end(JSON.stringify(answer.json));
  }
}

const server = createServer((request, response) => {
  handle(request, response).catch((error) => {
    log('failure', { error: String(error) });
    response.destroy();
  });
});
server.listen(settings.port, settings.host, () => {
  const { address, port } = server.address();
  const host = address.includes(':') ? `[${address}]` : address;
  const url = `http://${host}:${port}`;
  log('listening', { url, staff: [...settings.staff], tokenTtl: settings.tokenTtl });
});
