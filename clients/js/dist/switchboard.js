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
/** The subprotocol that selects MessagePack frames. */
export const MSGPACK_SUBPROTOCOL = 'switchboard.v1.msgpack';
/** A refused or failed request: `code` is the server's error code, or `TIMEOUT`,
 * `DISCONNECTED`, `CLOSED`, `QUEUE_FULL`, `UNEXPECTED_REPLY` or `TOKEN` (`getToken` failed)
 * from the client. */
export class SwitchboardError extends Error {
    code;
    retryAfter;
    constructor(code, message, retryAfter) {
        super(message);
        this.name = 'SwitchboardError';
        this.code = code;
        this.retryAfter = retryAfter;
    }
}
const OPEN = 1;
const POLICY = 1008;
const ABNORMAL = 1006;
/** A Switchboard connection that survives server restarts and network loss. */
export class SwitchboardClient {
    options;
    WebSocketImpl;
    /** The transport of the next attempt; `'auto'` settles on SSE after a WebSocket fails. */
    transportName;
    /** A WebSocket of this client opened once: a later failure is the server's or the
     * network's, not a block, and never makes `'auto'` fall back. */
    websocketWorked = false;
    /** SSE is in use because `'auto'` fell back to it. */
    fellBack = false;
    socket = null;
    stateValue = 'idle';
    info = null;
    everConnected = false;
    attempt = 0;
    retryTimer = null;
    connectTimer = null;
    quietTimer = null;
    deadlineTimer = null;
    /** Frames no socket has taken yet, oldest first; at most `maxQueue`. */
    queue = [];
    pending = new Map();
    nextId = 1;
    handlers = new Map();
    joinedRooms = new Set();
    rooms = new Map();
    channels = new Map();
    /** Where the client is in each stream it follows, sent as `since` when rejoining. */
    positions = {
        room: new Map(),
        channel: new Map(),
    };
    /** Own messages written to the current socket whose ack (with their offset) has not come:
     * id -> stream. Emptied when the socket goes. */
    unacked = new Map();
    stopWatchingNetwork = null;
    presence = null;
    firstConnect = null;
    /** Whether the current socket speaks MessagePack (`format: 'msgpack'` over a WebSocket). */
    binary = false;
    /** Counts `open()` calls, so a token that arrives after its attempt was abandoned (or the
     * client closed) is dropped. */
    generation = 0;
    constructor(options) {
        this.options = options;
        const impl = options.WebSocket ??
            globalThis.WebSocket;
        const transport = options.transport ?? 'auto';
        if (!impl && transport === 'websocket') {
            throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the ws package on Node 20)');
        }
        this.WebSocketImpl = impl;
        this.transportName = transport === 'sse' || !impl ? 'sse' : 'websocket';
    }
    /** The transport in use, or to be used by the next connection attempt. */
    get transport() {
        return this.transportName;
    }
    /** The connection's state. */
    get state() {
        return this.stateValue;
    }
    /** The current connection's `connect` payload, while connected. */
    get connection() {
        return this.info;
    }
    /** How many frames wait in the queue. */
    get queued() {
        return this.queue.length;
    }
    /** Connects; resolves with the first `connect` payload, rejects if the client closes first. */
    connect() {
        if (this.stateValue === 'connected' && this.info) {
            return Promise.resolve(this.info);
        }
        if (this.stateValue === 'closed') {
            return Promise.reject(new SwitchboardError('CLOSED', 'the client is closed'));
        }
        const promise = new Promise((resolve, reject) => {
            const previous = this.firstConnect;
            this.firstConnect = {
                resolve: (info) => {
                    previous?.resolve(info);
                    resolve(info);
                },
                reject: (error) => {
                    previous?.reject(error);
                    reject(error);
                },
            };
        });
        if (this.stateValue === 'idle') {
            this.watchNetwork();
            this.open();
        }
        return promise;
    }
    /** Closes for good: no reconnect; queued frames are dropped and pending requests rejected. */
    close(code = 1000, reason = 'client closed') {
        if (this.stateValue === 'closed') {
            return;
        }
        const socket = this.socket;
        this.detach();
        if (socket) {
            try {
                socket.close(code, reason);
            }
            catch {
                // Already closing: nothing more to do with it.
            }
        }
        this.finish({ code, reason, willReconnect: false });
    }
    on(type, handler) {
        let set = this.handlers.get(type);
        if (!set) {
            set = new Set();
            this.handlers.set(type, set);
        }
        set.add(handler);
        return () => this.off(type, handler);
    }
    /** Stops a handler registered with {@link on}. */
    off(type, handler) {
        this.handlers.get(type)?.delete(handler);
    }
    /**
     * Sends a frame now, or queues it while disconnected. Returns false, emits `dropped` and
     * sends nothing when the queue already holds `maxQueue` frames: the newest frame is the one
     * refused, so what is queued stays in order and without gaps.
     */
    send(type, payload) {
        return this.enqueue({ type, payload });
    }
    /**
     * Sends a frame with an `id` and resolves with the first answer carrying that id: the direct
     * reply (`room_joined`, `subscribed`, `pong`, …) or the `ack`. Rejects with a
     * {@link SwitchboardError}: the server's `error` code, `TIMEOUT` after `timeout` ms,
     * `DISCONNECTED` if the socket it was written to died first, `CLOSED` or `QUEUE_FULL`.
     */
    request(type, payload, options = {}) {
        if (this.stateValue === 'closed') {
            return Promise.reject(new SwitchboardError('CLOSED', 'the client is closed'));
        }
        const id = `r${this.nextId++}`;
        const timeout = options.timeout ?? this.options.requestTimeout ?? 10_000;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pending.delete(id);
                const index = this.queue.findIndex((frame) => frame.id === id);
                if (index >= 0) {
                    this.queue.splice(index, 1);
                }
                reject(new SwitchboardError('TIMEOUT', `no answer to ${type} within ${timeout} ms`));
            }, timeout);
            this.pending.set(id, { resolve, reject, timer, sent: false });
            if (!this.enqueue({ type, payload, id })) {
                this.settle(id, null, new SwitchboardError('QUEUE_FULL', 'the outgoing queue is full'));
            }
        });
    }
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
    async rpc(type, payload, options) {
        const answer = await this.request(type, payload, options);
        return answer.payload;
    }
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
    async history(query, options) {
        const reply = await this.request('history', query, options);
        if (reply.type !== 'history') {
            throw new SwitchboardError('UNEXPECTED_REPLY', `history answered with ${reply.type}`);
        }
        return reply.payload;
    }
    /** A room: join, leave, send and listen to it. */
    room(name) {
        let room = this.rooms.get(name);
        if (!room) {
            room = new Room(this, name);
            this.rooms.set(name, room);
        }
        return room;
    }
    /** A pub/sub channel (or a pattern ending in `*`): subscribe and publish. */
    channel(name) {
        let channel = this.channels.get(name);
        if (!channel) {
            channel = new Channel(this, name);
            this.channels.set(name, channel);
        }
        return channel;
    }
    /** Sets this user's presence; it is sent again after every reconnect. */
    setPresence(status, metadata) {
        if (this.stateValue === 'closed') {
            return false;
        }
        this.presence = metadata === undefined ? { status } : { status, metadata };
        if (this.stateValue === 'connected') {
            this.write({ type: 'presence', payload: this.presence });
        }
        return true;
    }
    /** Publishes `data` on `channel` (no subscription needed). */
    publish(channel, data) {
        return this.send('publish', { channel, data });
    }
    /** Sends `broadcast` to every connection. */
    broadcast(content) {
        return this.send('broadcast', { content });
    }
    /** @internal Room membership as desired state. A join queued while disconnected stands
     * for the rejoin, so it asks for what was missed. */
    joinRoom(name, options) {
        this.joinedRooms.add(name);
        const since = this.stateValue === 'connected' ? undefined : this.positions.room.get(name);
        return this.request('join_room', withSince({ room: name }, since), options);
    }
    /** @internal */
    leaveRoom(name) {
        this.joinedRooms.delete(name);
        this.positions.room.delete(name);
        if (this.stateValue !== 'connected') {
            return Promise.resolve(null);
        }
        return this.request('leave_room', { room: name });
    }
    /** @internal */
    isInRoom(name) {
        return this.joinedRooms.has(name);
    }
    /** @internal Sends `subscribe` now if connected; replayed on reconnect either way. */
    subscribeChannel(name) {
        if (this.stateValue !== 'connected') {
            return Promise.resolve(null);
        }
        return this.request('subscribe', { channel: name });
    }
    /** @internal */
    unsubscribeChannel(name) {
        this.positions.channel.delete(name);
        if (this.stateValue === 'connected') {
            this.write({ type: 'unsubscribe', payload: { channel: name } });
        }
    }
    /** @internal The position in a stream (see {@link Room.position}). */
    positionOf(kind, name) {
        const position = this.positions[kind].get(name);
        return position && { ...position };
    }
    enqueue(frame) {
        // An own message to a followed stream gets an id: its ack says where it went (the sender
        // does not receive its own room message), so a rejoin does not replay it.
        const stream = ownStream(frame);
        if (stream && this.positions[stream.kind].has(stream.name)) {
            frame.stream = stream;
            frame.id ??= `m${this.nextId++}`;
        }
        if (this.stateValue === 'connected' && this.write(frame)) {
            return true;
        }
        if (this.stateValue === 'closed' || this.queue.length >= (this.options.maxQueue ?? 1000)) {
            this.emit('dropped', { type: frame.type, payload: frame.payload });
            return false;
        }
        this.queue.push(frame);
        return true;
    }
    write(frame) {
        const socket = this.socket;
        if (!socket || socket.readyState !== OPEN) {
            return false;
        }
        const { type, payload, id } = frame;
        socket.send(this.encode(id === undefined ? { type, payload } : { type, payload, id }));
        if (id !== undefined) {
            const pending = this.pending.get(id);
            if (pending) {
                pending.sent = true;
            }
            if (frame.stream) {
                this.unacked.set(id, frame.stream);
            }
        }
        return true;
    }
    /** Starts a connection attempt: first the token (from `getToken`, if any), then the socket. */
    open() {
        this.stateValue = 'connecting';
        const generation = ++this.generation;
        this.connectTimer = setTimeout(() => {
            const reason = `no connect frame within ${this.connectTimeout()} ms`;
            // A WebSocket handshake that hangs (a proxy that holds upgrades): the retry uses SSE.
            if (this.autoFallback()) {
                this.transportName = 'sse';
                this.fellBack = true;
                this.emit('transport', { name: 'sse', reason });
            }
            this.abandon(reason);
        }, this.connectTimeout());
        const getToken = this.options.getToken;
        if (!getToken) {
            const { token, tokenInUrl } = this.options;
            this.openSocket(tokenInUrl ? undefined : token);
            return;
        }
        Promise.resolve()
            .then(getToken)
            .then((token) => {
            if (generation === this.generation && this.stateValue === 'connecting') {
                this.openSocket(token);
            }
        }, (error) => {
            if (generation === this.generation && this.stateValue === 'connecting') {
                this.detach();
                this.lost({ code: ABNORMAL, reason: `getToken failed: ${describe(error)}` }, false);
            }
        });
    }
    /** Opens the socket; `authToken`, when given, is sent in the `auth` frame once it opens
     * (over SSE, which has no `auth` frame, it goes in the URL). */
    openSocket(authToken) {
        const sse = this.transportName === 'sse';
        const url = new URL(sse ? sseUrlOf(this.options) : this.options.url);
        if (this.options.userId !== undefined) {
            url.searchParams.set('userId', this.options.userId);
        }
        if (this.options.tokenInUrl && !this.options.getToken && this.options.token !== undefined) {
            url.searchParams.set('token', this.options.token);
        }
        if (sse && authToken !== undefined) {
            url.searchParams.set('token', authToken);
        }
        let socket;
        // SSE carries JSON only: a MessagePack client that fell back to it speaks JSON there.
        const msgpack = this.options.format === 'msgpack' && !sse;
        this.binary = msgpack;
        try {
            if (sse) {
                socket = new SseSocket(url.toString(), this.options.fetch ?? globalThis.fetch);
            }
            else {
                const Impl = this.WebSocketImpl;
                socket = msgpack ? new Impl(url.toString(), MSGPACK_SUBPROTOCOL) : new Impl(url.toString());
                if (msgpack) {
                    socket.binaryType = 'arraybuffer';
                }
            }
        }
        catch (error) {
            if (!this.fallBack(describe(error), authToken)) {
                this.lost({ code: ABNORMAL, reason: describe(error) }, false);
            }
            return;
        }
        this.socket = socket;
        let refused = false;
        let opened = false;
        socket.onopen = () => {
            opened = true;
            this.websocketWorked ||= !sse;
            if (authToken !== undefined && !sse) {
                socket.send(this.encode({ type: 'auth', payload: { token: authToken } }));
            }
        };
        socket.onmessage = (event) => {
            const { data } = event;
            if (!msgpack && typeof data === 'string') {
                this.receive(data);
            }
            else if (msgpack && data instanceof ArrayBuffer) {
                // A server frame that does not decode is ignored, as malformed JSON is.
                let frame;
                try {
                    frame = decodeMsgPack(new Uint8Array(data));
                }
                catch {
                    return;
                }
                this.receiveFrame(frame);
            }
        };
        socket.onerror = (event) => {
            // The `ws` package reports a refused upgrade as "Unexpected server response: 401", and
            // so does the SSE transport.
            refused = /\b401\b/.test(describe(event));
        };
        socket.onclose = (event) => {
            if (!refused && !opened && sse && this.fellBack) {
                // Neither transport opened: the server may just be down. The next attempt tries a
                // WebSocket again, and falls back again if that fails.
                this.fellBack = false;
                this.transportName = 'websocket';
                this.emit('transport', { name: 'websocket', reason: 'SSE could not be opened either' });
            }
            const reason = `the WebSocket closed before it opened (${event.code})`;
            if (refused || opened || sse || !this.fallBack(reason, authToken)) {
                this.lost({ code: event.code, reason: event.reason }, refused);
            }
        };
    }
    /** With `transport: 'auto'`, switches to SSE when a WebSocket could not be opened and none
     * of this client ever was, announces it and starts the SSE attempt at once; returns whether
     * it did. */
    fallBack(reason, authToken) {
        if (!this.autoFallback() || this.stateValue !== 'connecting') {
            return false;
        }
        const socket = this.socket;
        this.socket = null;
        if (socket) {
            socket.onopen = socket.onmessage = socket.onclose = null;
            socket.onerror = () => undefined;
        }
        this.transportName = 'sse';
        this.fellBack = true;
        this.emit('transport', { name: 'sse', reason });
        this.openSocket(authToken);
        return true;
    }
    /** Whether a failed WebSocket attempt is to be followed by SSE (`transport: 'auto'`, and
     * no WebSocket of this client ever opened). */
    autoFallback() {
        return ((this.options.transport ?? 'auto') === 'auto' &&
            this.transportName === 'websocket' &&
            !this.websocketWorked);
    }
    /** Answers `token_expiring`: asks `getToken` for a newer token and sends it in `refresh`.
     * A failure (of `getToken`, or the server's refusal) is reported as an `error` event; the
     * server then closes the connection at the old token's expiry, and the reconnect asks
     * `getToken` again. */
    refreshToken() {
        const getToken = this.options.getToken;
        if (!getToken) {
            return;
        }
        const refreshed = Promise.resolve()
            .then(getToken)
            .then((token) => this.request('refresh', { token }));
        this.background(refreshed.catch((error) => {
            throw error instanceof SwitchboardError
                ? error
                : new SwitchboardError('TOKEN', `getToken failed: ${describe(error)}`);
        }));
    }
    connectTimeout() {
        return this.options.connectTimeout ?? 10_000;
    }
    /** A client frame in the connection's format. In JSON, bytes take their JSON form,
     * `{"$bytes": "<base64>"}`, which MessagePack recipients receive as bytes. */
    encode(frame) {
        return this.binary
            ? encodeMsgPack(frame)
            : JSON.stringify(frame, bytesAsBase64);
    }
    receive(text) {
        let frame;
        try {
            frame = JSON.parse(text);
        }
        catch {
            return;
        }
        this.receiveFrame(frame);
    }
    receiveFrame(frame) {
        if (typeof frame !== 'object' || frame === null || typeof frame.type !== 'string') {
            return;
        }
        this.alive();
        // First, so that whoever sees the frame sees the position it leaves.
        const recovery = this.track(frame);
        if (frame.type === 'connect') {
            this.connected(frame);
        }
        else if (frame.type === 'ping') {
            this.write({ type: 'pong', payload: frame.payload ?? {} });
        }
        else if (frame.type === 'token_expiring') {
            this.refreshToken();
        }
        const id = frame.id === undefined ? undefined : String(frame.id);
        if (frame.type === 'error') {
            const payload = (frame.payload ?? {});
            const error = new SwitchboardError(payload.code, payload.message, payload.retryAfter);
            if (id !== undefined && this.pending.has(id)) {
                this.settle(id, null, error);
                return;
            }
        }
        else if (id !== undefined) {
            this.settle(id, frame, null);
        }
        this.emit(frame.type, frame);
        if (recovery) {
            this.emit('recovery', recovery);
        }
    }
    /** Updates the positions with a server frame; returns the verdict a rejoin carries. */
    track(frame) {
        const payload = (frame.payload ?? {});
        switch (frame.type) {
            case 'room_joined':
            case 'subscribed': {
                const kind = frame.type === 'room_joined' ? 'room' : 'channel';
                const name = payload[kind];
                if (typeof name !== 'string') {
                    return null;
                }
                const { offset, epoch, recovered } = payload;
                const latest = typeof offset === 'number' && typeof epoch === 'string' ? { offset, epoch } : null;
                const positions = this.positions[kind];
                if (!latest) {
                    // History is off, or a pattern: no stream to follow.
                    positions.delete(name);
                }
                else if (!(recovered === true && positions.get(name)?.epoch === latest.epoch)) {
                    // A first join, or nothing recovered: start from the stream's latest. After a
                    // recovered rejoin stay put: the replay is still to come, and if the socket dies
                    // during it, the rest must be asked for again.
                    positions.set(name, latest);
                }
                return typeof recovered === 'boolean'
                    ? { [kind]: name, recovered, position: latest }
                    : null;
            }
            case 'message':
                this.advance('room', frame.room, frame.offset);
                break;
            case 'publish':
                this.advance('channel', frame.channel, frame.offset);
                break;
            case 'ack':
            case 'error': {
                const id = frame.id === undefined ? undefined : String(frame.id);
                const stream = id === undefined ? undefined : this.unacked.get(id);
                if (id !== undefined && stream) {
                    this.unacked.delete(id);
                    this.advance(stream.kind, stream.name, payload.offset);
                }
                break;
            }
            case 'room_left':
                if (typeof frame.room === 'string') {
                    this.positions.room.delete(frame.room);
                    if (frame.id === undefined) {
                        // Not an answer to `leave_room`: the server removed us (a refreshed token no
                        // longer grants the room), so the room must not be rejoined.
                        this.joinedRooms.delete(frame.room);
                    }
                }
                break;
            case 'unsubscribed':
                if (typeof payload.channel === 'string') {
                    this.positions.channel.delete(payload.channel);
                }
                break;
        }
        return null;
    }
    /** A message at `offset` arrived on a stream (live, replayed, or acked as our own). */
    advance(kind, name, offset) {
        const position = typeof name === 'string' ? this.positions[kind].get(name) : undefined;
        if (position && typeof offset === 'number' && offset > position.offset) {
            position.offset = offset;
        }
    }
    connected(frame) {
        this.clearTimer('connectTimer');
        this.info = frame.payload;
        this.stateValue = 'connected';
        this.attempt = 0;
        const reconnect = this.everConnected;
        this.everConnected = true;
        // The server forgot everything with the old connection: replay the desired state first,
        // so that queued messages find their rooms joined.
        const queuedJoins = new Set(this.queue
            .filter((frame) => frame.type === 'join_room')
            .map((frame) => frame.payload.room));
        // Each with the position it had, so the server replays what was missed meanwhile.
        for (const room of this.joinedRooms) {
            if (!queuedJoins.has(room)) {
                const since = this.positions.room.get(room);
                this.background(this.request('join_room', withSince({ room }, since)));
            }
        }
        for (const channel of this.channels.values()) {
            if (channel.active) {
                const since = this.positions.channel.get(channel.name);
                this.background(this.request('subscribe', withSince({ channel: channel.name }, since)));
            }
        }
        if (this.presence) {
            this.write({ type: 'presence', payload: this.presence });
        }
        for (const outgoing of this.queue.splice(0)) {
            this.write(outgoing);
        }
        this.emit('connected', { ...frame.payload, reconnect });
        const first = this.firstConnect;
        this.firstConnect = null;
        first?.resolve(frame.payload);
    }
    /** A replayed request nobody awaits: its failure is reported as an `error` event. */
    background(request) {
        request.catch((error) => {
            this.emit('error', {
                type: 'error',
                payload: { code: error.code, message: error.message },
            });
        });
    }
    settle(id, frame, error) {
        const pending = this.pending.get(id);
        if (!pending) {
            return;
        }
        this.pending.delete(id);
        clearTimeout(pending.timer);
        if (error) {
            pending.reject(error);
        }
        else if (frame) {
            pending.resolve(frame);
        }
    }
    /** Any frame proves the server alive: restart the quiet period. */
    alive() {
        const heartbeat = this.options.heartbeat;
        if (heartbeat === false) {
            return;
        }
        this.clearTimer('deadlineTimer');
        this.clearTimer('quietTimer');
        const interval = heartbeat?.interval ?? 25_000;
        const timeout = heartbeat?.timeout ?? 10_000;
        this.quietTimer = setTimeout(() => {
            this.write({ type: 'ping', payload: { timestamp: Date.now() } });
            this.deadlineTimer = setTimeout(() => {
                this.abandon(`no answer to ping within ${timeout} ms`);
            }, timeout);
        }, interval);
    }
    /** Follows the browser's network state (see {@link ClientOptions.watchNetwork}); nothing
     * where there are no such events (Node.js). Stopped by {@link finish}. */
    watchNetwork() {
        const target = globalThis;
        if (this.options.watchNetwork === false || typeof target.addEventListener !== 'function') {
            return;
        }
        const offline = () => {
            if (this.stateValue === 'connected' || this.stateValue === 'connecting') {
                this.abandon('the network went offline', 'network offline');
            }
        };
        const online = () => {
            if (this.stateValue === 'waiting') {
                this.clearTimer('retryTimer');
                this.open();
            }
        };
        target.addEventListener('offline', offline);
        target.addEventListener('online', online);
        this.stopWatchingNetwork = () => {
            target.removeEventListener?.('offline', offline);
            target.removeEventListener?.('online', online);
        };
    }
    /** Gives up on a socket that does not answer, without waiting for TCP to notice. */
    abandon(reason, closeReason = 'heartbeat timeout') {
        const socket = this.socket;
        this.detach();
        if (socket) {
            const terminate = socket.terminate;
            try {
                if (typeof terminate === 'function') {
                    terminate.call(socket);
                }
                else {
                    socket.close(4000, closeReason);
                }
            }
            catch {
                // The socket is being dropped anyway.
            }
        }
        this.lost({ code: ABNORMAL, reason }, false);
    }
    /** Forgets the current socket and its timers. */
    detach() {
        const socket = this.socket;
        if (socket) {
            socket.onopen = null;
            socket.onmessage = null;
            // Closing a socket that is still connecting reports an error (the `ws` package throws
            // it when nobody listens): swallow it, the socket is no longer ours.
            socket.onerror = () => undefined;
            socket.onclose = null;
        }
        this.socket = null;
        this.info = null;
        this.clearTimer('connectTimer');
        this.clearTimer('quietTimer');
        this.clearTimer('deadlineTimer');
    }
    lost(close, refused) {
        this.detach();
        // Acks of what was written to that socket can no longer come.
        this.unacked.clear();
        for (const [id, pending] of this.pending) {
            if (pending.sent) {
                this.settle(id, null, new SwitchboardError('DISCONNECTED', 'the connection was lost'));
            }
        }
        const reconnect = this.options.reconnect;
        // A token that expired is no refusal when `getToken` can bring a fresh one.
        const expired = close.code === POLICY && close.reason === 'token expired';
        const authRefused = refused || (close.code === POLICY && !(expired && this.options.getToken));
        const maxAttempts = reconnect === false ? 0 : (reconnect?.maxAttempts ?? Infinity);
        const willReconnect = !authRefused && this.attempt < maxAttempts;
        const info = { code: close.code, reason: close.reason, willReconnect };
        this.emit('disconnected', info);
        if (!willReconnect) {
            this.finish(info);
            return;
        }
        const delay = backoff(this.attempt, reconnect || {});
        this.attempt += 1;
        this.stateValue = 'waiting';
        this.emit('reconnecting', { attempt: this.attempt, delay });
        this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.open();
        }, delay);
    }
    finish(info) {
        this.stateValue = 'closed';
        this.clearTimer('retryTimer');
        this.stopWatchingNetwork?.();
        this.stopWatchingNetwork = null;
        this.queue.length = 0;
        for (const id of [...this.pending.keys()]) {
            this.settle(id, null, new SwitchboardError('CLOSED', 'the client is closed'));
        }
        const first = this.firstConnect;
        this.firstConnect = null;
        first?.reject(new SwitchboardError('CLOSED', `closed: ${info.code} ${info.reason}`));
        this.emit('closed', info);
    }
    clearTimer(name) {
        const timer = this[name];
        if (timer !== null) {
            clearTimeout(timer);
            this[name] = null;
        }
    }
    emit(type, event) {
        const set = this.handlers.get(type);
        if (!set) {
            return;
        }
        for (const handler of [...set]) {
            try {
                handler(event);
            }
            catch (error) {
                // One faulty handler must not stop the others or the client.
                setTimeout(() => {
                    throw error;
                });
            }
        }
    }
}
/** A room of a {@link SwitchboardClient}, from `client.room(name)`. */
export class Room {
    /** The room's name. */
    name;
    client;
    constructor(client, name) {
        this.client = client;
        this.name = name;
    }
    /** Joins (and rejoins after every reconnect); resolves with `room_joined`. */
    join(options) {
        return this.client.joinRoom(this.name, options);
    }
    /** Leaves; resolves with `room_left`, or `null` when disconnected. */
    leave() {
        return this.client.leaveRoom(this.name);
    }
    /** Whether the room is joined (or will be rejoined on reconnect). */
    get joined() {
        return this.client.isInRoom(this.name);
    }
    /** Where the client is in the room's stream: the epoch and the last offset received (or
     * acked for its own message); sent as `since` when the room is rejoined. Undefined before
     * the first join, after leaving, or when the server keeps no history. */
    get position() {
        return this.client.positionOf('room', this.name);
    }
    /** Sends `message` with `content` (and any `extra` fields) to the other members. */
    send(content, extra = {}) {
        return this.client.send('message', { ...extra, room: this.name, content });
    }
    /** Listens to this room's `message`, `user_joined`, `user_left`, `room_joined` or
     * `room_left` frames, or its `recovery` events; returns a function that stops listening. */
    on(type, handler) {
        return this.client.on(type, (event) => {
            if (event.room === this.name) {
                handler(event);
            }
        });
    }
}
/** A pub/sub channel of a {@link SwitchboardClient}, from `client.channel(name)`. */
export class Channel {
    /** The channel's name, or a pattern ending in `*`. */
    name;
    client;
    handlers = new Set();
    stopListening = null;
    constructor(client, name) {
        this.client = client;
        this.name = name;
    }
    /** @internal Whether any handler listens (and the channel is resubscribed on reconnect). */
    get active() {
        return this.handlers.size > 0;
    }
    /** Calls `handler` with every `publish` frame of this channel (every matching channel for
     * a pattern), and with `presence` frames for `presence:<user>`. */
    subscribe(handler) {
        const first = this.handlers.size === 0;
        this.handlers.add(handler);
        if (first) {
            this.stopListening = this.listen();
        }
        const ready = first ? this.client.subscribeChannel(this.name) : Promise.resolve(null);
        // Awaiting `ready` is optional: an unobserved refusal must not be an unhandled rejection.
        ready.catch(() => undefined);
        return {
            ready,
            unsubscribe: () => {
                if (this.handlers.delete(handler) && this.handlers.size === 0) {
                    this.stopListening?.();
                    this.stopListening = null;
                    this.client.unsubscribeChannel(this.name);
                }
            },
        };
    }
    /** Publishes `data` on this channel. */
    publish(data) {
        return this.client.publish(this.name, data);
    }
    /** Where the client is in this exact channel's stream, as {@link Room.position}. */
    get position() {
        return this.client.positionOf('channel', this.name);
    }
    /** Listens to this channel's `recovery` events (after each resubscribe that followed a
     * reconnect); returns a function that stops listening. */
    on(type, handler) {
        return this.client.on(type, (event) => {
            if (event.channel === this.name) {
                handler(event);
            }
        });
    }
    listen() {
        const prefix = this.name.endsWith('*') ? this.name.slice(0, -1) : null;
        const matches = (channel) => channel !== undefined && (prefix === null ? channel === this.name : channel.startsWith(prefix));
        const deliver = (frame) => {
            for (const handler of [...this.handlers]) {
                handler(frame);
            }
        };
        const offPublish = this.client.on('publish', (frame) => {
            if (matches(frame.channel)) {
                deliver(frame);
            }
        });
        const offPresence = this.name.startsWith('presence:')
            ? this.client.on('presence', (frame) => {
                if (frame.userId !== undefined && matches(`presence:${frame.userId}`)) {
                    deliver(frame);
                }
            })
            : () => undefined;
        return () => {
            offPublish();
            offPresence();
        };
    }
}
/** N connections for a Node.js producer; sends go round-robin, skipping connections that are
 * down while another is up. */
