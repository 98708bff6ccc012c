//! History from outside (DESIGN.md §7): offsets on room messages and channel publications,
//! positions in `room_joined` and `subscribed`, the `history` request and its server API, the
//! sender's offset in its `ack`, bad input, permissions, and history turned off.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchboard_testkit::{Client, TestServer, http_json};

const KEY: &str = "history-key";

async fn server() -> TestServer {
    TestServer::with(|raw| {
        raw.rate_limit = Some(0);
        raw.history_size = Some(5);
        raw.api_key = Some(KEY.into());
    })
    .await
}

async fn say(client: &mut Client, room: &str, content: &str) {
    client
        .send_type("message", json!({"room": room, "content": content}))
        .await;
}

async fn api(server: &TestServer, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {KEY}");
    http_json(server.addr, "GET", path, None, &[("Authorization", &auth)]).await
}

fn contents(publications: &Value) -> Vec<&str> {
    publications
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| frame["payload"]["content"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn room_messages_carry_offsets_and_the_sender_learns_its_own_from_the_ack() {
    let server = server().await;
    let mut alice = server.connect("alice").await;
    let joined = alice.join("general").await;
    assert_eq!(joined["payload"]["offset"], 0);
    let epoch = joined["payload"]["epoch"].as_str().unwrap().to_owned();
    assert!(!epoch.is_empty());
    assert!(
        joined["payload"].get("recovered").is_none(),
        "no since, no verdict"
    );
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    alice
        .send(json!({"type": "message", "payload": {"room": "general", "content": "one"}, "id": 1}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["payload"], json!({"id": 1, "offset": 1}));
    say(&mut bob, "general", "two").await;
    let one = bob.expect("message").await;
    assert_eq!(
        (one["offset"].as_u64(), &one["payload"]["content"]),
        (Some(1), &json!("one"))
    );
    let two = alice.expect("message").await;
    assert_eq!(two["offset"], 2);
    let again = server.member("carol", "general").await;
    drop(again);
    let mut dave = server.connect("dave").await;
    let joined = dave.join("general").await;
    assert_eq!(joined["payload"]["offset"], 2);
    assert_eq!(joined["payload"]["epoch"], epoch.as_str());
}

#[tokio::test]
async fn channel_publications_carry_offsets_per_channel_and_patterns_have_none() {
    let server = TestServer::with(|raw| raw.allow_client_patterns = Some(true)).await;
    let mut reader = server.connect("reader").await;
    reader
        .send_type("subscribe", json!({"channel": "news"}))
        .await;
    let subscribed = reader.expect("subscribed").await;
    assert_eq!(subscribed["channel"], "news", "like room_joined's room");
    assert_eq!(subscribed["payload"]["offset"], 0);
    assert!(subscribed["payload"]["epoch"].is_string());
    reader
        .send_type(
            "subscribe",
            json!({"channel": "room:*", "since": {"offset": 3, "epoch": "x"}}),
        )
        .await;
    let pattern = reader.expect("subscribed").await;
    assert!(
        pattern["payload"].get("offset").is_none(),
        "a pattern is no stream: {pattern}"
    );
    assert_eq!(pattern["payload"]["recovered"], false);
    for channel in ["news", "news", "room:a"] {
        reader
            .send_type("publish", json!({"channel": channel, "data": {}}))
            .await;
    }
    let offsets: Vec<(Value, Value)> = {
        let mut offsets = Vec::new();
        for _ in 0..3 {
            let frame = reader.expect("publish").await;
            offsets.push((frame["channel"].clone(), frame["offset"].clone()));
        }
        offsets
    };
    assert_eq!(
        offsets,
        [
            (json!("news"), json!(1)),
            (json!("news"), json!(2)),
            (json!("room:a"), json!(1))
        ]
    );
}

#[tokio::test]
async fn history_returns_the_latest_or_what_follows_a_position_as_delivered() {
    let server = server().await;
    let mut writer = server.member("writer", "general").await;
    let mut reader = server.member("reader", "general").await;
    writer.expect("user_joined").await;
    for n in 1..=7 {
        say(&mut writer, "general", &n.to_string()).await;
    }
    for _ in 0..7 {
        reader.expect("message").await;
    }
    reader
        .send(json!({"type": "history", "payload": {"room": "general"}, "id": "h1"}))
        .await;
    let all = reader.expect("history").await;
    assert_eq!(all["id"], "h1");
    assert_eq!(reader.expect("ack").await["id"], "h1");
    assert_eq!(all["room"], "general");
    assert_eq!(all["payload"]["offset"], 7);
    assert_eq!(
        contents(&all["payload"]["publications"]),
        ["3", "4", "5", "6", "7"]
    );
    let first = &all["payload"]["publications"][0];
    assert_eq!(first["type"], "message");
    assert_eq!(
        (first["offset"].as_u64(), first["userId"].as_str()),
        (Some(3), Some("writer"))
    );
    let epoch = all["payload"]["epoch"].clone();
    reader
        .send_type("history", json!({"room": "general", "limit": 2}))
        .await;
    assert_eq!(
        contents(&reader.expect("history").await["payload"]["publications"]),
        ["6", "7"]
    );
    reader
        .send_type(
            "history",
            json!({"room": "general", "limit": 2, "since": {"offset": 3, "epoch": epoch}}),
        )
        .await;
    assert_eq!(
        contents(&reader.expect("history").await["payload"]["publications"]),
        ["4", "5"]
    );
    reader
        .send_type(
            "history",
            json!({"room": "general", "since": {"offset": 3, "epoch": "old"}}),
        )
        .await;
    let other_epoch = reader.expect("history").await;
    assert_eq!(other_epoch["payload"]["publications"], json!([]));
    assert_eq!(other_epoch["payload"]["epoch"], epoch);
    reader
        .send_type("history", json!({"room": "empty", "limit": 0}))
        .await;
    let empty = reader.expect("history").await;
    assert_eq!(
        (
            empty["payload"]["offset"].as_u64(),
            empty["payload"]["publications"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (status, body) = api(&server, "/api/rooms/general/history?limit=3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(contents(&body["publications"]), ["5", "6", "7"]);
    assert_eq!((body["offset"].as_u64(), &body["epoch"]), (Some(7), &epoch));
    let path = format!(
        "/api/rooms/general/history?offset=5&epoch={}",
        epoch.as_str().unwrap()
    );
    let (_, body) = api(&server, &path).await;
    assert_eq!(contents(&body["publications"]), ["6", "7"]);
}

#[tokio::test]
async fn bad_history_input_gets_clear_errors_and_nothing_else_changes() {
    let server = server().await;
    let mut client = server.member("client", "general").await;
    for payload in [
        json!({"room": "general", "limit": 6}),
        json!({"room": "general", "limit": -1}),
        json!({"room": "general", "since": {"offset": -1, "epoch": "e"}}),
        json!({"room": "general", "since": {"offset": 1}}),
        json!({"room": "general", "channel": "news"}),
        json!({}),
    ] {
        client
            .send(json!({"type": "history", "payload": payload, "id": 9}))
            .await;
        let error = client.expect_error("INVALID_MESSAGE").await;
        assert_eq!(error["id"], 9, "{payload}");
    }
    client
        .send_type(
            "join_room",
            json!({"room": "other", "since": {"offset": "1", "epoch": "e"}}),
        )
        .await;
    client.expect_error("INVALID_MESSAGE").await;
    client
        .send_type("history", json!({"channel": "presence:alice"}))
        .await;
    client.expect_error("FORBIDDEN").await;
    for (path, status) in [
        ("/api/rooms/general/history?limit=6", 400),
        ("/api/rooms/general/history?limit=-1", 400),
        ("/api/rooms/general/history?offset=1", 400),
        ("/api/rooms/general/history?offset=x&epoch=e", 400),
        ("/api/rooms/general/history?since=1", 400),
        ("/api/rooms/bad%20name/history", 400),
        ("/api/channels/presence:alice/history", 403),
    ] {
        let (got, body) = api(&server, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let joined = client.join("general").await;
    assert_eq!(joined["payload"]["offset"], 0, "still a working connection");
}

#[tokio::test]
async fn history_needs_the_right_to_join_or_subscribe() {
    let server = TestServer::with(|raw| {
        raw.jwt_secret = Some("history-secret-history-secret-32".into());
    })
    .await;
    let claims = json!({"sub": "limited", "exp": 4_000_000_000u64, "rooms": ["open-*"], "channels": {"subscribe": ["news"]}});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"history-secret-history-secret-32"),
    )
    .unwrap();
    let mut client = Client::connect(&server.url(&format!("/?token={token}"))).await;
    for (payload, allowed) in [
        (json!({"room": "open-1"}), true),
        (json!({"room": "secret"}), false),
        (json!({"channel": "news"}), true),
        (json!({"channel": "other"}), false),
    ] {
        client.send_type("history", payload.clone()).await;
        let reply = client.recv().await;
        let expected = if allowed { "history" } else { "error" };
        assert_eq!(reply["type"], expected, "{payload}: {reply}");
        if !allowed {
            assert_eq!(reply["payload"]["code"], "FORBIDDEN");
        }
    }
}

#[tokio::test]
async fn with_history_off_there_are_no_offsets_and_history_is_refused() {
    let server = TestServer::with(|raw| {
        raw.history_size = Some(0);
        raw.api_key = Some(KEY.into());
    })
    .await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.connect("bob").await;
    bob.send_type(
        "join_room",
        json!({"room": "general", "since": {"offset": 0, "epoch": "e"}}),
    )
    .await;
    let joined = bob.expect("room_joined").await;
    say(&mut bob, "general", "hi").await;
    assert!(joined["payload"].get("offset").is_none(), "{joined}");
    assert_eq!(joined["payload"]["recovered"], false);
    alice.expect("user_joined").await;
    let message = alice.expect("message").await;
    assert!(message.get("offset").is_none(), "{message}");
    alice.send_type("history", json!({"room": "general"})).await;
    let error = alice.expect_error("INVALID_MESSAGE").await;
    assert!(
        error["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("history is off")
    );
    let (status, _) = api(&server, "/api/rooms/general/history").await;
    assert_eq!(status, 400);
}
