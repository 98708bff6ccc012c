//! Webhooks against a real HTTP backend (an axum app in this test): every event, signed;
//! batching; a retry after a 500; the events filter; client message types.

#![allow(clippy::unwrap_used)]

mod common;
mod webhook_backend;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use switchboard_testkit::{Client, TestPki, TestServer, http_get};
use tokio::sync::{mpsc, oneshot};
use webhook_backend::{
    Backend, Received, SECRET, Script, assert_signed, backend, events, next, pairs, receive,
    summary,
};

async fn server(backend: SocketAddr, events: Option<&str>) -> TestServer {
    let url = format!("http://{backend}/hooks");
    let events = events.map(str::to_owned);
    TestServer::with(move |s| {
        s.webhook_url = Some(url);
        s.webhook_secret = Some(SECRET.into());
        s.webhook_events = events;
        s.webhook_client_types = Some("typing, cursor".into());
    })
    .await
}

/// Waits until everything `client` sent before has been handled: frames are handled in order.
async fn barrier(client: &mut Client) {
    client.send_type("ping", json!({"barrier": true})).await;
    client.expect("pong").await;
}

#[tokio::test]
async fn every_event_arrives_signed_in_order() {
    let (addr, mut received, _script) = backend().await;
    let server = server(addr, None).await;
    let mut alice = server.connect("alice").await;
    let online = events(&mut received, 1).await;
    assert_eq!(online[0]["name"], "presence_changed");
    assert_eq!(online[0]["userId"], "alice");
    assert_eq!(online[0]["presence"]["status"], "online");
    assert!(online[0]["time"].as_u64().unwrap() > 0);

    alice.join("general").await;
    let joined = events(&mut received, 2).await;
    assert_eq!(
        summary(&joined),
        pairs(&[("room_occupied", "general"), ("member_added", "general")])
    );
    assert_eq!(joined[1]["userId"], "alice");

    alice
        .send_type("subscribe", json!({"channel": "news"}))
        .await;
    alice.expect("subscribed").await;
    assert_eq!(
        summary(&events(&mut received, 1).await),
        pairs(&[("channel_occupied", "news")])
    );

    alice
        .send(json!({"type": "typing", "payload": {"room": "general", "typing": true}, "id": "t1"}))
        .await;
    assert_eq!(alice.expect("ack").await["id"], "t1");
    let typed = events(&mut received, 1).await;
    assert_eq!(summary(&typed), pairs(&[("client_message", "typing")]));
    assert_eq!(typed[0]["userId"], "alice");
    assert_eq!(typed[0]["connectionId"], alice.connection_id());
    assert_eq!(
        typed[0]["payload"],
        json!({"room": "general", "typing": true})
    );

    alice
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    alice.expect("room_left").await;
    assert_eq!(
        summary(&events(&mut received, 2).await),
        pairs(&[("member_removed", "general"), ("room_vacated", "general")])
    );
    alice
        .send_type("unsubscribe", json!({"channel": "news"}))
        .await;
    alice.expect("unsubscribed").await;
    assert_eq!(
        summary(&events(&mut received, 1).await),
        pairs(&[("channel_vacated", "news")])
    );

    drop(alice);
    let offline = events(&mut received, 1).await;
    assert_eq!(offline[0]["name"], "presence_changed");
    assert_eq!(offline[0]["presence"]["status"], "offline");
}

#[tokio::test]
async fn a_member_with_two_connections_is_added_and_removed_once() {
    let (addr, mut received, _script) = backend().await;
    let server = server(addr, Some("member_added,member_removed")).await;
    let mut first = server.member("bob", "general").await;
    let mut second = server.member("bob", "general").await;
    barrier(&mut second).await;
    assert_eq!(
        summary(&events(&mut received, 1).await),
        pairs(&[("member_added", "general")])
    );
    first
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    first.expect("room_left").await;
    // Bob is still in the room through his second connection: the next event is his
    // departure, when that one leaves too.
    second
        .send_type("leave_room", json!({"room": "general"}))
        .await;
    second.expect("room_left").await;
    assert_eq!(
        summary(&events(&mut received, 1).await),
        pairs(&[("member_removed", "general")])
    );
}

