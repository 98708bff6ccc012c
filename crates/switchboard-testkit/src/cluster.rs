//! Cluster tests: in-process nodes that share a [`RedisServer`].

use switchboard::broker::BrokerStatus;
use switchboard::config::RawSettings;

use crate::{RedisServer, TestServer, wait_until};

impl TestServer {
    /// Starts an in-process node that joins the cluster on `redis` as `name` (with whatever
    /// else `configure` sets) and waits until its broker is connected and settled.
    pub async fn cluster_node(
        redis: &RedisServer,
        name: &str,
        configure: impl FnOnce(&mut RawSettings),
    ) -> Self {
        let url = redis.url();
        let server = Self::with(|s| {
            s.redis_url = Some(url);
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
