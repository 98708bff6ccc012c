//! Cluster mode with another broker (`--broker-url`): Redis as the state store (membership,
//! presence, history, offsets) and NATS or RabbitMQ carrying the publications, each a real
//! child process on free ports. Every test runs against each broker, and with NATS on a
//! three-master Redis Cluster as the store too (`--redis-cluster`): a client on node A and a
//! client on node B behave as on one server, and history stays exact (offsets from Redis,
//! every message once, in order) even when the broker reorders or loses messages.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard::ids::{RoomId, UserId};
use switchboard::presence::Status;
use switchboard_testkit::{
    Client, NatsServer, RabbitMqServer, RedisClusterServer, RedisServer, TestServer, http_json,
    wait_until,
};
use tokio::sync::OnceCell;

/// The RabbitMQ server the tests share: it takes seconds to boot. Each test's cluster has a
/// prefix of its own, hence an exchange of its own. (It stops when the test binary exits.)
static RABBITMQ: OnceCell<RabbitMqServer> = OnceCell::const_new();

/// The broker a test's cluster uses, the cluster's prefix (in Redis and in the broker), and
/// whether its store is a Redis Cluster.
struct Broker {
    server: Server,
    prefix: String,
    on_redis_cluster: bool,
}

/// The state store a test's nodes share.
enum Store {
    Redis(RedisServer),
    RedisCluster(RedisClusterServer),
}

enum Server {
    Nats(NatsServer),
    SharedRabbitMq(&'static RabbitMqServer),
    RabbitMq(RabbitMqServer),
}

impl Broker {
    fn new(server: Server) -> Self {
        let prefix = format!("t{:016x}:", fastrand::u64(..));
        Self {
            server,
            prefix,
            on_redis_cluster: false,
        }
    }

    async fn nats() -> Self {
        Self::new(Server::Nats(NatsServer::start().await))
    }

    /// NATS, with a Redis Cluster as the store.
    async fn nats_on_redis_cluster() -> Self {
        Self {
            on_redis_cluster: true,
            ..Self::nats().await
        }
    }

    /// A store for this test's nodes: a Redis, or a Redis Cluster.
    async fn store(&self) -> Store {
        if self.on_redis_cluster {
            Store::RedisCluster(RedisClusterServer::start().await)
        } else {
            Store::Redis(RedisServer::start().await)
        }
    }

    async fn rabbitmq() -> Self {
        let shared = RABBITMQ.get_or_init(RabbitMqServer::start).await;
        Self::new(Server::SharedRabbitMq(shared))
    }

    /// A server of this test's own, to stop and restart.
    async fn private(self) -> Self {
        match self.server {
            Server::SharedRabbitMq(_) => Self {
                on_redis_cluster: self.on_redis_cluster,
                ..Self::new(Server::RabbitMq(RabbitMqServer::start().await))
            },
            _ => self,
        }
    }

    fn url(&self) -> String {
        match &self.server {
            Server::Nats(nats) => nats.url(),
            Server::SharedRabbitMq(rabbit) => rabbit.url(),
            Server::RabbitMq(rabbit) => rabbit.url(),
        }
    }

    fn name(&self) -> &'static str {
        match &self.server {
            Server::Nats(_) => "nats",
            Server::SharedRabbitMq(_) | Server::RabbitMq(_) => "amqp",
        }
    }

    async fn stop(&mut self) {
        match &mut self.server {
            Server::Nats(nats) => nats.stop().await,
            Server::RabbitMq(rabbit) => rabbit.stop().await,
            Server::SharedRabbitMq(_) => panic!("the shared server is not to be stopped"),
        }
    }

    async fn restart(&mut self) {
        match &mut self.server {
            Server::Nats(nats) => nats.restart().await,
            Server::RabbitMq(rabbit) => rabbit.restart().await,
            Server::SharedRabbitMq(_) => panic!("the shared server is not to be restarted"),
        }
    }
}

/// Runs the same test against each broker, and against NATS with a Redis Cluster as the
/// store.
macro_rules! against_each_broker {
    ($($name:ident),* $(,)?) => {
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Broker::nats().await).await;
                }
            )*
        }

        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Broker::rabbitmq().await).await;
                }
            )*
        }

        mod nats_on_redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Broker::nats_on_redis_cluster().await).await;
                }
            )*
        }
    };
}

