//! Presence over real connections: online/away/offline, no flapping, explicit status and
//! metadata, watchers, member lists, the library view, and counts under churn.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use switchboard::ids::UserId;
use switchboard::presence::Status;
use switchboard_testkit::{Client, TestServer, wait_until};

async fn watch(client: &mut Client, user: &str) -> Value {
    client
        .send_type(
            "subscribe",
            json!({ "channel": format!("presence:{user}") }),
        )
        .await;
    client.expect("subscribed").await;
    client.expect("presence").await
}

#[tokio::test]
async fn watchers_see_online_and_offline_but_no_flapping_between_tabs() {
    let server = TestServer::start().await;
    let mut watcher = server.connect("watcher").await;
    let initial = watch(&mut watcher, "alice").await;
    assert_eq!(initial["payload"]["status"], "offline");
    assert_eq!(initial["userId"], "alice");

    let tab1 = server.connect("alice").await;
    let online = watcher.expect("presence").await;
    assert_eq!(online["payload"]["status"], "online");
    assert_eq!(online["payload"]["userId"], "alice");
    assert!(online["payload"]["lastSeen"].as_u64().unwrap() > 1_700_000_000_000);

    let tab2 = server.connect("alice").await;
    drop(tab1);
    wait_until("the first tab is gone", || {
        server
            .hub
            .user_connections(&UserId::from_trusted("alice"))
            .len()
            == 1
    })
    .await;
    watcher.expect_nothing_pending().await;
    assert_eq!(
        server
            .hub
            .presence()
            .get(&UserId::from_trusted("alice"))
            .status,
        Status::Online,
        "a user with two tabs who closes one stays online"
    );

    drop(tab2);
    let offline = watcher.expect("presence").await;
    assert_eq!(offline["payload"]["status"], "offline");
    let presence = server.hub.presence().get(&UserId::from_trusted("alice"));
    assert_eq!(presence.status, Status::Offline);
    assert!(presence.last_seen > 0, "last seen is remembered");
}

#[tokio::test]
async fn inactivity_makes_a_user_away_heartbeats_do_not_and_an_action_brings_them_back() {
    let server = TestServer::with(|s| s.away_timeout = Some("300ms".parse().unwrap())).await;
    let mut watcher = server.connect("watcher").await;
    let mut idle = server.connect("idle").await;
    watch(&mut watcher, "idle").await;
    // `idle` sends nothing: the away sweep marks it away and tells its watcher.
    let away = watcher.expect("presence").await;
    assert_eq!(away["payload"]["status"], "away");
    // A heartbeat is not activity: the user stays away.
    idle.send_type("ping", json!({})).await;
    idle.expect("pong").await;
    watcher.expect_nothing_pending().await;
    idle.send_type("join_room", json!({"room": "lobby"})).await;
    idle.expect("room_joined").await;
    let back = watcher.expect("presence").await;
    assert_eq!(back["payload"]["status"], "online");
}

#[tokio::test]
async fn presence_frames_set_status_and_metadata_for_rooms_and_watchers() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    let mut watcher = server.connect("watcher").await;
    watch(&mut watcher, "bob").await;

    bob.send(json!({"type": "presence", "payload": {"status": "away", "metadata": {"device": "phone"}}, "id": "s1"}))
        .await;
    // Bob is in the room too, so he sees his own change before the ack.
    for client in [&mut bob, &mut alice, &mut watcher] {
        let frame = client.expect("presence").await;
        assert_eq!(frame["userId"], "bob");
        assert_eq!(frame["payload"]["status"], "away");
        assert_eq!(frame["payload"]["metadata"], json!({"device": "phone"}));
    }
    assert_eq!(bob.expect("ack").await["id"], "s1");
    // A chosen status sticks through activity; repeating it changes nothing.
    bob.send_type("ping", json!({})).await;
    bob.expect("pong").await;
    bob.send_type("presence", json!({"status": "away"})).await;
    alice.expect_nothing_pending().await;
    bob.send_type("presence", json!({"status": "online"})).await;
    assert_eq!(
        alice.expect("presence").await["payload"]["status"],
        "online"
    );
    bob.expect("presence").await;

    bob.send_type("presence", json!({"status": "dancing"}))
        .await;
    bob.expect_error("INVALID_MESSAGE").await;
    let big = "x".repeat(1100);
    bob.send_type(
        "presence",
        json!({"status": "online", "metadata": {"big": big}}),
    )
    .await;
    bob.expect_error("MESSAGE_TOO_LARGE").await;
}

