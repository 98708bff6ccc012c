//! Cluster mode when things break: a node killed without any clean-up, and Redis stopped and
//! restarted under running nodes.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Running;
use serde_json::json;
use switchboard::broker::BrokerStatus;
use switchboard::ids::{RoomId, UserId};
use switchboard::presence::Status;
use switchboard_testkit::{Client, RedisServer, TestServer, http_get, http_json, wait_until};

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |s| s.node_ttl = Some("2s".parse().unwrap())).await
}

#[tokio::test]
async fn a_killed_node_s_users_go_offline_and_leave_their_rooms_elsewhere() {
    let redis = RedisServer::start().await;
    let survivor = node(&redis, "survivor").await;
    let doomed = Running::start(
        &["--node-ttl", "2s", "--node-id", "doomed"],
        &[("REDIS_URL", &redis.url())],
    )
    .await;
    let mut alice = survivor.member("alice", "general").await;
    let mut watcher = survivor.connect("watcher").await;
    watcher
        .send_type("subscribe", json!({"channel": "presence:kim"}))
        .await;
    watcher.expect("subscribed").await;
    watcher.expect("presence").await;

    let mut kim = Client::connect(&format!("ws://{}/?userId=kim", doomed.addr)).await;
    kim.join("general").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    assert_eq!(alice.expect("user_joined").await["userId"], "kim");
    let kim_id = UserId::from_trusted("kim");
    assert_eq!(survivor.hub.user_connection_count(&kim_id), 1);

    // SIGKILL: no close frames, no clean-up, nothing announced.
    doomed.kill().await;
    let killed_at = Instant::now();
    // Each arrival was announced once: the next notices are the departure's.
    let offline = watcher.expect("presence").await;
    assert_eq!(offline["payload"]["status"], "offline");
    assert_eq!(
        alice.expect("presence").await["payload"]["status"],
        "offline"
    );
    assert_eq!(alice.expect("user_left").await["userId"], "kim");
    let detected = killed_at.elapsed();
    // Bounded by the node TTL plus one liveness period (2 s + 2/3 s here), with slack for
    // a loaded machine: far below the 30 s the default TTL allows.
    assert!(detected < Duration::from_secs(8), "took {detected:?}");
    assert_eq!(survivor.hub.presence().get(&kim_id).status, Status::Offline);
    assert_eq!(survivor.hub.user_connection_count(&kim_id), 0);
    assert_eq!(
        survivor.hub.room_members(&RoomId::from_trusted("general")),
        vec![UserId::from_trusted("alice")]
    );
}

#[tokio::test]
async fn nodes_survive_a_redis_outage_and_recover_without_restart() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let mut alice = a.member("alice", "general").await;
    let mut local_friend = a.member("amy", "general").await;
    alice.expect("user_joined").await;
    a.settled().await;
    let mut bob = b.member("bob", "general").await;
    b.settled().await;
    alice.expect("user_joined").await;
    local_friend.expect("user_joined").await;

    redis.stop().await;
    for node in [&a, &b] {
        wait_until("the node reports degraded", || {
            node.hub.stats().broker_status == BrokerStatus::Degraded
        })
        .await;
        let (status, body) = http_json(node.addr, "GET", "/ready", None, &[]).await;
        assert_eq!(status, 503);
        assert_eq!(body["status"], "degraded");
    }
    // Local traffic goes on.
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "still here"}),
        )
        .await;
    assert_eq!(
        local_friend.expect("message").await["payload"]["content"],
        "still here"
    );
    let (status, body) = http_json(a.addr, "GET", "/health", None, &[]).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    // What could not reach the other nodes is counted where operators look.
    wait_until("the message's publication is counted as dropped", || {
        a.hub.stats().broker_dropped > 0
    })
    .await;
    let (_, stats) = http_json(a.addr, "GET", "/stats", None, &[]).await;
    assert!(stats["brokerDropped"].as_u64() > Some(0), "{stats}");
    let (_, metrics) = http_get(a.addr, "/metrics").await;
    assert!(
        metrics.lines().any(|line| line
            .starts_with("switchboard_broker_dropped_total{broker=\"redis\"} ")
            && !line.ends_with(" 0")),
        "{metrics}"
    );

    // Redis comes back empty; the nodes reconnect, rewrite their state and resubscribe.
    redis.restart().await;
    a.settled().await;
    b.settled().await;
    let (status, _) = http_json(a.addr, "GET", "/ready", None, &[]).await;
    assert_eq!(status, 200);
    let general = RoomId::from_trusted("general");
    wait_until("each node knows the other's members again", || {
        a.hub
            .room_members(&general)
            .contains(&UserId::from_trusted("bob"))
            && b.hub
                .room_members(&general)
                .contains(&UserId::from_trusted("alice"))
    })
    .await;
    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "after the outage"}),
        )
        .await;
    // Bob may first see what the outage meant for membership; then the message flows.
    let message = loop {
        let frame = bob.recv().await;
        if frame["type"] == "message" {
            break frame;
        }
        assert!(
            ["presence", "user_joined", "user_left"].contains(&frame["type"].as_str().unwrap()),
            "unexpected {frame}"
        );
    };
    assert_eq!(message["payload"]["content"], "after the outage");
    assert_eq!(message["userId"], "alice");
}
