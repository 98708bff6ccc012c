/**
 * Switchboard client: one dependency-free ES module for browsers and Node.js 20+ that speaks
 * the Switchboard wire protocol v1 (JSON text frames, see docs/protocol.md), or its MessagePack
 * form with `format: 'msgpack'` (binary frames, subprotocol `switchboard.v1.msgpack`; the
 * codec is the small one at the end of this file, so the module stays one file with no
 * dependency, as `/client.js` serves it).
 *
 * What it owns: one WebSocket at a time and what must survive its loss. The rooms joined, the
 * channels subscribed and the last presence are desired state, replayed on every (re)connect;
 * frames sent while disconnected wait in a bounded queue and are flushed in order after that
 * replay. A dead server is detected by an app-level `ping` with a pong deadline, a hung
 * handshake by a connect deadline, a lost network by the browser's `offline` event; each ends
 * the socket and reconnects with exponential backoff and jitter (at once on `online`).
 * Reconnecting stops after `close()`, after an auth refusal (close 1008 or HTTP 401) and after
 * `maxAttempts` failures in a row.
 *
 * Tokens: a fixed `token`, or `getToken()`, an async function asked for a fresh token before
 * every connection attempt and whenever the server sends `token_expiring`; the client then
 * sends `refresh` with it, and the connection outlives its first token. Tokens go in the
 * `auth` frame, not in the URL (where proxies log them), unless `tokenInUrl` is set. A
 * connection closed with 1008 "token expired" reconnects when there is a `getToken`.
 *
 * Recovery (the server's history, on by default): the client keeps its position (epoch and
 * last offset) in every room and exact channel and rejoins with it as `since`; the server then
 * replays what was missed, in order and once, or says it cannot. Either way the client emits
 * `recovery` (`{room | channel, recovered}`): `recovered: false` means "reload from your own
 * source of truth" (or read {@link SwitchboardClient.history}). See docs/clients.md.
 *
 * What it does not own: outgoing delivery. A frame written to a socket that then dies may be
 * lost; the queue holds only frames no socket has taken.
 */
/** The part of the WebSocket API the client uses (browsers, Node 22+, the `ws` package). */
export interface WebSocketLike {
    readonly readyState: number;
    /** Set to `arraybuffer` for MessagePack, so binary frames arrive as `ArrayBuffer`s. */
    binaryType?: string;
    /** The subprotocol the server selected (`''`: none). */
    readonly protocol?: string;
    send(data: string | Uint8Array): void;
    close(code?: number, reason?: string): void;
    onopen: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
}
/** A WebSocket constructor, such as `globalThis.WebSocket` or the `ws` package's export. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/** How frames travel: JSON text (default) or MessagePack binary frames. */
export type Format = 'json' | 'msgpack';
/** The subprotocol that selects MessagePack frames. */
export declare const MSGPACK_SUBPROTOCOL = "switchboard.v1.msgpack";
/** The transports a client can use. */
export type TransportName = 'websocket' | 'sse';
/** Reconnection with exponential backoff: the n-th retry (from 0) waits
 * `min(maxDelay, baseDelay * multiplier ** n)`, less a random share of up to `jitter` of it. */
export interface ReconnectOptions {
    /** First delay in ms (default 500). */
    baseDelay?: number;
    /** Largest delay in ms (default 30 000). */
    maxDelay?: number;
    /** Growth factor per failed attempt (default 2). */
    multiplier?: number;
    /** Share of each delay taken off at random, 0 to 1 (default 0.5). */
    jitter?: number;
    /** Failed attempts in a row before giving up (default Infinity). */
    maxAttempts?: number;
}
/** App-level heartbeat: after `interval` ms without any frame from the server the client sends
 * `ping`; if nothing arrives within `timeout` ms more, the server is dead. */