#[tokio::test]
async fn joining_lists_members_with_their_presence() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    alice
        .send_type(
            "presence",
            json!({"status": "away", "metadata": {"note": "lunch"}}),
        )
        .await;
    let mut bob = server.connect("bob").await;
    let joined = bob.join("general").await;
    let members = joined["payload"]["members"].as_array().unwrap();
    let alice_entry = members.iter().find(|m| m["userId"] == "alice").unwrap();
    assert_eq!(alice_entry["status"], "away");
    assert_eq!(alice_entry["metadata"], json!({"note": "lunch"}));
    let bob_entry = members.iter().find(|m| m["userId"] == "bob").unwrap();
    assert_eq!(bob_entry["status"], "online");
}

#[tokio::test]
async fn the_library_reads_presence_and_hears_every_change() {
    let server = TestServer::start().await;
    let changes: Arc<Mutex<Vec<(String, Status)>>> = Arc::default();
    let sink = changes.clone();
    let watch = server.hub.presence().on_update(move |p| {
        sink.lock().unwrap().push((p.user_id.to_string(), p.status));
    });
    let mut carol = server.connect("carol").await;
    let _dave = server.connect("dave").await;
    carol.send_type("presence", json!({"status": "away"})).await;
    carol.expect_nothing_pending().await;
    let mut online: Vec<String> = server
        .hub
        .presence()
        .online_users()
        .iter()
        .map(|p| p.user_id.to_string())
        .collect();
    online.sort();
    assert_eq!(online, ["carol", "dave"]);
    drop(carol);
    wait_until("carol is offline", || {
        changes
            .lock()
            .unwrap()
            .contains(&("carol".into(), Status::Offline))
    })
    .await;
    assert_eq!(
        changes.lock().unwrap()[..3],
        [
            ("carol".into(), Status::Online),
            ("dave".into(), Status::Online),
            ("carol".into(), Status::Away),
        ]
    );
    watch.cancel();
    let _erin = server.connect("erin").await;
    assert!(!changes.lock().unwrap().iter().any(|(u, _)| u == "erin"));
}

#[tokio::test]
async fn online_users_stay_correct_under_connect_and_disconnect_churn() {
    let server = TestServer::with(|s| s.max_connections_per_user = Some(10)).await;
    let url = server.url("");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // 20 users, two clients each; every client connects and disconnects 5 times.
            let user = format!("user{}", i % 20);
            for _ in 0..5 {
                let client = Client::connect(&format!("{url}/?userId={user}")).await;
                drop(client);
            }
            Client::connect(&format!("{url}/?userId={user}")).await
        }));
    }
    let mut survivors = Vec::new();
    for task in tasks {
        survivors.push(task.await.unwrap());
    }
    wait_until("every churned connection is closed", || {
        server.hub.stats().connections == 40
    })
    .await;
    assert_eq!(server.stats().await["onlineUsers"], 20);
    survivors.truncate(20);
    wait_until("half the clients are gone", || {
        server.hub.stats().connections == 20
    })
    .await;
    let stats = server.stats().await;
    let remaining: std::collections::HashSet<String> =
        survivors.iter().map(|c| c.user_id().to_owned()).collect();
    assert_eq!(stats["onlineUsers"], remaining.len());
    drop(survivors);
    wait_until("everyone is gone", || server.hub.stats().online_users == 0).await;
}
