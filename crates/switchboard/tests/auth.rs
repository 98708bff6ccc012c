//! Authentication and authorization: JWT at the upgrade (query, header) and in an `auth` frame,
//! HS256/RS256/ES256, refusals (401, close 1008), the `auth` deadline, permissions from claims
//! (`FORBIDDEN`, with proof that nothing reached the room or channel), the origin allowlist
//! and the admin key.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchboard::config::{DurationArg, RawSettings};
use switchboard_testkit::{Client, Ended, TestServer, WAIT, http_json, http_request};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "integration-test-secret-0123456789";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An HS256 token for `sub` with `extra` claims, valid for a minute.
fn token(sub: &str, extra: Value) -> String {
    sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        sub,
        extra,
    )
}

fn sign_with(algorithm: Algorithm, key: &EncodingKey, sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": now() + 60});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

async fn hs256_server(configure: impl FnOnce(&mut RawSettings)) -> TestServer {
    TestServer::with(|raw| {
        raw.jwt_secret = Some(SECRET.to_owned());
        configure(raw);
    })
    .await
}

/// Sends a WebSocket upgrade with `headers` and returns the status and body.
async fn upgrade_status(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte),
        )
        .await
        .expect("response timed out")
        .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tokio::io::AsyncReadExt::read_exact(&mut stream, &mut body)
        .await
        .unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// Connects without a token: upgraded, no `connect` frame yet.
async fn pending(server: &TestServer) -> Client {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(server.url("/")))
        .await
        .expect("connect timed out")
        .expect("upgrade refused");
    Client::upgraded(ws)
}

async fn with_token(server: &TestServer, token: &str) -> Client {
    Client::connect(&server.url(&format!("/?token={token}"))).await
}

#[tokio::test]
async fn hs256_token_in_the_query_sets_the_user_and_user_id_is_ignored() {
    let server = hs256_server(|_| {}).await;
    let t = token("alice", json!({}));
    let client = Client::connect(&server.url(&format!("/ws?userId=mallory&token={t}"))).await;
    assert_eq!(client.user_id(), "alice");
}

#[tokio::test]
async fn hs256_token_in_the_authorization_header() {
    let server = hs256_server(|_| {}).await;
    let mut request = server.url("/").into_client_request().unwrap();
    let bearer = format!("Bearer {}", token("bob", json!({})));
    request
        .headers_mut()
        .insert("Authorization", bearer.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client::upgraded(ws);
    client.read_connect().await;
    assert_eq!(client.user_id(), "bob");
}

#[tokio::test]
async fn auth_frame_authenticates_and_frames_before_it_are_unauthorized() {
    let server = hs256_server(|_| {}).await;
    let mut client = pending(&server).await;
    client
        .send(json!({"type": "join_room", "payload": {"room": "general"}, "id": "early"}))
        .await;
    let refused = client.expect_error("UNAUTHORIZED").await;
    assert_eq!(refused["id"], "early");
    // Nobody joined anything and nobody is connected yet.
    assert_eq!(server.stats().await["connections"], 0);
    // The auth frame and a join right behind it, in one write: the join is served by the
    // session once the identity is known.
    let auth = json!({"type": "auth", "payload": {"token": token("carol", json!({}))}});
    let join = json!({"type": "join_room", "payload": {"room": "general"}});
    client.send_text(&auth.to_string()).await;
    client.send_text(&join.to_string()).await;
    client.read_connect().await;
    assert_eq!(client.user_id(), "carol");
    client.expect("room_joined").await;
    // A second auth frame is refused, and the connection stays.
    client.send_type("auth", json!({"token": "x"})).await;
    client.expect_error("INVALID_MESSAGE").await;
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn bad_tokens_at_the_upgrade_get_401_and_are_counted() {
    let server = hs256_server(|_| {}).await;
    let expired = {
        let claims = json!({"sub": "a", "exp": now() - 120});
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let forged = sign_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not the secret"),
        "a",
        json!({}),
    );
    let hs512 = sign_with(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        "a",
        json!({}),
    );
    let no_exp = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "a"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let long = "a".repeat(switchboard::auth::MAX_TOKEN_BYTES + 1);
    let cases = [
        (expired.as_str(), "token expired"),
        (forged.as_str(), "invalid signature"),
        ("not.a.jwt", "malformed token"),
        (hs512.as_str(), "wrong algorithm"),
        (no_exp.as_str(), "missing or mistyped exp or sub"),
        (long.as_str(), "token too long"),
    ];
    for (bad, reason) in cases {
        let (status, body) = upgrade_status(&server, &format!("/?token={bad}"), &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (401, &*format!("invalid token: {reason}"))
        );
    }
    let (status, body) = upgrade_status(
        &server,
        "/",
        &[("Authorization", &format!("Bearer {expired}"))],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (401, "invalid token: token expired")
    );
    let stats = server.stats().await;
    assert_eq!(stats["authFailures"], cases.len() + 1);
    assert_eq!(stats["connections"], 0);
}

#[tokio::test]
async fn a_bad_auth_frame_closes_with_1008() {
    let server = hs256_server(|_| {}).await;
    let mut client = pending(&server).await;
    let expired = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "a", "exp": now() - 120}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    client.send_type("auth", json!({"token": expired})).await;
    assert_eq!(
        client.ended().await,
        Ended::Closed {
            code: 1008,
            reason: "invalid token: token expired".to_owned()
        }
    );
    let mut client = pending(&server).await;
    client.send_type("auth", json!({"token": "garbage"})).await;
    assert_eq!(client.close_code().await, 1008);
    assert_eq!(server.stats().await["authFailures"], 2);
}

#[tokio::test]
async fn without_an_auth_frame_the_connection_closes_at_the_deadline() {
    let timeout = Duration::from_millis(1500);
    let server = hs256_server(|raw| raw.auth_timeout = Some(DurationArg(timeout))).await;
    let started = Instant::now();
    let mut client = pending(&server).await;
    assert_eq!(
        client.ended().await,
        Ended::Closed {
            code: 1008,
            reason: "authentication timed out".to_owned()
        }
    );
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}",
        started.elapsed()
    );
    assert_eq!(server.stats().await["authFailures"], 1);
}

