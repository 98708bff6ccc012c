//! Webhooks in a cluster: every event is sent once for the whole cluster, whichever nodes its
//! users are on; a cleanly stopped node sends its vacancies before it exits; a killed node's
//! are sent once by the node that reaps it, or by its successor under the same id.
//!
//! Every node posts to the same backend. To know that a node has sent everything it decided,
//! a marker user joins a marker room on that node: its `room_occupied` goes through the same
//! decisions, in order, and the same sender, so once it arrived everything before it did.

#![allow(clippy::unwrap_used)]

mod common;
mod webhook_backend;

use std::net::SocketAddr;

use common::Running;
use serde_json::{Value, json};
use switchboard_testkit::{Client, RedisServer, TestServer};
use tokio::sync::mpsc;
use webhook_backend::{Received, SECRET, assert_signed, backend, next};

/// The webhook settings of a node, for the binary.
fn webhook_args(backend: SocketAddr) -> Vec<String> {
    ["--webhook-url", &format!("http://{backend}/hooks")]
        .into_iter()
        .chain(["--webhook-secret", SECRET])
        .map(str::to_owned)
        .collect()
}

async fn node(redis: &RedisServer, name: &str, backend: SocketAddr, ttl: &str) -> TestServer {
    let url = format!("http://{backend}/hooks");
    TestServer::cluster_node(redis, name, |s| {
        s.webhook_url = Some(url);
        s.webhook_secret = Some(SECRET.into());
        s.node_ttl = Some(ttl.parse().unwrap());
    })
    .await
}

/// One event as received, with the node that sent it.
#[derive(Debug, Clone)]
struct Sent {
    node: String,
    event: Value,
}

impl Sent {
    /// `name subject` (the room, channel or user the event is about; a member event names
    /// both its room and user, a presence event its user and status).
    fn key(&self) -> String {
        let event = &self.event;
        let name = event["name"].as_str().unwrap();
        let field = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
        match name {
            "member_added" | "member_removed" => {
                format!("{name} {} {}", field("room"), field("userId"))
            }
            "presence_changed" => format!(
                "{name} {} {}",
                field("userId"),
                event["presence"]["status"].as_str().unwrap()
            ),
            "channel_occupied" | "channel_vacated" => format!("{name} {}", field("channel")),
            _ => format!("{name} {}", field("room")),
        }
    }
}

/// What the backend received, request by request.
struct Log {
    received: mpsc::UnboundedReceiver<Received>,
    sent: Vec<Sent>,
}

impl Log {
    fn new(received: mpsc::UnboundedReceiver<Received>) -> Self {
        Self {
            received,
            sent: Vec::new(),
        }
    }

    /// Receives requests until an event with `key` has come.
    async fn until(&mut self, key: &str) -> Sent {
        loop {
            if let Some(sent) = self.sent.iter().find(|sent| sent.key() == key) {
                return sent.clone();
            }
            let request = next(&mut self.received).await;
            assert_signed(&request);
            let body = request.json();
            let node = body["node"].as_str().unwrap().to_owned();
            for event in body["events"].as_array().unwrap() {
                self.sent.push(Sent {
                    node: node.clone(),
                    event: event.clone(),
                });
            }
        }
    }

    /// Proves that `nodes` have sent everything they decided before now (each marker is a
    /// room a marker user joins on that node), then takes every event received so far, less
    /// the markers', as sorted keys.
    async fn settle(&mut self, round: &str, nodes: &[(&str, &TestServer)]) -> Vec<String> {
        let mut markers = Vec::new();
        for (name, server) in nodes {
            let marker = format!("marker-{round}-{name}");
            markers.push(server.member(&marker, &marker).await);
            let sent = self.until(&format!("room_occupied {marker}")).await;
            assert_eq!(
                sent.node, *name,
                "a marker room is occupied by its own node"
            );
        }
        let mut keys: Vec<String> = std::mem::take(&mut self.sent)
            .iter()
            .map(Sent::key)
            .filter(|key| !key.contains("marker-"))
            .collect();
        keys.sort();
        // The markers' own departures come in a later round: drop their clients there.
        drop(markers);
        keys
    }
}

fn sorted(keys: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    keys.sort();
    keys
}

async fn subscribe(client: &mut Client, channel: &str) {
    client
        .send_type("subscribe", json!({ "channel": channel }))
        .await;
    client.expect("subscribed").await;
}

