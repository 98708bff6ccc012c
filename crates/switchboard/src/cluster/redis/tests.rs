//! The broker conformance suite against a real redis-server child process.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RedisCluster, RedisConfig};
use crate::broker::{Broker, conformance};
use crate::ids::NodeId;

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Redis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (.ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Redis(child), port)
}

#[test]
fn the_redis_broker_conforms() {
    let (_redis, port) = start_redis();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let config = RedisConfig {
        url: format!("redis://127.0.0.1:{port}"),
        prefix: "conformance:".into(),
        node_ttl: Duration::from_secs(5),
    };
    conformance::run(&|| {
        let node = NodeId::random();
        let cluster = RedisCluster::new(&config, node.clone()).unwrap();
        cluster.spawn(&tasks, &cancel);
        (node, Arc::new(cluster) as Arc<dyn Broker>)
    });
    cancel.cancel();
}
