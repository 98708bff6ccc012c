//! The broker conformance suite against a real redis-server child process, and against a
//! real three-master Redis Cluster (`--redis-cluster`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use switchboard_testkit::{RedisClusterServer, RedisServer, wait_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RedisCluster, RedisConfig};
use crate::broker::{Broker, BrokerSink, BrokerStatus, Envelope, Topic, conformance};
use crate::ids::{NodeId, RoomId};

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
fn the_redis_broker_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(RedisServer::start());
    conforms_on(&runtime, redis.url(), false);
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and redis-cli: --features external"
)]
fn the_redis_broker_conforms_on_a_redis_cluster() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(RedisClusterServer::start());
    conforms_on(&runtime, redis.url(), true);
}

/// The conformance suite against Redis pub/sub at `url` (a seed node when `cluster`).
fn conforms_on(runtime: &tokio::runtime::Runtime, url: String, cluster: bool) {
    let _entered = runtime.enter();
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let config = RedisConfig {
        url,
        prefix: "conformance:".into(),
        node_ttl: Duration::from_secs(5),
        tls_ca: None,
        broker: None,
        cluster,
    };
    conformance::run(&|| {
        let node = NodeId::random();
        let history = crate::store::HistoryConfig {
            size: 100,
            ttl: std::time::Duration::from_secs(600),
        };
        let cluster = RedisCluster::new(&config, node.clone(), history).unwrap();
        cluster.spawn(&tasks, &cancel);
        (node, Arc::new(cluster) as Arc<dyn Broker>)
    });
    cancel.cancel();
}

/// The conformance suite against a Redis cluster whose publications go through another broker
/// (`--broker-url`): what the hub sees of it must be a broker like any other.
fn conforms_with(broker: crate::broker::BrokerUrl) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(RedisServer::start());
    let _entered = runtime.enter();
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let config = RedisConfig {
        url: redis.url(),
        prefix: "conformance:".into(),
        node_ttl: Duration::from_secs(5),
        tls_ca: None,
        broker: Some(broker),
        cluster: false,
    };
    conformance::run(&|| {
        let node = NodeId::random();
        let history = crate::store::HistoryConfig {
            size: 100,
            ttl: Duration::from_secs(600),
        };
        let cluster = RedisCluster::new(&config, node.clone(), history).unwrap();
        cluster.spawn(&tasks, &cancel);
        (node, Arc::new(cluster) as Arc<dyn Broker>)
    });
    cancel.cancel();
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and nats-server: --features external"
)]
fn the_redis_cluster_with_nats_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nats = runtime.block_on(switchboard_testkit::NatsServer::start());
    conforms_with(crate::broker::BrokerUrl::Nats(nats.url()));
}

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and rabbitmq-server: --features external"
)]
fn the_redis_cluster_with_rabbitmq_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rabbit = runtime.block_on(switchboard_testkit::RabbitMqServer::start());
    conforms_with(crate::broker::BrokerUrl::Amqp(rabbit.url()));
}

/// A node's configuration on `redis` under `prefix`, with a 60 s node TTL, and its history's.
fn node_config(redis: &RedisServer, prefix: &str) -> (RedisConfig, crate::store::HistoryConfig) {
    let config = RedisConfig {
        url: redis.url(),
        prefix: prefix.into(),
        node_ttl: Duration::from_secs(60),
        tls_ca: None,
        broker: None,
        cluster: false,
    };
    let history = crate::store::HistoryConfig {
        size: 100,
        ttl: Duration::from_secs(600),
    };
    (config, history)
}

/// A sink that takes everything and keeps nothing.
struct Discard;

impl BrokerSink for Discard {
    fn deliver(&self, _envelope: &Envelope) {}

    fn deliver_stream(&self, _message: crate::broker::StreamMessage) {}

    fn reconnected(&self) {}
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn a_failed_write_is_retried_without_more_traffic() {
    let redis = RedisServer::start().await;
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    // Liveness refreshes come every 20 s, longer than any wait below: they cannot be what
    // brings the publisher back.
    let (config, history) = node_config(&redis, "retry:");
    let node = NodeId::random();
    let cluster = RedisCluster::new(&config, node.clone(), history).unwrap();
    cluster.spawn(&tasks, &cancel);
    let sink: Arc<dyn BrokerSink> = Arc::new(Discard);
    cluster.start(Arc::downgrade(&sink) as Weak<dyn BrokerSink>);
    let status = |want: BrokerStatus| {
        let cluster = &cluster;
        wait_until("the broker's status", move || cluster.status() == want)
    };
    status(BrokerStatus::Connected).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    // Writes hang past the publisher's response timeout (2 s, one retry).
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5_000)
        .arg("WRITE")
        .query_async(&mut admin)
        .await
        .unwrap();
    cluster.publish(Envelope {
        origin: node,
        topic: Topic::Room(RoomId::from_trusted("retry")),
        frame: Bytes::from_static(b"lost"),
    });
    status(BrokerStatus::Degraded).await;
    // Nothing more is published: the publisher comes back by itself once Redis takes writes.
    status(BrokerStatus::Connected).await;
    cancel.cancel();
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn a_large_node_s_holdings_are_released_page_by_page_each_last_holder_once() {
    use crate::cluster::{Held, Holders, Holding};
    use crate::ids::UserId;

    let redis = RedisServer::start().await;
    let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
    let (config, history) = node_config(&redis, "release:");
    let sink: Arc<dyn BrokerSink> = Arc::new(Discard);
    let mut nodes = Vec::new();
    for name in ["big", "small"] {
        let node = RedisCluster::new(&config, NodeId::from_trusted(name), history).unwrap();
        node.spawn(&tasks, &cancel);
        node.start(Arc::downgrade(&sink) as Weak<dyn BrokerSink>);
        let connected = || node.status() == BrokerStatus::Connected;
        wait_until("the node's connection", connected).await;
        nodes.push(node);
    }
    let user = |n: usize| Held::User(UserId::from_trusted(format!("user-{n}")));
    // Three pages and more of a set Redis keeps as a table; the small node shares one user.
    let gained = |held| Holding { held, gained: true };
    let big: Vec<Holding> = (0..2_500).map(|n| gained(user(n))).collect();
    let firsts = nodes[0].apply(big).await.unwrap();
    assert!(
        firsts.iter().all(|&first| first),
        "the big node is every user's first"
    );
    let firsts = nodes[1].apply(vec![gained(user(7))]).await.unwrap();
    assert_eq!(firsts, [false]);

    let orphaned = nodes[0].release_own().await.unwrap();
    let mut want: Vec<Held> = (0..2_500).filter(|&n| n != 7).map(user).collect();
    want.sort();
    assert_eq!(orphaned.len(), 2_499);
    assert_eq!(
        orphaned, want,
        "every user but the shared one lost its last holder"
    );
    assert_eq!(
        nodes[0].release_own().await.unwrap(),
        [],
        "nothing is released twice"
    );
    assert_eq!(nodes[1].release_own().await.unwrap(), [user(7)]);
    cancel.cancel();
}
