//! Cluster mode over a real three-master Redis Cluster (`--redis-cluster`): two Switchboard
//! nodes, rooms whose names hash to every master, messages and member notices across nodes,
//! history recovered on the other node, and each room's sharded channel on the master of its
//! slot.
//!
//! Frames for different rooms may arrive in any order here: each room's publications travel
//! on its own master (`cluster/redis/shards.rs`), so the tests compare sets, not sequences.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use serde_json::json;
use switchboard::ids::{RoomId, UserId};
use switchboard_testkit::{
    Client, RedisClusterServer, TestPki, TestServer, wait_until, wait_until_async,
};

/// Room names whose slots fall on each of the three masters of `redis-cli --cluster create`
/// (slots 0–5460, 5461–10922, 10923–16383), so every master carries some.
const ROOMS: [&str; 6] = ["lobby", "general", "random", "support", "sales", "dev"];

async fn node(redis: &RedisClusterServer, name: &str) -> TestServer {
    TestServer::redis_cluster_node(redis, name, |s| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
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

/// Alice on `a` and bob on `b` join every room of [`ROOMS`], each join seen on the other node,
/// and alice's message in each reaches bob once. Returns them, still members.
async fn rooms_and_messages_cross_nodes(a: &TestServer, b: &TestServer) -> (Client, Client) {
    let mut alice = a.connect("alice").await;
    let mut bob = b.connect("bob").await;
    for room in ROOMS {
        alice.join(room).await;
        a.settled().await;
        sees_member(b, room, "alice").await;
        let joined = bob.join(room).await;
        assert_eq!(joined["payload"]["memberCount"], 2, "{room}: alice counts");
        b.settled().await;
        let notice = alice.expect("user_joined").await;
        assert_eq!(
            (notice["userId"].as_str(), notice["room"].as_str()),
            (Some("bob"), Some(room))
        );
    }

    for room in ROOMS {
        alice
            .send_type(
                "message",
                json!({"room": room, "content": format!("hi {room}")}),
            )
            .await;
    }
    let mut received = BTreeSet::new();
    for _ in ROOMS {
        let message = bob.expect("message").await;
        assert_eq!(message["userId"], "alice");
        assert_eq!(
            message["payload"]["content"],
            format!("hi {}", message["room"].as_str().unwrap())
        );
        received.insert(message["room"].as_str().unwrap().to_owned());
    }
    let every: BTreeSet<String> = ROOMS.iter().map(|room| room.to_string()).collect();
    assert_eq!(received, every, "every room's message, once");
    (alice, bob)
}

#[tokio::test]
async fn rooms_spread_over_the_masters_and_messages_cross_nodes() {
    let redis = RedisClusterServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let _members = rooms_and_messages_cross_nodes(&a, &b).await;

    // Each master carries the sharded channels of the rooms of its slots.
    let per_master = redis.shard_channels().await;
    for (port, channels) in redis.ports().iter().zip(&per_master) {
        assert!(
            ROOMS.iter().any(|room| channels
                .iter()
                .any(|channel| channel.ends_with(&format!("r:{{{room}}}")))),
            "the master on {port} carries no room: {per_master:?}"
        );
    }
    let rooms_subscribed: usize = per_master
        .iter()
        .flatten()
        .filter(|channel| channel.contains(":r:{"))
        .count();
    assert_eq!(
        rooms_subscribed,
        ROOMS.len(),
        "one channel per room: {per_master:?}"
    );
}

#[tokio::test]
async fn history_is_recovered_on_the_other_node_and_presence_crosses() {
    let redis = RedisClusterServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.connect("alice").await;
    let joined = alice.join("history").await;
    let epoch = joined["payload"]["epoch"].clone();
    a.settled().await;
    sees_member(&b, "history", "alice").await;
    let mut bob = b.connect("bob").await;
    bob.join("history").await;
    b.settled().await;
    assert_eq!(alice.expect("user_joined").await["userId"], "bob");

    for n in 1..=3 {
        alice
            .send_type("message", json!({"room": "history", "content": n}))
            .await;
    }
    for n in 1..=3 {
        let message = bob.expect("message").await;
        assert_eq!(
            (
                message["offset"].as_u64(),
                message["payload"]["content"].as_u64()
            ),
            (Some(n), Some(n)),
            "offsets come from the room's slot, in order"
        );
    }

    // Carol comes back on the other node with nothing seen: everything is replayed.
    let mut carol = b.connect("carol").await;
    carol
        .send_type(
            "join_room",
            json!({"room": "history", "since": {"offset": 0, "epoch": epoch}}),
        )
        .await;
    let rejoined = carol.expect("room_joined").await;
    assert_eq!(rejoined["payload"]["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["payload"]["epoch"], epoch);
    for n in 1..=3 {
        let message = carol.expect("message").await;
        assert_eq!(message["offset"].as_u64(), Some(n));
    }

    // Presence crosses nodes through the membership state's slot.
    alice.send_type("presence", json!({"status": "away"})).await;
    loop {
        let frame = bob.recv().await;
        if frame["type"] == "presence" && frame["payload"]["status"] == "away" {
            assert!(frame.to_string().contains("alice"), "{frame}");
            break;
        }
    }
}

#[tokio::test]
async fn a_room_s_subscriptions_follow_its_slot_to_another_master() {
    let redis = RedisClusterServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.connect("alice").await;
    alice.join("general").await;
    a.settled().await;
    sees_member(&b, "general", "alice").await;
    let mut bob = b.connect("bob").await;
    bob.join("general").await;
    b.settled().await;
    assert_eq!(alice.expect("user_joined").await["userId"], "bob");
    let channel = redis
        .shard_channels()
        .await
        .into_iter()
        .flatten()
        .find(|channel| channel.ends_with("r:{general}"))
        .expect("the room's sharded channel");
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "before the move"}),
        )
        .await;
    assert_eq!(bob.expect("message").await["offset"], 1);

    let from = redis.master_of("{general}").await;
    let to = redis
        .ports()
        .into_iter()
        .find(|port| *port != from)
        .unwrap();
    redis.move_all_slots(from, to).await;
    let (redis, channel) = (&redis, channel.as_str());
    wait_until_async(
        "both nodes subscribe the room on its new master",
        || async move { redis.shard_subscribers(to, channel).await == 2 },
    )
    .await;

    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "after the move"}),
        )
        .await;
    let message = bob.expect("message").await;
    assert_eq!(message["payload"]["content"], "after the move");
    assert_eq!(
        message["offset"], 2,
        "the room's stream moved with its slot"
    );
}

#[tokio::test]
async fn a_cluster_over_tls_with_a_private_ca_and_a_password_delivers_across_nodes() {
    let pki = TestPki::generate();
    let redis = RedisClusterServer::start_tls(&pki, "s3cret").await;
    assert!(redis.url().starts_with("rediss://:s3cret@"));
    let ca = pki.cert.display().to_string();
    let node = |name: &'static str| {
        TestServer::redis_cluster_node(&redis, name, |s| {
            s.node_ttl = Some("2s".parse().unwrap());
            s.rate_limit = Some(0);
            s.redis_tls_ca = Some(ca.clone().into());
        })
    };
    let (a, b) = (node("a").await, node("b").await);
    let _members = rooms_and_messages_cross_nodes(&a, &b).await;
    let subscribed: usize = redis
        .shard_channels()
        .await
        .iter()
        .flatten()
        .filter(|channel| channel.contains(":r:{"))
        .count();
    assert_eq!(subscribed, ROOMS.len(), "sharded over TLS on every master");
}
