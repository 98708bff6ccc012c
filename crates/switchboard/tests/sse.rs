//! The SSE transport (DESIGN.md §9) over real connections: `GET /sse` streams, `POST
//! /sse/{connectionId}` frames, next to WebSocket clients of the same server.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchboard_testkit::sse::{Item, SseClient, post_to};
use switchboard_testkit::tokens::hs256_token;
use switchboard_testkit::wait::wait_until_async;
use switchboard_testkit::{TestServer, http_get, http_request};

fn join(room: &str, id: u64) -> Value {
    json!({"type": "join_room", "payload": {"room": room}, "id": id})
}

#[tokio::test]
async fn the_stream_starts_with_connect_and_a_session_secret() {
    let server = TestServer::start().await;
    let mut sse = SseClient::open(server.addr, "/sse?userId=bob", &[]).await;
    assert_eq!(sse.status, 200);
    for header in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "x-accel-buffering: no",
    ] {
        assert!(sse.head.contains(header), "{header} in {}", sse.head);
    }
    assert_eq!(sse.next_item().await, Item::Comment("switchboard".into()));
    assert_eq!(sse.next_item().await, Item::Field("retry: 1000".into()));
    let connect = sse.read_connect().await;
    assert_eq!(connect["payload"]["userId"], "bob");
    // 256 random bits in URL-safe base64; another connection gets another secret.
    let session = sse.session();
    assert_eq!(session.len(), 43, "{session}");
    let other = SseClient::connect(server.addr, "bob").await;
    assert_ne!(other.session(), session);
    assert_ne!(other.connection_id(), sse.connection_id());
    assert_eq!(server.stats().await["connections"], 2);
}