export class SwitchboardPool {
    /** The connections, in round-robin order. */
    clients;
    next = 0;
    constructor(options) {
        if (!Number.isInteger(options.size) || options.size < 1) {
            throw new RangeError(`pool size must be a positive integer, got ${options.size}`);
        }
        this.clients = Array.from({ length: options.size }, (_, i) => new SwitchboardClient(options.client(i)));
    }
    /** Connects every connection. */
    connect() {
        return Promise.all(this.clients.map((client) => client.connect()));
    }
    /** The connection the next send goes to. */
    pick() {
        const size = this.clients.length;
        for (let tried = 0; tried < size; tried++) {
            const client = this.clients[(this.next + tried) % size];
            if (client.state === 'connected') {
                this.next = (this.next + tried + 1) % size;
                return client;
            }
        }
        const client = this.clients[this.next];
        this.next = (this.next + 1) % size;
        return client;
    }
    /** {@link SwitchboardClient.send} on the next connection. */
    send(type, payload) {
        return this.pick().send(type, payload);
    }
    /** {@link SwitchboardClient.request} on the next connection. */
    request(type, payload, options) {
        return this.pick().request(type, payload, options);
    }
    /** {@link SwitchboardClient.publish} on the next connection. */
    publish(channel, data) {
        return this.pick().publish(channel, data);
    }
    /** {@link SwitchboardClient.broadcast} on the next connection. */
    broadcast(content) {
        return this.pick().broadcast(content);
    }
    /** Closes every connection. */
    close() {
        for (const client of this.clients) {
            client.close();
        }
    }
}
/** `payload` with `since` when there is a position to recover from. */
/** Most frames in one POST (the server takes at most 100). */
const SSE_MAX_BATCH = 100;
/** Most bytes in one POST of several frames: well under the server's `--max-frame-size`
 * (1 MiB by default); a larger frame goes alone. */
