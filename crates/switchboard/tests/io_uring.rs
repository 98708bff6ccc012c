//! `--io-uring` against a real server on a runtime with the park hook, as the binary runs it:
//! delivery, per-connection order under bursts larger than one batch (more connections than a
//! ring's entries, more frames than one send), a slow consumer shed with 1013, and clients
//! that go away with sends in flight while the others keep everything; and the binary, whose
//! runtime installs the hook itself.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;

use common::Running;
use serde_json::json;
use switchboard::ids::RoomId;
use switchboard::protocol::{ServerFrame, ServerKind};
use switchboard_testkit::{Client, TestServer, http_get, wait_until};

/// Runs `test` on a two-worker runtime that flushes each worker's ring when it parks.
fn on_uring_runtime(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_park(switchboard::uring::on_thread_park)
        .build()
        .unwrap()
        .block_on(test);
}

async fn uring_server(configure: impl FnOnce(&mut switchboard::config::RawSettings)) -> TestServer {
    TestServer::with(|settings| {
        settings.io_uring = Some(true);
        configure(settings);
    })
    .await
}

/// Sends `count` numbered messages to `room` from the library handle, yielding between them
/// so the connections write while more arrive.
async fn publish_numbered(server: &TestServer, room: &str, count: u64) {
    let room = RoomId::from_trusted(room);
    for seq in 0..count {
        let frame =
            ServerFrame::new(ServerKind::Message, json!({ "seq": seq })).room(room.as_str());
        server.hub.send_to_room(&room, &frame, None);
        if seq % 16 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

/// Reads `count` messages and checks they are numbered 0, 1, 2, ... in order.
async fn expect_in_order(client: &mut Client, count: u64) {
    for want in 0..count {
        let frame = client.expect("message").await;
        assert_eq!(frame["payload"]["seq"], want, "out of order");
    }
}

#[test]
fn every_member_gets_a_burst_in_order_through_the_ring() {
    on_uring_runtime(async {
        let server = uring_server(|_| {}).await;
        let before = switchboard::uring::sends_submitted();
        // More members than a ring's 256 entries: one wake-up fills the queue and flushes it.
        let mut members = Vec::new();
        for index in 0..300 {
            members.push(server.member(&format!("u{index}"), "burst").await);
        }
        // Each member's notices of the later joins, then the burst: far more frames than one
        // send of 64 buffers.
        publish_numbered(&server, "burst", 500).await;
        for member in &mut members {
            loop {
                let frame = member.recv().await;
                if frame["type"] == "message" {
                    assert_eq!(frame["payload"]["seq"], 0, "the burst did not start at 0");
                    break;
                }
            }
        }
        for member in &mut members {
            for want in 1..500 {
                let frame = member.expect("message").await;
                assert_eq!(frame["payload"]["seq"], want, "out of order");
            }
        }
        assert!(
            switchboard::uring::sends_submitted() > before,
            "nothing went through the ring"
        );
    });
}

#[test]
fn a_slow_consumer_is_shed_with_1013_and_the_others_get_everything() {
    on_uring_runtime(async {
        let server = uring_server(|s| s.max_queued_bytes = Some("256KiB".parse().unwrap())).await;
        common::stalled::a_stalled_member_is_shed(&server).await;
        let (_, metrics) = http_get(server.addr, "/metrics").await;
        assert!(
            metrics
                .lines()
                .any(|line| line.contains(r#"initiator="server",code="1013"} 1"#)),
            "no 1013 close counted"
        );
    });
}

#[test]
fn clients_that_leave_with_sends_in_flight_harm_no_one() {
    on_uring_runtime(async {
        let server = uring_server(|_| {}).await;
        let mut stayers = Vec::new();
        let mut leavers = Vec::new();
        for index in 0..20 {
            stayers.push(server.member(&format!("stay{index}"), "churn").await);
            leavers.push(server.member(&format!("leave{index}"), "churn").await);
        }
        let room = RoomId::from_trusted("churn");
        let mut seq = 0u64;
        // Publish, and between batches reset leavers' sockets without a close: their sends
        // are queued on a ring or being written when their sockets go.
        for leaver in leavers {
            for _ in 0..50 {
                let frame =
                    ServerFrame::new(ServerKind::Message, json!({ "seq": seq })).room("churn");
                server.hub.send_to_room(&room, &frame, None);
                seq += 1;
            }
            leaver.reset();
            tokio::task::yield_now().await;
        }
        wait_until("the leavers are gone", || {
            server.hub.stats().connections == 20
        })
        .await;
        for stayer in &mut stayers {
            let mut want = 0;
            while want < seq {
                let frame = stayer.recv().await;
                if frame["type"] == "message" {
                    assert_eq!(frame["payload"]["seq"], want, "out of order");
                    want += 1;
                }
            }
        }
        // The server still serves: a new member gets a fresh message.
        let mut late = server.member("late", "churn").await;
        publish_numbered(&server, "churn", 1).await;
        expect_in_order(&mut late, 1).await;
    });
}

#[test]
fn the_binary_writes_through_its_workers_rings() {
    on_uring_runtime(async {
        let server = Running::start(&["--io-uring", "--rate-limit", "0"], &[]).await;
        let url = |user: &str| format!("ws://{}/?userId={user}", server.addr);
        let mut alice = Client::connect(&url("alice")).await;
        alice.join("general").await;
        let mut bob = Client::connect(&url("bob")).await;
        bob.join("general").await;
        alice.expect("user_joined").await;
        for seq in 0..100 {
            bob.send_type(
                "message",
                json!({"room": "general", "content": seq.to_string()}),
            )
            .await;
        }
        let mut seq = 0;
        while seq < 100 {
            let frame = alice.recv().await;
            if frame["type"] == "message" {
                assert_eq!(frame["payload"]["content"], seq.to_string(), "out of order");
                seq += 1;
            }
        }
        // The rings are the process's own: each worker that parked opened one.
        let rings = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().contains("io_uring"))
            .count();
        assert!(rings > 0, "the binary opened no io_uring");
        server.terminate().await;
    });
}
