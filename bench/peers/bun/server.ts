// The peer baseline of the bench: a Bun (uWebSockets) server that speaks the part of
// Switchboard's protocol v1 the bench scenarios use, written the way a Bun user would write it.
//
// Owns: the WebSocket endpoint (`?userId=` in the query), `connect` on open, `join_room` ->
// `room_joined` (members listed as Switchboard does, at most 1000) and `user_joined` to the
// others, `leave_room`/close -> `user_left`, `message` fanned out to the other members of the
// room (`ws.publish`: encoded once, the sender excluded), `broadcast` to every connection
// (`server.publish` on one topic), `ping` -> `pong`, and `GET /stats` with Switchboard's first
// four fields. Frames have Switchboard's shape, so the bench cannot tell the two apart.
//
// Not a product: no auth, no rate limits, no history, no presence beyond the member list, no
// cluster. Those are costs Switchboard pays and this server does not, which makes it a
// conservative baseline.
//
//   bun server.ts --host 127.0.0.1 --port 39500

import type { ServerWebSocket } from "bun";

/** Switchboard lists at most this many members in `room_joined`. */
const MAX_LISTED_MEMBERS = 1000;
/** The topic every connection subscribes to, for `broadcast`. */
const EVERYONE = "\u0000everyone";

type Data = { userId: string; connectionId: string; rooms: Set<string> };
type Member = { connections: number; lastSeen: number };
type Room = { members: Map<string, Member>; offset: number };

function arg(name: string, fallback: string): string {
  const at = Bun.argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < Bun.argv.length ? Bun.argv[at + 1] : fallback;
}

const host = arg("host", "127.0.0.1");
const port = Number(arg("port", "39500"));
const node = crypto.randomUUID().slice(0, 8);
const rooms = new Map<string, Room>();
const users = new Map<string, number>();
let connections = 0;
let nextConnection = 0;
let messagesIn = 0;

function frame(type: string, fields: Record<string, unknown>): string {
  return JSON.stringify({ type, ...fields, timestamp: Date.now() });
}

function error(ws: ServerWebSocket<Data>, code: string, message: string): void {
  ws.send(frame("error", { payload: { code, message } }));
}

function join(ws: ServerWebSocket<Data>, name: string): void {
  if (typeof name !== "string" || name.length === 0) {
    return error(ws, "INVALID_PAYLOAD", "room must be a non-empty string");
  }
  const { userId, rooms: joined } = ws.data;
  let room = rooms.get(name);
  if (!room) {
    room = { members: new Map(), offset: 0 };
    rooms.set(name, room);
  }
  const now = Date.now();
  const first = !joined.has(name);
  let member = room.members.get(userId);
  const newUser = member === undefined;
  if (first) {
    joined.add(name);
    if (!member) {
      member = { connections: 0, lastSeen: now };
      room.members.set(userId, member);
    }
    member.connections += 1;
    member.lastSeen = now;
  }
  const members = [];
  for (const [id, m] of room.members) {
    if (members.length === MAX_LISTED_MEMBERS) break;
    members.push({ userId: id, status: "online", lastSeen: m.lastSeen });
  }
  ws.send(
    frame("room_joined", {
      room: name,
      payload: { room: name, members, memberCount: room.members.size, offset: room.offset, epoch: node },
    }),
  );
  if (first) {
    ws.subscribe(name);
    if (newUser) {
      ws.publish(name, frame("user_joined", { room: name, userId, payload: { userId, room: name } }));
    }
  }
}

function leave(ws: ServerWebSocket<Data>, name: string, closing: boolean): void {
  const { userId, rooms: joined } = ws.data;
  const room = rooms.get(name);
  if (!joined.delete(name) || !room) return;
  const member = room.members.get(userId);
  if (member && --member.connections === 0) {
    room.members.delete(userId);
    const left = frame("user_left", { room: name, userId, payload: { userId, room: name } });
    // A closing socket can no longer publish; the server publishes to the remaining members.
    if (closing) server.publish(name, left);
    else ws.publish(name, left);
  }
  if (!closing) ws.unsubscribe(name);
  if (room.members.size === 0) rooms.delete(name);
}

function message(ws: ServerWebSocket<Data>, payload: Record<string, unknown>): void {
  const name = payload.room;
  const room = typeof name === "string" ? rooms.get(name) : undefined;
  if (!room || !ws.data.rooms.has(name as string)) {
    return error(ws, "NOT_IN_ROOM", `not a member of room ${JSON.stringify(name)}`);
  }
  room.offset += 1;
  const { room: _, ...rest } = payload;
  ws.publish(
    name as string,
    frame("message", { room: name, userId: ws.data.userId, offset: room.offset, payload: rest }),
  );
}

const server = Bun.serve<Data, {}>({
  hostname: host,
  port,
  fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === "/stats") {
      return Response.json({
        connections,
        rooms: rooms.size,
        onlineUsers: users.size,
        channels: 0,
        messagesIn,
      });
    }
    const userId = url.searchParams.get("userId");
    if (!userId) return new Response("userId is required", { status: 401 });
    const connectionId = `${node}${(++nextConnection).toString(16).padStart(8, "0")}`;
    if (server.upgrade(req, { data: { userId, connectionId, rooms: new Set() } })) return;
    return new Response("WebSocket upgrade expected", { status: 426 });
  },
  websocket: {
    open(ws) {
      connections += 1;
      users.set(ws.data.userId, (users.get(ws.data.userId) ?? 0) + 1);
      ws.subscribe(EVERYONE);
      const { connectionId, userId } = ws.data;
      ws.send(frame("connect", { payload: { connectionId, userId, heartbeatInterval: 30000, node } }));
    },
    message(ws, raw) {
      messagesIn += 1;
      let parsed: { type?: unknown; payload?: unknown };
      try {
        parsed = JSON.parse(typeof raw === "string" ? raw : raw.toString());
      } catch {
        return error(ws, "INVALID_JSON", "the frame is not JSON");
      }
      const payload = (parsed.payload ?? {}) as Record<string, unknown>;
      switch (parsed.type) {
        case "join_room":
          return join(ws, payload.room as string);
        case "leave_room":
          return leave(ws, payload.room as string, false);
        case "message":
          return message(ws, payload);
        case "broadcast":
          server.publish(EVERYONE, frame("broadcast", { userId: ws.data.userId, payload }));
          return;
        case "ping":
          ws.send(JSON.stringify({ type: "pong", payload }));
          return;
        case "pong":
          return;
        default:
          return error(ws, "UNKNOWN_TYPE", `unknown message type ${JSON.stringify(parsed.type)}`);
      }
    },
    close(ws) {
      connections -= 1;
      const left = (users.get(ws.data.userId) ?? 1) - 1;
      if (left === 0) users.delete(ws.data.userId);
      else users.set(ws.data.userId, left);
      for (const name of [...ws.data.rooms]) leave(ws, name, true);
    },
  },
});

console.log(`bun peer listening on ${server.hostname}:${server.port}`);