const SSE_MAX_BATCH_BYTES = 64 * 1024;
/** The SSE endpoint of `options`: `sseUrl`, or `url` made `http(s)://…/sse`. */
function sseUrlOf(options) {
    if (options.sseUrl !== undefined) {
        return options.sseUrl;
    }
    const url = new URL(options.url);
    url.protocol = url.protocol === 'wss:' ? 'https:' : url.protocol === 'ws:' ? 'http:' : url.protocol;
    url.pathname = url.pathname.replace(/\/(ws)?$/, '') + '/sse';
    url.search = '';
    return url.toString();
}
/**
 * The SSE transport behind the WebSocket interface the client uses (docs/protocol.md, "SSE
 * fallback"): server frames come as events of a `GET /sse` stream read with `fetch` and a
 * streaming reader (browsers and Node.js 20, which has no `EventSource`); client frames go as
 * POSTs to `/sse/{connectionId}` with the `session` of the `connect` event. One POST is in
 * flight at a time; frames sent meanwhile wait and go together in the next, in order. A POST
 * the server refuses ends the connection (its frames may be lost, as frames written to a
 * WebSocket that dies may be), and so does the server's `close` event, whose code and reason
 * become the close's.
 */
class SseSocket {
    url;
    readyState = 0;
    onopen = null;
    onmessage = null;
    onclose = null;
    onerror = null;
    abort = new AbortController();
    fetchImpl;
    /** Where frames are POSTed, and the secret that proves them; known from `connect`. */
    target = null;
    /** Frames sent and not yet POSTed, oldest first. */
    outbox = [];
    posting = false;
    closeInfo = { code: ABNORMAL, reason: 'the SSE stream ended' };
    constructor(url, fetchImpl) {
        this.url = url;
        if (typeof fetchImpl !== 'function') {
            throw new TypeError('no fetch implementation for the SSE transport: pass options.fetch');
        }
        // Called as a plain function: a browser's `fetch` called as a method of another object
        // throws "Illegal invocation".
        this.fetchImpl = (input, init) => fetchImpl(input, init);
        void this.run();
    }
    send(data) {
        if (this.readyState !== OPEN) {
            throw new Error('the SSE connection is not open');
        }
        this.outbox.push(data);
        this.post();
    }
    close(code = 1000, reason = '') {
        if (this.readyState === 3) {
            return;
        }
        this.closeInfo = { code, reason };
        this.abort.abort();
    }
    async run() {
        try {
            const response = await this.fetchImpl(this.url, {
                headers: { accept: 'text/event-stream' },
                cache: 'no-store',
                signal: this.abort.signal,
            });
            if (!response.ok || !response.body) {
                this.onerror?.({ message: `Unexpected server response: ${response.status}` });
                this.closeInfo = { code: ABNORMAL, reason: `HTTP ${response.status}` };
                void response.body?.cancel();
                return;
            }
            this.readyState = OPEN;
            this.onopen?.({});
            await this.read(response.body);
        }
        catch (error) {
            if (!this.abort.signal.aborted) {
                this.onerror?.({ message: describe(error) });
                this.closeInfo = { code: ABNORMAL, reason: describe(error) };
            }
        }
        finally {
            this.readyState = 3;
            this.abort.abort();
            this.onclose?.(this.closeInfo);
        }
    }
    /** Reads events until the stream ends (or the server's `close` event). */
    async read(body) {
        const reader = body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        let data = [];
        for (;;) {
            const { done, value } = await reader.read();
            if (done) {
                return;
            }
            buffer += decoder.decode(value, { stream: true });
            let end;
            while ((end = buffer.indexOf('\n')) >= 0) {
                const line = buffer.slice(0, end).replace(/\r$/, '');
                buffer = buffer.slice(end + 1);
                if (line === '') {
                    if (data.length > 0 && !this.dispatch(data.join('\n'))) {
                        void reader.cancel();
                        return;
                    }
                    data = [];
                }
                else if (line.startsWith('data:')) {
                    data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
                }
                // Comments (`: ping`, the server's heartbeat) and other fields carry nothing for us.
            }
        }
    }
    /** Hands one event's data to the client; returns false once the server closed. */
    dispatch(text) {
        let frame;
        try {
            frame = JSON.parse(text);
        }
        catch {
            return true;
        }
        if (frame?.type === 'close') {
            const { code, reason } = frame.payload ?? {};
            this.closeInfo = {
                code: typeof code === 'number' ? code : ABNORMAL,
                reason: typeof reason === 'string' ? reason : '',
            };
            return false;
        }
        if (frame?.type === 'connect' && this.target === null) {
            const { connectionId, session } = frame.payload ?? {};
            const url = new URL(this.url);
            url.pathname = `${url.pathname.replace(/\/$/, '')}/${encodeURIComponent(connectionId)}`;
            url.search = '';
            this.target = { url: url.toString(), session: String(session) };
        }
        this.onmessage?.({ data: text });
        this.post();
        return true;
    }
    /** POSTs what waits, unless a POST is in flight (then the next one takes it). */
    post() {
        const target = this.target;
        if (this.posting || target === null || this.outbox.length === 0 || this.readyState !== OPEN) {
            return;
        }
        let count = 1;
        let bytes = this.outbox[0].length;
        while (count < Math.min(this.outbox.length, SSE_MAX_BATCH) &&
            bytes + this.outbox[count].length < SSE_MAX_BATCH_BYTES) {
            bytes += this.outbox[count].length + 1;
            count += 1;
        }
        const batch = this.outbox.splice(0, count);
        this.posting = true;
        // `text/plain`: a CORS-safe type; the session header makes a cross-origin POST preflighted.
        this.fetchImpl(target.url, {
            method: 'POST',
            headers: { 'content-type': 'text/plain', 'x-switchboard-session': target.session },
            body: batch.length === 1 ? batch[0] : `[${batch.join(',')}]`,
            signal: this.abort.signal,
        })
            .then(async (response) => {
            if (!response.ok) {
                const answer = await response.text().catch(() => '');
                throw new Error(`POST answered ${response.status} ${answer}`);
            }
            this.posting = false;
            this.post();
        })
            .catch((error) => {
            this.posting = false;
            if (!this.abort.signal.aborted) {
                this.closeInfo = { code: ABNORMAL, reason: describe(error) };
                this.abort.abort();
            }
        });
    }
}
function withSince(payload, since) {
    return since ? { ...payload, since: { offset: since.offset, epoch: since.epoch } } : payload;
}
/** The stream an outgoing room `message` or channel `publish` adds to. */
function ownStream(frame) {
    const payload = (frame.payload ?? {});
    if (frame.type === 'message' && typeof payload.room === 'string') {
        return { kind: 'room', name: payload.room };
    }
    if (frame.type === 'publish' && typeof payload.channel === 'string') {
        return { kind: 'channel', name: payload.channel };
    }
    return undefined;
}
/** The delay before retry `attempt` (from 0). */
export function backoff(attempt, options) {
    const base = options.baseDelay ?? 500;
    const max = options.maxDelay ?? 30_000;
    const multiplier = options.multiplier ?? 2;
    const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
    const delay = Math.min(max, base * multiplier ** attempt);
    return Math.round(delay * (1 - jitter * Math.random()));
}
function describe(value) {
    if (value instanceof Error) {
        return value.message;
    }
    const inner = value ?? {};
    if (typeof inner.message === 'string') {
        return inner.message;
    }
    if (inner.error instanceof Error) {
        return inner.error.message;
    }
    return String(value);
}
// MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md), as much as the protocol
// needs: every type but extensions and timestamps. Values map as JSON.stringify maps them
// (`toJSON` is honoured; `undefined` and functions in objects are left out, in arrays become
// nil), plus bytes: Uint8Array, ArrayBuffer and other views are `bin` and decode as Uint8Array.
// Integers beyond 2^53 decode as (inexact) numbers, as JSON.parse reads them.
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
/** How deep encoding recurses before it refuses (a cycle would otherwise never end). */
const MAX_DEPTH = 100;
/** The bytes of a Uint8Array, an ArrayBuffer or another view (a Node Buffer too), if `value`
 * is one of them. */