against_each_broker!(
    room_messages_and_member_notices_cross_nodes,
    a_pattern_subscription_gets_each_publication_once,
    presence_crosses_nodes,
    a_client_recovers_on_another_node,
    offsets_agree_when_two_nodes_write_at_once,
    a_broker_outage_loses_nothing_the_store_kept,
);

/// A node of the cluster on `store` whose publications go through `broker`.
async fn node(store: &Store, broker: &Broker, name: &str) -> TestServer {
    let (url, prefix) = (broker.url(), broker.prefix.clone());
    let configure = |s: &mut switchboard::config::RawSettings| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
        s.history_size = Some(1_000);
        s.allow_client_patterns = Some(true);
        s.redis_prefix = Some(prefix);
        s.broker_url = Some(url);
    };
    let server = match store {
        Store::Redis(redis) => TestServer::cluster_node(redis, name, configure).await,
        Store::RedisCluster(redis) => TestServer::redis_cluster_node(redis, name, configure).await,
    };
    assert_eq!(server.hub.stats().broker, broker.name());
    server
}

/// Waits until `server` knows `user` is in `room` (through Redis's announcements).
async fn sees_member(server: &TestServer, room: &str, user: &str) {
    let (room, user) = (RoomId::from_trusted(room), UserId::from_trusted(user));
    wait_until("the member is known cluster-wide", || {
        server.hub.room_members(&room).contains(&user)
    })
    .await;
}

/// Sends message `n` to `room` and waits for its ack; returns the offset the ack carries.
async fn send_acked(client: &mut Client, room: &str, n: u64) -> u64 {
    client
        .send(json!({"type": "message", "payload": {"room": room, "content": n}, "id": n}))
        .await;
    loop {
        let frame = client.recv().await;
        if frame["type"] == "ack" && frame["id"] == n {
            return frame["payload"]["offset"].as_u64().unwrap();
        }
    }
}

/// The next room message: (offset, content).
async fn next_message(client: &mut Client) -> (u64, u64) {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "message" {
            return (
                frame["offset"].as_u64().unwrap(),
                frame["payload"]["content"].as_u64().unwrap(),
            );
        }
    }
}

/// Proves that no further room message is queued for `client` on its node.
async fn no_more_messages(client: &mut Client) {
    client.send_type("ping", json!({"barrier": "end"})).await;
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("pong") if frame["payload"]["barrier"] == "end" => return,
            Some("message" | "publish") => panic!("a message after the last one: {frame}"),
            _ => {}
        }
    }
}

async fn room_messages_and_member_notices_cross_nodes(broker: Broker) {
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut alice = a.member("alice", "general").await;
    a.settled().await;
    sees_member(&b, "general", "alice").await;
    let mut bob = b.connect("bob").await;
    let joined = bob.join("general").await;
    assert_eq!(joined["payload"]["memberCount"], 2);
    assert_eq!(alice.expect("user_joined").await["userId"], "bob");
    b.settled().await;

    let hi =
        json!({"type": "message", "payload": {"room": "general", "content": "hi from A"}, "id": 1});
    alice.send(hi.clone()).await;
    let message = bob.expect("message").await;
    assert_eq!(message["userId"], "alice");
    assert_eq!(message["payload"]["content"], "hi from A");
    assert_eq!(message["offset"], 1, "numbered by Redis");
    assert_eq!(alice.expect("ack").await["payload"]["offset"], 1);
    // Not echoed back to its sender: bob saw it, so a marker from his node, through the
    // broker, comes after any copy on its way to alice.
    alice.expect_nothing_pending_across(&a, &b).await;
    // A repeat is acked again with the offset the store gave, and not sent again: the next
    // message below is the stream's second.
    alice.send(hi).await;
    assert_eq!(alice.expect("ack").await["payload"]["offset"], 1);

    bob.send_type(
        "message",
        json!({"room": "general", "content": "hi from B"}),
    )
    .await;
    let message = alice.expect("message").await;
    assert_eq!(message["payload"]["content"], "hi from B");
    assert_eq!(message["offset"], 2);

    bob.send_type("leave_room", json!({"room": "general"}))
        .await;
    bob.expect("room_left").await;
    assert_eq!(alice.expect("user_left").await["userId"], "bob");
}

