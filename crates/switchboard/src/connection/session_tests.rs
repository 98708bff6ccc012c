//! The session through its connection's task, over an in-memory stream with tokio's clock
//! paused: WebSocket pings spend the user's rate tokens like any other frame, and the
//! repeated-violation limit closes a connection that keeps sending what it may not.

use std::time::Duration;

use super::super::testing::{self, Received, Served, close, ping, text};
use crate::config::{HubConfig, RateLimit, ViolationLimit};

/// Three tokens, then one a second; the second violation in an hour closes.
fn tight(config: &mut HubConfig) {
    config.limits.rate = Some(RateLimit {
        per_second: 1,
        burst: 3,
    });
    config.limits.violations = Some(ViolationLimit {
        max: 2,
        window: Duration::from_secs(3600),
    });
}

fn pong(payload: &str) -> Option<Received> {
    Some(Received::Pong(payload.as_bytes().to_vec()))
}

#[tokio::test(start_paused = true)]
async fn pings_are_answered_while_the_user_has_tokens() {
    let hub = testing::hub(|config| {
        tight(config);
        config.limits.violations = None;
    });
    let Served { mut client, .. } = testing::open(&hub, "alice");
    client.expect("connect").await;
    client.send(["1", "2", "3", "4"].map(ping)).await;
    for payload in ["1", "2", "3"] {
        assert_eq!(client.next().await, pong(payload));
    }
    // The fourth was not answered, and got no `error` either: after a second's token, the
    // next frame is the answer to the fifth.
    tokio::time::advance(Duration::from_secs(1)).await;
    client.send([ping("5")]).await;
    assert_eq!(client.next().await, pong("5"));
    let stats = hub.stats();
    assert_eq!((stats.rate_limited, stats.errors_sent), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn pings_and_text_frames_share_the_budget() {
    let hub = testing::hub(tight);
    let Served { mut client, .. } = testing::open(&hub, "alice");
    client.expect("connect").await;
    client.send([ping("1"), ping("2")]).await;
    assert_eq!(client.next().await, pong("1"));
    assert_eq!(client.next().await, pong("2"));
    client.send([text(r#"{"type":"ping"}"#)]).await;
    client.expect("pong").await;
    client.send([text(r#"{"type":"ping","id":8}"#)]).await;
    let refused = client.expect("error").await;
    assert_eq!(refused["payload"]["code"], "RATE_LIMITED");
    assert_eq!(refused["id"], 8);
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_is_closed_with_1008_and_other_users_are_unaffected() {
    let hub = testing::hub(tight);
    let Served {
        mut client,
        mut task,
        ..
    } = testing::open(&hub, "flooder");
    let mut bystander = testing::open(&hub, "bystander");
    client.expect("connect").await;
    bystander.client.expect("connect").await;
    let flood: Vec<_> = (0..1000).map(|n| ping(&n.to_string())).collect();
    client.send(flood).await;
    // The burst is answered; the two pings after it are the two violations that close.
    for payload in ["0", "1", "2"] {
        assert_eq!(client.next().await, pong(payload));
    }
    assert_eq!(
        client.expect_close().await,
        (Some(1008), "too many invalid messages".to_owned())
    );
    // The rest of the flood came after the close was decided: read, not answered, not counted.
    assert_eq!(hub.stats().rate_limited, 2);
    client.send([close(1008, "")]).await;
    testing::ended(&mut task).await;
    client.expect_eof().await;

    bystander.client.send([ping("b")]).await;
    assert_eq!(bystander.client.next().await, pong("b"));
    bystander.client.send([text(r#"{"type":"ping"}"#)]).await;
    bystander.client.expect("pong").await;
}
