//! The fan-out path seen from outside: the library handle's sends, slow consumers, and /stats.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use switchboard::ids::{ConnId, RoomId, UserId};
use switchboard::protocol::{CloseCode, ServerFrame, ServerKind};
use switchboard_testkit::{RawClient, TestServer, http_get, wait_until};

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
    let mut reader = server.member("reader", "feed").await;
    let mut stalled = RawClient::connect(server.addr, "/?userId=stalled").await;
    stalled
        .send_frame(0x81, br#"{"type":"join_room","payload":{"room":"feed"}}"#)
        .await;
    reader.expect("user_joined").await;

    // 40 MB in 64 KB messages: far more than the kernel's socket buffers and the 256 KiB
    // outbound limit, so the stalled client's queue must overflow.
    let chunk = "x".repeat(64 * 1024);
    let frame = ServerFrame::new(ServerKind::Message, json!({ "content": chunk })).room("feed");
    let feed = RoomId::from_trusted("feed");
    let count = 640;
    let hub = server.hub.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            hub.send_to_room(&feed, &frame, None);
            tokio::task::yield_now().await;
        }
    });
    // The reader gets every message, and the stalled client's departure (offline presence,
    // then user_left) somewhere among them.
    let (mut messages, mut left) = (0, 0);
    while messages < count || left == 0 {
        let frame = reader.recv().await;
        match frame["type"].as_str().unwrap() {
            "message" => messages += 1,
            "user_left" => {
                assert_eq!(frame["userId"], "stalled");
                left += 1;
            }
            "presence" => assert_eq!(frame["payload"]["status"], "offline"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((messages, left), (count, 1));
    sender.await.unwrap();
    wait_until("the stalled client is dropped", || {
        let stats = server.hub.stats();
        stats.slow_consumers_dropped == 1 && stats.connections == 1
    })
    .await;
    reader.expect_nothing_pending().await;
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