#[tokio::test]
async fn an_auth_frame_just_before_the_deadline_is_accepted() {
    let timeout = Duration::from_secs(3);
    let server = hs256_server(|raw| raw.auth_timeout = Some(DurationArg(timeout))).await;
    let timed_out = Ended::Closed {
        code: 1008,
        reason: "authentication timed out".to_owned(),
    };
    // The server's own deadlines drive the edge, not a clock here. A deadline starts when the
    // server admits the upgrade, so `first`'s ends at least `gap` before `late`'s, and the
    // auth frame goes out when `first` is closed at its deadline.
    let gap = Duration::from_secs(1);
    let mut first = pending(&server).await;
    // Sets the distance between the two deadlines; it synchronises nothing.
    tokio::time::sleep(gap).await;
    let mut late = pending(&server).await;
    // Admitted after `late`: its deadline passes after `late`'s.
    let mut later = pending(&server).await;
    assert_eq!(first.ended().await, timed_out);
    late.send_type("auth", json!({"token": token("dave", json!({}))}))
        .await;
    late.read_connect().await;
    assert_eq!(late.user_id(), "dave");
    late.expect_nothing_pending().await;
    // Authenticated, `late` outlives its deadline.
    assert_eq!(later.ended().await, timed_out);
    late.expect_nothing_pending().await;
    assert_eq!(server.stats().await["authFailures"], 2);
}