export interface HeartbeatOptions {
    /** Quiet time before a ping, in ms (default 25 000). */
    interval?: number;
    /** Pong deadline after a ping, in ms (default 10 000). */
    timeout?: number;
}
/** Options of {@link SwitchboardClient}. */
export interface ClientOptions {
    /** The endpoint, e.g. `ws://localhost:3000/ws`. */
    url: string;
    /** Identity, sent as `?userId=` (honoured when the server's authentication is off). */
    userId?: string;
    /** A fixed JWT, sent in the `auth` frame (or as `?token=` with `tokenInUrl`). */
    token?: string;
    /** Returns a current JWT; called before every connection attempt (its token goes in the
     * `auth` frame) and when the server sends `token_expiring` (its token goes in a `refresh`
     * frame, which keeps the connection open past the old token's expiry). A rejection fails
     * the attempt, which is retried with backoff. Takes precedence over `token`. */
    getToken?: () => Promise<string> | string;
    /** Send `token` as `?token=` in the URL instead of in the `auth` frame (default false; for
     * servers older than the `auth` frame). Not used with `getToken`. */
    tokenInUrl?: boolean;
    /** The WebSocket implementation (default `globalThis.WebSocket`; pass `ws` on Node 20). */
    WebSocket?: WebSocketConstructor;
    /** `'msgpack'`: MessagePack binary frames (subprotocol `switchboard.v1.msgpack`), smaller
     * and able to carry bytes: a `Uint8Array` anywhere in a payload travels as MessagePack
     * `bin` and arrives as a `Uint8Array` (JSON clients see `{"$bytes": "<base64>"}`). Same API
     * and events as `'json'`, the default. */
    format?: Format;
    /** How to reach the server: `'auto'` (default) tries a WebSocket and falls back to SSE by
     * itself when one cannot be opened (announced by a `transport` event); `'websocket'` never
     * falls back; `'sse'` uses SSE only. Without a WebSocket implementation `'auto'` uses SSE. */
    transport?: 'auto' | TransportName;
    /** The SSE endpoint (default: `url` with `ws`/`wss` made `http`/`https` and a last `/ws`
     * path segment, or the root, made `/sse`). */
    sseUrl?: string;
    /** The fetch implementation of the SSE transport (default `globalThis.fetch`). */
    fetch?: typeof fetch;
    /** Backoff settings, or `false` for no reconnection. */
    reconnect?: ReconnectOptions | false;
    /** Heartbeat settings, or `false` for none. */
    heartbeat?: HeartbeatOptions | false;
    /** Deadline for the handshake and the server's `connect` frame, in ms (default 10 000). */
    connectTimeout?: number;
    /** Frames kept while disconnected (default 1000); see {@link SwitchboardClient.send}. */
    maxQueue?: number;
    /** Default `request` timeout in ms (default 10 000). */
    requestTimeout?: number;
    /** Follow the browser's `offline` and `online` events (default true where they exist):
     * going offline ends the socket at once (it may otherwise stay open without delivering
     * anything until the heartbeat notices), coming online reconnects without waiting for the
     * backoff. */
    watchNetwork?: boolean;
}
/** A frame from the server. */
export interface ServerFrame<P = any> {
    type: string;
    payload: P;
    room?: string;
    channel?: string;
    userId?: string;
    timestamp?: number;
    /** A room message's or channel publication's place in its stream (history on). */
    offset?: number;
    id?: string | number;
}
/** A position in a room's or channel's stream: the offset of a message (1 for the first, 0
 * before any) and the epoch of the history it belongs to (a new epoch: that history is lost). */
export interface StreamPosition {
    offset: number;
    epoch: string;
}
/** What the server said about a rejoin or resubscribe after a reconnect. */
export interface RecoveryEvent {
    /** The room, for a rejoin. */
    room?: string;
    /** The channel, for a resubscribe. */
    channel?: string;
    /** True: every message missed since the last connection follows (as ordinary `message` or
     * `publish` frames), in order and once, then live ones. False: messages may have been
     * missed and none are replayed: reload from the application's own source of truth. */
    recovered: boolean;
    /** The stream's latest position when the server answered (null: history is off). */
    position: StreamPosition | null;
}
/** A `history` request: a room's or an exact channel's retained messages. Without `since`
 * the latest ones; with it, the first ones after that position (none if its epoch is not the
 * stream's). At most `limit`, or the server's history size. */
