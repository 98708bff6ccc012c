//! A user's arrival and departure are announced once to the other nodes' clients, whatever the
//! interleaving of a node's start-up (its liveness, its state snapshot as the others load it,
//! its events) with the user's connection.

#![allow(clippy::unwrap_used)]

mod onlookers;

use std::collections::BTreeMap;

use onlookers::Onlookers;
use serde_json::json;
use switchboard::ids::UserId;
use switchboard::presence::Status;
use switchboard::protocol::ServerFrame;
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until};

/// Rounds of: a node starts with the same id as before, a user connects to it at once and
/// joins a room, the node stops cleanly.
const ROUNDS: u64 = 20;

const MARKER: &str = "round_marker";

/// Sends a marker to `clients`' users from `origin`, through Redis: it follows everything any
/// node published before `origin` started, and what `origin` published before it.
fn mark(origin: &TestServer, users: &[&str], round: u64) {
    for user in users {
        let frame = ServerFrame::custom(MARKER, json!({ "round": round }));
        origin
            .hub
            .send_to_user(&UserId::from_trusted(*user), &frame);
    }
}

/// The notices `client` got before the marker of `round`, counted by type and status.
async fn notices_until_marker(client: &mut Client, round: u64) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    loop {
        let frame = client.recv().await;
        let kind = frame["type"].as_str().unwrap().to_owned();
        if kind == MARKER {
            assert_eq!(frame["payload"]["round"], round, "{frame}");
            return seen;
        }
        let key = match frame["payload"]["status"].as_str() {
            Some(status) => format!("{kind} {status}"),
            None => kind,
        };
        *seen.entry(key).or_default() += 1;
    }
}

/// The notices `client` got before each of the markers of `rounds` (in that order), together.
async fn notices_until_markers(client: &mut Client, rounds: [u64; 2]) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for round in rounds {
        for (kind, n) in notices_until_marker(client, round).await {
            *seen.entry(kind).or_default() += n;
        }
    }
    seen
}

fn counts(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
    entries.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test]
async fn a_restarted_node_s_user_is_announced_once_per_arrival() {
    let redis = RedisServer::start().await;
    let stay = TestServer::cluster_node(&redis, "stay", |_| {}).await;
    let Onlookers {
        mut alice,
        mut watcher,
    } = Onlookers::on(&stay).await;
    for round in 0..=ROUNDS {
        let url = redis.url();
        // Not waiting for the node to settle: the user connects as soon as it listens.
        let restarted = TestServer::with(|s| {
            s.redis_url = Some(url);
            s.node_id = Some("restarted".into());
        })
        .await;
        let kim = if round < ROUNDS {
            let mut kim = restarted.connect("kim").await;
            kim.join("general").await;
            Some(kim)
        } else {
            None
        };
        restarted.settled().await;
        mark(&restarted, &["alice", "watcher"], round);
        let (mut room, mut watched) = (Vec::new(), Vec::new());
        if round > 0 {
            // The previous round's departure.
            room.extend([("presence offline", 1), ("user_left", 1)]);
            watched.push(("presence offline", 1));
        }
        if kim.is_some() {
            // Online before joining: the room hears of the arrival, not of the presence.
            room.push(("user_joined", 1));
            watched.push(("presence online", 1));
        }
        assert_eq!(
            notices_until_marker(&mut alice, round).await,
            counts(&room),
            "round {round}: the room's member"
        );
        assert_eq!(
            notices_until_marker(&mut watcher, round).await,
            counts(&watched),
            "round {round}: kim's watcher"
        );
        drop(kim);
        assert!(restarted.shutdown().await);
    }
}

/// Rounds of: a user opens two tabs at once, one on each of two nodes, both join a room at
/// once, then both close at once.
const TAB_ROUNDS: u64 = 10;

#[tokio::test]
async fn two_tabs_on_two_nodes_at_once_are_one_arrival_and_one_departure() {
    let redis = RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", |_| {}).await;
    let b = TestServer::cluster_node(&redis, "b", |_| {}).await;
    let c = TestServer::cluster_node(&redis, "c", |_| {}).await;
    let mut onlookers = [Onlookers::on(&a).await, Onlookers::on(&c).await];
    for round in 0..=TAB_ROUNDS {
        let tabs = if round < TAB_ROUNDS {
            let (mut on_a, mut on_b) = tokio::join!(a.connect("kim"), b.connect("kim"));
            tokio::join!(on_a.join("general"), on_b.join("general"));
            Some((on_a, on_b))
        } else {
            None
        };
        let (mut room, mut watched) = (Vec::new(), Vec::new());
        if round > 0 {
            room.extend([("presence offline", 1), ("user_left", 1)]);
            watched.push(("presence offline", 1));
        }
        if tabs.is_some() {
            room.push(("user_joined", 1));
            watched.push(("presence online", 1));
        }
        // A marker from each node that had a tab follows everything that node announced.
        mark(&a, &["alice", "watcher"], 2 * round);
        mark(&b, &["alice", "watcher"], 2 * round + 1);
        let markers = [2 * round, 2 * round + 1];
        for Onlookers { alice, watcher } in &mut onlookers {
            assert_eq!(
                notices_until_markers(alice, markers).await,
                counts(&room),
                "round {round}: the room's member"
            );
            assert_eq!(
                notices_until_markers(watcher, markers).await,
                counts(&watched),
                "round {round}: kim's watcher"
            );
        }
        drop(tabs);
        let kim = UserId::from_trusted("kim");
        for node in [&a, &b, &c] {
            wait_until("kim's tabs are gone everywhere", || {
                node.hub.presence().get(&kim).status == Status::Offline
            })
            .await;
        }
    }
}
