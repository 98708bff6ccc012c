//! Requests, typed events and the helpers against a real server; a request timeout against a
//! server that never answers.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::config;
use switchboard_client::{Client, ClosedBy, Error, Event, Heartbeat, Status};
use switchboard_testkit::{TestServer, WAIT, next_event, wait_until};
use tokio::net::TcpListener;

#[tokio::test]
async fn requests_resolve_with_the_reply_or_the_ack_and_fail_on_error() {
    let node = TestServer::start().await;
    let (alice, _events) = Client::connect(config(&node.url(""), "alice"))
        .await
        .unwrap();

    let joined = alice.room("general").join().await.unwrap();
    assert_eq!(joined.kind, "room_joined");
    assert_eq!(joined.payload["memberCount"], 1);
    assert_eq!(alice.rooms(), ["general"]);

    let ack = alice
        .request("publish", json!({"channel": "news", "data": 1}), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.kind, "ack");

    let refused = alice
        .request(
            "message",
            json!({"room": "elsewhere", "content": "hi"}),
            WAIT,
        )
        .await
        .unwrap_err();
    assert!(refused.is_server_error("NOT_IN_ROOM"), "{refused}");
    let unknown = alice
        .request("no_such_type", json!({}), WAIT)
        .await
        .unwrap_err();
    assert!(unknown.is_server_error("UNKNOWN_TYPE"), "{unknown}");

    alice.room("general").leave().await.unwrap();
    assert!(alice.rooms().is_empty());
}

#[tokio::test]
async fn rooms_channels_and_presence_arrive_as_typed_events() {
    let node = TestServer::start().await;
    let (alice, mut alice_events) = Client::connect(config(&node.url(""), "alice"))
        .await
        .unwrap();
    let (bob, mut bob_events) = Client::connect(config(&node.url(""), "bob")).await.unwrap();
    let connected = next_event(&mut bob_events, "connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    let Event::Connected { info, reconnected } = connected else {
        unreachable!()
    };
    assert_eq!((info.user_id.as_str(), reconnected), ("bob", false));

    alice.room("general").join().await.unwrap();
    bob.room("general").join().await.unwrap();
    let joined = next_event(&mut alice_events, "user_joined", |e| {
        matches!(e, Event::UserJoined { .. })
    })
    .await;
    assert_eq!(
        joined,
        Event::UserJoined {
            room: "general".into(),
            user_id: "bob".into()
        }
    );

    alice.room("general").send("Hello").unwrap();
    let message = next_event(&mut bob_events, "message", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    assert_eq!(
        message,
        Event::Message {
            room: "general".into(),
            user_id: Some("alice".into()),
            timestamp: message_timestamp(&message),
            offset: Some(1),
            payload: json!({"content": "Hello"})
        }
    );

    bob.channel("news").subscribe().await.unwrap();
    assert_eq!(bob.channels(), ["news"]);
    alice
        .channel("news")
        .publish(json!({"headline": "rust"}))
        .unwrap();
    let publication = next_event(&mut bob_events, "publish", |e| {
        matches!(e, Event::Publish { .. })
    })
    .await;
    assert_eq!(
        publication,
        Event::Publish {
            channel: "news".into(),
            user_id: Some("alice".into()),
            timestamp: message_timestamp(&publication),
            offset: Some(1),
            data: json!({"headline": "rust"})
        }
    );

    alice
        .set_presence(Status::Away, Some(json!({"note": "lunch"})))
        .unwrap();
    let presence = next_event(
        &mut bob_events,
        "alice away",
        |e| matches!(e, Event::Presence(p) if p.user_id == "alice" && p.status == "away"),
    )
    .await;
    let Event::Presence(presence) = presence else {
        unreachable!()
    };
    assert_eq!(presence.metadata, Some(json!({"note": "lunch"})));

    // A frame sent without an id that fails comes as an event.
    alice
        .send("message", json!({"room": "nowhere", "content": "x"}))
        .unwrap();
    let error = next_event(&mut alice_events, "error", |e| {
        matches!(e, Event::Error { .. })
    })
    .await;
    assert!(matches!(error, Event::Error { code, .. } if code == "NOT_IN_ROOM"));
}

/// The timestamp of a message or publication, checked to be a plausible one.
fn message_timestamp(event: &Event) -> Option<u64> {
    let (Event::Message { timestamp, .. } | Event::Publish { timestamp, .. }) = event else {
        panic!("{event:?}")
    };
    assert!(timestamp.unwrap() > 1_700_000_000_000, "{event:?}");
    *timestamp
}

#[tokio::test]
async fn close_ends_the_events_and_fails_later_calls() {
    let node = TestServer::start().await;
    let (alice, mut events) = Client::connect(config(&node.url(""), "alice"))
        .await
        .unwrap();
    alice.room("general").join().await.unwrap();
    alice.close();
    let closed = next_event(&mut events, "closed", |e| matches!(e, Event::Closed(_))).await;
    assert_eq!(closed, Event::Closed(ClosedBy::Client));
    assert!(
        tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        alice.room("general").send("late"),
        Err(Error::Closed)
    ));
    assert!(matches!(
        alice.request("ping", json!({}), WAIT).await,
        Err(Error::Closed)
    ));
    wait_until("the server saw the close", || {
        node.hub.stats().connections == 0
    })
    .await;
}

/// A server that completes the WebSocket handshake, sends `connect` and then never reads or
/// answers again (hung, or stuck in a loop).
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            let connect = json!({"type": "connect", "payload": {
                "connectionId": "1", "userId": "alice", "heartbeatInterval": 30000, "node": "fake"}});
            use futures_util::SinkExt;
            ws.send(connect.to_string().into()).await.unwrap();
            held.push(ws);
        }
    });
    (url, task)
}

#[tokio::test]
async fn a_request_without_an_answer_times_out() {
    let (url, _server) = silent_server().await;
    let (alice, _events) = Client::connect(config(&url, "alice")).await.unwrap();
    let started = tokio::time::Instant::now();
    let error = alice
        .request(
            "join_room",
            json!({"room": "r"}),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < WAIT);
    // The client is still usable afterwards.
    alice.room("r").send("x").unwrap();
}

#[tokio::test]
async fn the_heartbeat_replaces_a_connection_whose_server_stopped_answering() {
    let (url, _server) = silent_server().await;
    let config = config(&url, "alice").with_heartbeat(Some(Heartbeat {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
    }));
    let started = tokio::time::Instant::now();
    let (_alice, mut events) = Client::connect(config).await.unwrap();
    let lost = next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let Event::Disconnected { code, reason } = lost else {
        unreachable!()
    };
    assert_eq!(code, None);
    assert!(reason.contains("heartbeat"), "{reason}");
    // Interval + deadline is 400 ms; allow for a loaded machine, far below TCP's timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // And it connects again.
    next_event(&mut events, "reconnected", |e| {
        matches!(
            e,
            Event::Connected {
                reconnected: true,
                ..
            }
        )
    })
    .await;
}
