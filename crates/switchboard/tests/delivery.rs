//! The fan-out path seen from outside: the library handle's sends, slow consumers, and /stats.

#![allow(clippy::unwrap_used)]

mod common;

use serde_json::json;
use switchboard::ids::{ConnId, RoomId, UserId};
use switchboard::protocol::{CloseCode, ServerFrame, ServerKind};
use switchboard_testkit::{TestServer, http_get};

#[tokio::test]
async fn the_library_handle_sends_to_rooms_users_and_everyone() {
    let server = TestServer::start().await;
    let mut alice = server.member("alice", "general").await;
    let mut bob = server.member("bob", "general").await;
    let mut bob_phone = server.connect("bob").await;
    let mut carol = server.connect("carol").await;
    alice.expect("user_joined").await;
    let hub = &server.hub;
    let general = RoomId::from_trusted("general");

    let notice =
        ServerFrame::custom("notice", json!({"text": "room, except alice"})).room("general");
    let except = ConnId::parse(alice.connection_id());
    assert_eq!(hub.send_to_room(&general, &notice, except), 1);
    assert_eq!(
        bob.expect("notice").await["payload"]["text"],
        "room, except alice"
    );
    alice.expect_nothing_pending().await;

    let dm = ServerFrame::custom("notification", json!({"text": "hi bob"})).stamped();
    assert_eq!(hub.send_to_user(&UserId::from_trusted("bob"), &dm), 2);
    bob.expect("notification").await;
    bob_phone.expect("notification").await;
    carol.expect_nothing_pending().await;

    let everyone = ServerFrame::new(ServerKind::Broadcast, json!({"content": "system update"}));
    assert_eq!(hub.broadcast(&everyone), 4);
    for client in [&mut alice, &mut bob, &mut bob_phone, &mut carol] {
        assert_eq!(
            client.expect("broadcast").await["payload"]["content"],
            "system update"
        );
    }

    let closed = hub.disconnect_user(&UserId::from_trusted("bob"), CloseCode::Policy, "kicked");
    assert_eq!(closed, 2);
    assert_eq!(bob.close_code().await, 1008);
    assert_eq!(bob_phone.close_code().await, 1008);
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_the_others_get_everything() {
    let server = TestServer::with(|s| s.max_queued_bytes = Some("256KiB".parse().unwrap())).await;
    common::stalled::a_stalled_member_is_shed(&server).await;
}

#[tokio::test]
async fn stats_report_live_values_with_the_four_fields_first() {
    let server = TestServer::start().await;
    let _a1 = server.member("alice", "general").await;
    let _a2 = server.member("alice", "random").await;
    let _b = server.member("bob", "general").await;
    let (status, body) = http_get(server.addr, "/stats").await;
    assert_eq!(status, 200);
    let positions: Vec<usize> = [
        "\"connections\"",
        "\"rooms\"",
        "\"onlineUsers\"",
        "\"channels\"",
    ]
    .iter()
    .map(|field| body.find(field).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
    assert!(body.starts_with("{\"connections\""), "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["rooms"], 2);
    assert_eq!(stats["onlineUsers"], 2);
    assert_eq!(stats["channels"], 0);
    assert_eq!(stats["messagesIn"], 3);
    assert!(stats["uptimeSeconds"].is_u64());
    assert_eq!(stats["broker"], "local");
    assert_eq!(stats["brokerStatus"], "connected");
}

#[tokio::test]
async fn health_and_readiness() {
    let server = TestServer::start().await;
    let (status, body) = http_get(server.addr, "/health").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = http_get(server.addr, "/ready").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let hub = server.hub.clone();
    hub.shutdown();
    let (status, body) = http_get(server.addr, "/ready").await;
    assert_eq!((status, body.as_str()), (503, r#"{"status":"draining"}"#));
}
