//! `--max-memory` against the real binary (its allocator, its resident memory): a client that
//! never reads makes its queue grow until the process is over the limit; then new connections
//! get 1013, the slow client is shed with 1013, other clients keep working, `/ready` says so;
//! and once the memory is released, connections are accepted again.
//!
//! The limit is set relative to the binary's own resident memory after start, read from a
//! first process of the same binary. Every step waits for what `/stats` reports, with a
//! deadline; none waits a fixed time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Running;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_testkit::{Client, RawClient, WAIT, http_get, http_json, masked_frame};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Headroom above the start-up footprint: what the messages must add to cross the limit.
const HEADROOM: u64 = 40 << 20;

/// Size of one published message: the history keeps [`HISTORY`] of them.
const MESSAGE: usize = 1 << 20;

/// Messages kept per room; more than the headroom in MiB, so that the history alone holds the
/// process over the limit once a room has that many.
const HISTORY: usize = 64;

/// How long the allocator may take to return freed memory to the system (jemalloc's decay is
/// 10 s by default).
const RELEASE_WAIT: Duration = Duration::from_secs(60);

/// The resident memory of process `pid`, in bytes (`VmRSS`).
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

async fn stats(addr: SocketAddr) -> Value {
    http_json(addr, "GET", "/stats", None, &[]).await.1
}

fn url(addr: SocketAddr, user: &str) -> String {
    format!("ws://{addr}/?userId={user}")
}

/// Posts a `message` of `content` to `room` through the server API.
async fn publish(addr: SocketAddr, room: &str, content: &str) {
    let body = json!({ "payload": { "content": content } });
    let path = format!("/api/rooms/{room}/messages");
    let (status, reply) = http_json(addr, "POST", &path, Some(&body), &[]).await;
    assert_eq!(status, 200, "{reply}");
}

/// Polls `/stats` until `done` holds on it, at most `within`; returns the last reading.
async fn stats_until(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let now = stats(addr).await;
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a WebSocket and says how the server ended it (the server upgrades, then closes).
async fn refused_code(addr: SocketAddr, user: &str) -> u16 {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url(addr, user)))
        .await
        .expect("connect timed out")
        .expect("the upgrade is answered");
    Client::upgraded(ws).close_code().await
}

/// Joins the big room as a client that reads everything; returns the rest of its reading,
/// which ends with the connection.
async fn reader(addr: SocketAddr) -> impl std::future::Future<Output = ()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url(addr, "reader"))
        .await
        .expect("the reader connects");
    let join = json!({ "type": "join_room", "payload": { "room": "big" } });
    ws.send(Message::text(join.to_string())).await.unwrap();
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
        if let Some(Ok(Message::Text(text))) = frame
            && text.contains("\"room_joined\"")
        {
            break;
        }
    }
    async move { while let Some(Ok(_)) = ws.next().await {} }
}

/// The binary's resident memory after start and one connection.
async fn startup_footprint() -> u64 {
    let probe = Running::start(&[], &[]).await;
    let _client = Client::connect(&url(probe.addr, "probe")).await;
    resident(probe.pid())
}

/// The binary with `limit` as `--max-memory`, queues and frames large enough for the test's
/// messages, [`HISTORY`] messages kept per room, and the server API open.
async fn start_with_limit(limit: u64) -> Running {
    let limit_arg = limit.to_string();
    let history = HISTORY.to_string();
    Running::start(
        &[
            "--max-memory",
            &limit_arg,
            "--max-queued-bytes",
            "512MiB",
            "--max-frame-size",
            "2MiB",
            "--max-content-length",
            "2000000",
            "--history-size",
            &history,
            "--rate-limit",
            "0",
            "--api-insecure",
        ],
        &[],
    )
    .await
}

/// A member of the big room that never reads after its `room_joined`.
async fn slow_member(addr: SocketAddr) -> RawClient {
    let mut slow = RawClient::connect(addr, "/?userId=slow").await;
    slow.read_frame().await; // connect
    slow.send_frame_bytes(&masked_frame(
        0x81,
        br#"{"type":"join_room","payload":{"room":"big"}}"#,
    ))
    .await;
    slow.read_frame().await; // room_joined
    slow
}

/// Publishes big messages to the big room until a member is shed and the history alone holds
/// the process over the limit (more messages than the headroom in MiB).
async fn publish_until_shed(addr: SocketAddr) {
    let content = "x".repeat(MESSAGE);
    let mut published = 0;
    loop {
        let now = stats(addr).await;
        let shed = now["memoryShed"].as_u64().unwrap();
        if shed > 0 && published > (HEADROOM >> 20) as usize {
            assert_eq!(shed, 1, "only the slow member is shed: {now}");
            assert_eq!(now["memoryPressure"], true, "{now}");
            return;
        }
        assert!(
            published < 4 * HISTORY,
            "not shed after {published} messages: {now}"
        );
        publish(addr, "big", &content).await;
        published += 1;
    }
}

#[tokio::test]
async fn over_max_memory_the_node_refuses_and_sheds_the_largest_queue_then_recovers() {
    let server = start_with_limit(startup_footprint().await + HEADROOM).await;
    let addr = server.addr;

    // A client elsewhere, which must not notice anything.
    let mut calm = Client::connect(&url(addr, "calm")).await;
    calm.join("calm").await;
    // A member of the big room that reads everything, so that the room and its history stay.
    let reading = tokio::spawn(reader(addr).await);
    // A member that never reads: its queue grows with every message until it is shed.
    let mut slow = slow_member(addr).await;
    publish_until_shed(addr).await;

    // Under pressure: new connections are refused with 1013, /ready says why.
    assert_eq!(refused_code(addr, "late").await, 1013);
    let (status, body) = http_get(addr, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("memory_pressure"), "{body}");
    let now = stats(addr).await;
    assert!(now["memoryRefused"].as_u64().unwrap() >= 1, "{now}");
    assert!(now["connectionsRefused"].as_u64().unwrap() >= 1, "{now}");

    // The slow member's connection was closed, its queue dropped. Its close frame (1013) is
    // written once if its socket has room, as for any abortive close: a client that reads
    // nothing has left none, so it may see the end of the stream instead.
    let code = slow.read_close().await;
    assert!(matches!(code, None | Some(1013)), "{code:?}");
    stats_until(addr, WAIT, "the slow member is gone", |s| {
        s["connections"] == 2
    })
    .await;
    // The calm client still works.
    calm.send_type("ping", json!({ "n": 1 })).await;
    assert_eq!(calm.expect("pong").await["payload"]["n"], 1);
    let metrics = http_get(addr, "/metrics").await.1;
    assert!(
        metrics.contains("switchboard_memory_shed_connections_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_memory_pressure 1"),
        "{metrics}"
    );

    // Small messages push the big ones out of the history; once the allocator returns their
    // memory the node is under the low-water mark and accepts connections again.
    for n in 0..HISTORY {
        publish(addr, "big", &n.to_string()).await;
    }
    stats_until(addr, RELEASE_WAIT, "the pressure ends", |s| {
        s["memoryPressure"] == false
    })
    .await;
    let mut late = Client::connect(&url(addr, "late")).await;
    late.join("calm").await;
    assert_eq!(http_get(addr, "/ready").await.0, 200);
    let now = stats(addr).await;
    assert_eq!(now["memoryShed"], 1, "{now}");
    reading.abort();
}
