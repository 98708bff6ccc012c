#!/usr/bin/env python3
"""Misbehaving WebSocket clients for scripts/stress.sh (standard library only).

Usage: stress_client.py PORT CASE [ARGS...]; prints one line of JSON with what happened.

  join N            one connection sends N join_room frames for distinct rooms
  never-reads N S   one member of a room never reads while another sends it N messages of S bytes
  flood C N         C connections each send N tiny frames as fast as the socket takes them
  storm C N         C connections each send N frames of 1 MiB (the default frame limit),
                    reconnecting whenever the server closes them

Frames are masked with a zero key (allowed by RFC 6455), so big payloads cost no masking work.
Every wait is bounded; a case that cannot finish raises and exits non-zero.
"""

import json
import socket
import struct
import sys
import threading

TIMEOUT = 60


def connect(port, user):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(
        (
            f"GET /?userId={user} HTTP/1.1\r\nHost: stress\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError("closed during the handshake")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock


def frame(payload, opcode=1):
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def command(kind, payload, ident=None):
    message = {"type": kind, "payload": payload}
    if ident is not None:
        message["id"] = ident
    return frame(json.dumps(message, separators=(",", ":")).encode())


class Reader:
    """Reads server frames: (opcode, payload); (None, None) at EOF or reset."""

    def __init__(self, sock):
        self.file = sock.makefile("rb")

    def exact(self, n):
        data = self.file.read(n)
        if data is None or len(data) < n:
            raise EOFError
        return data

    def next(self):
        try:
            first, second = self.exact(2)
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self.exact(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self.exact(8))
            return first & 0x0F, self.exact(n)
        except (EOFError, OSError):
            return None, None

    def json(self):
        """The next text frame as JSON; a close frame as {"close": code}; None at EOF."""
        while True:
            opcode, payload = self.next()
            if opcode is None:
                return None
            if opcode == 8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                return {"close": code}
            if opcode == 1:
                return json.loads(payload)


def until(reader, predicate):
    while True:
        message = reader.json()
        if message is None or predicate(message):
            return message


def join(port, count):
    """Joins in windows of 1 000 frames, reading each window's answers before sending the
    next: the client keeps up with its replies, so only the room cap can stop it."""
    sock = connect(port, "joiner")
    reader = Reader(sock)
    until(reader, lambda m: m.get("type") == "connect")
    joined = limited = sent = 0
    close = None
    while sent < count and close is None:
        window = min(1000, count - sent)
        sock.sendall(
            b"".join(command("join_room", {"room": f"room-{sent + i}"}) for i in range(window))
        )
        sent += window
        for _ in range(window):
            message = reader.json()
            if message is None or "close" in message:
                close = message["close"] if message else "EOF"
                break
            if message.get("type") == "room_joined":
                joined += 1
            elif message.get("payload", {}).get("code") == "LIMIT_EXCEEDED":
                limited += 1
    return {"sent": sent, "joined": joined, "limitExceeded": limited, "closed": close}


def never_reads(port, count, size):
    slow = connect(port, "slow")
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(command("join_room", {"room": "r"}))
    fast = connect(port, "fast")
    reader = Reader(fast)
    fast.sendall(command("join_room", {"room": "r"}))
    until(reader, lambda m: m.get("type") == "room_joined")
    content = "x" * size
    message = command("message", {"room": "r", "content": content})
    dropped = threading.Event()

    def watch():
        if until(reader, lambda m: m.get("type") == "user_left" and m.get("userId") == "slow"):
            dropped.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    sent = 0
    while sent < count and not dropped.is_set():
        fast.sendall(message * 100)
        sent += 100
    watcher.join(TIMEOUT)
    slow.close()
    return {"sentBytes": sent * size, "slowDropped": dropped.is_set()}


def run_all(connections, work):
    results = [None] * connections
    errors = []

    def run(i):
        try:
            results[i] = work(i)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return results


def flood(port, connections, count):
    def work(i):
        sock = connect(port, f"flooder-{i}")
        reader = Reader(sock)
        sock.sendall(command("join_room", {"room": f"flood-{i}"}))
        until(reader, lambda m: m.get("type") == "room_joined")
        tiny = command("message", {"room": f"flood-{i}", "content": "x"})
        batch = tiny * 10_000
        for _ in range(count // 10_000):
            sock.sendall(batch)
        # Frames are handled in order: the pong means every frame before it was.
        sock.sendall(command("ping", {}, ident="done"))
        until(reader, lambda m: m.get("type") == "pong" or "close" in m)
        sock.close()
        return count // 10_000 * 10_000

    return {"framesSent": sum(run_all(connections, work))}


def storm(port, connections, count):
    # One frame of exactly the default limit (1 MiB): a message whose content is too long.
    start = b'{"type":"message","payload":{"room":"r","content":"'
    end = b'"}}'
    big = frame(start + b"x" * ((1 << 20) - len(start) - len(end)) + end)

    def work(i):
        sent = closes = 0
        while sent < count:
            sock = connect(port, f"storm-{i}")
            reader = Reader(sock)
            closed = threading.Event()

            def drain():
                until(reader, lambda m: "close" in m)
                closed.set()

            drainer = threading.Thread(target=drain)
            drainer.start()
            try:
                while sent < count and not closed.is_set():
                    sock.sendall(big)
                    sent += 1
                closes += closed.is_set()
                sock.sendall(frame(struct.pack(">H", 1000), opcode=8))
            except OSError:
                closes += 1
            drainer.join(TIMEOUT)
            sock.close()
        return sent, closes

    results = run_all(connections, work)
    return {
        "framesSent": sum(r[0] for r in results),
        "bytesSent": sum(r[0] for r in results) << 20,
        "serverCloses": sum(r[1] for r in results),
    }


def main():
    port, case, args = int(sys.argv[1]), sys.argv[2], [int(a) for a in sys.argv[3:]]
    cases = {"join": join, "never-reads": never_reads, "flood": flood, "storm": storm}
    print(json.dumps(cases[case](port, *args)))


if __name__ == "__main__":
    main()
