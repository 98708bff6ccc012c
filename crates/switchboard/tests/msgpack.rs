//! The MessagePack protocol (subprotocol `switchboard.v1.msgpack`) against a real server: the
//! negotiation, every command, a room whose members read JSON, MessagePack and compressed
//! MessagePack, bytes end to end (live, history, recovery), and malformed input at every
//! limit. The MessagePack clients are raw sockets that encode and decode with `rmpv`, an
//! implementation independent of the server's transcoder (`msgpack_support`).

#![allow(clippy::unwrap_used)]

mod deflate_support;
mod msgpack_support;

use base64::Engine as _;

use msgpack_support::{PROTOCOL, Pack, Packed, encode, frame, header, json_of, pack};
use serde_json::{Value, json};
use switchboard::config::{ByteSize, RawSettings};
use switchboard_testkit::{RawClient, TestServer, hs256_token, now_secs};

#[tokio::test]
async fn the_subprotocol_is_selected_only_when_offered() {
    let server = TestServer::start().await;
    let offers = [
        ("", None),
        ("Sec-WebSocket-Protocol: chat, mqtt\r\n", None),
        (
            "Sec-WebSocket-Protocol: switchboard.v1\r\n",
            Some("switchboard.v1"),
        ),
        (
            "Sec-WebSocket-Protocol: chat, switchboard.v1.msgpack, switchboard.v1\r\n",
            Some("switchboard.v1.msgpack"),
        ),
        (
            "Sec-WebSocket-Protocol: switchboard.v1, switchboard.v1.msgpack\r\n",
            Some("switchboard.v1"),
        ),
    ];
    for (offer, selected) in offers {
        for path in ["/?userId=a", "/ws?userId=a"] {
            let (mut raw, head) = RawClient::connect_with(server.addr, path, offer).await;
            assert_eq!(header(&head, "sec-websocket-protocol"), selected, "{offer}");
            let (first, payload) = raw.read_frame().await;
            let connect: Value = if selected == Some("switchboard.v1.msgpack") {
                assert_eq!(first, 0x82, "binary");
                json_of(&rmpv::decode::read_value(&mut &payload[..]).unwrap())
            } else {
                assert_eq!(first, 0x81, "text");
                serde_json::from_slice(&payload).unwrap()
            };
            assert_eq!(connect["type"], "connect");
        }
    }
}

