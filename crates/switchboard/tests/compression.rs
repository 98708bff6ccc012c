//! permessage-deflate (RFC 7692) against a real server: the handshake answer, which messages go
//! compressed, a fan-out to compressing and plain clients, compressed client messages, the
//! inflation limit at its edge, and RSV1 without the extension. The compressing client is a
//! raw socket that deflates and inflates with flate2, as a browser would; the plain ones are
//! tungstenite clients, which do not offer the extension.

#![allow(clippy::unwrap_used)]

mod deflate_support;

use deflate_support::{OFFER, deflate, inflate};
use serde_json::{Value, json};
use switchboard::config::{ByteSize, RawSettings};
use switchboard_testkit::{RawClient, TestServer};

/// What the server must answer, exactly.
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The value of the extensions header in a response head, if any.
fn extensions_answer(head: &str) -> Option<&str> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim())
    })
}

/// A client that negotiated permessage-deflate.
struct Deflating(RawClient);

impl Deflating {
    async fn connect(server: &TestServer, path: &str) -> Self {
        let (raw, head) = RawClient::connect_with(server.addr, path, OFFER).await;
        assert_eq!(extensions_answer(&head), Some(ANSWER), "{head}");
        Self(raw)
    }

    /// Connects to `/ws` as `user`, reads `connect` and joins `room`.
    async fn member(server: &TestServer, user: &str, room: &str) -> Self {
        let mut client = Self::connect(server, &format!("/ws?userId={user}")).await;
        assert_eq!(client.next_json().await.1["type"], "connect");
        client
            .send(
                &json!({"type": "join_room", "payload": {"room": room}}),
                true,
            )
            .await;
        assert_eq!(client.next_json().await.1["type"], "room_joined");
        client
    }

    /// Sends `frame` as one text frame, compressed or not.
    async fn send(&mut self, frame: &Value, compressed: bool) {
        let text = frame.to_string();
        if compressed {
            self.0.send_frame(0xC1, &deflate(text.as_bytes())).await;
        } else {
            self.0.send_frame(0x81, text.as_bytes()).await;
        }
    }

    /// The next data frame: its first byte and its payload, inflated if it was compressed.
    async fn next_data(&mut self) -> (u8, Vec<u8>) {
        loop {
            let (first, payload) = self.0.read_frame().await;
            match first & 0x0F {
                0x1 | 0x2 if first & 0x40 != 0 => return (first, inflate(&payload)),
                0x1 | 0x2 => return (first, payload),
                _ => {}
            }
        }
    }

    /// The next `message` frame, skipping the others: its first byte, its payload as it came,
    /// and its JSON.
    async fn next_message(&mut self) -> (u8, Vec<u8>, Value) {
        loop {
            let (first, payload) = self.0.read_frame().await;
            let json = match first & 0x0F {
                0x1 if first & 0x40 != 0 => inflate(&payload),
                0x1 => payload.clone(),
                _ => continue,
            };
            let json: Value = serde_json::from_slice(&json).unwrap();
            if json["type"] == "message" {
                return (first, payload, json);
            }
        }
    }

    /// The next JSON frame and whether it came compressed.
    async fn next_json(&mut self) -> (bool, Value) {
        let (first, payload) = self.next_data().await;
        (first & 0x40 != 0, serde_json::from_slice(&payload).unwrap())
    }
}

fn echo_server(max_frame: u64) -> impl FnOnce(&mut RawSettings) {
    move |s| {
        s.echo_endpoint = Some(true);
        s.max_frame_size = Some(ByteSize(max_frame));
        s.rate_limit = Some(0);
    }
}

#[tokio::test]
async fn the_offer_is_answered_with_no_context_takeover_both_ways() {
    let server = TestServer::start().await;
    Deflating::connect(&server, "/ws").await;
    let window = "Sec-WebSocket-Extensions: foo, permessage-deflate; server_max_window_bits=10\r\n";
    let (_, head) = RawClient::connect_with(server.addr, "/ws", window).await;
    assert_eq!(
        extensions_answer(&head),
        Some(&*format!("{ANSWER}; server_max_window_bits=10"))
    );
    let unknown = "Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n";
    let (_, head) = RawClient::connect_with(server.addr, "/ws", unknown).await;
    assert_eq!(extensions_answer(&head), None, "{head}");
}

