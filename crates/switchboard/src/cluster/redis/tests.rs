//! The broker conformance suite against a real redis-server child process.

use std::sync::Arc;
use std::time::Duration;

use switchboard_testkit::RedisServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RedisCluster, RedisConfig};
use crate::broker::{Broker, conformance};
use crate::ids::NodeId;

#[test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
fn the_redis_broker_conforms() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let redis = runtime.block_on(RedisServer::start());
    let _entered = runtime.enter();
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let config = RedisConfig {
        url: redis.url(),
        prefix: "conformance:".into(),
        node_ttl: Duration::from_secs(5),
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