export type HistoryQuery = ({
    room: string;
} | {
    channel: string;
}) & {
    limit?: number;
    since?: StreamPosition;
};
/** The answer to {@link SwitchboardClient.history}. */
export interface HistoryPage {
    /** The stream's epoch. */
    epoch: string;
    /** The stream's latest offset (0 when it has had no message). */
    offset: number;
    /** The messages, oldest first, each the frame as it was delivered (with its `offset`). */
    publications: ServerFrame[];
}
/** A user's presence. */
export interface Presence {
    userId: string;
    status: PresenceStatus;
    metadata?: unknown;
    lastSeen: number;
}
/** The statuses a user can have. */
export type PresenceStatus = 'online' | 'away' | 'offline';
/** Payload of `connect`, the server's first frame. */
export interface ConnectInfo {
    connectionId: string;
    userId: string;
    heartbeatInterval: number;
    node: string;
}
/** Payload of `room_joined`; the stream fields are there when the server keeps history. */
export interface RoomJoined {
    room: string;
    members: Presence[];
    memberCount: number;
    /** The room's latest offset. */
    offset?: number;
    /** The room's epoch. */
    epoch?: string;
    /** The verdict on `since` (see {@link RecoveryEvent}); only for a join that sent one. */
    recovered?: boolean;
}
/** Payload of `subscribed`; the stream fields as for {@link RoomJoined} (none for patterns
 * and `presence:` channels, which have no stream). */
export interface Subscribed {
    channel: string;
    offset?: number;
    epoch?: string;
    recovered?: boolean;
}
/** Payload of `error`. */
export interface ErrorPayload {
    code: string;
    message: string;
    retryAfter?: number;
    id?: string | number;
}
/** Why the connection went down, and whether the client will try again. */
export interface DisconnectInfo {
    code: number;
    reason: string;
    willReconnect: boolean;
}
/** The events and the frame types each carries. Any other string names a custom frame type. */
export interface ClientEvents {
    /** Connected and state replayed; `reconnect` is false for the first connection. */
    connected: ConnectInfo & {
        reconnect: boolean;
    };
    /** The socket is gone. */
    disconnected: DisconnectInfo;
    /** A retry is scheduled. */
    reconnecting: {
        attempt: number;
        delay: number;
    };
    /** The client stopped for good (after `close()`, an auth refusal or too many attempts). */
    closed: DisconnectInfo;
    /** A frame was refused because the queue was full. */
    dropped: {
        type: string;
        payload: unknown;
    };
    /** The server's verdict on a rejoin or resubscribe after a reconnect. */
    recovery: RecoveryEvent;
    /** The client changed transport: `{name: 'sse', reason}` when it fell back to SSE because
     * a WebSocket could not be opened (or when there is no WebSocket implementation). */
    transport: {
        name: TransportName;
        reason: string;
    };
    connect: ServerFrame<ConnectInfo>;
    message: ServerFrame<{
        content: unknown;
        [key: string]: unknown;
    }>;
    broadcast: ServerFrame<{
        content: unknown;
        [key: string]: unknown;
    }>;
    publish: ServerFrame<unknown>;
    presence: ServerFrame<Presence>;
    user_joined: ServerFrame<{
        userId: string;
        room: string;
    }>;
    user_left: ServerFrame<{
        userId: string;
        room: string;
    }>;
    room_joined: ServerFrame<RoomJoined>;
    room_left: ServerFrame<{
        room: string;
    }>;
    subscribed: ServerFrame<Subscribed>;
    history: ServerFrame<HistoryPage>;
    unsubscribed: ServerFrame<{
        channel: string;
    }>;
    ping: ServerFrame<{
        timestamp?: number;
    }>;
    pong: ServerFrame<{
        timestamp?: number;
    }>;
    ack: ServerFrame<{
        id: string | number;
    }>;
    /** An `error` frame that answers no pending request. */
    error: ServerFrame<ErrorPayload>;
    /** The connection's token expires at `expiresAt` (ms since the epoch); with `getToken` the
     * client has already asked for a new one and is sending `refresh`. */
    token_expiring: ServerFrame<{
        expiresAt: number;
    }>;
}
/** The connection's state. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'closed';
/** A refused or failed request: `code` is the server's error code, or `TIMEOUT`,
 * `DISCONNECTED`, `CLOSED`, `QUEUE_FULL`, `UNEXPECTED_REPLY` or `TOKEN` (`getToken` failed)
 * from the client. */
