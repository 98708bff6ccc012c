//! A real nginx (Debian package) in front of three nodes, configured from deploy/nginx.conf as
//! a user would deploy it: a client through nginx talks to a client on a direct node.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_testkit::sse::SseClient;
use switchboard_testkit::{
    Client, RedisServer, TestServer, free_port, http_get, wait_for_port, wait_until,
    wait_until_async,
};

struct Nginx {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Nginx {
    /// Stops nginx with SIGTERM, so that the master stops its workers: a SIGKILLed master
    /// leaves them running, holding the port. SIGKILL only if it does not exit in time.
    ///
    /// Polls the exit with a bound, blocking: a drop cannot await. It runs when the test is
    /// over, and nginx's fast shutdown waits for nothing from the nodes it blocks.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs nginx with deploy/nginx.conf, its upstreams pointed at `nodes` and its listener at a
/// free port; returns it and that port.
async fn start_nginx(nodes: &[&TestServer]) -> (Nginx, u16) {
    let shipped = include_str!("../../../deploy/nginx.conf");
    let port = free_port();
    let mut config = shipped.replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    for (i, node) in nodes.iter().enumerate() {
        config = config.replace(
            &format!("server 127.0.0.1:300{};", i + 1),
            &format!("server {};", node.addr),
        );
    }
    let dir = std::env::temp_dir().join(format!("sb-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Keep every file nginx writes inside the test's directory.
    let paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|kind| format!("{kind}_temp_path {};", dir.join(kind).display()))
        .collect::<Vec<_>>()
        .join("\n    ");
    config = config.replacen(
        "http {",
        &format!("http {{\n    access_log off;\n    {paths}"),
        1,
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let globals = format!(
        "daemon off; master_process on; pid {}; error_log {} warn;",
        dir.join("nginx.pid").display(),
        dir.join("error.log").display()
    );
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(globals)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx must be installed for this test (.ci/run installs it)");
    let nginx = Nginx { child, dir };
    wait_for_port(
        "nginx listens",
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    )
    .await;
    (nginx, port)
}

async fn node(redis: &RedisServer, name: &str) -> TestServer {
    TestServer::cluster_node(redis, name, |_| {}).await
}

#[tokio::test]
async fn a_client_through_nginx_talks_to_a_client_on_a_direct_node() {
    let redis = RedisServer::start().await;
    let nodes = [
        node(&redis, "node-1").await,
        node(&redis, "node-2").await,
        node(&redis, "node-3").await,
    ];
    let (_nginx, port) = start_nginx(&[&nodes[0], &nodes[1], &nodes[2]]).await;

    let mut alice = Client::connect(&format!("ws://127.0.0.1:{port}/?userId=alice")).await;
    let behind = alice.connect["node"].as_str().unwrap().to_owned();
    // Sticky: the same client address reaches the same node again.
    let again = Client::connect(&format!("ws://127.0.0.1:{port}/ws?userId=alice")).await;
    assert_eq!(again.connect["node"], behind.as_str());
    drop(again);

    // Bob connects straight to a node other than alice's.
    let direct = nodes
        .iter()
        .find(|n| n.hub.node_id().as_str() != behind)
        .unwrap();
    let mut bob = direct.connect("bob").await;
    bob.join("general").await;
    direct.settled().await;
    wait_until("alice's node knows bob is in the room", || {
        let alice_node = nodes
            .iter()
            .find(|n| n.hub.node_id().as_str() == behind)
            .unwrap();
        alice_node
            .hub
            .room_members(&switchboard::ids::RoomId::from_trusted("general"))
            .iter()
            .any(|u| u.as_str() == "bob")
    })
    .await;
    let joined = alice.join("general").await;
    assert_eq!(joined["payload"]["memberCount"], 2);
    for node in &nodes {
        node.settled().await;
    }
    assert_eq!(bob.expect("user_joined").await["userId"], "alice");

    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "through nginx"}),
        )
        .await;
    let message = bob.expect("message").await;
    assert_eq!(
        (
            message["userId"].as_str(),
            message["payload"]["content"].as_str()
        ),
        (Some("alice"), Some("through nginx"))
    );
    bob.send_type("message", json!({"room": "general", "content": "direct"}))
        .await;
    assert_eq!(
        alice.expect("message").await["payload"]["content"],
        "direct"
    );

    // Plain HTTP goes through as well; every node shows up in the cluster statistics once
    // each has published its liveness.
    let through: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_async("the cluster statistics list three nodes", || async move {
        let (status, body) = http_get(through, "/stats?scope=cluster").await;
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        status == 200 && stats["nodeCount"] == 3
    })
    .await;
}

/// The SSE fallback through the shipped `/sse` location: events arrive one by one (nginx does
/// not buffer them: `connect` could not arrive otherwise, as the stream never ends), and the
/// client's POSTs reach its node (`ip_hash` sends its address to the same one).
#[tokio::test]
async fn an_sse_client_through_nginx_chats_with_a_client_on_a_direct_node() {
    let redis = RedisServer::start().await;
    let nodes = [
        node(&redis, "node-1").await,
        node(&redis, "node-2").await,
        node(&redis, "node-3").await,
    ];
    let (_nginx, port) = start_nginx(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let through = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

    let mut alice = SseClient::open(through, "/sse?userId=alice", &[]).await;
    assert_eq!(alice.status, 200, "{}", alice.head);
    assert!(alice.head.contains("content-type: text/event-stream"));
    let behind = alice.read_connect().await["payload"]["node"]
        .as_str()
        .unwrap()
        .to_owned();
    let direct = nodes
        .iter()
        .find(|n| n.hub.node_id().as_str() != behind)
        .unwrap();
    let mut bob = direct.connect("bob").await;
    bob.join("general").await;
    direct.settled().await;
    let alice_node = nodes
        .iter()
        .find(|n| n.hub.node_id().as_str() == behind)
        .unwrap();
    wait_until("alice's node knows bob is in the room", || {
        alice_node
            .hub
            .room_members(&switchboard::ids::RoomId::from_trusted("general"))
            .iter()
            .any(|u| u.as_str() == "bob")
    })
    .await;

    alice
        .send(json!({"type": "join_room", "payload": {"room": "general"}, "id": 1}))
        .await;
    assert_eq!(
        alice.expect("room_joined").await["payload"]["memberCount"],
        2
    );
    assert_eq!(alice.expect("ack").await["id"], 1);
    for node in &nodes {
        node.settled().await;
    }
    assert_eq!(bob.expect("user_joined").await["userId"], "alice");
    alice
        .send(json!({"type": "message", "payload": {"room": "general", "content": "via nginx"}}))
        .await;
    assert_eq!(
        bob.expect("message").await["payload"]["content"],
        "via nginx"
    );
    bob.send_type("message", json!({"room": "general", "content": "direct"}))
        .await;
    let message = alice.expect("message").await;
    assert_eq!(message["payload"]["content"], "direct");
    assert_eq!(message["userId"], "bob");
}
