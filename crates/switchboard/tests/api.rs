//! The server HTTP API end to end: an HTTP call, then the frames real WebSocket clients get.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard_testkit::{Ended, TestServer, http_json, http_request};

const KEY: &str = "test-key-123";

async fn keyed() -> TestServer {
    TestServer::with(|s| s.api_key = Some(KEY.into())).await
}

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {KEY}");
    http_json(
        server.addr,
        method,
        path,
        body.as_ref(),
        &[("Authorization", &auth)],
    )
    .await
}

#[tokio::test]
async fn the_key_is_required_when_configured() {
    let server = keyed().await;
    let (status, body) = http_json(server.addr, "GET", "/api/rooms", None, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let (status, _) = http_json(
        server.addr,
        "GET",
        "/api/rooms",
        None,
        &[("Authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http_json(
        server.addr,
        "GET",
        "/api/rooms",
        None,
        &[("X-API-Key", KEY)],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, "GET", "/api/rooms", None).await;
    assert_eq!(status, 200);
    // The rest of the HTTP surface does not need the key.
    let (status, _) = http_json(server.addr, "GET", "/stats", None, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn without_a_key_the_api_refuses_everything_and_says_how_to_configure_one() {
    let server = TestServer::start().await;
    for (method, path) in [("GET", "/api/rooms"), ("POST", "/api/broadcast")] {
        let body = json!({"payload": 1});
        let (status, body) = http_json(server.addr, method, path, Some(&body), &[]).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "API_KEY_NOT_CONFIGURED");
        let message = body["error"]["message"].as_str().unwrap();
        for hint in ["--api-key", "SWITCHBOARD_API_KEY", "--api-insecure"] {
            assert!(message.contains(hint), "{message}");
        }
    }
    // A key presented to a server without one changes nothing.
    let (status, _) = http_json(
        server.addr,
        "GET",
        "/api/rooms",
        None,
        &[("Authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn api_insecure_serves_the_api_without_a_key() {
    let server = TestServer::with(|s| s.api_insecure = Some(true)).await;
    let (status, body) = http_json(server.addr, "GET", "/api/rooms", None, &[]).await;
    assert_eq!((status, body), (200, json!({"rooms": []})));
}

/// `POST path` with `content_type` (none when `None`) and the key; the status and the body.
async fn post_as(
    server: &TestServer,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let content_type = content_type
        .map(|value| format!("Content-Type: {value}\r\n"))
        .unwrap_or_default();
    let (status, body) = http_request(
        server.addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: Bearer {KEY}\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test]
async fn posts_must_declare_a_json_body() {
    let server = keyed().await;
    let mut member = server.member("bob", "general").await;
    let body = r#"{"payload":{"n":1}}"#;
    for refused in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let (status, reply) = post_as(&server, "/api/rooms/general/messages", refused, body).await;
        assert_eq!(status, 415, "{refused:?}: {reply}");
        assert_eq!(reply["error"]["code"], "UNSUPPORTED_MEDIA_TYPE");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    // Even a POST without a body: a cross-site form could send one.
    let (status, _) = post_as(&server, "/api/users/bob/disconnect", Some("text/plain"), "").await;
    assert_eq!(status, 415);
    member.expect_nothing_pending().await;
    for accepted in ["application/json", "application/json; charset=utf-8"] {
        let (status, reply) =
            post_as(&server, "/api/rooms/general/messages", Some(accepted), body).await;
        assert_eq!(
            (status, reply),
            (200, json!({"recipients": 1})),
            "{accepted}"
        );
        assert_eq!(member.expect("message").await["payload"]["n"], 1);
    }
    // Reads carry no body and need no content type.
    let (status, _) = http_request(
        server.addr,
        &format!(
            "GET /api/rooms HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
             Authorization: Bearer {KEY}\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn post_to_a_room_reaches_its_members() {
    let server = keyed().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    let mut outsider = server.connect("carol").await;
    alice.expect("user_joined").await;

    let (status, body) = call(
        &server,
        "POST",
        "/api/rooms/general/messages",
        Some(json!({"payload": {"content": "System maintenance at 5"}, "userId": "system"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"recipients": 2})));
    for client in [&mut alice, &mut bob] {
        let frame = client.expect("message").await;
        assert_eq!(frame["room"], "general");
        assert_eq!(frame["userId"], "system");
        assert_eq!(frame["payload"]["content"], "System maintenance at 5");
    }
    let (_, _) = call(
        &server,
        "POST",
        "/api/rooms/general/messages",
        Some(json!({"type": "announcement", "payload": {"text": "hi"}})),
    )
    .await;
    let frame = alice.expect("announcement").await;
    assert!(frame.get("userId").is_none());
    outsider.expect_nothing_pending().await;
}

#[tokio::test]
async fn post_to_a_user_reaches_all_their_connections() {
    let server = keyed().await;
    let mut phone = server.connect("dana").await;
    let mut laptop = server.connect("dana").await;
    let mut other = server.connect("eve").await;
    let (status, body) = call(
        &server,
        "POST",
        "/api/users/dana/messages",
        Some(json!({"type": "notification", "payload": {"text": "You have mail"}})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"recipients": 2})));
    for client in [&mut phone, &mut laptop] {
        assert_eq!(
            client.expect("notification").await["payload"]["text"],
            "You have mail"
        );
    }
    other.expect_nothing_pending().await;
}

#[tokio::test]
async fn broadcast_reaches_everyone() {
    let server = keyed().await;
    let mut a = server.connect("a").await;
    let mut b = server.member("b", "x").await;
    let (status, body) = call(
        &server,
        "POST",
        "/api/broadcast",
        Some(json!({"payload": {"content": "Deploy in 5 minutes"}})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"recipients": 2})));
    for client in [&mut a, &mut b] {
        assert_eq!(
            client.expect("broadcast").await["payload"]["content"],
            "Deploy in 5 minutes"
        );
    }
}

#[tokio::test]
async fn publish_to_a_channel_reaches_its_subscribers() {
    let server = keyed().await;
    let mut sub = server.connect("s").await;
    sub.send_type("subscribe", json!({"channel": "event:login"}))
        .await;
    sub.expect("subscribed").await;
    let (status, body) = call(
        &server,
        "POST",
        "/api/channels/event:login/publish",
        Some(json!({"data": {"user": "bob"}})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"recipients": 1})));
    let frame = sub.expect("publish").await;
    assert_eq!(frame["channel"], "event:login");
    assert_eq!(frame["payload"], json!({"user": "bob"}));
    let (status, body) = call(
        &server,
        "POST",
        "/api/channels/presence:bob/publish",
        Some(json!({"data": 1})),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn rooms_members_and_presence_can_be_read() {
    let server = keyed().await;
    let _a = server.member("alice", "general").await;
    let mut b = server.member("bob", "general").await;
    let _c = server.member("carol", "random").await;
    b.send_type("presence", json!({"status": "away"})).await;
    b.expect("presence").await;

    let (status, body) = call(&server, "GET", "/api/rooms", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["rooms"],
        json!([
            {"room": "general", "members": 2, "connections": 2},
            {"room": "random", "members": 1, "connections": 1}
        ])
    );
    let (status, body) = call(&server, "GET", "/api/rooms/general/members", None).await;
    assert_eq!(status, 200);
    let members: Vec<(String, String)> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().into(),
                m["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        members,
        [
            ("alice".into(), "online".into()),
            ("bob".into(), "away".into())
        ]
    );
    let (status, body) = call(&server, "GET", "/api/rooms/nowhere/members", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "NOT_FOUND");

    let (status, body) = call(&server, "GET", "/api/users/bob/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "away");
    let (_, body) = call(&server, "GET", "/api/users/nobody/presence", None).await;
    assert_eq!(body["status"], "offline");
    let (_, body) = call(&server, "GET", "/api/presence", None).await;
    assert_eq!(body["users"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn disconnect_closes_every_connection_of_the_user() {
    let server = keyed().await;
    let mut a1 = server.connect("mallory").await;
    let mut a2 = server.connect("mallory").await;
    let mut other = server.connect("oscar").await;
    let (status, body) = call(
        &server,
        "POST",
        "/api/users/mallory/disconnect",
        Some(json!({"reason": "banned"})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"disconnected": 2})));
    for client in [&mut a1, &mut a2] {
        assert_eq!(
            client.ended().await,
            Ended::Closed {
                code: 1008,
                reason: "banned".into()
            }
        );
    }
    other.expect_nothing_pending().await;
    let (status, body) = call(&server, "POST", "/api/users/nobody/disconnect", None).await;
    assert_eq!((status, body), (200, json!({"disconnected": 0})));
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_codes() {
    let server = keyed().await;
    let auth = format!("Bearer {KEY}");
    let (status, body) = http_request(
        server.addr,
        &format!(
            "POST /api/broadcast HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: 5\r\n\r\n{{bad}}"
        ),
    )
    .await;
    assert_eq!(status, 400);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "INVALID_JSON");
    for (path, request, code, status) in [
        ("/api/broadcast", json!({}), "INVALID_REQUEST", 400),
        (
            "/api/broadcast",
            json!({"payload": 1, "extra": true}),
            "INVALID_REQUEST",
            400,
        ),
        (
            "/api/broadcast",
            json!({"type": "ack", "payload": 1}),
            "FORBIDDEN",
            403,
        ),
        (
            "/api/broadcast",
            json!({"type": "has space", "payload": 1}),
            "INVALID_REQUEST",
            400,
        ),
        (
            "/api/rooms/bad%20room/messages",
            json!({"payload": 1}),
            "INVALID_REQUEST",
            400,
        ),
        (
            "/api/users/x/messages",
            json!({"payload": 1, "userId": "bad id"}),
            "INVALID_REQUEST",
            400,
        ),
        (
            "/api/channels/c/publish",
            json!({"payload": 1}),
            "INVALID_REQUEST",
            400,
        ),
    ] {
        let (got_status, body) = call(&server, "POST", path, Some(request.clone())).await;
        assert_eq!(got_status, status, "{path} {request}: {body}");
        assert_eq!(body["error"]["code"], code, "{path} {request}");
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn bodies_over_the_frame_limit_are_refused() {
    let server = TestServer::with(|s| {
        s.max_frame_size = Some("4KiB".parse().unwrap());
        s.api_insecure = Some(true);
    })
    .await;
    let big = json!({"payload": {"content": "x".repeat(5000)}});
    let (status, body) = http_json(server.addr, "POST", "/api/broadcast", Some(&big), &[]).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn unknown_api_paths_and_methods_get_json_errors() {
    let server = keyed().await;
    for (method, path, status, code) in [
        ("GET", "/api/nothing", 404, "NOT_FOUND"),
        ("POST", "/api/rooms/general/nothing", 404, "NOT_FOUND"),
        ("GET", "/api", 404, "NOT_FOUND"),
        ("GET", "/api/broadcast", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/api/rooms", 405, "METHOD_NOT_ALLOWED"),
    ] {
        let (got, body) = call(&server, method, path, None).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], code, "{method} {path}");
        assert!(body["error"]["message"].is_string(), "{method} {path}");
    }
    // Outside /api an unknown path stays a plain 404.
    let (status, _) = http_request(
        server.addr,
        "GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
}