#[tokio::test]
async fn posted_frames_reach_rooms_and_replies_come_back_on_the_stream() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = SseClient::connect(server.addr, "bob").await;
    // A batch: handled in order, like consecutive WebSocket frames.
    let batch = json!([
        join("general", 1),
        {"type": "message", "payload": {"room": "general", "content": "hi from SSE"}, "id": 2},
        {"type": "presence", "payload": {"status": "away"}},
    ]);
    let (status, body) = bob.post(&batch.to_string()).await;
    assert_eq!((status, body), (204, Value::Null));
    let joined = bob.expect("room_joined").await;
    assert_eq!(joined["payload"]["memberCount"], 2);
    assert_eq!(bob.expect("ack").await["id"], 1);
    let ack = bob.expect("ack").await;
    assert_eq!(
        (ack["id"].clone(), ack["payload"]["offset"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(alice.expect("user_joined").await["userId"], "bob");
    let message = alice.expect("message").await;
    assert_eq!(message["payload"]["content"], "hi from SSE");
    assert_eq!(message["userId"], "bob");
    assert_eq!(alice.expect("presence").await["payload"]["status"], "away");
    // A WebSocket client's message and a broadcast reach the SSE client.
    alice
        .send_type("message", json!({"room": "general", "content": "hi back"}))
        .await;
    bob.expect("presence").await;
    let message = bob.expect("message").await;
    assert_eq!(message["payload"]["content"], "hi back");
    assert_eq!(message["offset"], 2);
    alice
        .send_type("broadcast", json!({"content": "all"}))
        .await;
    assert_eq!(bob.expect("broadcast").await["payload"]["content"], "all");
    // Bad frames in a body are answered on the stream as on a WebSocket.
    let (status, _) = bob
        .post(r#"[{"type":"nope"},{"type":"message","payload":{"room":"elsewhere","content":"x"}}, 7]"#)
        .await;
    assert_eq!(status, 204);
    bob.expect_error("UNKNOWN_TYPE").await;
    bob.expect_error("NOT_IN_ROOM").await;
    bob.expect_error("INVALID_MESSAGE").await;
    // Channels, and a single frame with line breaks in its JSON.
    bob.post("{\"type\":\"subscribe\",\n\"payload\":{\"channel\":\"news\"}}")
        .await;
    assert_eq!(bob.expect("subscribed").await["payload"]["channel"], "news");
    alice
        .send_type(
            "publish",
            json!({"channel": "news", "data": {"line": "a\nb"}}),
        )
        .await;
    assert_eq!(bob.expect("publish").await["payload"]["line"], "a\nb");
    bob.send(json!({"type": "ping", "payload": {"n": 1}})).await;
    assert_eq!(bob.expect("pong").await["payload"]["n"], 1);
}

#[tokio::test]
async fn bad_posts_get_clear_errors_and_change_nothing() {
    let server = TestServer::with(|s| {
        s.max_frame_size = Some("2KiB".parse().unwrap());
        s.rate_limit = Some(0);
    })
    .await;
    let mut bob = SseClient::connect(server.addr, "bob").await;
    let (id, session) = (bob.connection_id(), bob.session());
    let ping = r#"{"type":"ping"}"#;
    let post = |id: &str, session: Option<&str>, body: String, content_type: &str| {
        let (id, session) = (id.to_owned(), session.map(str::to_owned));
        let content_type = content_type.to_owned();
        async move { post_to(server.addr, &id, session.as_deref(), &body, &content_type).await }
    };
    let text = "text/plain";
    let cases = [
        (
            post(&id, Some("wrong"), ping.into(), text).await,
            403,
            "FORBIDDEN",
        ),
        (post(&id, None, ping.into(), text).await, 403, "FORBIDDEN"),
        (
            post("0000000000000001", Some(&session), ping.into(), text).await,
            404,
            "UNKNOWN_CONNECTION",
        ),
        (
            post("not-an-id", Some(&session), ping.into(), text).await,
            404,
            "UNKNOWN_CONNECTION",
        ),
        (
            post(&id, Some(&session), "{nope".into(), text).await,
            400,
            "INVALID_JSON",
        ),
        (
            post(&id, Some(&session), "[{}".into(), "application/json").await,
            400,
            "INVALID_JSON",
        ),
        (
            post(&id, Some(&session), String::new(), text).await,
            400,
            "INVALID_JSON",
        ),
        (
            post(
                &id,
                Some(&session),
                ping.into(),
                "application/x-www-form-urlencoded",
            )
            .await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            post(
                &id,
                Some(&session),
                format!("\"{}\"", "x".repeat(2047)),
                text,
            )
            .await,
            413,
            "MESSAGE_TOO_LARGE",
        ),
    ];
    for ((got, error), status, code) in cases {
        assert_eq!(
            (got, error["code"].as_str()),
            (status, Some(code)),
            "{error}"
        );
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A body of exactly --max-frame-size bytes is taken.
    let padded = format!(
        r#"{{"type":"ping","payload":{{"pad":"{}"}}}}"#,
        " ".repeat(2048 - 36)
    );
    assert_eq!(padded.len(), 2048);
    assert_eq!(bob.post(&padded).await.0, 204);
    bob.expect("pong").await;
    // At most 100 frames in one body: 100 are handled, 101 refused whole.
    let frames = |n: usize| format!("[{}]", vec![ping; n].join(","));
    assert_eq!(bob.post(&frames(101)).await.0, 413);
    assert_eq!(bob.post(&frames(100)).await.0, 204);
    for _ in 0..100 {
        bob.expect("pong").await;
    }
    // Nothing of the refused requests reached the stream: the next event answers the next POST.
    bob.send(json!({"type": "ping", "payload": {"last": true}}))
        .await;
    assert_eq!(bob.expect("pong").await["payload"]["last"], true);
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains("switchboard_sse_posts_refused_total 10\n"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_sse_connections_opened_total 1\n"));
}

#[tokio::test]
async fn the_connection_leaves_the_hub_when_the_client_goes_away() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let bob = SseClient::connect(server.addr, "bob").await;
    bob.send(join("general", 1)).await;
    alice.expect("user_joined").await;
    let (id, session) = (bob.connection_id(), bob.session());
    drop(bob);
    assert_eq!(
        alice.expect("presence").await["payload"]["status"],
        "offline"
    );
    assert_eq!(alice.expect("user_left").await["userId"], "bob");
    assert_eq!(server.stats().await["connections"], 1);
    let (status, error) = post_to(server.addr, &id, Some(&session), "{}", "text/plain").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (404, Some("UNKNOWN_CONNECTION"))
    );
}

#[tokio::test]
async fn shutdown_ends_the_stream_after_a_close_event() {
    let server = TestServer::start().await;
    let mut bob = SseClient::connect(server.addr, "bob").await;
    let (events, clean) = tokio::join!(bob.ended(), server.shutdown());
    assert!(clean);
    let close = events.last().unwrap();
    assert_eq!(close["type"], "close");
    assert_eq!(close["payload"]["code"], 1001);
    assert_eq!(close["payload"]["reason"], "server shutting down");
}

#[tokio::test]
async fn heartbeats_are_comments_and_a_reading_client_stays_connected() {
    let server = TestServer::with(|s| {
        s.heartbeat_interval = Some("50ms".parse().unwrap());
        s.heartbeat_timeout = Some("120ms".parse().unwrap());
    })
    .await;
    let mut bob = SseClient::connect(server.addr, "bob").await;
    // Many times the timeout's worth of heartbeats: the client never POSTs, reading is enough.
    let mut pings = 0;
    while pings < 10 {
        match bob.next_item().await {
            Item::Comment(comment) if comment == "ping" => pings += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    bob.send(json!({"type": "ping"})).await;
    loop {
        match bob.next_item().await {
            Item::Comment(_) => {}
            Item::Event(event) => break assert_eq!(event["type"], "pong"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(server.stats().await["heartbeatTimeouts"], 0);
}

#[tokio::test]
async fn an_idle_stream_ends_with_the_idle_close() {
    let server = TestServer::with(|s| {
        s.idle_timeout = Some("300ms".parse().unwrap());
        s.away_timeout = Some("200ms".parse().unwrap());
        s.cleanup_interval = Some("100ms".parse().unwrap());
    })
    .await;
    let mut bob = SseClient::connect(server.addr, "bob").await;
    let events = bob.ended().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "close");
    assert_eq!(
        (
            &events[0]["payload"]["code"],
            &events[0]["payload"]["reason"]
        ),
        (&json!(1000), &json!("idle timeout"))
    );
    assert_eq!(server.stats().await["connections"], 0);
}

#[tokio::test]
async fn a_full_server_answers_with_a_close_event() {
    let server = TestServer::with(|s| s.max_connections = Some(1)).await;
    let _first = SseClient::connect(server.addr, "a").await;
    let mut second = SseClient::open(server.addr, "/sse?userId=b", &[]).await;
    assert_eq!(second.status, 200);
    let events = second.ended().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "close");
    assert_eq!(events[0]["payload"]["code"], 1013);
}

#[tokio::test]
async fn the_token_decides_who_connects() {
    const SECRET: &str = "sse-test-secret-with-enough-bytes!!";
    let server = TestServer::with(|s| s.jwt_secret = Some(SECRET.into())).await;
    let none = SseClient::open(server.addr, "/sse?userId=mallory", &[]).await;
    assert_eq!(none.status, 401);
    let bad = SseClient::open(server.addr, "/sse?token=nope", &[]).await;
    assert_eq!(bad.status, 401);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = hs256_token(SECRET, "carol", exp, json!({"rooms": ["public"]}));
    let mut carol =
        SseClient::open(server.addr, &format!("/sse?token={token}&userId=x"), &[]).await;
    assert_eq!(carol.status, 200);
    assert_eq!(carol.read_connect().await["payload"]["userId"], "carol");
    carol.send(join("secret", 1)).await;
    carol.expect_error("FORBIDDEN").await;
    carol.send(join("public", 2)).await;
    carol.expect("room_joined").await;
}

#[tokio::test]
async fn origins_follow_the_allowlist_and_preflights_are_answered() {
    let server = TestServer::with(|s| s.allowed_origins = Some("https://app.example".into())).await;
    let refused = SseClient::open(
        server.addr,
        "/sse?userId=bob",
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(refused.status, 403);
    let mut bob = SseClient::open(
        server.addr,
        "/sse?userId=bob",
        &[("Origin", "https://app.example")],
    )
    .await;
    assert_eq!(bob.status, 200);
    assert!(
        bob.head
            .contains("access-control-allow-origin: https://app.example")
    );
    bob.read_connect().await;
    let preflight = |origin: &str| {
        format!(
            "OPTIONS /sse/{} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nOrigin: {origin}\r\n\
             Access-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: x-switchboard-session\r\n\r\n",
            bob.connection_id()
        )
    };
    let (status, _) = http_request(server.addr, &preflight("https://evil.example")).await;
    assert_eq!(status, 403);
    let (status, _) = http_request(server.addr, &preflight("https://app.example")).await;
    assert_eq!(status, 204);
    // A POST from a page of another origin is refused before its frames are handled.
    let request = format!(
        "POST /sse/{} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nOrigin: https://evil.example\r\n\
         X-Switchboard-Session: {}\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n\
         {{\"type\":\"ping\"}}",
        bob.connection_id(),
        bob.session()
    );
    assert_eq!(http_request(server.addr, &request).await.0, 403);
    bob.send(json!({"type": "ping", "payload": {"n": 2}})).await;
    assert_eq!(bob.expect("pong").await["payload"]["n"], 2);
}

#[tokio::test]
async fn an_sse_client_recovers_what_it_missed() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    for content in ["one", "two", "three"] {
        alice
            .send_type("message", json!({"room": "general", "content": content}))
            .await;
    }
    let epoch = {
        let mut probe = SseClient::connect(server.addr, "probe").await;
        probe.send(join("general", 1)).await;
        let joined = probe.expect("room_joined").await;
        assert_eq!(joined["payload"]["offset"], 3);
        joined["payload"]["epoch"].clone()
    };
    let mut bob = SseClient::connect(server.addr, "bob").await;
    let since = json!({"offset": 1, "epoch": epoch});
    bob.send(json!({"type": "join_room", "payload": {"room": "general", "since": since}}))
        .await;
    assert_eq!(
        bob.expect("room_joined").await["payload"]["recovered"],
        true
    );
    let replayed: Vec<Value> = [bob.expect("message").await, bob.expect("message").await]
        .iter()
        .map(|m| m["payload"]["content"].clone())
        .collect();
    assert_eq!(replayed, [json!("two"), json!("three")]);
    wait_until_async("the probe's stream is gone", || async {
        server.stats().await["connections"] == 2
    })
    .await;
}
