//! Bad input over real connections: every kind gets its error code and the connection keeps
//! working; limits are tested at their edges; ids are acknowledged and deduplicated.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use switchboard::config::DurationArg;
use switchboard_testkit::{Client, RawClient, TestServer, WAIT, http_get, masked_frame};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn malformed_frames_get_their_codes_and_the_connection_survives() {
    let server = TestServer::start().await;
    let mut client = server.connect("alice").await;
    for (text, code) in [
        ("{not json", "INVALID_JSON"),
        ("", "INVALID_JSON"),
        ("[1,2,3]", "INVALID_MESSAGE"),
        ("{}", "INVALID_MESSAGE"),
        (r#"{"type": 42}"#, "INVALID_MESSAGE"),
        (
            r#"{"type":"join_room","payload":{"room":7}}"#,
            "INVALID_MESSAGE",
        ),
        (
            r#"{"type":"join_room","payload":"general"}"#,
            "INVALID_MESSAGE",
        ),
        (r#"{"type":"join_room"}"#, "INVALID_MESSAGE"),
        (
            r#"{"type":"message","payload":{"room":"general"}}"#,
            "INVALID_MESSAGE",
        ),
        (r#"{"type":"teleport","payload":{}}"#, "UNKNOWN_TYPE"),
    ] {
        client.send_text(text).await;
        let error = client.expect_error(code).await;
        assert!(!error["payload"]["message"].as_str().unwrap().is_empty());
    }
    client.join("general").await;
}

#[tokio::test]
async fn binary_frames_are_refused_with_invalid_message() {
    let server = TestServer::start().await;
    let mut client = server.connect("alice").await;
    client
        .ws
        .send(Message::binary(br#"{"type":"ping"}"#.to_vec()))
        .await
        .unwrap();
    client.expect_error("INVALID_MESSAGE").await;
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn errors_echo_the_client_id() {
    let server = TestServer::start().await;
    let mut client = server.connect("alice").await;
    client.send(json!({"type": "nope", "id": 99})).await;
    let error = client.expect_error("UNKNOWN_TYPE").await;
    assert_eq!(error["id"], 99);
    assert_eq!(error["payload"]["id"], 99);
}

#[tokio::test]
async fn room_names_are_checked_for_length_and_charset() {
    let server = TestServer::with(|s| s.max_name_length = Some(16)).await;
    let mut client = server.connect("alice").await;
    client.join(&"r".repeat(16)).await;
    client.join("chat:l/2024_v1").await;
    for bad in [
        "r".repeat(17),
        String::new(),
        "has space".into(),
        "star*".into(),
        "quo\"te".into(),
    ] {
        client.send_type("join_room", json!({ "room": bad })).await;
        client.expect_error("INVALID_MESSAGE").await;
    }
}

#[tokio::test]
async fn content_length_is_enforced_at_its_edge() {
    let server = TestServer::with(|s| s.max_content_length = Some(100)).await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "é".repeat(100)}),
        )
        .await;
    assert_eq!(
        bob.expect("message").await["payload"]["content"],
        "é".repeat(100)
    );
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "é".repeat(101)}),
        )
        .await;
    alice.expect_error("MESSAGE_TOO_LARGE").await;
    alice
        .send_type("broadcast", json!({"content": "x".repeat(101)}))
        .await;
    alice.expect_error("MESSAGE_TOO_LARGE").await;
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn frames_over_the_size_limit_close_with_1009_at_the_edge() {
    let server = TestServer::with(|s| {
        s.max_frame_size = Some("64KiB".parse().unwrap());
        s.max_content_length = Some(1_000_000);
    })
    .await;
    // Exactly at the limit: accepted (as an unknown type, which proves it was parsed).
    let mut client = server.connect("alice").await;
    let filler = 65536 - r#"{"type":"big","payload":""}"#.len();
    let at_limit = format!(r#"{{"type":"big","payload":"{}"}}"#, "x".repeat(filler));
    assert_eq!(at_limit.len(), 65536);
    client.send_text(&at_limit).await;
    client.expect_error("UNKNOWN_TYPE").await;

    // One byte over: refused from the frame header alone, before the payload is sent.
    let mut raw = RawClient::connect(server.addr, "/?userId=bob").await;
    let frame = masked_frame(0x81, &vec![b'x'; 65537]);
    raw.send_frame_bytes(&frame[..14]).await;
    assert_eq!(raw.read_close().await, Some(1009));
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn the_rate_limit_answers_with_retry_after_then_recovers() {
    let server = TestServer::with(|s| {
        s.rate_limit = Some(5);
        s.rate_limit_burst = Some(5);
    })
    .await;
    let mut client = server.connect("alice").await;
    for i in 0..5 {
        client.send(json!({"type": "ping", "id": i})).await;
        client.expect("pong").await;
        client.expect("ack").await;
    }
    client.send(json!({"type": "ping", "id": "over"})).await;
    let error = client.expect_error("RATE_LIMITED").await;
    assert_eq!(error["id"], "over");
    let retry_after = error["payload"]["retryAfter"].as_u64().unwrap();
    assert!((1..=200).contains(&retry_after), "retryAfter {retry_after}");
    assert_eq!(server.stats().await["rateLimited"], 1);
    // A second connection of the same user shares the bucket.
    let mut second = server.connect("alice").await;
    second.send_type("ping", json!({})).await;
    let again = second.expect_error("RATE_LIMITED").await;
    let retry_again = again["payload"]["retryAfter"].as_u64().unwrap();
    assert!((1..=200).contains(&retry_again), "retryAfter {retry_again}");
    // Waiting as long as the server said is enough. Not a synchronisation: waiting is the
    // protocol's instruction, counted from answers already received, so never too short.
    let wait = retry_after.max(retry_again);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    client.send_type("ping", json!({})).await;
    client.expect("pong").await;
}

#[tokio::test]
async fn ids_are_acked_and_duplicates_are_not_redelivered() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    let message =
        json!({"type": "message", "payload": {"room": "general", "content": "once"}, "id": "m-1"});
    alice.send(message.clone()).await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["payload"]["id"], "m-1");
    assert_eq!(ack["id"], "m-1");
    assert_eq!(ack["payload"]["offset"], 1);
    bob.expect("message").await;
    alice.send(message).await;
    let again = alice.expect("ack").await;
    assert_eq!(
        again["payload"], ack["payload"],
        "the same ack, offset included"
    );
    bob.expect_nothing_pending().await;
    // A different id is a different message; a failed frame is not remembered.
    alice
        .send(json!({"type": "message", "payload": {"room": "general", "content": "twice"}, "id": "m-2"}))
        .await;
    alice.expect("ack").await;
    bob.expect("message").await;
    alice
        .send(json!({"type": "leave_room", "payload": {"room": "nowhere"}, "id": "l-1"}))
        .await;
    alice.expect_error("NOT_IN_ROOM").await;
    alice
        .send(json!({"type": "leave_room", "payload": {"room": "nowhere"}, "id": "l-1"}))
        .await;
    alice.expect_error("NOT_IN_ROOM").await;
}

/// Whether a `message` reached `client` before the answer to a `ping` sent now, which comes
/// after everything already queued for it; nothing else may come.
async fn message_arrived(client: &mut Client) -> bool {
    client.send_type("ping", json!({})).await;
    let frame = client.recv().await;
    if frame["type"] == "pong" {
        return false;
    }
    assert_eq!(frame["type"], "message", "unexpected frame {frame}");
    client.expect("pong").await;
    true
}

#[tokio::test]
async fn ids_are_forgotten_after_the_dedup_window() {
    let window = Duration::from_millis(200);
    let server = TestServer::with(|s| {
        s.dedup_window = Some(DurationArg(window));
        // The resends below come faster than the default rate limit allows.
        s.rate_limit = Some(0);
    })
    .await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    let message =
        json!({"type": "message", "payload": {"room": "general", "content": "hi"}, "id": 1});
    let sent = Instant::now();
    alice.send(message.clone()).await;
    alice.expect("ack").await;
    bob.expect("message").await;
    // Resend until the server has forgotten the id, instead of sleeping past the window: each
    // resend is acknowledged, and not delivered while the window lasts. Polls every 20 ms.
    loop {
        assert!(sent.elapsed() < WAIT, "the id was never forgotten");
        tokio::time::sleep(Duration::from_millis(20)).await;
        alice.send(message.clone()).await;
        alice.expect("ack").await;
        if message_arrived(&mut bob).await {
            break;
        }
    }
    // The server counts whole milliseconds, so it may forget up to 1 ms early.
    let remembered = sent.elapsed() + Duration::from_millis(1);
    assert!(remembered >= window, "forgotten after {remembered:?}");
}

#[tokio::test]
async fn app_level_ping_is_answered_with_the_same_payload() {
    let server = TestServer::start().await;
    let mut client = server.connect("alice").await;
    client
        .send(json!({"type": "ping", "payload": {"timestamp": 1234}, "id": "p"}))
        .await;
    let pong = client.expect("pong").await;
    assert_eq!(pong["payload"], json!({"timestamp": 1234}));
    assert_eq!(pong["id"], "p");
    client.expect("ack").await;
    client.send_type("ping", serde_json::Value::Null).await;
    assert_eq!(client.expect("pong").await["payload"], json!({}));
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_invalid_utf8_with_1007() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(server.addr, "/?userId=a").await;
    // An unmasked frame.
    raw.send_frame_bytes(&[0x81, 0x02, b'h', b'i']).await;
    assert_eq!(raw.read_close().await, Some(1002));

    let mut raw = RawClient::connect(server.addr, "/?userId=b").await;
    raw.send_frame(0x81, &[0xC3, 0x28]).await;
    assert_eq!(raw.read_close().await, Some(1007));

    let mut raw = RawClient::connect(server.addr, "/?userId=c").await;
    raw.send_frame(0xC1, b"{}").await;
    assert_eq!(
        raw.read_close().await,
        Some(1002),
        "RSV1 without an extension"
    );
}

#[tokio::test]
async fn replies_queued_before_a_violation_are_written_before_the_close() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(server.addr, "/?userId=a").await;
    let (connect, _) = raw.read_frame().await;
    assert_eq!(connect, 0x81);
    let mut bytes = masked_frame(0x81, br#"{"type":"ping","payload":{"n":1}}"#);
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    raw.send_frame_bytes(&bytes).await;
    let (opcode, payload) = raw.read_frame().await;
    assert_eq!(opcode, 0x81);
    let pong: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(pong["type"], "pong");
    assert_eq!(raw.read_close().await, Some(1002));
}

#[tokio::test]
async fn the_echo_endpoint_is_off_by_default_and_echoes_when_on() {
    let server = TestServer::start().await;
    let (status, _) = http_get(server.addr, "/echo").await;
    assert_eq!(status, 404);
    let server = TestServer::with(|s| s.echo_endpoint = Some(true)).await;
    let mut raw = RawClient::connect(server.addr, "/echo").await;
    raw.send_frame(0x81, b"not even json").await;
    assert_eq!(raw.read_frame().await, (0x81, b"not even json".to_vec()));
    raw.send_frame(0x82, &[0, 1, 2]).await;
    assert_eq!(raw.read_frame().await, (0x82, vec![0, 1, 2]));
}