#[tokio::test]
async fn compression_off_answers_without_the_extension() {
    let server = TestServer::with(|s| s.compression = Some(false)).await;
    let (mut raw, head) = RawClient::connect_with(server.addr, "/ws", OFFER).await;
    assert_eq!(extensions_answer(&head), None, "{head}");
    raw.send_frame(0xC1, &deflate(b"{}")).await;
    assert_eq!(raw.read_close().await, Some(1002));
}

#[tokio::test]
async fn messages_from_the_threshold_up_go_compressed_and_smaller_ones_plain() {
    let server = TestServer::start().await;
    let mut receiver = Deflating::member(&server, "receiver", "r").await;
    let mut sender = server.member("sender", "r").await;
    let big = "x".repeat(2000);
    for content in ["small", big.as_str()] {
        sender
            .send(json!({"type": "message", "payload": {"room": "r", "content": content}}))
            .await;
        let (first, _, frame) = receiver.next_message().await;
        assert_eq!(frame["payload"]["content"], content);
        let compressed = first & 0x40 != 0;
        assert_eq!(compressed, content.len() >= 1024, "{content:.10}");
    }
}

#[tokio::test]
async fn a_fan_out_gives_compressing_and_plain_members_the_same_message() {
    let server = TestServer::start().await;
    let mut deflating = [
        Deflating::member(&server, "d1", "mixed").await,
        Deflating::member(&server, "d2", "mixed").await,
    ];
    let mut plain = [
        server.member("p1", "mixed").await,
        server.member("p2", "mixed").await,
    ];
    let mut sender = server.member("sender", "mixed").await;
    let content = "{\"chart\":[1,2,3]} ".repeat(300);
    sender
        .send(json!({"type": "message", "payload": {"room": "mixed", "content": content}}))
        .await;
    let mut frames = Vec::new();
    let mut message = Value::Null;
    for client in &mut deflating {
        let (first, payload, json) = client.next_message().await;
        assert_eq!(first, 0xC1, "FIN, RSV1, text");
        frames.push(payload);
        message = json;
    }
    assert_eq!(frames[0], frames[1], "one compressed frame for both");
    assert_eq!(message["payload"]["content"], content);
    for client in &mut plain {
        let received = loop {
            let frame = client.recv().await;
            if frame["type"] == "message" {
                break frame;
            }
        };
        assert_eq!(received, message);
    }
}

#[tokio::test]
async fn compressed_client_messages_are_inflated_whole_and_fragmented() {
    let server = TestServer::start().await;
    let mut client = Deflating::member(&server, "alice", "r").await;
    let mut other = server.member("bob", "r").await;
    let content = "hello ".repeat(100);
    let frame = json!({"type": "message", "payload": {"room": "r", "content": content}});
    client.send(&frame, true).await;
    assert_eq!(other.expect("message").await["payload"]["content"], content);
    let body = deflate(frame.to_string().as_bytes());
    let (first, rest) = body.split_at(body.len() / 2);
    client.0.send_frame(0x41, first).await;
    client.0.send_frame(0x80, rest).await;
    assert_eq!(other.expect("message").await["payload"]["content"], content);
}

#[tokio::test]
async fn a_message_that_inflates_past_the_frame_limit_closes_with_1009_and_only_that_one() {
    const LIMIT: usize = 64 << 10;
    let server = TestServer::with(echo_server(LIMIT as u64)).await;
    let mut bystander = Deflating::connect(&server, "/echo").await;
    let mut client = Deflating::connect(&server, "/echo").await;
    let at_limit = vec![0u8; LIMIT];
    client.0.send_frame(0xC2, &deflate(&at_limit)).await;
    let (first, echoed) = client.next_data().await;
    assert_eq!(first, 0xC2, "echoed compressed");
    assert_eq!(echoed, at_limit);
    let bomb = deflate(&vec![0u8; LIMIT + 1]);
    assert!(bomb.len() < 1024, "a small frame");
    client.0.send_frame(0xC2, &bomb).await;
    assert_eq!(client.0.read_close().await, Some(1009));
    bystander.0.send_frame(0x81, b"still here").await;
    assert_eq!(bystander.next_data().await.1, b"still here");
}

#[tokio::test]
async fn rsv1_without_negotiation_is_a_protocol_error() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(server.addr, "/ws").await;
    raw.send_frame(0xC1, &deflate(b"{\"type\":\"ping\"}")).await;
    assert_eq!(raw.read_close().await, Some(1002));
}
