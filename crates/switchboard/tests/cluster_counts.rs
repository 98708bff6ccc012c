//! The cluster counts in the state store (issue 15): connections, rooms, users, channels and
//! the largest rooms over every node, kept by the nodes' announcements, rewrites, departures
//! and reaping in the same transactions as their state, and read by `GET /stats?scope=cluster`
//! at one instant. Checked from outside, on one Redis and on a Redis Cluster.

#![allow(clippy::unwrap_used)]

mod common;

use common::Running;
use serde_json::{Value, json};
use switchboard_testkit::{
    Client, RedisClusterServer, RedisServer, TestServer, http_json, wait_until_async,
};

fn settings(s: &mut switchboard::config::RawSettings) {
    s.node_ttl = Some("2s".parse().unwrap());
    s.rate_limit = Some(0);
}

/// The counts `GET /stats?scope=cluster` of `server` answers: connections, online users,
/// rooms, channels and the top rooms as `ROOM=MEMBERS`; or the error code.
async fn counts(server: &TestServer) -> Result<(Value, Value, Value, Value, String), String> {
    let (status, body) = http_json(server.addr, "GET", "/stats?scope=cluster", None, &[]).await;
    if status != 200 {
        return Err(format!("{status} {}", body["error"]["code"]));
    }
    let top: Vec<String> = body["topRooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|top| format!("{}={}", top["room"].as_str().unwrap(), top["members"]))
        .collect();
    Ok((
        body["connections"].clone(),
        body["onlineUsers"].clone(),
        body["rooms"].clone(),
        body["channels"].clone(),
        top.join(" "),
    ))
}

/// Waits until `server` answers the counts `(connections, users, rooms, channels, top)`.
async fn counts_become(server: &TestServer, expected: (u64, u64, u64, u64, &str)) {
    let (connections, users, rooms, channels, top) = expected;
    let expected = Ok((
        json!(connections),
        json!(users),
        json!(rooms),
        json!(channels),
        top.to_owned(),
    ));
    wait_until_async("the cluster counts are the expected ones", || async {
        counts(server).await == expected
    })
    .await;
}

async fn subscribe(client: &mut Client, channel: &str) {
    client
        .send_type("subscribe", json!({ "channel": channel }))
        .await;
    client.expect("subscribed").await;
}

async fn leave(client: &mut Client, room: &str) {
    client
        .send_type("leave_room", json!({ "room": room }))
        .await;
    client.expect("room_left").await;
}

#[tokio::test]
async fn the_counts_follow_joins_leaves_departures_and_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", settings).await;
    let b = TestServer::cluster_node(&redis, "b", settings).await;
    let mut alice = a.member("alice", "general").await;
    alice.join("random").await;
    subscribe(&mut alice, "alerts").await;
    let mut bob = b.member("bob", "general").await;
    // Alice in `general` on both nodes, and in two tabs on b: one member of it.
    let mut alice_on_b = b.member("alice", "general").await;
    let _alice_again = b.member("alice", "general").await;
    let mut carol = b.connect("carol").await;
    subscribe(&mut carol, "news").await;
    subscribe(&mut bob, "news").await;
    let all = (5, 3, 2, 2, "general=2 random=1");
    counts_become(&a, all).await;
    counts_become(&b, all).await;

    // A second node of a member, then the member, leave: the room counts users, not tabs or
    // nodes.
    leave(&mut alice_on_b, "general").await;
    counts_become(&a, all).await;
    leave(&mut bob, "general").await;
    counts_become(&a, (5, 3, 2, 2, "general=1 random=1")).await;
    // Ties are ordered by name, as on one node.
    bob.join("aaa").await;
    counts_become(&a, (5, 3, 3, 2, "aaa=1 general=1 random=1")).await;

    // A node that leaves takes back what it counted.
    drop((alice_on_b, bob, carol));
    assert!(b.shutdown().await);
    let alone = (1, 1, 2, 1, "general=1 random=1");
    counts_become(&a, alone).await;

    // Redis lost everything: the node's rewrite counts its own again.
    redis.restart().await;
    counts_become(&a, alone).await;

    // The last member leaves: nothing is left counted.
    drop(alice);
    counts_become(&a, (0, 0, 0, 0, "")).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for pattern in ["switchboard:{cluster}r[mu]:*", "switchboard:{cluster}rooms"] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(keys, Vec::<String>::new(), "no room key is left behind");
    }

    // The store is gone: the counts say so rather than guess.
    redis.stop().await;
    assert_eq!(counts(&a).await, Err("503 \"UNAVAILABLE\"".to_owned()));
}

#[tokio::test]
async fn a_dead_node_s_counts_are_taken_back_by_a_node_that_starts_later() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    // The node dies with nobody left to reap it; a node that starts later does.
    let args = ["--node-ttl", "2s", "--node-id", "doomed"];
    let doomed = Running::start(&args, &[("REDIS_URL", &url)]).await;
    let mut kim = Client::connect(&format!("ws://{}/?userId=kim", doomed.addr)).await;
    kim.join("general").await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let connection = client.get_multiplexed_async_connection().await.unwrap();
    // The state hash does not expire: what it counted can always be taken back.
    let ttl = || async {
        let ttl: i64 = redis::cmd("PTTL")
            .arg("switchboard:{cluster}state:doomed")
            .query_async(&mut connection.clone())
            .await
            .unwrap();
        ttl
    };
    wait_until_async("kim's state is written", || async { ttl().await != -2 }).await;
    assert_eq!(ttl().await, -1, "the state hash has no TTL");
    doomed.kill().await;

    let survivor = TestServer::cluster_node(&redis, "survivor", settings).await;
    let _alice = survivor.member("alice", "general").await;
    counts_become(&survivor, (1, 1, 1, 0, "general=1")).await;
}

#[tokio::test]
async fn the_counts_work_on_a_redis_cluster() {
    let redis = RedisClusterServer::start().await;
    let a = TestServer::redis_cluster_node(&redis, "a", settings).await;
    let b = TestServer::redis_cluster_node(&redis, "b", settings).await;
    let _alice = a.member("alice", "general").await;
    let mut bob = b.member("bob", "general").await;
    bob.join("random").await;
    counts_become(&a, (2, 2, 2, 0, "general=2 random=1")).await;
    leave(&mut bob, "general").await;
    counts_become(&a, (2, 2, 2, 0, "general=1 random=1")).await;
    drop(bob);
    assert!(b.shutdown().await);
    counts_become(&a, (1, 1, 1, 0, "general=1")).await;

    // Every master lost its data and the node's connections: its rewrite counts again.
    for port in redis.ports() {
        let url = format!("redis://127.0.0.1:{port}");
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut master = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut master)
            .await
            .unwrap();
        for kind in ["pubsub", "normal"] {
            let _: () = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg(kind)
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut master)
                .await
                .unwrap();
        }
    }
    counts_become(&a, (1, 1, 1, 0, "general=1")).await;
}