#[tokio::test]
async fn oversized_frames_before_authentication_close_with_1009() {
    let server = hs256_server(|_| {}).await;
    let mut client = pending(&server).await;
    let max = switchboard::auth::MAX_TOKEN_BYTES + 1024;
    // At the limit: an ordinary refusal.
    let filler = "x".repeat(max - r#"{"type":"x","payload":{"f":""}}"#.len());
    let at_limit = format!(r#"{{"type":"x","payload":{{"f":"{filler}"}}}}"#);
    assert_eq!(at_limit.len(), max);
    client.send_text(&at_limit).await;
    client.expect_error("UNAUTHORIZED").await;
    client.send_text(&format!("{at_limit} ")).await;
    assert_eq!(client.close_code().await, 1009);
}

#[tokio::test]
async fn auth_frames_are_refused_when_authentication_is_off() {
    let server = TestServer::start().await;
    let mut client = server.connect("erin").await;
    client.send_type("auth", json!({"token": "x"})).await;
    client.expect_error("INVALID_MESSAGE").await;
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_a_public_key_file() {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

    let dir = temp_dir();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let rsa_public = rsa_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let rsa_private = rsa_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let ec_key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let ec_public = ec_key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let ec_private = ec_key.to_pkcs8_pem(LineEnding::LF).unwrap();
    let cases = [
        (
            Algorithm::RS256,
            rsa_public,
            EncodingKey::from_rsa_pem(rsa_private.as_bytes()),
        ),
        (
            Algorithm::ES256,
            ec_public,
            EncodingKey::from_ec_pem(ec_private.as_bytes()),
        ),
    ];
    for (algorithm, public, private) in cases {
        let path = dir.join(format!("{algorithm:?}.pem"));
        std::fs::write(&path, public).unwrap();
        let server = TestServer::with(|raw| raw.jwt_public_key = Some(path.clone())).await;
        let private = private.unwrap();
        let good = sign_with(algorithm, &private, "frank", json!({}));
        assert_eq!(with_token(&server, &good).await.user_id(), "frank");
        // An HS256 token made with the public key as its secret is the classic confusion.
        let confused = sign_with(
            Algorithm::HS256,
            &EncodingKey::from_secret(std::fs::read(&path).unwrap().as_slice()),
            "frank",
            json!({}),
        );
        let (status, body) = upgrade_status(&server, &format!("/?token={confused}"), &[]).await;
        assert_eq!(
            (status, body.as_str()),
            (401, "invalid token: wrong algorithm")
        );
    }
    // ES256 with another key: the signature does not verify.
    let other = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let path = dir.join("ES256.pem");
    let server = TestServer::with(|raw| raw.jwt_public_key = Some(path.clone())).await;
    let other =
        EncodingKey::from_ec_pem(other.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let forged = sign_with(Algorithm::ES256, &other, "frank", json!({}));
    let (status, body) = upgrade_status(&server, &format!("/?token={forged}"), &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (401, "invalid token: invalid signature")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-auth-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A connection allowed everything, to watch what reaches rooms and channels.
async fn watcher(server: &TestServer) -> Client {
    let everything = json!({"rooms": ["*"], "channels": ["*"], "broadcast": true});
    with_token(server, &token("watcher", everything)).await
}

#[tokio::test]
async fn forbidden_room_actions_reach_nobody() {
    let server = hs256_server(|_| {}).await;
    let mut watcher = watcher(&server).await;
    watcher.join("secret").await;
    watcher.join("news").await;
    let claims = json!({"rooms": {"join": ["news", "general"], "message": ["general"]}});
    let mut limited = with_token(&server, &token("limited", claims)).await;

    limited
        .send(json!({"type": "join_room", "payload": {"room": "secret"}, "id": 1}))
        .await;
    let refused = limited.expect_error("FORBIDDEN").await;
    assert_eq!(refused["id"], 1);
    watcher.expect_nothing_pending().await;
    assert_eq!(watcher.join("secret").await["payload"]["memberCount"], 1);

    limited.join("news").await;
    assert_eq!(watcher.expect("user_joined").await["userId"], "limited");
    limited
        .send_type("message", json!({"room": "news", "content": "psst"}))
        .await;
    limited.expect_error("FORBIDDEN").await;
    watcher.expect_nothing_pending().await;
    limited.expect_nothing_pending().await;
}

#[tokio::test]
async fn forbidden_channel_actions_and_broadcasts_reach_nobody() {
    let server = hs256_server(|_| {}).await;
    let mut watcher = watcher(&server).await;
    for channel in ["news:1", "chat:1", "other"] {
        watcher
            .send_type("subscribe", json!({ "channel": channel }))
            .await;
        watcher.expect("subscribed").await;
    }
    let claims = json!({"channels": {"subscribe": ["news:*"], "publish": ["chat:*"]}});
    let mut limited = with_token(&server, &token("limited", claims)).await;

    limited
        .send_type("subscribe", json!({"channel": "other"}))
        .await;
    limited.expect_error("FORBIDDEN").await;
    limited
        .send_type("subscribe", json!({"channel": "news:1"}))
        .await;
    limited.expect("subscribed").await;

    limited
        .send_type("publish", json!({"channel": "news:1", "data": "no"}))
        .await;
    limited.expect_error("FORBIDDEN").await;
    watcher.expect_nothing_pending().await;
    limited
        .send_type("publish", json!({"channel": "chat:1", "data": "yes"}))
        .await;
    assert_eq!(watcher.expect("publish").await["payload"], "yes");

    limited
        .send_type("broadcast", json!({"content": "all"}))
        .await;
    limited.expect_error("FORBIDDEN").await;
    watcher.expect_nothing_pending().await;
    limited.expect_nothing_pending().await;

    // The watcher may broadcast; everyone gets it.
    watcher
        .send_type("broadcast", json!({"content": "hi"}))
        .await;
    watcher.expect("broadcast").await;
    limited.expect("broadcast").await;
}

#[tokio::test]
async fn a_plain_token_may_chat_in_any_room_but_not_use_channels_or_broadcast() {
    let server = hs256_server(|_| {}).await;
    let mut alice = with_token(&server, &token("alice", json!({}))).await;
    let mut bob = with_token(&server, &token("bob", json!({}))).await;
    alice.join("anything").await;
    bob.join("anything").await;
    alice.expect("user_joined").await;
    bob.send_type("message", json!({"room": "anything", "content": "hi"}))
        .await;
    assert_eq!(alice.expect("message").await["payload"]["content"], "hi");
    bob.send_type("subscribe", json!({"channel": "user:alice"}))
        .await;
    bob.expect_error("FORBIDDEN").await;
    bob.send_type("broadcast", json!({"content": "x"})).await;
    bob.expect_error("FORBIDDEN").await;
    alice.expect_nothing_pending().await;
}

#[tokio::test]
async fn origin_allowlist_applies_to_upgrades_that_carry_an_origin() {
    let server = TestServer::with(|raw| {
        raw.allowed_origins = Some("https://app.example, http://localhost:5173".to_owned());
    })
    .await;
    let (status, _) =
        upgrade_status(&server, "/?userId=a", &[("Origin", "https://app.example")]).await;
    assert_eq!(status, 101);
    let (status, _) = upgrade_status(
        &server,
        "/?userId=a",
        &[("Origin", "HTTP://LOCALHOST:5173")],
    )
    .await;
    assert_eq!(status, 101);
    let (status, body) =
        upgrade_status(&server, "/?userId=a", &[("Origin", "https://evil.example")]).await;
    assert_eq!((status, body.as_str()), (403, "origin not allowed"));
    let (status, _) = upgrade_status(&server, "/ws?userId=a", &[("Origin", "null")]).await;
    assert_eq!(status, 403);
    // No Origin header: not a browser, judged by its token alone (here: none needed).
    let (status, _) = upgrade_status(&server, "/?userId=a", &[]).await;
    assert_eq!(status, 101);
}

#[tokio::test]
async fn the_admin_key_guards_stats_and_metrics_but_not_health() {
    let server = TestServer::with(|raw| raw.admin_key = Some("admin-secret".to_owned())).await;
    let (status, body) = http_json(server.addr, "GET", "/stats", None, &[]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");
    let wrong = [("Authorization", "Bearer admin-secreT")];
    assert_eq!(
        http_json(server.addr, "GET", "/stats", None, &wrong)
            .await
            .0,
        401
    );
    let bearer = [("Authorization", "Bearer admin-secret")];
    let (status, body) = http_json(server.addr, "GET", "/stats", None, &bearer).await;
    assert_eq!(status, 200);
    assert_eq!(body["authFailures"], 0);
    let header = [("X-API-Key", "admin-secret")];
    assert_eq!(
        http_json(server.addr, "GET", "/stats", None, &header)
            .await
            .0,
        200
    );
    for open in ["/health", "/ready"] {
        let request = format!("GET {open} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        assert_eq!(http_request(server.addr, &request).await.0, 200, "{open}");
    }
    let metrics = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n";
    let (status, _) = http_request(server.addr, &format!("{metrics}\r\n")).await;
    assert_eq!(status, 401, "/metrics without the key");
    let keyed = format!("{metrics}Authorization: Bearer admin-secret\r\n\r\n");
    let (status, body) = http_request(server.addr, &keyed).await;
    assert_eq!(status, 200, "/metrics with the key");
    assert!(body.contains("switchboard_auth_failures_total"), "{body}");
}

#[tokio::test]
async fn shutdown_closes_connections_still_waiting_to_authenticate_with_1001() {
    let server =
        hs256_server(|raw| raw.auth_timeout = Some(DurationArg(Duration::from_secs(60)))).await;
    let mut client = pending(&server).await;
    // Proves the connection is being served (waiting for auth) before shutting down.
    client.send_type("ping", json!({})).await;
    client.expect_error("UNAUTHORIZED").await;
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(client.close_code().await, 1001);
    assert!(shutdown.await.unwrap(), "shutdown was not clean");
}