async fn a_pattern_subscription_gets_each_publication_once(broker: Broker) {
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut watcher = b.connect("watcher").await;
    for channel in ["event:*", "event:deploy"] {
        watcher
            .send_type("subscribe", json!({"channel": channel}))
            .await;
        watcher.expect("subscribed").await;
    }
    b.settled().await;
    let mut publisher = a.connect("publisher").await;
    for (channel, n) in [("event:deploy", 1), ("other:x", 2), ("event:login", 3)] {
        publisher
            .send_type("publish", json!({"channel": channel, "data": {"n": n}}))
            .await;
    }
    // Two channels: each arrives in order, but not necessarily in the order of the other (NATS
    // hands an exact and a pattern subscription's messages over on different tasks).
    let mut received = Vec::new();
    for _ in 0..2 {
        let frame = watcher.expect("publish").await;
        received.push((
            frame["payload"]["n"].as_u64().unwrap(),
            frame["channel"].clone(),
        ));
    }
    received.sort_unstable_by_key(|(n, _)| *n);
    assert_eq!(
        received,
        [(1, json!("event:deploy")), (3, json!("event:login"))],
        "once, even with an exact and a pattern subscription; not other:x"
    );
    watcher.expect_nothing_pending_across(&b, &a).await;
    // The server's own publication API, from the other node.
    a.hub
        .pubsub()
        .publish("event:api", &json!({"n": 4}))
        .unwrap();
    assert_eq!(watcher.expect("publish").await["payload"], json!({"n": 4}));
}

async fn presence_crosses_nodes(broker: Broker) {
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut watcher = b.connect("watcher").await;
    watcher
        .send_type("subscribe", json!({"channel": "presence:alice"}))
        .await;
    watcher.expect("subscribed").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "offline"
    );
    let mut bob = b.member("bob", "general").await;
    let mut alice = a.connect("alice").await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "online"
    );
    sees_member(&a, "general", "bob").await;
    let joined = alice.join("general").await;
    assert_eq!(joined["payload"]["memberCount"], 2);
    assert_eq!(bob.expect("user_joined").await["userId"], "alice");
    alice.send_type("presence", json!({"status": "away"})).await;
    assert_eq!(
        watcher.expect("presence").await["payload"]["status"],
        "away"
    );
    let alice_id = UserId::from_trusted("alice");
    wait_until("B sees alice away", || {
        b.hub.presence().get(&alice_id).status == Status::Away
    })
    .await;
    drop(alice);
    loop {
        // Alice's presence changes reach bob too, her fellow member.
        let frame = bob.recv().await;
        if frame["type"] == "user_left" {
            assert_eq!(frame["userId"], "alice");
            break;
        }
        assert_eq!(frame["type"], "presence", "{frame}");
    }
}

async fn a_client_recovers_on_another_node(broker: Broker) {
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut reader = a.connect("reader").await;
    let joined = reader.join("feed").await;
    let epoch = joined["payload"]["epoch"].clone();
    let mut writer = b.member("writer", "feed").await;
    sees_member(&b, "feed", "reader").await;
    for n in 1..=3 {
        assert_eq!(send_acked(&mut writer, "feed", n).await, n);
    }
    for n in 1..=3 {
        assert_eq!(next_message(&mut reader).await, (n, n));
    }
    reader.reset();
    for n in 4..=6 {
        assert_eq!(send_acked(&mut writer, "feed", n).await, n);
    }
    // Back on the writer's node, where the room has a copy; then on a node without one.
    let mut comeback = b.connect("reader").await;
    let since = json!({"offset": 3, "epoch": epoch});
    comeback
        .send_type("join_room", json!({"room": "feed", "since": since}))
        .await;
    let reply = comeback.expect("room_joined").await;
    assert_eq!(reply["payload"]["recovered"], true, "{reply}");
    for n in 4..=6 {
        assert_eq!(next_message(&mut comeback).await, (n, n));
    }
    no_more_messages(&mut comeback).await;
    drop(comeback);
    let c = node(&redis, &broker, "c").await;
    let mut elsewhere = c.connect("reader").await;
    let since = json!({"offset": 5, "epoch": epoch});
    elsewhere
        .send_type("join_room", json!({"room": "feed", "since": since}))
        .await;
    let reply = elsewhere.expect("room_joined").await;
    assert_eq!(reply["payload"]["recovered"], true, "{reply}");
    assert_eq!(next_message(&mut elsewhere).await, (6, 6));
    no_more_messages(&mut elsewhere).await;
}

