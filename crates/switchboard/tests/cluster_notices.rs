//! A user's arrival and departure are announced once to the other nodes' clients, whatever the
//! interleaving of a node's start-up (its liveness, its state snapshot as the others load it,
//! its events) with the user's connection.

#![allow(clippy::unwrap_used)]

mod onlookers;

use std::collections::BTreeMap;

use onlookers::Onlookers;
use serde_json::json;
use switchboard::ids::UserId;
use switchboard::protocol::ServerFrame;
use switchboard_testkit::{Client, RedisServer, TestServer};

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
