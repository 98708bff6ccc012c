use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::registry::Refusal;
use super::*;
use crate::broker::{LocalBroker, LocalBus};
use crate::config::Config;
use crate::ids::ChannelSpec;
use crate::protocol::ServerKind;

fn config() -> HubConfig {
    let mut config = Config::default().hub;
    config.limits.max_connections = 3;
    config.limits.max_connections_per_user = 2;
    config.limits.max_queued_bytes = 64 << 10;
    config
}

pub(super) fn hub() -> Hub {
    Hub::new(
        config(),
        Arc::new(LocalBroker::standalone()),
        Arc::new(crate::cluster::NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    )
}

pub(super) fn user(name: &str) -> UserId {
    UserId::from_trusted(name)
}

fn room(name: &str) -> RoomId {
    RoomId::from_trusted(name)
}

/// Joins `conn` to `room` as a client would, without `since`; the reply is taken off `conn`'s
/// queue (which holds nothing else where the tests join). Returns whether `conn` was new.
pub(super) fn join(hub: &Hub, room: &RoomId, conn: &ConnHandle) -> bool {
    let answered = hub.join_room(room, conn, request());
    drain(conn);
    answered == Answered::Now { new: true }
}

/// Subscribes `conn` to `spec` as a client would, without `since`; the reply is taken off
/// `conn`'s queue, as for [`join`].
pub(super) fn subscribe(hub: &Hub, spec: &ChannelSpec, conn: &ConnHandle) -> bool {
    let answered = hub.subscribe_conn(spec, conn, request());
    drain(conn);
    answered == Answered::Now { new: true }
}

/// A request without `since` or `id` whose reply is a marker frame.
fn request<T>() -> Request<T> {
    Request {
        since: None,
        reply: Box::new(|_| ServerFrame::custom("reply", serde_json::json!({})).encode()),
        id: None,
    }
}

/// Everything queued on `handle`, and the close request if any.
pub(super) fn drain(handle: &ConnHandle) -> (Vec<Bytes>, Option<CloseRequest>) {
    let mut out = Vec::new();
    match handle
        .outbox()
        .poll_take(&mut Context::from_waker(Waker::noop()), &mut out)
    {
        Poll::Ready(Taken { close }) => (out, close),
        Poll::Pending => (Vec::new(), None),
    }
}

#[test]
fn admission_enforces_node_and_user_limits_at_their_edges() {
    let hub = hub();
    let a1 = hub.register(user("a")).unwrap();
    let _a2 = hub.register(user("a")).unwrap();
    assert_eq!(hub.register(user("a")).err(), Some(Refusal::UserFull));
    let _b = hub.register(user("b")).unwrap();
    assert_eq!(hub.register(user("c")).err(), Some(Refusal::ServerFull));
    assert_eq!(hub.stats().connections, 3);
    assert_eq!(hub.stats().online_users, 2);
    assert_eq!(hub.stats().connections_refused, 2);
    hub.unregister(&a1);
    hub.unregister(&a1);
    assert_eq!(hub.stats().connections, 2);
    assert!(hub.register(user("c")).is_ok(), "a freed slot is reusable");
}

#[test]
fn users_share_one_rate_limiter() {
    let hub = hub();
    let a1 = hub.register(user("a")).unwrap();
    let a2 = hub.register(user("a")).unwrap();
    assert!(triomphe::Arc::ptr_eq(a1.user_state(), a2.user_state()));
    assert!(a1.user_state().limiter.is_some());
}

/// The `type`s of the frames queued on `handle`.
fn kinds(handle: &ConnHandle) -> Vec<String> {
    drain(handle)
        .0
        .iter()
        .map(|frame| {
            let json: serde_json::Value =
                serde_json::from_slice(crate::ws::frame::server_payload(frame)).unwrap();
            json["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn rooms_track_users_and_disappear_when_empty() {
    let hub = hub();
    let a1 = hub.register(user("a")).unwrap();
    let a2 = hub.register(user("a")).unwrap();
    let b = hub.register(user("b")).unwrap();
    let general = room("general");
    assert!(join(&hub, &general, &b));
    assert!(join(&hub, &general, &a1));
    assert_eq!(hub.member_list(&general, 10).count, 2);
    assert_eq!(kinds(&b), ["user_joined"], "the user's first connection");
    assert!(!join(&hub, &general, &a1));
    assert!(join(&hub, &general, &a2));
    assert_eq!(hub.member_list(&general, 10).users.len(), 2);
    assert!(kinds(&b).is_empty(), "a second tab is no news");
    assert_eq!(hub.stats().rooms, 1);
    assert_eq!(
        hub.rooms(),
        vec![RoomSummary {
            room: general.clone(),
            members: 2,
            connections: 3
        }]
    );
    assert!(hub.leave_room(&general, &a1));
    assert!(kinds(&b).is_empty(), "a tab of a is still in the room");
    assert!(!hub.leave_room(&general, &a1), "not a member any more");
    assert!(hub.leave_room(&general, &a2));
    assert_eq!(kinds(&b), ["user_left"]);
    assert!(
        kinds(&a1).is_empty() && kinds(&a2).is_empty(),
        "no echo to the user"
    );
    hub.leave_room(&general, &b);
    assert_eq!(hub.stats().rooms, 0);
    assert!(hub.rooms().is_empty());
}

#[test]
fn fan_out_shares_one_encoded_frame_and_honours_the_exclusion() {
    let hub = hub();
    let a = hub.register(user("a")).unwrap();
    let b = hub.register(user("b")).unwrap();
    let c = hub.register(user("c")).unwrap();
    let general = room("general");
    for h in [&a, &b, &c] {
        join(&hub, &general, h);
    }
    for h in [&a, &b, &c] {
        drain(h);
    }
    let sent_before = hub.stats().messages_out;
    let frame =
        ServerFrame::new(ServerKind::Message, serde_json::json!({"content": "hi"})).room("general");
    assert_eq!(hub.send_to_room(&general, &frame, Some(a.id())), 2);
    assert!(drain(&a).0.is_empty());
    let (to_b, _) = drain(&b);
    let (to_c, _) = drain(&c);
    assert_eq!(to_b.len(), 1);
    assert_eq!(
        to_b[0].as_ptr(),
        to_c[0].as_ptr(),
        "one buffer for every recipient"
    );
    assert_eq!(hub.stats().messages_out - sent_before, 2);
}

#[test]
fn a_full_queue_drops_the_slow_consumer_only() {
    let hub = hub();
    let slow = hub.register(user("slow")).unwrap();
    let fast = hub.register(user("fast")).unwrap();
    let general = room("general");
    join(&hub, &general, &slow);
    join(&hub, &general, &fast);
    let big = "x".repeat(10_000);
    let frame = ServerFrame::new(ServerKind::Message, serde_json::json!({ "content": big }));
    for _ in 0..10 {
        hub.send_to_room(&general, &frame, None);
        drain(&fast);
    }
    let (queued, close) = drain(&slow);
    assert!(queued.is_empty(), "the overflowing queue is dropped");
    assert_eq!(close, Some(CloseRequest::SLOW_CONSUMER));
    assert!(!fast.outbox().is_closing());
    assert_eq!(hub.stats().slow_consumers_dropped, 1);
}

#[test]
fn send_to_user_reaches_all_of_the_users_connections() {
    let hub = hub();
    let a1 = hub.register(user("a")).unwrap();
    let a2 = hub.register(user("a")).unwrap();
    let b = hub.register(user("b")).unwrap();
    let frame = ServerFrame::custom("notification", serde_json::json!({}));
    assert_eq!(hub.send_to_user(&user("a"), &frame), 2);
    assert_eq!(drain(&a1).0.len() + drain(&a2).0.len(), 2);
    assert!(drain(&b).0.is_empty());
    assert_eq!(hub.broadcast(&frame), 3);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_sweep_pings_then_times_out_silent_connections() {
    let hub = hub();
    let quiet = hub.register(user("quiet")).unwrap();
    let chatty = hub.register(user("chatty")).unwrap();
    let report = hub.heartbeat_sweep();
    assert_eq!(report.pinged, 2);
    assert_eq!(drain(&quiet).0, vec![crate::ws::frame::ping_frame()]);
    tokio::time::advance(Duration::from_secs(59)).await;
    chatty.touch(hub.now_ms(), false);
    assert_eq!(hub.heartbeat_sweep().timed_out, 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    let report = hub.heartbeat_sweep();
    assert_eq!(report.timed_out, 1, "silent for exactly the timeout");
    assert!(quiet.outbox().is_closing());
    assert!(!chatty.outbox().is_closing());
    assert_eq!(hub.stats().heartbeat_timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn cleanup_closes_idle_and_removes_dead_connections() {
    let hub = hub();
    let idle = hub.register(user("idle")).unwrap();
    let active = hub.register(user("active")).unwrap();
    join(&hub, &room("r"), &idle);
    tokio::time::advance(Duration::from_secs(299)).await;
    active.touch(hub.now_ms(), true);
    idle.touch(hub.now_ms(), false);
    tokio::time::advance(Duration::from_secs(1)).await;
    let report = hub.cleanup_sweep();
    assert_eq!(
        report.idle_closed, 1,
        "pongs alone do not count as activity"
    );
    assert_eq!(
        drain(&idle).1.map(|c| c.reason),
        Some("idle timeout".into())
    );
    // The idle connection's task never ends (there is none): after the dead deadline the sweep
    // removes it from the registry and from its room.
    tokio::time::advance(Duration::from_millis(maintenance::DEAD_AFTER_MS)).await;
    let report = hub.cleanup_sweep();
    assert_eq!(report.dead_removed, 1);
    assert_eq!(report.room_members_removed, 1);
    assert_eq!(report.empty_rooms_removed, 1);
    assert_eq!(hub.stats().connections, 1);
    assert_eq!(hub.stats().rooms, 0);
}

#[test]
fn shutdown_asks_everyone_to_go_away_and_refuses_newcomers() {
    let hub = hub();
    let a = hub.register(user("a")).unwrap();
    assert_eq!(hub.shutdown(), 1);
    assert_eq!(drain(&a).1.map(|c| c.code), Some(CloseCode::GoingAway));
    assert_eq!(hub.register(user("b")).err(), Some(Refusal::Draining));
}

#[test]
fn hubs_on_one_bus_deliver_to_each_other_but_not_to_themselves() {
    let bus = LocalBus::new();
    let hub_a = Hub::new(
        config(),
        Arc::new(bus.broker()),
        Arc::new(crate::cluster::NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    );
    let hub_b = Hub::new(
        config(),
        Arc::new(bus.broker()),
        Arc::new(crate::cluster::NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    );
    let on_a = hub_a.register(user("a")).unwrap();
    let on_b = hub_b.register(user("b")).unwrap();
    let general = room("general");
    join(&hub_a, &general, &on_a);
    join(&hub_b, &general, &on_b);
    assert_eq!(kinds(&on_a), ["user_joined"], "b's arrival crossed the bus");
    let frame = ServerFrame::new(ServerKind::Message, serde_json::json!({"content": "x"}));
    assert_eq!(hub_a.send_to_room(&general, &frame, Some(on_a.id())), 0);
    assert!(drain(&on_a).0.is_empty(), "no echo to the origin");
    assert_eq!(drain(&on_b).0.len(), 1);
    hub_b.leave_room(&general, &on_b);
    hub_a.send_to_room(&general, &frame, None);
    assert!(
        drain(&on_b).0.is_empty(),
        "unsubscribed after the last local member left"
    );
    hub_a.broadcast(&frame);
    assert_eq!(drain(&on_b).0.len(), 1);
    assert_eq!(hub_a.send_to_user(&user("b"), &frame), 0);
    assert_eq!(drain(&on_b).0.len(), 1);
}

/// The awareness states in the one frame queued on `conn` (a small binary frame: two header
/// bytes, then the y-websocket message).
fn awareness_states(conn: &ConnHandle) -> usize {
    let (frames, _) = drain(conn);
    assert_eq!(frames.len(), 1);
    match crate::yjs::decode(&frames[0][2..]) {
        Ok(crate::yjs::Message::Awareness(entries)) => entries.len(),
        other => panic!("not an awareness message: {other:?}"),
    }
}

#[test]
fn another_nodes_awareness_states_expire_unless_renewed() {
    let hub = hub();
    let doc = DocId::from_trusted("doc");
    let conn = hub.register_as(user("a"), Wire::Yjs).unwrap();
    let open = hub.open_document(&doc, &conn);
    drain(&conn);
    let state = crate::yjs::AwarenessEntry {
        client: 7,
        clock: 1,
        state: r#"{"user":"far"}"#,
    };
    hub.receive_document(&doc, &crate::yjs::awareness([state].into_iter()));
    assert_eq!(awareness_states(&conn), 1, "relayed to the local client");
    let now = hub.now_ms();
    let query = || hub.document_command(&open, &conn, DocCommand::QueryAwareness);
    hub.inner.documents.save_changed(now + 29_999);
    query().unwrap();
    assert_eq!(awareness_states(&conn), 1, "still within its 30 s");
    hub.inner.documents.save_changed(now + 30_000);
    query().unwrap();
    assert_eq!(
        awareness_states(&conn),
        0,
        "a crashed node's client leaves no ghost"
    );
}
