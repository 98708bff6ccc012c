//! Tokens that refresh: a `refresh` frame replaces a connection's token and grants (same user,
//! valid signature, not expired), narrowed grants apply at once, and a connection whose token
//! expires without a refresh gets `token_expiring` and then close 1008 "token expired" after
//! the grace period.
//!
//! Tokens here live a few seconds (`exp` has second granularity). The server's sweep is the
//! clock: every wait is for a frame or a close, with the harness's generous timeout, and a
//! second connection whose token expires with the old one proves that the sweep went past
//! that expiry.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::config::DurationArg;
use switchboard_testkit::{Client, Ended, TestServer, hs256_token, now_secs as now};

const SECRET: &str = "integration-test-secret-0123456789";

/// Seconds after `exp` at which the test servers close a connection.
const GRACE: Duration = Duration::from_secs(2);

fn token(sub: &str, exp: u64, extra: Value) -> String {
    hs256_token(SECRET, sub, exp, extra)
}

async fn server() -> TestServer {
    TestServer::with(|raw| {
        raw.jwt_secret = Some(SECRET.to_owned());
        raw.token_expiry_grace = Some(DurationArg(GRACE));
    })
    .await
}

async fn connect(server: &TestServer, token: &str) -> Client {
    Client::connect(&server.url(&format!("/?token={token}"))).await
}

fn expired_by_token() -> Ended {
    Ended::Closed {
        code: 1008,
        reason: "token expired".to_owned(),
    }
}

#[tokio::test]
async fn a_refresh_keeps_the_connection_open_past_the_old_exp() {
    let server = server().await;
    let exp = now() + 4;
    let mut alice = connect(&server, &token("alice", exp, json!({}))).await;
    // Expires with alice's first token; it shows when the sweep has gone past that expiry.
    let mut witness = connect(&server, &token("witness", exp, json!({}))).await;
    let warning = alice.expect("token_expiring").await;
    assert_eq!(warning["payload"]["expiresAt"], exp * 1000);
    let later = token("alice", now() + 600, json!({}));
    alice
        .send(json!({"type": "refresh", "payload": {"token": later}, "id": "r1"}))
        .await;
    let ack = alice.expect("ack").await;
    assert_eq!(ack["payload"]["id"], "r1");
    assert_eq!(witness.ended().await, expired_by_token());
    // The sweep that closed the witness passed alice by.
    alice.expect_nothing_pending().await;
    alice.join("general").await;
}

#[tokio::test]
async fn a_refused_refresh_leaves_the_old_token_in_force() {
    let server = server().await;
    let exp = now() + 600;
    let mut alice = connect(&server, &token("alice", exp, json!({"rooms": ["general"]}))).await;
    let narrower = json!({"rooms": ["other"]});
    let refused = [
        ("bob's", token("bob", exp, narrower.clone())),
        (
            "forged",
            hs256_token(
                "another-secret-0123456789abcdef",
                "alice",
                exp,
                narrower.clone(),
            ),
        ),
        ("expired", token("alice", now() - 120, narrower.clone())),
        ("malformed", "not.a.jwt".to_owned()),
    ];
    for (index, (what, bad)) in refused.iter().enumerate() {
        alice
            .send(json!({"type": "refresh", "payload": {"token": bad}, "id": index}))
            .await;
        let error = alice.expect_error("UNAUTHORIZED").await;
        assert_eq!(error["id"], index, "{what}: {error}");
    }
    assert_eq!(server.stats().await["authFailures"], 4);
    // Still the old grants: general, not other.
    alice.join("general").await;
    alice.send_type("join_room", json!({"room": "other"})).await;
    alice.expect_error("FORBIDDEN").await;
}

#[tokio::test]
async fn narrowed_grants_leave_what_they_no_longer_allow() {
    let server = server().await;
    let exp = now() + 600;
    let wide = json!({"rooms": ["general", "random"], "channels": {"subscribe": ["news:*"]}});
    let mut alice = connect(&server, &token("alice", exp, wide)).await;
    let mut bob = connect(&server, &token("bob", exp, json!({}))).await;
    alice.join("general").await;
    alice.join("random").await;
    alice
        .send_type("subscribe", json!({"channel": "news:today"}))
        .await;
    alice.expect("subscribed").await;
    bob.join("random").await;
    alice.expect("user_joined").await;
    let narrow = token("alice", exp, json!({"rooms": ["general"]}));
    alice
        .send(json!({"type": "refresh", "payload": {"token": narrow}, "id": "n"}))
        .await;
    let left = alice.expect("room_left").await;
    assert_eq!(left["payload"]["room"], "random");
    let unsubscribed = alice.expect("unsubscribed").await;
    assert_eq!(unsubscribed["payload"]["channel"], "news:today");
    assert_eq!(alice.expect("ack").await["payload"]["id"], "n");
    let gone = bob.expect("user_left").await;
    assert_eq!(
        (&gone["room"], &gone["userId"]),
        (&json!("random"), &json!("alice"))
    );
    for (kind, payload) in [
        ("join_room", json!({"room": "random"})),
        ("subscribe", json!({"channel": "news:today"})),
    ] {
        alice.send_type(kind, payload).await;
        alice.expect_error("FORBIDDEN").await;
    }
    // What the new token grants still works.
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "still here"}),
        )
        .await;
    alice.expect_nothing_pending().await;
}

#[tokio::test]
async fn without_a_refresh_the_connection_is_warned_then_closed_after_the_grace() {
    let server = server().await;
    let exp = now() + 3;
    // Authenticated by an `auth` frame: the same expiry applies as for a token in the URL.
    let (ws, _) = tokio_tungstenite::connect_async(server.url("/"))
        .await
        .unwrap();
    let mut alice = Client::upgraded(ws);
    alice
        .send_type("auth", json!({"token": token("alice", exp, json!({}))}))
        .await;
    alice.read_connect().await;
    // Lives long: never warned, never closed meanwhile.
    let mut bob = connect(&server, &token("bob", now() + 600, json!({}))).await;
    let warning = alice.expect("token_expiring").await;
    assert_eq!(warning["payload"]["expiresAt"], exp * 1000);
    assert_eq!(alice.ended().await, expired_by_token());
    // The server cannot close before `exp` plus the grace: a bound, not a timing.
    let closed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        closed_at >= Duration::from_secs(exp) + GRACE,
        "{closed_at:?}"
    );
    bob.expect_nothing_pending().await;
    assert_eq!(server.stats().await["connections"], 1);
}

#[tokio::test]
async fn refresh_without_authentication_is_an_invalid_message() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&server.url("/?userId=alice")).await;
    client
        .send(json!({"type": "refresh", "payload": {"token": "x"}, "id": 1}))
        .await;
    let error = client.expect_error("INVALID_MESSAGE").await;
    assert_eq!(error["id"], 1);
    client.expect_nothing_pending().await;
}