function asBytes(value) {
    if (value instanceof ArrayBuffer) {
        return new Uint8Array(value);
    }
    if (ArrayBuffer.isView(value)) {
        return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }
    return null;
}
/** A JSON.stringify replacer that writes bytes as `{"$bytes": "<base64>"}` (it reads the
 * holder's own value, before a Node Buffer's toJSON turns it into an array). */
function bytesAsBase64(key, value) {
    const bytes = asBytes(this[key]);
    if (!bytes) {
        return value;
    }
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return { $bytes: btoa(binary) };
}
/** The MessagePack bytes of `value`. */
export function encodeMsgPack(value) {
    const writer = new MsgPackWriter();
    writer.value(value, 0);
    return writer.finish();
}
/** The value of the MessagePack bytes `bytes` (exactly one value); throws on malformed input
 * and on extension types. */
export function decodeMsgPack(bytes) {
    const reader = new MsgPackReader(bytes);
    const value = reader.value(0);
    if (reader.at !== bytes.length) {
        throw new RangeError(`${bytes.length - reader.at} bytes after the MessagePack value`);
    }
    return value;
}
class MsgPackWriter {
    buf = new Uint8Array(256);
    view = new DataView(this.buf.buffer);
    at = 0;
    finish() {
        return this.buf.subarray(0, this.at);
    }
    room(n) {
        if (this.at + n <= this.buf.length) {
            return;
        }
        const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
        bigger.set(this.buf.subarray(0, this.at));
        this.buf = bigger;
        this.view = new DataView(bigger.buffer);
    }
    byte(b) {
        this.room(1);
        this.buf[this.at++] = b;
    }
    bytes(data) {
        this.room(data.length);
        this.buf.set(data, this.at);
        this.at += data.length;
    }
    /** A marker byte and a big-endian length or number of `size` bytes. */
    head(marker, n, size) {
        this.room(1 + size);
        this.buf[this.at++] = marker;
        if (size === 1) {
            this.view.setUint8(this.at, n);
        }
        else if (size === 2) {
            this.view.setUint16(this.at, n);
        }
        else {
            this.view.setUint32(this.at, n);
        }
        this.at += size;
    }
    length(n, fix, fixMax, m8, m16, m32) {
        if (fix !== null && n <= fixMax) {
            this.byte(fix | n);
        }
        else if (m8 !== null && n < 0x100) {
            this.head(m8, n, 1);
        }
        else if (n < 0x10000) {
            this.head(m16, n, 2);
        }
        else {
            this.head(m32, n, 4);
        }
    }
    value(value, depth) {
        if (depth > MAX_DEPTH) {
            throw new RangeError('MessagePack nesting too deep (a cycle?)');
        }
        const bytes = asBytes(value);
        if (bytes) {
            this.length(bytes.length, null, 0, 0xc4, 0xc5, 0xc6);
            this.bytes(bytes);
            return;
        }
        if (value !== null && typeof value === 'object' && typeof value.toJSON === 'function') {
            value = value.toJSON();
        }
        switch (typeof value) {
            case 'string': {
                const data = utf8Encoder.encode(value);
                this.length(data.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
                this.bytes(data);
                return;
            }
            case 'number':
                this.number(value);
                return;
            case 'boolean':
                this.byte(value ? 0xc3 : 0xc2);
                return;
            case 'bigint':
                this.room(9);
                if (value < 0n) {
                    this.buf[this.at++] = 0xd3;
                    this.view.setBigInt64(this.at, value);
                }
                else {
                    this.buf[this.at++] = 0xcf;
                    this.view.setBigUint64(this.at, value);
                }
                this.at += 8;
                return;
            case 'object':
                break;
            default:
                this.byte(0xc0);
                return;
        }
        if (value === null) {
            this.byte(0xc0);
        }
        else if (Array.isArray(value)) {
            this.length(value.length, 0x90, 15, null, 0xdc, 0xdd);
            for (const item of value) {
                this.value(item, depth + 1);
            }
        }
        else {
            const entries = Object.entries(value).filter(([, v]) => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol');
            this.length(entries.length, 0x80, 15, null, 0xde, 0xdf);
            for (const [key, v] of entries) {
                this.value(key, depth + 1);
                this.value(v, depth + 1);
            }
        }
    }
    number(n) {
        if (!Number.isFinite(n)) {
            // JSON.stringify writes null for NaN and the infinities.
            this.byte(0xc0);
        }
        else if (Number.isSafeInteger(n) && !Object.is(n, -0)) {
            if (n >= 0 && n < 0x80) {
                this.byte(n);
            }
            else if (n < 0 && n >= -32) {
                this.byte(n & 0xff);
            }
            else if (n >= 0) {
                if (n < 0x100)
                    this.head(0xcc, n, 1);
                else if (n < 0x10000)
                    this.head(0xcd, n, 2);
                else if (n < 0x1_0000_0000)
                    this.head(0xce, n, 4);
                else
                    this.int64(0xcf, n);
            }
            else if (n >= -0x80) {
                this.head(0xd0, n & 0xff, 1);
            }
            else if (n >= -0x8000) {
                this.head(0xd1, n & 0xffff, 2);
            }
            else if (n >= -0x8000_0000) {
                this.head(0xd2, n >>> 0, 4);
            }
            else {
                this.int64(0xd3, n);
            }
        }
        else {
            this.room(9);
            this.buf[this.at++] = 0xcb;
            this.view.setFloat64(this.at, n);
            this.at += 8;
        }
    }
    int64(marker, n) {
        this.room(9);
        this.buf[this.at++] = marker;
        this.view.setBigInt64(this.at, BigInt(n));
        this.at += 8;
    }
}
class MsgPackReader {
    buf;
    at = 0;
    view;
    constructor(buf) {
        this.buf = buf;
        this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    need(n) {
        const start = this.at;
        if (start + n > this.buf.length) {
            throw new RangeError('truncated MessagePack');
        }
        this.at += n;
        return start;
    }
    u8() {
        return this.view.getUint8(this.need(1));
    }
    u16() {
        return this.view.getUint16(this.need(2));
    }
    u32() {
        return this.view.getUint32(this.need(4));
    }
    str(n) {
        const start = this.need(n);
        return utf8Decoder.decode(this.buf.subarray(start, start + n));
    }
    bin(n) {
        const start = this.need(n);
        // A copy, and a plain Uint8Array even when the input is a Node Buffer.
        return new Uint8Array(this.buf.subarray(start, start + n));
    }
    array(n, depth) {
        const items = [];
        for (let i = 0; i < n; i++) {
            items.push(this.value(depth + 1));
        }
        return items;
    }
    map(n, depth) {
        const out = {};
        for (let i = 0; i < n; i++) {
            const key = this.value(depth + 1);
            if (typeof key !== 'string') {
                throw new TypeError('MessagePack map keys must be strings');
            }
            // Own data property, even for `__proto__`.
            Object.defineProperty(out, key, { value: this.value(depth + 1), enumerable: true, writable: true, configurable: true });
        }
        return out;
    }
    value(depth) {
        if (depth > MAX_DEPTH) {
            throw new RangeError('MessagePack nesting too deep');
        }
        const m = this.u8();
        if (m < 0x80)
            return m;
        if (m < 0x90)
            return this.map(m & 0x0f, depth);
        if (m < 0xa0)
            return this.array(m & 0x0f, depth);
        if (m < 0xc0)
            return this.str(m & 0x1f);
        if (m >= 0xe0)
            return m - 0x100;
        switch (m) {
            case 0xc0: return null;
            case 0xc2: return false;
            case 0xc3: return true;
            case 0xc4: return this.bin(this.u8());
            case 0xc5: return this.bin(this.u16());
            case 0xc6: return this.bin(this.u32());
            case 0xca: return this.view.getFloat32(this.need(4));
            case 0xcb: return this.view.getFloat64(this.need(8));
            case 0xcc: return this.u8();
            case 0xcd: return this.u16();
            case 0xce: return this.u32();
            case 0xcf: return Number(this.view.getBigUint64(this.need(8)));
            case 0xd0: return this.view.getInt8(this.need(1));
            case 0xd1: return this.view.getInt16(this.need(2));
            case 0xd2: return this.view.getInt32(this.need(4));
            case 0xd3: return Number(this.view.getBigInt64(this.need(8)));
            case 0xd9: return this.str(this.u8());
            case 0xda: return this.str(this.u16());
            case 0xdb: return this.str(this.u32());
            case 0xdc: return this.array(this.u16(), depth);
            case 0xdd: return this.array(this.u32(), depth);
            case 0xde: return this.map(this.u16(), depth);
            case 0xdf: return this.map(this.u32(), depth);
            default:
                throw new TypeError(`unsupported MessagePack marker 0x${m.toString(16)}`);
        }
    }
}
