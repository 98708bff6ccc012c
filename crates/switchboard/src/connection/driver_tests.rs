//! The driver over an in-memory stream, with tokio's clock paused: its close state machine
//! (graceful, abortive, started by the client, forced by a protocol violation), the slow
//! consumer it drops, and the traffic that keeps its connection from idling. Closes are
//! triggered the way the server triggers them: shutdown, the sweeps, an overflowing outbox.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode as WireOpCode};

use super::super::testing::{self, Received, Served, close, text};
use super::*;
use crate::protocol::{ServerFrame, ServerKind};
use crate::ws::frame::OpCode;

/// A server frame of type `note` carrying `n`.
fn note(n: u64) -> ServerFrame<'static, serde_json::Value> {
    ServerFrame::custom("note", json!({ "n": n }))
}

/// `frame` masked, as a client sends it.
fn masked(mut frame: Frame) -> Vec<u8> {
    let mut bytes = Vec::new();
    frame.header_mut().mask = Some([1, 2, 3, 4]);
    frame.format(&mut bytes).expect("a frame formats");
    bytes
}

/// Asserts that the connection's task ended without waiting for anything (no time passed).
async fn ends_at_once(task: &mut tokio::task::JoinHandle<()>) {
    let started = Instant::now();
    testing::ended(task).await;
    assert_eq!(started.elapsed(), Duration::ZERO, "the connection waited");
}

#[tokio::test(start_paused = true)]
async fn a_graceful_close_writes_the_queue_then_the_close_then_waits_for_the_client() {
    let hub = testing::hub(|_| {});
    let Served {
        mut client,
        handle,
        mut task,
    } = testing::open(&hub, "alice");
    client.expect("connect").await;
    for n in 0..3 {
        assert!(hub.send_to_connection(handle.id(), &note(n)));
    }
    assert_eq!(hub.shutdown(), 1);
    for n in 0..3 {
        assert_eq!(client.expect("note").await["payload"]["n"], n);
    }
    assert_eq!(
        client.expect_close().await,
        (Some(1001), "server shutting down".to_owned())
    );
    // Just before the deadline the connection is still waiting for the client's close.
    tokio::time::sleep(CLOSE_TIMEOUT - Duration::from_millis(1)).await;
    assert!(!task.is_finished(), "ended before the client closed");
    assert_eq!(hub.stats().connections, 1);
    client.send([close(1001, "")]).await;
    ends_at_once(&mut task).await;
    client.expect_eof().await;
    assert_eq!(hub.stats().connections, 0);
}

#[tokio::test(start_paused = true)]
async fn a_graceful_close_gives_up_on_a_silent_client_at_the_deadline() {
    let hub = testing::hub(|_| {});
    let Served {
        mut client,
        mut task,
        ..
    } = testing::open(&hub, "alice");
    client.expect("connect").await;
    let closing = Instant::now();
    hub.shutdown();
    assert_eq!(client.expect_close().await.0, Some(1001));
    testing::ended(&mut task).await;
    let waited = closing.elapsed();
    assert!(
        waited >= CLOSE_TIMEOUT && waited <= CLOSE_TIMEOUT + Duration::from_millis(5),
        "waited {waited:?}"
    );
    client.expect_eof().await;
    assert_eq!(hub.stats().connections, 0);
}

#[tokio::test(start_paused = true)]
async fn an_abortive_close_drops_the_queue_and_does_not_wait_for_the_client() {
    let hub = testing::hub(|_| {});
    let Served {
        mut client,
        handle,
        mut task,
    } = testing::open(&hub, "alice");
    client.expect("connect").await;
    // The client answers nothing, not even pings, for a whole heartbeat timeout.
    tokio::time::advance(hub.config().heartbeat.timeout).await;
    for n in 0..3 {
        assert!(hub.send_to_connection(handle.id(), &note(n)));
    }
    assert_eq!(hub.heartbeat_sweep().timed_out, 1);
    // The queued notes were dropped: the close frame is next, and the server does not wait.
    assert_eq!(
        client.expect_close().await,
        (Some(1000), "heartbeat timeout".to_owned())
    );
    ends_at_once(&mut task).await;
    client.expect_eof().await;
    assert_eq!(hub.stats().connections, 0);
}

