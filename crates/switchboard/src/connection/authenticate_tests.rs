//! Waiting for the `auth` frame, over an in-memory stream with tokio's clock paused: the
//! deadline closes with 1008 whatever the client sent before it, a valid token in time admits
//! the connection, a bad one closes at once, and shutdown closes with 1001.

use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::super::testing::{self, Client, Received, close, endpoint, ping, text};
use super::*;

const SECRET: &[u8] = b"a-test-secret-of-32-bytes-length";
const DEADLINE: Duration = Duration::from_secs(5);

/// A connection waiting for its token, spawned as the WebSocket upgrade spawns it.
fn waiting(hub: &Hub, shutdown: &CancellationToken) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, io) = testing::pipe();
    let pending = Pending {
        verifier: Verifier::Jwt(Arc::new(
            JwtConfig::secret(SECRET, None).expect("a valid secret"),
        )),
        deadline: Instant::now() + DEADLINE,
        shutdown: shutdown.clone(),
    };
    let task = tokio::spawn(authenticate(
        io,
        endpoint(hub),
        pending,
        Terms {
            mode: super::super::Mode::Protocol,
            deflate: None,
            msgpack: false,
        },
    ));
    (client, task)
}

/// The `auth` frame carrying a token for `user` (or a token signed with another key).
fn auth_frame(user: &str, key: &[u8]) -> String {
    let claims = json!({ "sub": user, "exp": jsonwebtoken::get_current_timestamp() + 600 });
    let token = jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(key))
        .expect("a token");
    json!({ "type": "auth", "payload": { "token": token } }).to_string()
}

#[tokio::test(start_paused = true)]
async fn no_auth_frame_before_the_deadline_closes_with_1008() {
    let hub = testing::hub(|_| {});
    let started = Instant::now();
    let (mut client, mut task) = waiting(&hub, &CancellationToken::new());
    // Frames before the token are answered, and do not move the deadline.
    tokio::time::sleep(DEADLINE / 2).await;
    let join = text(r#"{"type":"join_room","payload":{"room":"r"}}"#);
    client.send([join, ping("p")]).await;
    let refused = client.expect("error").await;
    assert_eq!(refused["payload"]["code"], "UNAUTHORIZED");
    assert_eq!(client.next().await, Some(Received::Pong(b"p".to_vec())));
    assert_eq!(
        client.expect_close().await,
        (Some(1008), "authentication timed out".to_owned())
    );
    let waited = started.elapsed();
    assert!(
        waited >= DEADLINE && waited <= DEADLINE + Duration::from_millis(5),
        "closed after {waited:?}"
    );
    let stats = hub.stats();
    assert_eq!((stats.connections, stats.auth_failures), (0, 1));
    client.send([close(1008, "")]).await;
    testing::ended(&mut task).await;
    client.expect_eof().await;
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_just_before_the_deadline_admits_the_connection() {
    let hub = testing::hub(|_| {});
    let (mut client, _task) = waiting(&hub, &CancellationToken::new());
    tokio::time::sleep(DEADLINE - Duration::from_millis(1)).await;
    client.send([text(&auth_frame("alice", SECRET))]).await;
    let connect = client.expect("connect").await;
    assert_eq!(connect["payload"]["userId"], "alice");
    // Past the deadline it is served as any other connection.
    tokio::time::sleep(DEADLINE).await;
    client.send([text(r#"{"type":"ping"}"#)]).await;
    client.expect("pong").await;
    assert_eq!(hub.stats().connections, 1);
}

#[tokio::test(start_paused = true)]
async fn a_bad_token_closes_with_1008_at_once() {
    let hub = testing::hub(|_| {});
    let (mut client, _task) = waiting(&hub, &CancellationToken::new());
    let started = Instant::now();
    client
        .send([text(&auth_frame(
            "alice",
            b"another-secret-of-32-bytes-long!",
        ))])
        .await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, Some(1008));
    assert!(reason.starts_with("invalid token"), "{reason}");
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(hub.stats().auth_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_closes_a_waiting_connection_with_1001() {
    let hub = testing::hub(|_| {});
    let shutdown = CancellationToken::new();
    let (mut client, _task) = waiting(&hub, &shutdown);
    shutdown.cancel();
    assert_eq!(
        client.expect_close().await,
        (Some(1001), "server shutting down".to_owned())
    );
    assert_eq!(hub.stats().auth_failures, 0);
}
