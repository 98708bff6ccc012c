//! Surviving the connection: reconnect after a server restart on the same port (rooms
//! rejoined, channels resubscribed, queued frames delivered once and in order), the bounded
//! queue, refusals that stop reconnecting, a server that never answers, and wss.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::config;
use switchboard::ids::{RoomId, UserId};
use switchboard::protocol::CloseCode;
use switchboard_client::{Client, ClientConfig, ClosedBy, Error, Event, Reconnect};
use switchboard_testkit::{TestPki, TestServer, WAIT, next_event, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn after_a_restart_rooms_are_rejoined_and_the_queue_is_delivered_once() {
    let node = TestServer::start().await;
    let port = node.addr.port();
    let url = node.url("");
    let (alice, mut events) = Client::connect(config(&url, "alice")).await.unwrap();
    alice.room("general").join().await.unwrap();
    alice.channel("news").subscribe().await.unwrap();

    assert!(node.shutdown().await, "clean shutdown");
    let lost = next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            lost,
            Event::Disconnected {
                code: Some(1001),
                ..
            }
        ),
        "{lost:?}"
    );
    // Sent while the server is down: queued.
    for n in 0..5 {
        alice.channel("log").publish(n).unwrap();
    }

    // The same port; a handler records every publication on `log` before anyone connects.
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorder = seen.clone();
    let mut subscription = None;
    let node = TestServer::start_with(
        port,
        |_| {},
        |hub| {
            let handler = move |p: &switchboard::hub::Publication| {
                recorder.lock().unwrap().push(p.data.clone());
            };
            subscription = Some(hub.pubsub().subscribe("log", handler).unwrap());
        },
    )
    .await;
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
    let rejoined = next_event(&mut events, "room_joined again", |e| {
        matches!(e, Event::RoomJoined { .. })
    })
    .await;
    assert!(matches!(rejoined, Event::RoomJoined { room, .. } if room == "general"));
    assert_eq!(
        node.hub.room_members(&RoomId::from_trusted("general")),
        [UserId::from_trusted("alice")]
    );

    // A request queued behind the rest: once it is acked, everything before it was handled.
    alice
        .request("publish", json!({"channel": "log", "data": "last"}), WAIT)
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            json!(0),
            json!(1),
            json!(2),
            json!(3),
            json!(4),
            json!("last")
        ]
    );

    // The channel subscription was renewed.
    node.hub.pubsub().publish("news", &json!("extra")).unwrap();
    let publication = next_event(&mut events, "publish on news", |e| {
        matches!(e, Event::Publish { .. })
    })
    .await;
    assert!(
        matches!(publication, Event::Publish { channel, data, .. } if channel == "news" && data == "extra")
    );
}

#[tokio::test]
async fn a_full_queue_refuses_new_frames_and_keeps_the_old() {
    let node = TestServer::start().await;
    let config = config(&node.url(""), "alice").with_queue_capacity(3);
    let (alice, mut events) = Client::connect(config).await.unwrap();
    assert!(node.shutdown().await, "clean shutdown");
    next_event(&mut events, "disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    for n in 0..3 {
        alice.send("ping", json!({"n": n})).unwrap();
    }
    let full = alice.send("ping", json!({"n": 3})).unwrap_err();
    assert!(matches!(full, Error::QueueFull { capacity: 3 }), "{full}");
    let full = alice.request("ping", json!({}), WAIT).await.unwrap_err();
    assert!(full.is_queue_full(), "{full}");
}

#[tokio::test]
async fn close_1008_stops_reconnecting() {
    let node = TestServer::start().await;
    let (mallory, mut events) = Client::connect(config(&node.url(""), "mallory"))
        .await
        .unwrap();
    mallory.room("general").join().await.unwrap();
    node.hub.disconnect_user(
        &UserId::from_trusted("mallory"),
        CloseCode::Policy,
        "banned",
    );
    let closed = next_event(&mut events, "closed", |e| matches!(e, Event::Closed(_))).await;
    assert!(
        matches!(&closed, Event::Closed(ClosedBy::Refused(reason)) if reason.contains("banned")),
        "{closed:?}"
    );
    assert!(
        tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .is_none()
    );
    wait_until("the server dropped mallory", || {
        node.hub.stats().connections == 0
    })
    .await;
}

#[tokio::test]
async fn http_401_at_the_handshake_is_a_refusal() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(0u32));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            *count.lock().unwrap() += 1;
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request).await;
            let _ = stream
                .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let error = Client::connect(config(&url, "alice")).await.err().unwrap();
    assert!(
        matches!(&error, Error::Refused(reason) if reason.contains("401")),
        "{error}"
    );
    assert_eq!(*accepted.lock().unwrap(), 1, "no retry after a refusal");
}

#[tokio::test]
async fn a_listener_that_never_answers_fails_each_attempt_in_bounded_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = config(&url, "alice")
        .with_connect_timeout(Duration::from_millis(200))
        .with_reconnect(Reconnect {
            base: Duration::from_millis(10),
            max_attempts: Some(2),
            ..Reconnect::default()
        });
    let started = tokio::time::Instant::now();
    let error = Client::connect(config).await.err().unwrap();
    assert!(
        matches!(&error, Error::GaveUp { attempts: 2, last } if last.contains("no connection within")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn wss_against_the_tls_server() {
    let pki = TestPki::generate();
    let node = TestServer::start_with(
        0,
        |raw| {
            raw.tls_cert = Some(pki.cert.clone());
            raw.tls_key = Some(pki.key.clone());
        },
        |_| {},
    )
    .await;
    let url = format!("wss://localhost:{}", node.addr.port());
    let tls = |user: &str| {
        ClientConfig::new(&url)
            .with_user_id(user)
            .with_tls(pki.client_config())
    };
    let (alice, _alice_events) = Client::connect(tls("alice")).await.unwrap();
    let (bob, mut bob_events) = Client::connect(tls("bob")).await.unwrap();
    alice.room("secure").join().await.unwrap();
    bob.room("secure").join().await.unwrap();
    alice.room("secure").send("over TLS").unwrap();
    let message = next_event(&mut bob_events, "message", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    assert!(matches!(message, Event::Message { payload, .. } if payload["content"] == "over TLS"));

    // Without the test root the certificate is not trusted: a clear failure, not a hang.
    let untrusted = ClientConfig::new(&url)
        .with_user_id("eve")
        .with_reconnect(Reconnect::never());
    let error = Client::connect(untrusted).await.err().unwrap();
    assert!(
        matches!(&error, Error::GaveUp { last, .. } if last.contains("certificate")),
        "{error}"
    );
}