/// Two writers on two nodes: the broker brings each node the other's messages whenever it
/// does, possibly before the node's own earlier-numbered one; every reader still gets offsets
/// 1..=40 once, in order, the same message at the same offset everywhere.
async fn offsets_agree_when_two_nodes_write_at_once(broker: Broker) {
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut on_a = a.member("on-a", "general").await;
    let mut on_b = b.member("on-b", "general").await;
    sees_member(&a, "general", "on-b").await;
    sees_member(&b, "general", "on-a").await;
    let mut writer_a = a.member("writer-a", "general").await;
    let mut writer_b = b.member("writer-b", "general").await;
    let sending_a = tokio::spawn(async move {
        for n in 1..=20 {
            writer_a
                .send_type("message", json!({"room": "general", "content": n}))
                .await;
        }
        writer_a
    });
    for n in 101..=120 {
        writer_b
            .send_type("message", json!({"room": "general", "content": n}))
            .await;
    }
    let _writer_a = sending_a.await.unwrap();
    let mut seen = [Vec::new(), Vec::new()];
    for (client, seen) in [&mut on_a, &mut on_b].into_iter().zip(&mut seen) {
        for _ in 0..40 {
            seen.push(next_message(client).await);
        }
        no_more_messages(client).await;
    }
    assert_eq!(seen[0], seen[1], "the same message at the same offset");
    let offsets: Vec<u64> = seen[0].iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (1..=40).collect::<Vec<u64>>());
}

/// The broker goes down while a writer goes on: Redis still numbers and keeps the messages,
/// which the broker drops or delivers late; once it is back, the reader's node reads the store
/// and the reader gets every message once, in order.
async fn a_broker_outage_loses_nothing_the_store_kept(broker: Broker) {
    const TOTAL: u64 = 60;
    let mut broker = broker.private().await;
    let redis = broker.store().await;
    let a = node(&redis, &broker, "a").await;
    let b = node(&redis, &broker, "b").await;
    let mut reader = b.member("reader", "feed").await;
    let mut writer = a.member("writer", "feed").await;
    sees_member(&a, "feed", "reader").await;
    let mut next = 1;
    for n in 1..=TOTAL {
        assert_eq!(send_acked(&mut writer, "feed", n).await, n);
        if n == 20 {
            while next <= n {
                assert_eq!(next_message(&mut reader).await, (next, next));
                next += 1;
            }
            broker.stop().await;
            wait_until("both nodes see the outage", || {
                [&a, &b].iter().all(|node| {
                    node.hub.stats().broker_status == switchboard::broker::BrokerStatus::Degraded
                })
            })
            .await;
            let (status, body) = http_json(b.addr, "GET", "/ready", None, &[]).await;
            assert_eq!(status, 503);
            assert_eq!(body, json!({"status": "degraded", "broker": broker.name()}));
            // A join that needs Redis's copy of a room is answered meanwhile.
            let mut late = b.connect("late").await;
            assert_eq!(late.join("quiet").await["payload"]["offset"], 0);
        }
        if n == 40 {
            broker.restart().await;
            a.settled().await;
            b.settled().await;
            let (status, _) = http_json(b.addr, "GET", "/ready", None, &[]).await;
            assert_eq!(status, 200);
        }
    }
    while next <= TOTAL {
        assert_eq!(
            next_message(&mut reader).await,
            (next, next),
            "every offset, in order"
        );
        next += 1;
    }
    no_more_messages(&mut reader).await;
    if broker.name() == "amqp" {
        // What was published while RabbitMQ was away was dropped, not queued: the reader got
        // those messages from Redis.
        assert!(a.hub.stats().broker_dropped > 0);
    }
}
