//! Rooms over real WebSocket connections: join, leave, messages, member notices, auto-deletion,
//! the per-connection room cap, and broadcast.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard_testkit::{Client, TestServer, wait_until};

#[tokio::test]
async fn join_replies_with_members_and_tells_the_others() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.connect("bob").await;
    let joined = bob.join("general").await;
    assert_eq!(joined["room"], "general");
    assert_eq!(joined["payload"]["room"], "general");
    assert_eq!(joined["payload"]["memberCount"], 2);
    let mut members: Vec<String> = joined["payload"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_owned())
        .collect();
    members.sort();
    assert_eq!(members, ["alice", "bob"]);
    let notice = alice.expect("user_joined").await;
    assert_eq!(notice["room"], "general");
    assert_eq!(notice["userId"], "bob");
    assert_eq!(notice["payload"]["userId"], "bob");
    assert!(notice["timestamp"].as_u64().unwrap() > 0);
    bob.expect_nothing_pending().await;
}

#[tokio::test]
async fn messages_reach_every_other_member_and_only_them() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    let mut carol = server.member("carol", "general").await;
    let mut dave = server.member("dave", "random").await;
    alice.expect("user_joined").await;
    alice.expect("user_joined").await;
    bob.expect("user_joined").await;

    alice
        .send_type(
            "message",
            json!({"room": "general", "content": "Hello", "mood": "happy"}),
        )
        .await;
    for member in [&mut bob, &mut carol] {
        let message = member.expect("message").await;
        assert_eq!(message["room"], "general");
        assert_eq!(message["userId"], "alice");
        assert_eq!(
            message["payload"],
            json!({"content": "Hello", "mood": "happy"})
        );
        assert!(message["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
    alice.expect_nothing_pending().await;
    dave.expect_nothing_pending().await;
}

#[tokio::test]
async fn non_members_get_not_in_room() {
    let server = TestServer::start().await;
    let _alice = server.member("alice", "general").await;
    let mut eve = server.connect("eve").await;
    eve.send(
        json!({"type": "message", "payload": {"room": "general", "content": "hi"}, "id": "x1"}),
    )
    .await;
    let error = eve.expect_error("NOT_IN_ROOM").await;
    assert_eq!(error["id"], "x1");
    assert_eq!(error["payload"]["id"], "x1");
    eve.send_type("leave_room", json!({"room": "general"}))
        .await;
    eve.expect_error("NOT_IN_ROOM").await;
}

#[tokio::test]
async fn leaving_notifies_and_the_last_leave_deletes_the_room() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    assert_eq!(server.stats().await["rooms"], 1);

    bob.send_type("leave_room", json!({"room": "general"}))
        .await;
    let left = bob.expect("room_left").await;
    assert_eq!(left["room"], "general");
    let notice = alice.expect("user_left").await;
    assert_eq!(notice["userId"], "bob");
    bob.send_type(
        "message",
        json!({"room": "general", "content": "still here?"}),
    )
    .await;
    bob.expect_error("NOT_IN_ROOM").await;

    alice
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    alice.expect("room_left").await;
    assert_eq!(server.stats().await["rooms"], 0);
    assert!(server.hub.rooms().is_empty());
}

#[tokio::test]
async fn disconnecting_leaves_every_room() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "one").await;
    alice.join("two").await;
    let mut bob = server.member("bob", "one").await;
    bob.join("two").await;
    alice.expect("user_joined").await;
    alice.expect("user_joined").await;
    drop(bob);
    // One offline presence (not one per shared room), then user_left for each room.
    assert_eq!(
        alice.expect("presence").await["payload"]["status"],
        "offline"
    );
    for _ in 0..2 {
        let notice = alice.expect("user_left").await;
        assert_eq!(notice["userId"], "bob");
    }
    drop(alice);
    wait_until("both rooms are deleted", || server.hub.stats().rooms == 0).await;
    assert!(server.hub.rooms().is_empty());
}

#[tokio::test]
async fn a_second_tab_is_not_a_second_member() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob_tab1 = server.member("bob", "general").await;
    alice.expect("user_joined").await;
    let mut bob_tab2 = server.connect("bob").await;
    let joined = bob_tab2.join("general").await;
    assert_eq!(joined["payload"]["memberCount"], 2);
    alice.expect_nothing_pending().await;
    bob_tab1.expect_nothing_pending().await;

    bob_tab2
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    bob_tab2.expect("room_left").await;
    alice.expect_nothing_pending().await;
    bob_tab1
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    assert_eq!(alice.expect("user_left").await["userId"], "bob");
}

#[tokio::test]
async fn joining_twice_is_harmless() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let again = alice.join("general").await;
    assert_eq!(again["payload"]["memberCount"], 1);
    assert_eq!(
        server
            .hub
            .room_connections(&switchboard::ids::RoomId::from_trusted("general"))
            .len(),
        1
    );
}

#[tokio::test]
async fn room_cap_per_connection_is_enforced_at_its_edge() {
    let server = TestServer::with(|s| s.max_rooms_per_connection = Some(3)).await;
    let mut alice = server.connect("alice").await;
    for room in ["a", "b", "c"] {
        alice.join(room).await;
    }
    alice.send_type("join_room", json!({"room": "d"})).await;
    alice.expect_error("LIMIT_EXCEEDED").await;
    alice.join("c").await;
    alice.send_type("leave_room", json!({"room": "a"})).await;
    alice.expect("room_left").await;
    alice.join("d").await;
}

#[tokio::test]
async fn broadcast_reaches_every_connection() {
    let server = TestServer::start().await;
    let mut alice = server.connect("alice").await;
    let mut bob = server.member("bob", "general").await;
    let mut anon = Client::connect(&server.url("/ws")).await;
    alice
        .send_type("broadcast", json!({"content": "maintenance at noon"}))
        .await;
    for client in [&mut alice, &mut bob, &mut anon] {
        let frame = client.expect("broadcast").await;
        assert_eq!(frame["userId"], "alice");
        assert_eq!(frame["payload"]["content"], "maintenance at noon");
    }
}
