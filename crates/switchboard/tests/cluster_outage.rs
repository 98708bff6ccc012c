//! Redis outages with history on (issue 15): after Redis comes back, a node resubscribes as
//! soon as it accepts and every message published from then on reaches the other nodes'
//! members, in order, once (the copies refill from the store); and a join or subscription
//! made while Redis is away is answered at once, without recovery.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::broker::BrokerStatus;
use switchboard::ids::{RoomId, UserId};
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until};

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |s| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
        // Room for everything a round publishes: the refill reads it back from the store.
        s.history_size = Some(10_000);
    })
    .await
}

/// Waits until `server` knows `user` is in `room`.
async fn sees_member(server: &TestServer, room: &str, user: &str) {
    let (room, user) = (RoomId::from_trusted(room), UserId::from_trusted(user));
    wait_until("the member is known cluster-wide", || {
        server.hub.room_members(&room).contains(&user)
    })
    .await;
}

async fn degraded(server: &TestServer) {
    wait_until("the node reports degraded", || {
        server.hub.stats().broker_status == BrokerStatus::Degraded
    })
    .await;
}

/// What the publisher saw in one round: when its messages got offsets again, and the offsets.
struct Published {
    client: Client,
    first_numbered: Duration,
    offsets: Vec<u64>,
}

/// Sends messages to `room` one after another, each waiting for its ack, until `count` of them
/// were numbered by the store (those sent while the store is out of reach are acked without
/// an offset and reach this node's members only). Their ids are unique to `round`: an id
/// sent again within the dedup window is not published again, only acked again.
async fn publish_until_numbered(
    mut client: Client,
    room: &str,
    count: usize,
    (round, start): (u32, Instant),
) -> Published {
    let mut offsets = Vec::new();
    let mut first_numbered = None;
    let mut n: u64 = 0;
    while offsets.len() < count {
        n += 1;
        assert!(n < 1_000_000, "the store never numbered {count} messages");
        let id = format!("{round}-{n}");
        client
            .send(json!({"type": "message", "payload": {"room": room, "content": n}, "id": id}))
            .await;
        let ack = loop {
            let frame = client.recv().await;
            if frame["type"] == "ack" && frame["id"] == id.as_str() {
                break frame;
            }
        };
        if let Some(offset) = ack["payload"]["offset"].as_u64() {
            first_numbered.get_or_insert_with(|| start.elapsed());
            offsets.push(offset);
        }
    }
    Published {
        client,
        first_numbered: first_numbered.unwrap(),
        offsets,
    }
}