#[tokio::test]
async fn events_that_come_while_a_request_is_out_go_in_the_next_one() {
    let (addr, mut received, script) = backend().await;
    let (release, hold) = oneshot::channel();
    script.holds.lock().unwrap().push_back(hold);
    let server = server(addr, Some("room_occupied,member_added,presence_changed")).await;
    let mut alice = server.connect("alice").await;
    let first = next(&mut received).await;
    assert_eq!(first.names(), ["presence_changed"], "held by the backend");
    for room in ["a", "b", "c"] {
        alice.join(room).await;
    }
    barrier(&mut alice).await;
    release.send(()).unwrap();
    let batch = next(&mut received).await;
    assert_signed(&batch);
    assert_eq!(
        summary(batch.json()["events"].as_array().unwrap()),
        pairs(&[
            ("room_occupied", "a"),
            ("member_added", "a"),
            ("room_occupied", "b"),
            ("member_added", "b"),
            ("room_occupied", "c"),
            ("member_added", "c"),
        ]),
        "one request for what queued meanwhile"
    );
}

#[tokio::test]
async fn a_request_the_backend_fails_is_retried_with_the_same_events() {
    let (addr, mut received, script) = backend().await;
    script
        .statuses
        .lock()
        .unwrap()
        .push_back(StatusCode::INTERNAL_SERVER_ERROR);
    let server = server(addr, Some("presence_changed")).await;
    let _alice = server.connect("alice").await;
    let failed = next(&mut received).await;
    let retried = next(&mut received).await;
    assert_signed(&retried);
    assert_eq!(failed.json()["events"], retried.json()["events"]);
    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert_eq!(value("switchboard_webhook_requests_failed_total"), 1);
    // The counter of sent events moves once the backend's answer is read.
    switchboard_testkit::wait_until_async("the retry is counted as sent", || async {
        let (_, metrics) = http_get(server.addr, "/metrics").await;
        metrics.contains("switchboard_webhook_events_sent_total 1")
    })
    .await;
}

#[tokio::test]
async fn only_the_chosen_events_are_sent_and_other_types_stay_unknown() {
    let (addr, mut received, _script) = backend().await;
    let server = server(addr, Some("member_added,client_message")).await;
    let mut alice = server.member("alice", "general").await;
    alice.send_type("cursor", json!({"x": 1})).await;
    alice.send_type("shout", json!({})).await;
    alice.expect_error("UNKNOWN_TYPE").await;
    // Presence and room_occupied came first if they were sent at all: order is kept.
    assert_eq!(
        summary(&events(&mut received, 2).await),
        pairs(&[("member_added", "general"), ("client_message", "cursor")])
    );
}

/// The backend again, over TLS with `pki`'s certificate (for `localhost`).
async fn tls_backend(pki: &TestPki) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (sender, received) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/hooks", post(receive))
        .with_state(Backend {
            received: sender,
            script: Script::default(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn https_backends_are_verified_against_the_system_roots() {
    let pki = TestPki::generate();
    let (addr, mut received) = tls_backend(&pki).await;
    let url = format!("https://localhost:{}/hooks", addr.port());
    let args = [
        "--webhook-url",
        url.as_str(),
        "--webhook-secret",
        SECRET,
        "--webhook-events",
        "presence_changed",
    ];
    // The roots come from SSL_CERT_FILE, as the system's would.
    let cert = pki.cert.to_str().unwrap();
    let trusting = common::Running::start(&args, &[("SSL_CERT_FILE", cert)]).await;
    let _alice = Client::connect(&format!("ws://{}/?userId=alice", trusting.addr)).await;
    let request = next(&mut received).await;
    assert_signed(&request);
    assert_eq!(request.names(), ["presence_changed"]);

    // A server that does not trust the backend's certificate gets no answer from it: the
    // request fails (counted) and the backend is never reached with events.
    let other = TestPki::generate();
    let other_cert = other.cert.to_str().unwrap();
    let doubting = common::Running::start(&args, &[("SSL_CERT_FILE", other_cert)]).await;
    let _bob = Client::connect(&format!("ws://{}/?userId=bob", doubting.addr)).await;
    switchboard_testkit::wait_until_async("the TLS failure is counted", || async {
        let (_, metrics) = http_get(doubting.addr, "/metrics").await;
        metrics.lines().any(|line| {
            line.starts_with("switchboard_webhook_requests_failed_total ") && !line.ends_with(" 0")
        })
    })
    .await;
    assert!(received.try_recv().is_err(), "no request got through");
}
