//! Cluster mode when a node stops cleanly (its shutdown, or SIGTERM to the binary): the other
//! nodes show its users' departures at once, each once, instead of keeping them as ghosts
//! until its liveness expires.
//!
//! Every node here has a 60 s liveness TTL, and every wait is bounded by the testkit's `WAIT`
//! (10 s): what the other nodes see cannot come from reaping the stopped node. The third node
//! only sends the barrier markers: the stopped node cannot, and they must cross Redis.

#![allow(clippy::unwrap_used)]

mod common;
mod onlookers;

use std::time::{Duration, Instant};

use common::{Running, wait_for_log};
use onlookers::Onlookers;
use switchboard::broker::BrokerStatus;
use switchboard::ids::{RoomId, UserId};
use switchboard::presence::Status;
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until};

/// Far beyond every wait of these tests.
const NODE_TTL: &str = "60s";

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |s| {
        s.node_ttl = Some(NODE_TTL.parse().unwrap())
    })
    .await
}

/// What the surviving node `here` holds about kim once kim's node stopped.
fn kim_is_gone(here: &TestServer) {
    let kim = UserId::from_trusted("kim");
    assert_eq!(here.hub.user_connection_count(&kim), 0);
    assert_eq!(here.hub.presence().get(&kim).status, Status::Offline);
    assert_eq!(
        here.hub.room_members(&RoomId::from_trusted("general")),
        vec![UserId::from_trusted("alice")]
    );
}

#[tokio::test]
async fn a_cleanly_stopped_node_s_users_leave_at_once_and_once() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let c = node(&redis, "c").await;
    let mut survivors = Onlookers::on(&b).await;
    let mut kim = a.member("kim", "general").await;
    a.settled().await;
    survivors.saw_kim_arrive().await;

    let (clean, ended) = tokio::join!(a.shutdown(), kim.close_code());
    assert!(clean, "every connection closed within the deadline");
    assert_eq!(ended, 1001);
    survivors.saw_kim_leave_once(&b, &c).await;
    kim_is_gone(&b);
    kim_is_gone(&c);
}

#[tokio::test]
async fn a_user_still_connected_elsewhere_stays_online_after_a_clean_stop() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b = node(&redis, "b").await;
    let c = node(&redis, "c").await;
    let mut survivors = Onlookers::on(&b).await;
    // Kim is in `general` only through node A, and connected to B too.
    let mut kim_on_a = a.member("kim", "general").await;
    a.settled().await;
    survivors.saw_kim_arrive().await;
    let mut kim_on_b = b.connect("kim").await;
    b.settled().await;

    let (clean, ended) = tokio::join!(a.shutdown(), kim_on_a.close_code());
    assert!(clean);
    assert_eq!(ended, 1001);
    // Kim left the room (their only membership was on A) but is still online.
    assert_eq!(survivors.alice.expect("user_left").await["userId"], "kim");
    survivors.alice.expect_nothing_pending_across(&b, &c).await;
    survivors
        .watcher
        .expect_nothing_pending_across(&b, &c)
        .await;
    kim_on_b.expect_nothing_pending_across(&b, &c).await;
    let kim = UserId::from_trusted("kim");
    for here in [&b, &c] {
        assert_eq!(here.hub.user_connection_count(&kim), 1);
        assert_eq!(here.hub.presence().get(&kim).status, Status::Online);
        assert_eq!(
            here.hub.room_members(&RoomId::from_trusted("general")),
            vec![UserId::from_trusted("alice")]
        );
    }
}

#[tokio::test]
async fn a_connection_still_open_at_the_deadline_leaves_with_its_node() {
    let redis = RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", |s| {
        s.node_ttl = Some(NODE_TTL.parse().unwrap());
        s.shutdown_timeout = Some("500ms".parse().unwrap());
    })
    .await;
    let b = node(&redis, "b").await;
    let c = node(&redis, "c").await;
    let mut survivors = Onlookers::on(&b).await;
    // Kim's client will not answer the close frame: the connection outlives the deadline
    // (the server waits 5 s for the answer), so its departure is not announced when it ends.
    let _kim = a.member("kim", "general").await;
    a.settled().await;
    survivors.saw_kim_arrive().await;
    let stopped_hub = a.hub.clone();

    assert!(!a.shutdown().await, "kim's connection was still open");
    survivors.saw_kim_leave_once(&b, &c).await;
    kim_is_gone(&b);
    // When the connection does end, its departure is not announced again.
    wait_until("kim's connection ended", || {
        stopped_hub.stats().connections == 0
    })
    .await;
    survivors.alice.expect_nothing_pending_across(&b, &c).await;
    survivors
        .watcher
        .expect_nothing_pending_across(&b, &c)
        .await;
    kim_is_gone(&b);
}

#[tokio::test]
async fn a_node_whose_redis_is_down_still_stops_within_its_deadline() {
    let mut redis = RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", |s| {
        s.node_ttl = Some(NODE_TTL.parse().unwrap());
        s.shutdown_timeout = Some("1s".parse().unwrap());
    })
    .await;
    let _kim = a.member("kim", "general").await;
    redis.stop().await;
    wait_until("the node reports degraded", || {
        a.hub.stats().broker_status == BrokerStatus::Degraded
    })
    .await;
    let started = Instant::now();
    a.shutdown().await;
    // The deadline, then at most LEAVE_AT_LEAST for Redis (1 s each), with slack for a
    // loaded machine.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn sigterm_takes_the_binary_s_users_out_of_the_cluster_before_it_exits() {
    let redis = RedisServer::start().await;
    let mut a = Running::start(
        &["--node-ttl", NODE_TTL, "--node-id", "a"],
        &[("REDIS_URL", &redis.url())],
    )
    .await;
    let b = node(&redis, "b").await;
    let c = node(&redis, "c").await;
    let mut survivors = Onlookers::on(&b).await;
    let mut kim = Client::connect(&format!("ws://{}/?userId=kim", a.addr)).await;
    kim.join("general").await;
    survivors.saw_kim_arrive().await;

    a.terminate().await;
    assert_eq!(kim.close_code().await, 1001);
    wait_for_log(&mut a.logs, "left the cluster").await;
    let status = a.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    survivors.saw_kim_leave_once(&b, &c).await;
    kim_is_gone(&b);
}