#[tokio::test]
async fn every_command_works_over_msgpack() {
    let server = TestServer::with(|s| s.history_size = Some(10)).await;
    let mut alice = Packed::connect(&server, "alice", false).await;
    let mut bob = server.member("bob", "general").await;
    alice
        .send_json(&json!({"type": "join_room", "payload": {"room": "general"}, "id": "j"}))
        .await;
    let joined = alice.expect("room_joined").await;
    assert_eq!(joined["payload"]["room"], "general");
    assert_eq!(joined["payload"]["offset"], 0);
    assert_eq!(alice.expect("ack").await["payload"]["id"], "j");
    assert_eq!(
        bob.expect("user_joined").await["payload"]["userId"],
        "alice"
    );

    alice
        .send_json(&json!({"type": "message", "payload": {"room": "general", "content": "hi", "n": -3}, "id": 5}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(
        (&ack["payload"]["id"], &ack["payload"]["offset"]),
        (&json!(5), &json!(1))
    );
    let message = bob.expect("message").await;
    assert_eq!(message["payload"], json!({"content": "hi", "n": -3}));
    bob.send(json!({"type": "message", "payload": {"room": "general", "content": 1.5}}))
        .await;
    let message = alice.expect("message").await;
    assert_eq!(message["payload"]["content"], 1.5);
    assert_eq!(message["userId"], "bob");
    assert_eq!(message["offset"], 2);

    alice
        .send_json(&json!({"type": "history", "payload": {"room": "general"}}))
        .await;
    let history = alice.expect("history").await;
    let publications = history["payload"]["publications"].as_array().unwrap();
    assert_eq!(publications.len(), 2);
    assert_eq!(publications[0]["payload"]["content"], "hi");

    alice
        .send_json(&json!({"type": "subscribe", "payload": {"channel": "news"}}))
        .await;
    assert_eq!(
        alice.expect("subscribed").await["payload"]["channel"],
        "news"
    );
    bob.send(json!({"type": "publish", "payload": {"channel": "news", "data": {"x": [1, 2]}}}))
        .await;
    let publication = alice.expect("publish").await;
    assert_eq!(publication["payload"], json!({"x": [1, 2]}));
    assert_eq!(publication["channel"], "news");
    alice
        .send_json(&json!({"type": "publish", "payload": {"channel": "news", "data": "self"}}))
        .await;
    alice
        .send_json(&json!({"type": "unsubscribe", "payload": {"channel": "news"}}))
        .await;
    // Her own publication may come back first (`--deliver-to-publisher`).
    alice.until("unsubscribed").await;

    alice
        .send_json(&json!({"type": "presence", "payload": {"status": "away", "metadata": {"typing": true}}}))
        .await;
    let presence = bob.expect("presence").await;
    assert_eq!(presence["payload"]["status"], "away");
    assert_eq!(presence["payload"]["metadata"], json!({"typing": true}));

    bob.send(json!({"type": "broadcast", "payload": {"content": "all"}}))
        .await;
    bob.expect("broadcast").await;
    // Alice may see her own presence first (she is in the room).
    assert_eq!(alice.until("broadcast").await["payload"]["content"], "all");

    alice.still_open().await;
    alice.send_json(&json!({"type": "pong"})).await;
    alice
        .send_json(&json!({"type": "auth", "payload": {"token": "t"}}))
        .await;
    alice.expect_error("INVALID_MESSAGE").await;
    alice.send_json(&json!({"type": "dance"})).await;
    alice.expect_error("UNKNOWN_TYPE").await;
    alice
        .send_json(&json!({"type": "leave_room", "payload": {"room": "general"}}))
        .await;
    assert_eq!(
        alice.expect("room_left").await["payload"]["room"],
        "general"
    );
    assert_eq!(bob.expect("user_left").await["payload"]["userId"], "alice");
    alice
        .send_json(&json!({"type": "message", "payload": {"room": "general", "content": "x"}}))
        .await;
    alice.expect_error("NOT_IN_ROOM").await;
}

#[tokio::test]
async fn a_mixed_room_gets_each_member_its_encoding_with_the_same_content() {
    let server = TestServer::start().await;
    let mut packed = Packed::member(&server, "packed", "mixed", false).await;
    let mut squeezed = Packed::member(&server, "squeezed", "mixed", true).await;
    let mut plain = server.member("plain", "mixed").await;
    let mut sender = server.member("sender", "mixed").await;
    plain.expect("user_joined").await;
    for _ in 0..2 {
        packed.expect("user_joined").await;
        squeezed.expect("user_joined").await;
    }
    packed.expect("user_joined").await;
    // Small and above the compression threshold (1 KiB by default).
    let big = "{\"chart\":[1,2,3]} ".repeat(200);
    for content in ["small", big.as_str()] {
        sender
            .send(json!({"type": "message", "payload": {"room": "mixed", "content": content, "list": [1, -2, 3.25, null, true]}}))
            .await;
        let json = plain.expect("message").await;
        let from_packed = packed.expect("message").await;
        assert!(!packed.last_compressed);
        let from_squeezed = squeezed.expect("message").await;
        assert_eq!(squeezed.last_compressed, content.len() >= 1024);
        assert_eq!(from_packed, json);
        assert_eq!(from_squeezed, json);
        assert_eq!(json["payload"]["content"], content);
    }
    // A MessagePack sender: JSON members get JSON, MessagePack members MessagePack.
    squeezed
        .send_json(&json!({"type": "message", "payload": {"room": "mixed", "content": big}}))
        .await;
    let json = plain.expect("message").await;
    assert_eq!(json["payload"]["content"], big.as_str());
    assert_eq!(packed.expect("message").await, json);
    assert_eq!(sender.expect("message").await, json);
}

#[tokio::test]
async fn bytes_travel_as_bytes_to_msgpack_clients_and_as_base64_to_json_ones() {
    let server = TestServer::with(|s| s.history_size = Some(10)).await;
    let blob: Vec<u8> = (0..=255).collect();
    let mut reader = Packed::member(&server, "reader", "files", false).await;
    let mut json_reader = server.member("json", "files").await;
    reader.expect("user_joined").await;
    let mut writer = Packed::member(&server, "writer", "files", false).await;
    reader.expect("user_joined").await;
    json_reader.expect("user_joined").await;
    let message = frame(
        "message",
        vec![
            ("room", Pack::from("files")),
            ("content", Pack::Binary(blob.clone())),
            ("thumb", Pack::Binary(vec![])),
        ],
        None,
    );
    writer.send(&message).await;
    let live = reader.next_pack().await;
    assert_eq!(live["payload"]["content"], Pack::Binary(blob.clone()));
    assert_eq!(live["payload"]["thumb"], Pack::Binary(vec![]));
    let base64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let json = json_reader.expect("message").await;
    assert_eq!(json["payload"]["content"], json!({"$bytes": base64}));
    assert_eq!(json["payload"]["thumb"], json!({"$bytes": ""}));
    // A JSON client can send bytes to MessagePack clients in the same form.
    json_reader
        .send(
            json!({"type": "message", "payload": {"room": "files", "content": {"$bytes": "AAEC"}}}),
        )
        .await;
    let from_json = reader.next_pack().await;
    assert_eq!(from_json["payload"]["content"], Pack::Binary(vec![0, 1, 2]));
    writer.next_pack().await;

    // History and recovery replay the bytes as bytes.
    reader
        .send_json(&json!({"type": "history", "payload": {"room": "files"}}))
        .await;
    let history = reader.next_pack().await;
    let publications = history["payload"]["publications"].as_array().unwrap();
    assert_eq!(
        publications[0]["payload"]["content"],
        Pack::Binary(blob.clone())
    );
    assert_eq!(
        publications[1]["payload"]["content"],
        Pack::Binary(vec![0, 1, 2])
    );
    let epoch = json_of(&history["payload"]["epoch"]);
    let mut back = Packed::connect(&server, "back", false).await;
    back.send_json(&json!({"type": "join_room", "payload": {"room": "files", "since": {"offset": 0, "epoch": epoch}}}))
        .await;
    let joined = back.expect("room_joined").await;
    assert_eq!(joined["payload"]["recovered"], true);
    let replayed = back.next_pack().await;
    assert_eq!(replayed["type"], Pack::from("message"));
    assert_eq!(replayed["payload"]["content"], Pack::Binary(blob));
}

#[tokio::test]
async fn malformed_msgpack_gets_errors_and_the_connection_stays_open() {
    let server = TestServer::with(|s| {
        s.rate_limit = Some(0);
        s.max_content_length = Some(20);
    })
    .await;
    let mut client = Packed::member(&server, "m", "r", false).await;
    let mut deep = vec![0x91; 101];
    deep.push(0xc0);
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (vec![], "INVALID_JSON", "truncated MessagePack"),
        (vec![0xa5, b'a'], "INVALID_JSON", "truncated MessagePack"),
        (
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            "INVALID_JSON",
            "truncated MessagePack",
        ),
        (vec![0x80, 0x01], "INVALID_JSON", "after the frame's value"),
        (vec![0xc1], "INVALID_JSON", "MessagePack"),
        (vec![0xd4, 0x01, 0x00], "INVALID_JSON", "extension types"),
        (
            vec![0x81, 0x01, 0x02],
            "INVALID_JSON",
            "keys must be strings",
        ),
        (vec![0xa2, 0xc3, 0x28], "INVALID_JSON", "UTF-8"),
        (
            vec![0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
            "INVALID_JSON",
            "finite",
        ),
        (deep, "INVALID_JSON", "nesting"),
        (encode(&Pack::from(5)), "INVALID_MESSAGE", ""),
        (
            encode(&pack(&json!({"payload": {}}))),
            "INVALID_MESSAGE",
            "",
        ),
    ];
    for (data, code, words) in cases {
        client.send_bytes(&data).await;
        let error = client.expect_error(code).await;
        let message = error["payload"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{data:x?}: {message}");
        client.still_open().await;
    }
    // A text frame on a MessagePack connection: the counterpart of binary on a JSON one.
    client.raw.send_frame(0x81, br#"{"type":"ping"}"#).await;
    let error = client.expect_error("INVALID_MESSAGE").await;
    assert!(
        error["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("MessagePack binary frames")
    );
    client.still_open().await;

    // Content length counts bytes in their JSON form: 13 + 4 * 2 = 21 characters for 5 bytes.
    let at_limit = frame(
        "message",
        vec![
            ("room", Pack::from("r")),
            ("content", Pack::Binary(vec![1; 3])),
        ],
        Some("ok"),
    );
    client.send(&at_limit).await;
    assert_eq!(client.expect("ack").await["payload"]["id"], "ok");
    let over = frame(
        "message",
        vec![
            ("room", Pack::from("r")),
            ("content", Pack::Binary(vec![1; 4])),
        ],
        Some("big"),
    );
    client.send(&over).await;
    let error = client.expect_error("MESSAGE_TOO_LARGE").await;
    assert_eq!(error["payload"]["id"], "big");
    let long_name = frame(
        "join_room",
        vec![("room", Pack::from("r".repeat(1000)))],
        None,
    );
    client.send(&long_name).await;
    client.expect_error("INVALID_MESSAGE").await;
    client.still_open().await;
}

#[tokio::test]
async fn the_frame_size_limit_applies_to_msgpack_frames() {
    let server = TestServer::with(|s| s.max_frame_size = Some(ByteSize(1024))).await;
    let mut fits = Packed::member(&server, "fits", "r", false).await;
    let payload = |len: usize| {
        // Maps, keys and a bin16 header take 25 bytes: `len` bytes in all.
        frame("ping", vec![("b", Pack::Binary(vec![7; len - 25]))], None)
    };
    let at_limit = encode(&payload(1024));
    assert_eq!(at_limit.len(), 1024);
    fits.send_bytes(&at_limit).await;
    fits.expect("pong").await;
    let over = encode(&payload(1025));
    assert_eq!(over.len(), 1025);
    fits.send_bytes(&over).await;
    assert_eq!(fits.raw.read_close().await, Some(1009));
}

#[tokio::test]
async fn an_auth_frame_in_msgpack_authenticates() {
    const SECRET: &str = "msgpack-test-secret-0123456789";
    let server = TestServer::with(|s| s.jwt_secret = Some(SECRET.to_owned())).await;
    let (raw, head) = RawClient::connect_with(server.addr, "/ws", PROTOCOL).await;
    assert_eq!(
        header(&head, "sec-websocket-protocol"),
        Some("switchboard.v1.msgpack")
    );
    let mut client = Packed {
        raw,
        deflate: false,
        last_compressed: false,
    };
    client.send_bytes(&[0xc1]).await;
    client.expect_error("INVALID_JSON").await;
    client.raw.send_frame(0x81, b"{}").await;
    client.expect_error("UNAUTHORIZED").await;
    client
        .send_json(&json!({"type": "join_room", "payload": {"room": "r"}}))
        .await;
    client.expect_error("UNAUTHORIZED").await;
    let token = hs256_token(SECRET, "carol", now_secs() + 600, json!({}));
    client
        .send_json(&json!({"type": "auth", "payload": {"token": token}}))
        .await;
    assert_eq!(client.expect("connect").await["payload"]["userId"], "carol");
    client.still_open().await;
}

#[tokio::test]
async fn other_endpoints_do_not_select_msgpack() {
    let server = TestServer::with(|s: &mut RawSettings| s.echo_endpoint = Some(true)).await;
    let (_, head) = RawClient::connect_with(server.addr, "/echo", PROTOCOL).await;
    assert_eq!(header(&head, "sec-websocket-protocol"), None);
}
