//! Heartbeat and idle handling over real connections, with short intervals.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use switchboard_testkit::{Client, Ended, RawClient, TestServer};
use tokio_tungstenite::tungstenite::Message;

fn fast_heartbeat(s: &mut switchboard::config::RawSettings) {
    s.heartbeat_interval = Some("100ms".parse().unwrap());
    s.heartbeat_timeout = Some("400ms".parse().unwrap());
}

#[tokio::test]
async fn the_server_sends_websocket_pings_every_interval() {
    let server = TestServer::with(fast_heartbeat).await;
    let mut raw = RawClient::connect(server.addr, "/?userId=a").await;
    let (first, _) = raw.read_frame().await;
    assert_eq!(first, 0x81, "connect");
    let (ping, payload) = raw.read_frame().await;
    assert_eq!(ping, 0x89);
    assert!(payload.is_empty());
}

#[tokio::test]
async fn a_silent_connection_is_terminated_and_cleaned_up() {
    let server = TestServer::with(fast_heartbeat).await;
    let mut watcher = server.member("watcher", "general").await;
    let mut silent = RawClient::connect(server.addr, "/?userId=silent").await;
    silent
        .send_frame(
            0x81,
            br#"{"type":"join_room","payload":{"room":"general"}}"#,
        )
        .await;
    watcher.expect("user_joined").await;
    // The raw client never answers the pings: it is closed and leaves the room. The watcher
    // keeps reading meanwhile, which is when tungstenite answers pings.
    let (close, offline) = tokio::join!(silent.read_close(), watcher.expect("presence"));
    assert_eq!(close, Some(1000));
    assert_eq!(offline["payload"]["status"], "offline");
    let notice = watcher.expect("user_left").await;
    assert_eq!(notice["userId"], "silent");
    assert_eq!(server.stats().await["heartbeatTimeouts"], 1);
    // The watcher answers pings (tungstenite does) and stays connected all along.
    watcher.expect_nothing_pending().await;
}

/// Reads `client` until `until` completes, so that tungstenite answers the server's pings (it
/// does as it reads) and the client sends nothing else; returns `until`'s output and how many
/// pings came meanwhile. Any other frame, or the end of the connection, fails the test.
async fn answer_pings_until<T>(client: &mut Client, until: impl Future<Output = T>) -> (T, u32) {
    tokio::pin!(until);
    let mut pings = 0;
    loop {
        tokio::select! {
            output = &mut until => return (output, pings),
            message = client.ws.next() => match message {
                Some(Ok(Message::Ping(_))) => pings += 1,
                other => panic!("expected only pings, got {other:?}"),
            },
        }
    }
}

#[tokio::test]
async fn pongs_keep_a_connection_alive() {
    let server = TestServer::with(|s| {
        s.heartbeat_interval = Some("100ms".parse().unwrap());
        s.heartbeat_timeout = Some("600ms".parse().unwrap());
    })
    .await;
    // From here on `alive` sends nothing but the pongs tungstenite answers pings with.
    let mut alive = server.connect("alive").await;
    // Three timeouts in a row, each measured by a connection opened after `alive` that never
    // answers a ping. Were pongs not counted, `alive` would have been silent for longer than
    // each of them, so the sweep that closes one would close `alive` too, or already had.
    for round in 1..=3 {
        let mut silent = RawClient::connect(server.addr, &format!("/?userId=silent{round}")).await;
        let (close, pings) = answer_pings_until(&mut alive, silent.read_close()).await;
        assert_eq!(close, Some(1000));
        assert!(pings > 0, "the server pinged `alive` meanwhile");
        assert_eq!(server.stats().await["heartbeatTimeouts"], round);
    }
    alive.expect_nothing_pending().await;
}

#[tokio::test]
async fn app_heartbeat_sends_ping_frames_too() {
    let server = TestServer::with(|s| {
        fast_heartbeat(s);
        s.app_heartbeat = Some(true);
    })
    .await;
    let mut client = server.connect("a").await;
    let ping = client.expect("ping").await;
    assert!(ping["payload"]["timestamp"].as_u64().unwrap() > 0);
    client.send_type("pong", ping["payload"].clone()).await;
    client.expect_nothing_pending().await;
}

#[tokio::test]
async fn idle_connections_are_closed_by_the_cleanup_sweep() {
    let server = TestServer::with(|s| {
        s.idle_timeout = Some("300ms".parse().unwrap());
        s.away_timeout = Some("200ms".parse().unwrap());
        s.cleanup_interval = Some("100ms".parse().unwrap());
        // `busy` pings more often than the default rate limit allows.
        s.rate_limit = Some(0);
    })
    .await;
    // `busy` connects first: were its activity not counted, it would be closed by the sweep
    // that closes `idle`, or an earlier one.
    let mut busy = server.connect("busy").await;
    let mut idle = server.connect("idle").await;
    let closed = idle.ended();
    tokio::pin!(closed);
    // Keep `busy` active, a round trip every 50 ms, until `idle` is closed.
    let mut activity = tokio::time::interval(Duration::from_millis(50));
    let ended = loop {
        tokio::select! {
            ended = &mut closed => break ended,
            _ = activity.tick() => {
                busy.send_type("ping", json!({})).await;
                busy.expect("pong").await;
            }
        }
    };
    assert_eq!(
        ended,
        Ended::Closed {
            code: 1000,
            reason: "idle timeout".into()
        }
    );
    busy.expect_nothing_pending().await;
    assert_eq!(server.stats().await["idleTimeouts"], 1);
}

/// The next frame of `client` that is not an app-level heartbeat `ping`.
async fn skip_heartbeats(client: &mut switchboard_testkit::Client) -> serde_json::Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] != "ping" {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_connection_that_only_receives_is_not_idle_and_one_that_only_gets_heartbeats_is() {
    let server = TestServer::with(|s| {
        fast_heartbeat(s);
        s.app_heartbeat = Some(true);
        s.idle_timeout = Some("400ms".parse().unwrap());
        s.away_timeout = Some("200ms".parse().unwrap());
        s.cleanup_interval = Some("100ms".parse().unwrap());
    })
    .await;
    let mut subscriber = server.connect("subscriber").await;
    subscriber
        .send_type("subscribe", json!({ "channel": "news" }))
        .await;
    assert_eq!(skip_heartbeats(&mut subscriber).await["type"], "subscribed");
    // Both answer WebSocket pings (tungstenite does while reading); neither sends a message.
    let mut quiet = server.connect("quiet").await;
    let closed = tokio::spawn(async move { quiet.ended().await });
    // A publication every 50 ms, until the quiet one is closed and three idle timeouts passed.
    let until = tokio::time::Instant::now() + Duration::from_millis(1200);
    let mut n = 0;
    while tokio::time::Instant::now() < until || !closed.is_finished() {
        server
            .hub
            .pubsub()
            .publish("news", &json!({ "n": n }))
            .unwrap();
        let publication = skip_heartbeats(&mut subscriber).await;
        assert_eq!(publication["payload"]["n"], n, "{publication}");
        n += 1;
        assert!(n < 1000, "the quiet connection was never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closed.await.unwrap(),
        switchboard_testkit::Ended::Closed {
            code: 1000,
            reason: "idle timeout".into()
        }
    );
    server
        .hub
        .pubsub()
        .publish("news", &json!({ "n": n }))
        .unwrap();
    assert_eq!(skip_heartbeats(&mut subscriber).await["payload"]["n"], n);
    assert_eq!(server.stats().await["idleTimeouts"], 1);
}