/// A room message as a member received it: (offset, when).
fn numbered(frame: &Value, start: Instant) -> Option<(u64, Duration)> {
    (frame["type"] == "message").then(|| {
        let offset = frame["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("a message from another node without an offset: {frame}"));
        (offset, start.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_published_after_redis_returns_reaches_the_other_node_in_order_once() {
    const PER_ROUND: usize = 200;
    // How long Redis stays away each round: the node's reconnect backoff grows with it. This
    // is the scenario, not a wait for an event; nothing asserted depends on it.
    const OUTAGES: [Duration; 3] = [
        Duration::ZERO,
        Duration::from_secs(2),
        Duration::from_secs(6),
    ];
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut alice = a.member("alice", "general").await;
    let mut bob = b.member("bob", "general").await;
    sees_member(&a, "general", "bob").await;
    sees_member(&b, "general", "alice").await;
    alice.expect("user_joined").await;
    for (round, outage) in (1..).zip(OUTAGES) {
        redis.stop().await;
        degraded(&a).await;
        degraded(&b).await;
        tokio::time::sleep(outage).await;
        redis.restart().await;
        let start = Instant::now();
        let publisher = tokio::spawn(publish_until_numbered(
            alice,
            "general",
            PER_ROUND,
            (round, start),
        ));
        tokio::pin!(publisher);
        let mut received = Vec::new();
        let published = loop {
            tokio::select! {
                frame = bob.recv() => received.extend(numbered(&frame, start)),
                published = &mut publisher => break published.unwrap(),
            }
        };
        let last = *published.offsets.last().unwrap();
        assert_eq!(
            published.offsets,
            (1..=last).collect::<Vec<_>>(),
            "Redis came back empty: a new epoch from offset 1, no gap"
        );
        while received.last().map(|(offset, _)| *offset) != Some(last) {
            let frame = bob.recv().await;
            received.extend(numbered(&frame, start));
        }
        let offsets: Vec<u64> = received.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(
            offsets,
            (1..=last).collect::<Vec<_>>(),
            "round {round}: every numbered message, in order, once"
        );
        eprintln!(
            "round {round} ({outage:?} outage): after Redis accepted, A's messages numbered from {:?}, B's first \
             delivery at {:?}, B had all {last} at {:?}",
            published.first_numbered,
            received[0].1,
            received[received.len() - 1].1,
        );
        alice = published.client;
    }
}

/// The next frame of `kind`, skipping what the outage meant for membership and presence.
async fn next_of(client: &mut Client, kind: &str) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == kind {
            return frame;
        }
        assert!(
            ["presence", "user_joined", "user_left"].contains(&frame["type"].as_str().unwrap()),
            "unexpected {frame} while waiting for {kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_while_redis_is_away_is_answered_at_once_and_syncs_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    redis.stop().await;
    degraded(&a).await;
    degraded(&b).await;

    // Answered while Redis is still away: no recovery, the position unknown.
    let mut carol = a.connect("carol").await;
    let since = json!({"offset": 3, "epoch": "0123456789abcdef"});
    carol
        .send(json!({"type": "join_room", "payload": {"room": "fresh", "since": since}, "id": 1}))
        .await;
    let joined = carol.expect("room_joined").await;
    assert_eq!(joined["payload"]["recovered"], false, "{joined}");
    assert_eq!(
        (&joined["payload"]["offset"], &joined["payload"]["epoch"]),
        (&json!(0), &json!("")),
        "{joined}"
    );
    assert_eq!(joined["payload"]["memberCount"], 1, "{joined}");
    assert_eq!(
        joined["payload"]["members"][0]["userId"], "carol",
        "{joined}"
    );
    carol.expect("ack").await;
    carol
        .send_type("subscribe", json!({"channel": "news", "since": since}))
        .await;
    let subscribed = carol.expect("subscribed").await;
    assert_eq!(subscribed["payload"]["recovered"], false, "{subscribed}");
    assert_eq!(subscribed["payload"]["offset"], 0, "{subscribed}");
    assert_eq!(subscribed["payload"]["epoch"], "", "{subscribed}");

    // Local messages flow meanwhile, unnumbered.
    let mut dave = a.connect("dave").await;
    dave.join("fresh").await;
    carol.expect("user_joined").await;
    dave.send_type("message", json!({"room": "fresh", "content": "local"}))
        .await;
    let local = carol.expect("message").await;
    assert_eq!(local["payload"]["content"], "local");
    assert!(local.get("offset").is_none(), "{local}");

    // Redis returns: the copies sync, and what other nodes publish reaches carol, once.
    redis.restart().await;
    a.settled().await;
    b.settled().await;
    let mut erin = b.connect("erin").await;
    let erin_joined = erin.join("fresh").await;
    assert_ne!(erin_joined["payload"]["epoch"], "", "{erin_joined}");
    sees_member(&a, "fresh", "erin").await;
    for content in ["first", "second"] {
        erin.send_type("message", json!({"room": "fresh", "content": content}))
            .await;
    }
    erin.send_type("publish", json!({"channel": "news", "data": "headline"}))
        .await;
    let mut contents = Vec::new();
    for expected in [1, 2] {
        let message = next_of(&mut carol, "message").await;
        assert_eq!(message["offset"], expected, "{message}");
        contents.push(message["payload"]["content"].clone());
    }
    assert_eq!(contents, [json!("first"), json!("second")]);
    let publication = next_of(&mut carol, "publish").await;
    assert_eq!(
        (&publication["payload"], &publication["offset"]),
        (&json!("headline"), &json!(1)),
        "{publication}"
    );
    let mut after = a.connect("after").await;
    let synced = after.join("fresh").await;
    assert_eq!(synced["payload"]["offset"], 2, "a synced copy: {synced}");
    assert_eq!(synced["payload"]["epoch"], erin_joined["payload"]["epoch"]);
    while next_of(&mut carol, "user_joined").await["userId"] != "after" {}
    carol.expect_nothing_pending_across(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_stream_read_hangs_is_answered_without_it() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut carol = a.connect("carol").await;
    let mut bob = b.member("bob", "stuck").await;
    sees_member(&a, "stuck", "bob").await;
    a.settled().await;

    // Redis hangs: the node still counts as connected, the read of the stream never returns.
    redis.pause();
    carol
        .send(json!({"type": "join_room", "payload": {"room": "stuck"}, "id": 1}))
        .await;
    let joined = carol.expect("room_joined").await;
    assert_eq!(
        (&joined["payload"]["offset"], &joined["payload"]["epoch"]),
        (&json!(0), &json!("")),
        "{joined}"
    );
    assert!(joined["payload"].get("recovered").is_none(), "{joined}");
    carol.expect("ack").await;

    redis.resume();
    a.settled().await;
    b.settled().await;
    sees_member(&b, "stuck", "carol").await;
    bob.send_type("message", json!({"room": "stuck", "content": "unstuck"}))
        .await;
    let message = next_of(&mut carol, "message").await;
    assert_eq!(message["payload"]["content"], "unstuck");
    assert_eq!(message["offset"], 1, "{message}");
    while next_of(&mut bob, "user_joined").await["userId"] != "carol" {}
    carol.expect_nothing_pending_across(&a, &b).await;
}
