//! Pub/sub channels over real connections, and their meeting point with library handlers.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::json;
use switchboard::hub::Publication;
use switchboard_client::Event;
use switchboard_testkit::{Client, TestServer, WAIT, next_event, received_events, wait_until};

async fn subscribe(client: &mut Client, channel: &str) {
    client
        .send_type("subscribe", json!({ "channel": channel }))
        .await;
    let reply = client.expect("subscribed").await;
    assert_eq!(reply["payload"]["channel"], channel);
}

/// Written with the project's Rust client: subscriptions and publications as typed events.
#[tokio::test]
async fn publications_reach_every_subscriber_and_only_them() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = server.client("alice").await;
    let (bob, mut bob_events) = server.client("bob").await;
    let (carol, mut carol_events) = server.client("carol").await;
    for (client, channel) in [
        (&alice, "event:login"),
        (&bob, "event:login"),
        (&carol, "event:logout"),
    ] {
        let reply = client.channel(channel).subscribe().await.unwrap();
        assert_eq!(
            (reply.kind.as_str(), &reply.payload["channel"]),
            ("subscribed", &json!(channel))
        );
    }

    let ack = alice
        .request(
            "publish",
            json!({"channel": "event:login", "data": {"user": 42}}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack.kind, "ack");
    for events in [&mut alice_events, &mut bob_events] {
        let publication =
            next_event(events, "publish", |e| matches!(e, Event::Publish { .. })).await;
        let Event::Publish {
            channel,
            user_id,
            timestamp,
            offset,
            data,
        } = publication
        else {
            unreachable!()
        };
        assert_eq!(
            (channel.as_str(), user_id.as_deref(), offset),
            ("event:login", Some("alice"), Some(1))
        );
        assert_eq!(data, json!({"user": 42}));
        assert!(timestamp.unwrap() > 0);
    }
    let carol_got = received_events(&carol, &mut carol_events).await;
    assert!(
        !carol_got.iter().any(|e| matches!(e, Event::Publish { .. })),
        "{carol_got:?}"
    );

    let reply = bob.channel("event:login").unsubscribe().await.unwrap();
    assert_eq!(reply.kind, "unsubscribed");
    alice.channel("event:login").publish(2).unwrap();
    next_event(&mut alice_events, "own publish", |e| {
        matches!(e, Event::Publish { .. })
    })
    .await;
    let bob_got = received_events(&bob, &mut bob_events).await;
    assert!(
        !bob_got.iter().any(|e| matches!(e, Event::Publish { .. })),
        "{bob_got:?}"
    );
}

#[tokio::test]
async fn a_publisher_needs_no_subscription_and_gets_its_own_only_when_subscribed() {
    let server = TestServer::start().await;
    let mut producer = server.connect("producer").await;
    let mut consumer = server.connect("consumer").await;
    subscribe(&mut consumer, "user:123").await;
    producer
        .send_type("publish", json!({"channel": "user:123", "data": "hi"}))
        .await;
    assert_eq!(consumer.expect("publish").await["payload"], "hi");
    producer.expect_nothing_pending().await;
}

#[tokio::test]
async fn the_setting_keeps_publications_from_their_publisher() {
    let server = TestServer::with(|s| s.deliver_to_publisher = Some(false)).await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    subscribe(&mut alice, "chat").await;
    subscribe(&mut bob, "chat").await;
    alice
        .send_type("publish", json!({"channel": "chat", "data": 1}))
        .await;
    bob.expect("publish").await;
    alice.expect_nothing_pending().await;
}

#[tokio::test]
async fn patterns_need_the_permission() {
    let server = TestServer::start().await;
    let mut client = server.connect("a").await;
    client
        .send_type("subscribe", json!({"channel": "room:*"}))
        .await;
    client.expect_error("FORBIDDEN").await;

    let server = TestServer::with(|s| s.allow_client_patterns = Some(true)).await;
    let mut watcher = server.connect("watcher").await;
    let mut publisher = server.connect("publisher").await;
    subscribe(&mut watcher, "room:*").await;
    subscribe(&mut watcher, "room:general").await;
    publisher
        .send_type("publish", json!({"channel": "room:general", "data": 1}))
        .await;
    publisher
        .send_type("publish", json!({"channel": "user:9", "data": 2}))
        .await;
    let frame = watcher.expect("publish").await;
    assert_eq!(frame["channel"], "room:general");
    watcher.expect_nothing_pending().await;
}

#[tokio::test]
async fn channel_names_and_the_per_connection_cap_are_checked_at_their_edges() {
    let server = TestServer::with(|s| {
        s.max_channels_per_connection = Some(2);
        s.max_name_length = Some(12);
    })
    .await;
    let mut client = server.connect("a").await;
    subscribe(&mut client, "c1").await;
    subscribe(&mut client, "c1").await;
    subscribe(&mut client, &"x".repeat(12)).await;
    client
        .send_type("subscribe", json!({"channel": "c3"}))
        .await;
    client.expect_error("LIMIT_EXCEEDED").await;
    for bad in ["", "has space", "x".repeat(13).as_str(), "a*b"] {
        client
            .send_type("subscribe", json!({ "channel": bad }))
            .await;
        client.expect_error("INVALID_MESSAGE").await;
    }
    client
        .send_type("publish", json!({"channel": "presence:bob", "data": 1}))
        .await;
    client.expect_error("FORBIDDEN").await;
    client.send_type("publish", json!({"channel": "c1"})).await;
    client.expect_error("INVALID_MESSAGE").await;
}

#[tokio::test]
async fn stats_count_live_channels_and_empty_ones_vanish() {
    let server = TestServer::start().await;
    let mut a = server.connect("a").await;
    let mut b = server.connect("b").await;
    subscribe(&mut a, "one").await;
    subscribe(&mut b, "one").await;
    subscribe(&mut b, "two").await;
    assert_eq!(server.stats().await["channels"], 2);
    b.send_type("unsubscribe", json!({"channel": "two"})).await;
    b.expect("unsubscribed").await;
    assert_eq!(server.stats().await["channels"], 1);
    drop(a);
    drop(b);
    wait_until("no channels are left", || server.hub.stats().channels == 0).await;
}

#[tokio::test]
async fn library_handlers_and_websocket_subscribers_see_the_same_publications() {
    let server = TestServer::start().await;
    let seen: Arc<Mutex<Vec<Publication>>> = Arc::default();
    let sink = seen.clone();
    let _subscription = server
        .hub
        .pubsub()
        .subscribe("user:*", move |p| sink.lock().unwrap().push(p.clone()))
        .unwrap();
    let mut client = server.connect("client").await;
    subscribe(&mut client, "user:123").await;

    // From a client to the handler and the client.
    client
        .send(json!({"type": "publish", "payload": {"channel": "user:123", "data": {"from": "ws"}}, "id": 1}))
        .await;
    client.expect("publish").await;
    client.expect("ack").await;
    // From the library to the handler and the client.
    let delivered = server
        .hub
        .pubsub()
        .publish("user:123", &json!({"from": "library"}))
        .unwrap();
    assert_eq!(delivered, 1);
    let frame = client.expect("publish").await;
    assert_eq!(frame["payload"], json!({"from": "library"}));
    assert!(
        frame.get("userId").is_none(),
        "server publications have no sender"
    );

    let seen = seen.lock().unwrap();
    let sources: Vec<_> = seen.iter().map(|p| p.data["from"].clone()).collect();
    assert_eq!(sources, [json!("ws"), json!("library")]);
    assert_eq!(seen[0].user_id.as_ref().unwrap().as_str(), "client");
}
