//! Cluster tests: in-process nodes that share a [`RedisServer`] (or a [`RedisClusterServer`],
//! with `--redis-cluster`), and the barrier that proves nothing is still crossing Redis towards
//! a client. The barrier needs one Redis: on a Redis Cluster the marker and the frame may
//! travel on different masters.
//!
//! Why the barrier holds: a node sends everything it publishes or announces through one queue
//! and one publishing connection, in order; Redis hands each subscriber what it publishes in
//! the order it processed the `PUBLISH` commands; a node reads its one subscribing connection
//! in order and delivers each publication to its local outboxes before reading the next. So a
//! marker that Redis processes after a frame reaches the receiving node's clients after that
//! frame. The marker is processed after the frame when the same node published both in that
//! order, or when the marker was published after a client saw the frame arrive through Redis.

use serde_json::{Value, json};
use switchboard::broker::BrokerStatus;
use switchboard::config::RawSettings;
use switchboard::ids::UserId;
use switchboard::protocol::ServerFrame;

use crate::{Client, RedisClusterServer, RedisServer, TestServer, wait_until};

/// Type of the marker frames of [`Client::expect_nothing_pending_across`]; the server itself
/// never sends it.
const BARRIER: &str = "test_barrier";

impl TestServer {
    /// Starts an in-process node that joins the cluster on `redis` as `name` (with whatever
    /// else `configure` sets) and waits until its broker is connected and settled.
    pub async fn cluster_node(
        redis: &RedisServer,
        name: &str,
        configure: impl FnOnce(&mut RawSettings),
    ) -> Self {
        Self::node_on(redis.url(), false, name, configure).await
    }

    /// Starts an in-process node that joins the cluster on the Redis Cluster `redis`
    /// (`--redis-cluster`) as `name`, and waits until its broker is connected and settled.
    pub async fn redis_cluster_node(
        redis: &RedisClusterServer,
        name: &str,
        configure: impl FnOnce(&mut RawSettings),
    ) -> Self {
        Self::node_on(redis.url(), true, name, configure).await
    }

    /// A node on the Redis (or Redis Cluster) at `url`, once its broker is settled.
    async fn node_on(
        url: String,
        redis_cluster: bool,
        name: &str,
        configure: impl FnOnce(&mut RawSettings),
    ) -> Self {
        let server = Self::with(|s| {
            s.redis_url = Some(url);
            s.redis_cluster = redis_cluster.then_some(true);
            s.node_id = Some(name.into());
            configure(s);
        })
        .await;
        server.settled().await;
        server
    }

    /// Waits until the node's broker is connected and every subscription it wants is in
    /// effect.
    pub async fn settled(&self) {
        wait_until("the broker is connected and settled", || {
            let stats = self.hub.stats();
            stats.broker_status == BrokerStatus::Connected && stats.broker_settled
        })
        .await;
    }
}

impl Client {
    /// Proves that nothing is still on its way to this client, on `here` (its node), from
    /// `origin` (another node) through Redis, and then that nothing is queued locally either
    /// ([`Client::expect_nothing_pending`]).
    ///
    /// `origin` sends a marker to this client's user through Redis; it must be the next frame.
    /// See the module doc for why that covers a frame that `origin` published before, or that
    /// any node published before a client saw it arrive through Redis (pick as `origin` the
    /// node of that client). Every connection of the user gets the marker; the others skip it.
    pub async fn expect_nothing_pending_across(&mut self, here: &TestServer, origin: &TestServer) {
        assert_ne!(
            here.hub.node_id(),
            origin.hub.node_id(),
            "the marker must cross Redis"
        );
        // The user's topic is subscribed when the connection registered; in effect once settled.
        here.settled().await;
        self.barrier += 1;
        let stamp = self.barrier;
        let marker = ServerFrame::custom(
            BARRIER,
            json!({ "barrier": stamp, "connectionId": self.connection_id() }),
        );
        origin
            .hub
            .send_to_user(&UserId::from_trusted(self.user_id()), &marker);
        let frame = self.recv().await;
        assert_eq!(
            (frame["type"].as_str(), &frame["payload"]["barrier"]),
            (Some(BARRIER), &json!(stamp)),
            "expected nothing pending from node {}, got {frame}",
            origin.hub.node_id()
        );
        self.expect_nothing_pending().await;
    }
}

/// Whether `frame` is a marker addressed to a connection other than the one whose `connect`
/// payload is `connect`.
pub(crate) fn is_barrier_for_another(frame: &Value, connect: &Value) -> bool {
    frame["type"] == BARRIER && frame["payload"]["connectionId"] != connect["connectionId"]
}