export declare class SwitchboardError extends Error {
    readonly code: string;
    readonly retryAfter: number | undefined;
    constructor(code: string, message: string, retryAfter?: number);
}
type Handler = (event: any) => void;
/** A Switchboard connection that survives server restarts and network loss. */
export declare class SwitchboardClient {
    private readonly options;
    private readonly WebSocketImpl;
    /** The transport of the next attempt; `'auto'` settles on SSE after a WebSocket fails. */
    private transportName;
    /** A WebSocket of this client opened once: a later failure is the server's or the
     * network's, not a block, and never makes `'auto'` fall back. */
    private websocketWorked;
    /** SSE is in use because `'auto'` fell back to it. */
    private fellBack;
    private socket;
    private stateValue;
    private info;
    private everConnected;
    private attempt;
    private retryTimer;
    private connectTimer;
    private quietTimer;
    private deadlineTimer;
    /** Frames no socket has taken yet, oldest first; at most `maxQueue`. */
    private readonly queue;
    private readonly pending;
    private nextId;
    private readonly handlers;
    private readonly joinedRooms;
    private readonly rooms;
    private readonly channels;
    /** Where the client is in each stream it follows, sent as `since` when rejoining. */
    private readonly positions;
    /** Own messages written to the current socket whose ack (with their offset) has not come:
     * id -> stream. Emptied when the socket goes. */
    private readonly unacked;
    private stopWatchingNetwork;
    private presence;
    private firstConnect;
    /** Whether the current socket speaks MessagePack (`format: 'msgpack'` over a WebSocket). */
    private binary;
    /** Counts `open()` calls, so a token that arrives after its attempt was abandoned (or the
     * client closed) is dropped. */
    private generation;
    constructor(options: ClientOptions);
    /** The transport in use, or to be used by the next connection attempt. */
    get transport(): TransportName;
    /** The connection's state. */
    get state(): ConnectionState;
    /** The current connection's `connect` payload, while connected. */
    get connection(): ConnectInfo | null;
    /** How many frames wait in the queue. */
    get queued(): number;
    /** Connects; resolves with the first `connect` payload, rejects if the client closes first. */
    connect(): Promise<ConnectInfo>;
    /** Closes for good: no reconnect; queued frames are dropped and pending requests rejected. */
    close(code?: number, reason?: string): void;
    /** Listens to an event or a frame type; returns a function that stops listening. */
    on<K extends keyof ClientEvents>(type: K, handler: (event: ClientEvents[K]) => void): () => void;
    on(type: string, handler: (frame: ServerFrame) => void): () => void;
    /** Stops a handler registered with {@link on}. */
    off(type: string, handler: Handler): void;
    /**
     * Sends a frame now, or queues it while disconnected. Returns false, emits `dropped` and
     * sends nothing when the queue already holds `maxQueue` frames: the newest frame is the one
     * refused, so what is queued stays in order and without gaps.
     */
    send(type: string, payload: unknown): boolean;
    /**
     * Sends a frame with an `id` and resolves with the first answer carrying that id: the direct
     * reply (`room_joined`, `subscribed`, `pong`, …) or the `ack`. Rejects with a
     * {@link SwitchboardError}: the server's `error` code, `TIMEOUT` after `timeout` ms,
     * `DISCONNECTED` if the socket it was written to died first, `CLOSED` or `QUEUE_FULL`.
     */
    request(type: string, payload: unknown, options?: {
        timeout?: number;
    }): Promise<ServerFrame>;
    /**
     * Calls a procedure of the application's backend (the server's `--proxy-rpc-url`, or a
     * message handler of an embedding application): sends a frame of `type` with an `id` and
     * resolves with the `payload` of the first frame answering it: the backend's result (a frame
     * of the same type), or the `ack` of a handler that replied nothing. Rejects as
     * {@link request}: with the backend's error code (`INTERNAL` when the backend is down, slow or
     * answers nonsense), `UNKNOWN_TYPE` when nothing handles the type, or `TIMEOUT`.
     *
     * ```js
     * const { sum } = await client.rpc('sum', { a: 2, b: 3 });
     * ```
     */
    rpc<T = unknown>(type: string, payload: unknown, options?: {
        timeout?: number;
    }): Promise<T>;
    /**
     * Reads a room's or exact channel's retained messages (membership or subscribe rights
     * needed), each the frame as it was delivered, with its `offset`. Rejects with the server's
     * `FORBIDDEN` or `INVALID_MESSAGE` (history off, limit too large), or as {@link request}.
     *
     * ```js
     * const page = await client.history({ room: 'general', limit: 50 });
     * for (const frame of page.publications) show(frame.userId, frame.payload.content);
     * ```
     */
    history(query: HistoryQuery, options?: {
        timeout?: number;
    }): Promise<HistoryPage>;
    /** A room: join, leave, send and listen to it. */
    room(name: string): Room;
    /** A pub/sub channel (or a pattern ending in `*`): subscribe and publish. */
    channel(name: string): Channel;
    /** Sets this user's presence; it is sent again after every reconnect. */
    setPresence(status: PresenceStatus, metadata?: unknown): boolean;
    /** Publishes `data` on `channel` (no subscription needed). */
    publish(channel: string, data: unknown): boolean;
    /** Sends `broadcast` to every connection. */
    broadcast(content: unknown): boolean;
    private enqueue;
    private write;
    /** Starts a connection attempt: first the token (from `getToken`, if any), then the socket. */
    private open;
    /** Opens the socket; `authToken`, when given, is sent in the `auth` frame once it opens
     * (over SSE, which has no `auth` frame, it goes in the URL). */
    private openSocket;
    /** With `transport: 'auto'`, switches to SSE when a WebSocket could not be opened and none
     * of this client ever was, announces it and starts the SSE attempt at once; returns whether
     * it did. */
    private fallBack;
    /** Whether a failed WebSocket attempt is to be followed by SSE (`transport: 'auto'`, and
     * no WebSocket of this client ever opened). */
    private autoFallback;
    /** Answers `token_expiring`: asks `getToken` for a newer token and sends it in `refresh`.
     * A failure (of `getToken`, or the server's refusal) is reported as an `error` event; the
     * server then closes the connection at the old token's expiry, and the reconnect asks
     * `getToken` again. */
    private refreshToken;
    private connectTimeout;
    /** A client frame in the connection's format. In JSON, bytes take their JSON form,
     * `{"$bytes": "<base64>"}`, which MessagePack recipients receive as bytes. */
    private encode;
    private receive;
    private receiveFrame;
    /** Updates the positions with a server frame; returns the verdict a rejoin carries. */
    private track;
    /** A message at `offset` arrived on a stream (live, replayed, or acked as our own). */
    private advance;
    private connected;
    /** A replayed request nobody awaits: its failure is reported as an `error` event. */
    private background;
    private settle;
    /** Any frame proves the server alive: restart the quiet period. */
    private alive;
    /** Follows the browser's network state (see {@link ClientOptions.watchNetwork}); nothing
     * where there are no such events (Node.js). Stopped by {@link finish}. */
    private watchNetwork;
    /** Gives up on a socket that does not answer, without waiting for TCP to notice. */
    private abandon;
    /** Forgets the current socket and its timers. */
    private detach;
    private lost;
    private finish;
    private clearTimer;
    private emit;
}
/** A room of a {@link SwitchboardClient}, from `client.room(name)`. */
export declare class Room {
    /** The room's name. */
    readonly name: string;
    private readonly client;
    constructor(client: SwitchboardClient, name: string);
    /** Joins (and rejoins after every reconnect); resolves with `room_joined`. */
    join(options?: {
        timeout?: number;
    }): Promise<ServerFrame<RoomJoined>>;
    /** Leaves; resolves with `room_left`, or `null` when disconnected. */
    leave(): Promise<ServerFrame | null>;
    /** Whether the room is joined (or will be rejoined on reconnect). */
    get joined(): boolean;
    /** Where the client is in the room's stream: the epoch and the last offset received (or
     * acked for its own message); sent as `since` when the room is rejoined. Undefined before
     * the first join, after leaving, or when the server keeps no history. */
    get position(): StreamPosition | undefined;
    /** Sends `message` with `content` (and any `extra` fields) to the other members. */
    send(content: unknown, extra?: Record<string, unknown>): boolean;
    /** Listens to this room's `message`, `user_joined`, `user_left`, `room_joined` or
     * `room_left` frames, or its `recovery` events; returns a function that stops listening. */
    on<K extends 'message' | 'user_joined' | 'user_left' | 'room_joined' | 'room_left' | 'recovery'>(type: K, handler: (event: ClientEvents[K]) => void): () => void;
}
/** A subscription's handle. */
export interface Subscription {
    /** Resolves once the server confirmed (`subscribed`; `null` while disconnected). */
    readonly ready: Promise<ServerFrame | null>;
    /** Stops this handler; the channel is unsubscribed with its last handler. */
    unsubscribe(): void;
}
/** A pub/sub channel of a {@link SwitchboardClient}, from `client.channel(name)`. */
export declare class Channel {
    /** The channel's name, or a pattern ending in `*`. */
    readonly name: string;
    private readonly client;
    private readonly handlers;
    private stopListening;
    constructor(client: SwitchboardClient, name: string);
    /** Calls `handler` with every `publish` frame of this channel (every matching channel for
     * a pattern), and with `presence` frames for `presence:<user>`. */
    subscribe(handler: (frame: ServerFrame) => void): Subscription;
    /** Publishes `data` on this channel. */
    publish(data: unknown): boolean;
    /** Where the client is in this exact channel's stream, as {@link Room.position}. */
    get position(): StreamPosition | undefined;
    /** Listens to this channel's `recovery` events (after each resubscribe that followed a
     * reconnect); returns a function that stops listening. */
    on(type: 'recovery', handler: (event: RecoveryEvent) => void): () => void;
    private listen;
}
/** Options of {@link SwitchboardPool}: the size, and each connection's client options. */
export interface PoolOptions {
    /** Number of connections. */
    size: number;
    /** Options of the connection at `index` (give each a distinct `userId` when the server
     * limits connections per user). */
    client: (index: number) => ClientOptions;
}
/** N connections for a Node.js producer; sends go round-robin, skipping connections that are
 * down while another is up. */