#[tokio::test]
async fn each_event_is_sent_once_for_the_cluster() {
    let redis = RedisServer::start().await;
    let (hooks, received, _script) = backend().await;
    let mut log = Log::new(received);
    let a = node(&redis, "a", hooks, "60s").await;
    let b = node(&redis, "b", hooks, "60s").await;

    // Alice is the room's first member, on A: A sends `room_occupied`.
    let alice_on_a = a.member("alice", "general").await;
    assert_eq!(log.until("room_occupied general").await.node, "a");
    // Then she and others arrive on both nodes.
    let alice_on_b = b.member("alice", "general").await;
    let mut bob = b.member("bob", "general").await;
    subscribe(&mut bob, "news").await;
    let mut carol = a.connect("carol").await;
    subscribe(&mut carol, "news").await;
    assert_eq!(
        log.settle("1", &[("a", &a), ("b", &b)]).await,
        sorted(&[
            "presence_changed alice online",
            "room_occupied general",
            "member_added general alice",
            "presence_changed bob online",
            "member_added general bob",
            "channel_occupied news",
            "presence_changed carol online",
        ]),
        "each arrival once, though alice is on both nodes and news has subscribers on both"
    );

    // Alice leaves A: she is still in the room and online through B.
    drop(alice_on_a);
    drop(carol);
    // Bob leaves the room and the channel, and stays connected.
    bob.send_type("leave_room", json!({"room": "general"}))
        .await;
    bob.expect("room_left").await;
    bob.send_type("unsubscribe", json!({"channel": "news"}))
        .await;
    bob.expect("unsubscribed").await;
    // Alice's last connection goes: the room is empty everywhere.
    drop(alice_on_b);
    assert_eq!(
        log.settle("2", &[("a", &a), ("b", &b)]).await,
        sorted(&[
            "presence_changed carol offline",
            "member_removed general bob",
            "channel_vacated news",
            "member_removed general alice",
            "room_vacated general",
            "presence_changed alice offline",
        ]),
        "each departure once, when the last holder anywhere leaves"
    );

    // A clean stop of B: what only B held is sent by B before it exits.
    let mut dave = b.member("dave", "lounge").await;
    log.until("room_occupied lounge").await;
    let (clean, _) = tokio::join!(b.shutdown(), dave.close_code());
    assert!(clean);
    let vacated = log.until("room_vacated lounge").await;
    assert_eq!(vacated.node, "b");
    let keys = log.settle("3", &[("a", &a)]).await;
    for key in [
        "member_removed lounge dave",
        "room_vacated lounge",
        "presence_changed dave offline",
        "presence_changed bob offline",
    ] {
        assert_eq!(
            keys.iter().filter(|k| *k == key).count(),
            1,
            "{key} once: {keys:?}"
        );
    }
}

/// Starts the binary as node `name` of the cluster with webhooks to `hooks`.
async fn process(redis: &RedisServer, name: &str, hooks: SocketAddr, ttl: &str) -> Running {
    let mut args = vec![
        "--node-ttl".to_owned(),
        ttl.to_owned(),
        "--node-id".to_owned(),
        name.to_owned(),
    ];
    args.extend(webhook_args(hooks));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Running::start(&args, &[("REDIS_URL", &redis.url())]).await
}

/// Kim on the process's node: in `general` and subscribed to `news`, all four arrivals
/// sent.
async fn kim_arrives(log: &mut Log, doomed: &Running) -> Client {
    let mut kim = Client::connect(&format!("ws://{}/?userId=kim", doomed.addr)).await;
    kim.join("general").await;
    subscribe(&mut kim, "news").await;
    for key in [
        "presence_changed kim online",
        "room_occupied general",
        "member_added general kim",
        "channel_occupied news",
    ] {
        assert_eq!(log.until(key).await.node, "doomed");
    }
    kim
}

const KIM_GONE: [&str; 4] = [
    "member_removed general kim",
    "room_vacated general",
    "channel_vacated news",
    "presence_changed kim offline",
];

#[tokio::test]
async fn a_killed_node_s_vacancies_are_sent_once_by_the_node_that_reaps_it() {
    let redis = RedisServer::start().await;
    let (hooks, received, _script) = backend().await;
    let mut log = Log::new(received);
    let a = node(&redis, "a", hooks, "2s").await;
    let b = node(&redis, "b", hooks, "2s").await;
    let doomed = process(&redis, "doomed", hooks, "2s").await;
    let _kim = kim_arrives(&mut log, &doomed).await;
    log.settle("1", &[("a", &a), ("b", &b)]).await;

    doomed.kill().await;
    let reaper = log.until("room_vacated general").await.node;
    assert!(reaper == "a" || reaper == "b", "sent by a survivor");
    assert_eq!(
        log.settle("2", &[("a", &a), ("b", &b)]).await,
        sorted(&KIM_GONE),
        "once, by the reaper"
    );
}

#[tokio::test]
async fn a_node_restarted_under_the_same_id_sends_its_predecessor_s_vacancies() {
    let redis = RedisServer::start().await;
    let (hooks, received, _script) = backend().await;
    let mut log = Log::new(received);
    let a = node(&redis, "a", hooks, "60s").await;
    let doomed = process(&redis, "doomed", hooks, "60s").await;
    let _kim = kim_arrives(&mut log, &doomed).await;
    log.settle("1", &[("a", &a)]).await;

    // Killed and back before its liveness expires (60 s): nobody reaps it.
    doomed.kill().await;
    let _successor = process(&redis, "doomed", hooks, "60s").await;
    assert_eq!(log.until("room_vacated general").await.node, "doomed");
    assert_eq!(
        log.settle("2", &[("a", &a)]).await,
        sorted(&KIM_GONE),
        "once, by the successor"
    );
}
