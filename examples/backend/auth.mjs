// The example backend's cryptography, with node:crypto only: the HS256 JWTs it issues for
// Switchboard (`--jwt-secret` must be the same secret), the session cookies of its trivial
// login, and the check of a webhook request's signature and age. Nothing here touches the
// network; server.mjs calls it.

import { createHmac, timingSafeEqual } from 'node:crypto';

/** A user name this backend accepts at its login: what Switchboard accepts as a user id,
 * narrowed so that a session cookie can be split on `.`. */
export const USER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** The JWT header of every token: HS256, the algorithm `--jwt-secret` verifies. */
const JWT_HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

function base64url(text) {
  return Buffer.from(text).toString('base64url');
}

function hmac(secret, text, encoding) {
  return createHmac('sha256', secret).update(text).digest(encoding);
}

/** Compares two strings in constant time (for equal lengths; a length says nothing secret). */
function sameText(a, b) {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/** A signed JWT holding `claims`. */
export function signJwt(secret, claims) {
  const body = `${JWT_HEADER}.${base64url(JSON.stringify(claims))}`;
  return `${body}.${hmac(secret, body, 'base64url')}`;
}

/**
 * The claims of `token` when it is one of ours (HS256, signed with `secret`) and has not
 * expired; `null` otherwise. Switchboard does the same check itself when it runs with
 * `--jwt-secret`; the connect proxy needs it here because there the backend decides.
 */
export function verifyJwt(secret, token, now = Date.now()) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3 || parts[0] !== JWT_HEADER) return null;
  if (!sameText(parts[2], hmac(secret, `${parts[0]}.${parts[1]}`, 'base64url'))) return null;
  let claims;
  try {
    claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  const fresh = typeof claims?.exp === 'number' && claims.exp * 1000 > now;
  return fresh && typeof claims.sub === 'string' ? claims : null;
}

/** A session cookie's value for `user`, valid until `expiresAt` (ms): `user.expiry.mac`. */
export function signSession(secret, user, expiresAt) {
  const body = `${user}.${expiresAt}`;
  return `${body}.${hmac(secret, body, 'base64url')}`;
}

/** The user of a session cookie's value, or `null` when it is forged, malformed or old. */
export function verifySession(secret, value, now = Date.now()) {
  const parts = typeof value === 'string' ? value.split('.') : [];
  if (parts.length !== 3 || !USER_NAME.test(parts[0])) return null;
  if (!sameText(parts[2], hmac(secret, `${parts[0]}.${parts[1]}`, 'base64url'))) return null;
  return Number(parts[1]) > now ? parts[0] : null;
}

/** The value of cookie `name` in a `Cookie` header (`a=1; b=2`), or `undefined`. */
export function cookie(header, name) {
  for (const pair of (header ?? '').split(';')) {
    const at = pair.indexOf('=');
    if (at > 0 && pair.slice(0, at).trim() === name) return pair.slice(at + 1).trim();
  }
  return undefined;
}

/**
 * A webhook request's batch (`{time, node, events}`), or why it must be refused. The
 * `X-Switchboard-Signature` must be `sha256=` and the hex HMAC-SHA256 of the raw body (the
 * bytes received, before any parsing) with the webhook secret, compared in constant time.
 * `X-Switchboard-Timestamp` (ms) must be at most `maxAgeMs` from now, so that a captured
 * request cannot be replayed later; only the body is signed, so the header must also equal the
 * body's `time`.
 */
export function readWebhook(secret, headers, rawBody, maxAgeMs, now = Date.now()) {
  const signature = headers['x-switchboard-signature'];
  if (typeof signature !== 'string' || !signature.startsWith('sha256=')) {
    return { refused: 'no signature' };
  }
  if (!sameText(signature, `sha256=${hmac(secret, rawBody, 'hex')}`)) {
    return { refused: 'wrong signature' };
  }
  const sent = Number(headers['x-switchboard-timestamp']);
  if (!Number.isSafeInteger(sent)) return { refused: 'no timestamp' };
  // A sender's clock a little ahead of ours is no replay, so the window is both ways.
  if (Math.abs(now - sent) > maxAgeMs) return { refused: 'stale timestamp' };
  let batch;
  try {
    batch = JSON.parse(rawBody.toString('utf8'));
  } catch {
    return { refused: 'a body that is not JSON' };
  }
  if (batch?.time !== sent || !Array.isArray(batch.events)) {
    return { refused: 'a body that does not match its timestamp' };
  }
  return { batch };
}