export declare class SwitchboardPool {
    /** The connections, in round-robin order. */
    readonly clients: readonly SwitchboardClient[];
    private next;
    constructor(options: PoolOptions);
    /** Connects every connection. */
    connect(): Promise<ConnectInfo[]>;
    /** The connection the next send goes to. */
    pick(): SwitchboardClient;
    /** {@link SwitchboardClient.send} on the next connection. */
    send(type: string, payload: unknown): boolean;
    /** {@link SwitchboardClient.request} on the next connection. */
    request(type: string, payload: unknown, options?: {
        timeout?: number;
    }): Promise<ServerFrame>;
    /** {@link SwitchboardClient.publish} on the next connection. */
    publish(channel: string, data: unknown): boolean;
    /** {@link SwitchboardClient.broadcast} on the next connection. */
    broadcast(content: unknown): boolean;
    /** Closes every connection. */
    close(): void;
}
/** The delay before retry `attempt` (from 0). */
export declare function backoff(attempt: number, options: ReconnectOptions): number;
/** The MessagePack bytes of `value`. */
export declare function encodeMsgPack(value: unknown): Uint8Array;
/** The value of the MessagePack bytes `bytes` (exactly one value); throws on malformed input
 * and on extension types. */
export declare function decodeMsgPack(bytes: Uint8Array): unknown;
export {};
