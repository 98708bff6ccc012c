//! The token provider: asked before the first connection (its token goes in the `auth`
//! frame), asked again on `token_expiring` (its token goes in `refresh`), so the connection
//! outlives its first token; asked again on every reconnect.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use switchboard::config::DurationArg;
use switchboard_client::{Client, Event};
use switchboard_testkit::{Ended, TestServer, hs256_token, next_event, now_secs};

const SECRET: &str = "client-test-secret-0123456789abcdef";

#[tokio::test]
async fn the_provider_is_asked_on_connect_on_expiry_and_on_reconnect() {
    let server = TestServer::with(|raw| {
        raw.jwt_secret = Some(SECRET.to_owned());
        raw.token_expiry_grace = Some(DurationArg(Duration::from_secs(2)));
    })
    .await;
    let port = server.addr.port();
    let first_exp = now_secs() + 4;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    // The `userId` the test configuration adds is ignored: the token names the user.
    let config = support::config(&server.url(""), "alice").with_token_provider(move || {
        // The first token expires soon; the later ones do not.
        let call = counted.fetch_add(1, Ordering::SeqCst);
        let exp = if call == 0 {
            first_exp
        } else {
            now_secs() + 600
        };
        async move { Ok(hs256_token(SECRET, "alice", exp, json!({}))) }
    });
    let (alice, mut events) = Client::connect(config).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Expires with alice's first token: its close shows the sweep went past that expiry.
    let mut witness = switchboard_testkit::Client::connect(&server.url(&format!(
        "/?token={}",
        hs256_token(SECRET, "witness", first_exp, json!({}))
    )))
    .await;
    let warned = next_event(&mut events, "token_expiring", |e| {
        matches!(e, Event::TokenExpiring { .. })
    })
    .await;
    assert!(
        matches!(warned, Event::TokenExpiring { expires_at } if expires_at == first_exp * 1000),
        "{warned:?}"
    );
    assert_eq!(
        witness.ended().await,
        Ended::Closed {
            code: 1008,
            reason: "token expired".to_owned()
        }
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Still the same connection: a request is answered, and no disconnect came before it.
    alice.room("general").join().await.unwrap();

    assert!(server.shutdown().await, "clean shutdown");
    let _server =
        TestServer::start_with(port, |raw| raw.jwt_secret = Some(SECRET.to_owned()), |_| {}).await;
    let back = next_event(&mut events, "reconnected", |e| {
        matches!(
            e,
            Event::Connected {
                reconnected: true,
                ..
            }
        )
    })
    .await;
    assert!(matches!(back, Event::Connected { .. }), "{back:?}");
    // Once per attempt: attempts made while the server was down asked too.
    let asked = calls.load(Ordering::SeqCst);
    assert!(asked >= 3, "asked {asked} times");
}

#[tokio::test]
async fn a_token_that_expired_without_a_refresh_reconnects_with_a_new_one() {
    let server = TestServer::with(|raw| {
        raw.jwt_secret = Some(SECRET.to_owned());
        raw.token_expiry_grace = Some(DurationArg(Duration::from_secs(1)));
    })
    .await;
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let config = support::config(&server.url(""), "alice").with_token_provider(move || {
        let call = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            match call {
                0 => Ok(hs256_token(SECRET, "alice", now_secs() + 3, json!({}))),
                // The refresh fails: the token expires and the server closes with 1008.
                1 => Err("the token service is down".into()),
                _ => Ok(hs256_token(SECRET, "alice", now_secs() + 600, json!({}))),
            }
        }
    });
    let (_alice, mut events) = Client::connect(config).await.unwrap();
    let lost = next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(&lost, Event::Disconnected { code: Some(1008), reason } if reason == "token expired"),
        "{lost:?}"
    );
    next_event(&mut events, "reconnected", |e| {
        matches!(
            e,
            Event::Connected {
                reconnected: true,
                ..
            }
        )
    })
    .await;
    let asked = calls.load(Ordering::SeqCst);
    assert!(asked >= 3, "asked {asked} times");
}
