//! A webhook backend for tests: an axum app on a free port that records every request and
//! answers as a test scripts it, and checks of what it received (the signature, the events).

// Each test binary that declares `mod webhook_backend` uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchboard_testkit::WAIT;
use tokio::sync::{mpsc, oneshot};

pub(crate) const SECRET: &str = "webhook-test-secret";

/// One request the backend received: its headers and body.
pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Received {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The events' names, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// What the backend answers: a queue of statuses (then 200), and requests to hold until
/// the test lets them go.
#[derive(Clone, Default)]
pub(crate) struct Script {
    pub(crate) statuses: Arc<Mutex<VecDeque<StatusCode>>>,
    pub(crate) holds: Arc<Mutex<VecDeque<oneshot::Receiver<()>>>>,
}

#[derive(Clone)]
pub(crate) struct Backend {
    pub(crate) received: mpsc::UnboundedSender<Received>,
    pub(crate) script: Script,
}

pub(crate) async fn receive(
    State(backend): State<Backend>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = backend.received.send(Received { headers, body });
    let hold = backend.script.holds.lock().unwrap().pop_front();
    if let Some(hold) = hold {
        let _ = hold.await;
    }
    let status = backend.script.statuses.lock().unwrap().pop_front();
    status.unwrap_or(StatusCode::OK)
}

/// A backend on a free port: the address, what it receives, and its script.
pub(crate) async fn backend() -> (SocketAddr, mpsc::UnboundedReceiver<Received>, Script) {
    let (sender, received) = mpsc::unbounded_channel();
    let script = Script::default();
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(Backend {
            received: sender,
            script: script.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received, script)
}

/// The next request, within the harness's wait.
pub(crate) async fn next(received: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("a webhook request in time")
        .unwrap()
}

/// Events from the next requests until `count` have come, flattened.
pub(crate) async fn events(
    received: &mut mpsc::UnboundedReceiver<Received>,
    count: usize,
) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        let request = next(received).await;
        assert_signed(&request);
        events.extend(request.json()["events"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(
        events.len(),
        count,
        "no more events than expected: {events:?}"
    );
    events
}

/// The signature header is the HMAC-SHA256 of the raw body, and the timestamp its `time`.
pub(crate) fn assert_signed(request: &Received) {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let header = request.headers["x-switchboard-signature"].to_str().unwrap();
    assert_eq!(header, format!("sha256={expected}"));
    let timestamp = request.headers["x-switchboard-timestamp"].to_str().unwrap();
    assert_eq!(timestamp, request.json()["time"].to_string());
    assert_eq!(request.headers["content-type"], "application/json");
}

/// The (name, subject) of each event: the room, channel or client message type.
pub(crate) fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| {
            let subject = ["room", "channel", "type"]
                .iter()
                .find_map(|field| event[field].as_str())
                .unwrap_or_default();
            (
                event["name"].as_str().unwrap().to_owned(),
                subject.to_owned(),
            )
        })
        .collect()
}

pub(crate) fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, subject)| ((*name).to_owned(), (*subject).to_owned()))
        .collect()
}
