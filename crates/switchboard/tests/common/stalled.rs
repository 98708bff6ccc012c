//! The slow-consumer scenario, run against more than one kind of server (the portable write
//! path in `delivery.rs`, io_uring in `io_uring.rs`): a member that never reads is shed, and
//! the others get everything.

use serde_json::json;
use switchboard::ids::RoomId;
use switchboard::protocol::{ServerFrame, ServerKind};
use switchboard_testkit::{RawClient, TestServer, wait_until};

/// Puts a reader and a client that never reads in one room of `server` (whose outbound limit
/// is 256 KiB), floods the room with 40 MB in 64 KB messages (far more than the kernel's
/// socket buffers and the limit), and checks that the reader gets every message and the
/// stalled client's departure (offline presence, then one `user_left`) among them, and that
/// the node drops the stalled client as a slow consumer, with nothing more for the reader.
pub(crate) async fn a_stalled_member_is_shed(server: &TestServer) {
    let mut reader = server.member("reader", "feed").await;
    let mut stalled = RawClient::connect(server.addr, "/?userId=stalled").await;
    stalled
        .send_frame(0x81, br#"{"type":"join_room","payload":{"room":"feed"}}"#)
        .await;
    reader.expect("user_joined").await;
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