#[tokio::test(start_paused = true)]
async fn a_close_from_the_client_is_echoed_and_nothing_after_it_is_read() {
    let hub = testing::hub(|_| {});
    let Served {
        mut client,
        mut task,
        ..
    } = testing::open(&hub, "alice");
    client.expect("connect").await;
    let join = text(r#"{"type":"join_room","payload":{"room":"lobby"}}"#);
    client.send([close(4000, "bye"), join]).await;
    assert_eq!(client.expect_close().await, (Some(4000), String::new()));
    ends_at_once(&mut task).await;
    client.expect_eof().await;
    assert_eq!(
        hub.stats().rooms,
        0,
        "the join after the close was acted on"
    );

    // An empty close frame is answered with 1000.
    let Served {
        mut client,
        mut task,
        ..
    } = testing::open(&hub, "bob");
    client.expect("connect").await;
    client.send([Frame::close(None)]).await;
    assert_eq!(client.expect_close().await, (Some(1000), String::new()));
    ends_at_once(&mut task).await;
    client.expect_eof().await;
}

#[tokio::test(start_paused = true)]
async fn a_protocol_violation_closes_with_its_code_after_the_replies_before_it() {
    let hub = testing::hub(|config| config.limits.max_frame_size = 1024);
    let mut unmasked = Vec::new();
    text("{}").format(&mut unmasked).expect("a frame formats");
    let invalid_utf8 = Frame::message(vec![0xC3, 0x28], WireOpCode::Data(Data::Text), true);
    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("an unmasked frame", unmasked, 1002),
        ("invalid UTF-8", masked(invalid_utf8), 1007),
        (
            "a frame over the limit",
            masked(text(&"x".repeat(1025))),
            1009,
        ),
    ];
    for (what, bad, code) in cases {
        let Served {
            mut client,
            mut task,
            ..
        } = testing::open(&hub, "mallory");
        client.expect("connect").await;
        // A good frame and the bad one in one write: the good one is answered first.
        let mut bytes = masked(text(r#"{"type":"ping","payload":{"n":1}}"#));
        bytes.extend_from_slice(&bad);
        client.send_raw(&bytes).await;
        assert_eq!(client.expect("pong").await["payload"]["n"], 1, "{what}");
        assert_eq!(client.expect_close().await.0, Some(code), "{what}");
        // The stream cannot be parsed any further: the server closes without waiting.
        ends_at_once(&mut task).await;
        client.expect_eof().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_outbox_over_its_limit_closes_the_connection_with_1013() {
    // Notes larger than the `connect` frame, which must fit.
    let note = ServerFrame::custom("note", "x".repeat(1000));
    let hub = testing::hub(|config| config.limits.max_queued_bytes = 3 * note.encode().len());
    let Served {
        mut client,
        handle,
        mut task,
    } = testing::open(&hub, "slow");
    client.expect("connect").await;
    // Queued while the connection's task does not run: three fit, the fourth overflows.
    let queued: Vec<bool> = (0..4)
        .map(|_| hub.send_to_connection(handle.id(), &note))
        .collect();
    assert_eq!(queued, [true, true, true, false]);
    assert_eq!(
        client.expect_close().await,
        (Some(1013), "slow consumer: outbound queue full".to_owned())
    );
    ends_at_once(&mut task).await;
    client.expect_eof().await;
    assert_eq!(hub.stats().slow_consumers_dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_without_waiting_for_it() {
    let hub = testing::hub(|config| config.limits.max_queued_bytes = 16 * 1024);
    let Served {
        mut client,
        handle,
        mut task,
    } = testing::open(&hub, "stalled");
    client.expect("connect").await;
    // The client reads nothing more: the stream fills up, then the outbox overflows.
    let big = ServerFrame::custom("note", "x".repeat(1000));
    let mut sent = 0;
    while hub.send_to_connection(handle.id(), &big) {
        sent += 1;
        assert!(sent < 1000, "the outbox never overflowed");
        tokio::task::yield_now().await;
    }
    // The close frame gets one try, which a full stream refuses; the server does not wait.
    ends_at_once(&mut task).await;
    assert_eq!(hub.stats().slow_consumers_dropped, 1);
    // What the stream held arrives; what was still queued was dropped.
    let frames = client.until_eof().await;
    assert!(
        frames
            .iter()
            .all(|frame| matches!(frame, Received::Text(_))),
        "only notes arrive"
    );
    assert!(
        frames.len() < sent,
        "{} of {sent} notes arrived",
        frames.len()
    );
}

#[tokio::test(start_paused = true)]
async fn deliveries_keep_a_connection_from_idling_and_heartbeats_do_not() {
    let hub = testing::hub(|config| {
        config.heartbeat.app_ping = true;
        // Neither client answers pings; this test is about the idle timeout only.
        config.heartbeat.timeout = Duration::from_secs(24 * 3600);
    });
    let idle = hub
        .config()
        .idle_timeout
        .expect("an idle timeout by default");
    let mut listener = testing::open(&hub, "listener");
    let mut quiet = testing::open(&hub, "quiet");
    listener.client.expect("connect").await;
    quiet.client.expect("connect").await;
    let started = Instant::now();
    // A minute passes: the listener gets a note, both get both heartbeats.
    let (hub_ref, listener_id) = (&hub, listener.handle.id());
    let minute = || async move {
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(hub_ref.send_to_connection(listener_id, &note(0)));
        hub_ref.heartbeat_sweep();
    };
    loop {
        minute().await;
        // Reading what was sent proves the connections' tasks took it.
        listener.client.expect("note").await;
        for client in [&mut listener.client, &mut quiet.client] {
            assert_eq!(client.next().await, Some(Received::Ping(Vec::new())));
            client.expect("ping").await;
        }
        if hub.cleanup_sweep().idle_closed > 0 {
            break;
        }
        assert!(started.elapsed() < idle, "nothing was closed as idle");
    }
    assert_eq!(
        started.elapsed(),
        idle,
        "the quiet one is closed at the timeout"
    );
    assert_eq!(
        quiet.client.expect_close().await,
        (Some(1000), "idle timeout".to_owned())
    );
    // The listener never sent a message, yet stays open as long as it receives.
    for _ in 0..10 {
        minute().await;
        listener.client.expect("note").await;
        assert_eq!(
            listener.client.next().await,
            Some(Received::Ping(Vec::new()))
        );
        listener.client.expect("ping").await;
        assert_eq!(hub.cleanup_sweep().idle_closed, 0);
    }
    assert!(listener.handle.closing_since().is_none());
    assert!(!listener.task.is_finished());
}

#[test]
fn data_frames_are_traffic_and_heartbeats_are_not() {
    // The app-level heartbeat, as the heartbeat sweep builds it.
    let app_ping = ServerFrame::new(ServerKind::Ping, json!({ "timestamp": 1 })).encode();
    assert!(!is_traffic(&app_ping));
    assert!(!is_traffic(&frame::ping_frame()));
    assert!(!is_traffic(&frame::frame(OpCode::Pong, b"")));
    assert!(!is_traffic(&frame::close_frame(1000, "idle timeout")));
    assert!(is_traffic(
        &ServerFrame::new(ServerKind::Pong, json!({})).encode()
    ));
    assert!(is_traffic(
        &ServerFrame::new(ServerKind::Message, json!({}))
            .room("ping")
            .encode()
    ));
    assert!(is_traffic(&frame::frame(OpCode::Binary, b"\x81")));
    assert!(is_traffic(&frame::frame(OpCode::Binary, b"")));
    // The same frames in MessagePack, as the hub transcodes them for a MessagePack client.
    let msgpack = |frame: &bytes::Bytes| {
        let json = frame::server_payload(frame);
        let packed = switchboard_protocol::msgpack::from_json(json).unwrap();
        frame::frame(OpCode::Binary, &packed)
    };
    assert!(!is_traffic(&msgpack(&app_ping)));
    assert!(is_traffic(&msgpack(
        &ServerFrame::new(ServerKind::Pong, json!({})).encode()
    )));
    // Long frames have longer headers; the payload is found behind each.
    for len in [200, 70_000] {
        let data = "x".repeat(len);
        assert!(is_traffic(
            &ServerFrame::new(ServerKind::Message, &data).encode()
        ));
        assert!(!is_traffic(
            &ServerFrame::new(ServerKind::Ping, &data).encode()
        ));
    }
}
