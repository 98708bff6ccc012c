//! TLS on the listener: `wss://` and `https://` on one port with a self-signed certificate
//! generated per test; clients that do not speak TLS, or speak nothing, are dropped cleanly.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use switchboard_testkit::{Client, TestPki, TestServer, WAIT, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::Connector;

async fn tls_server(pki: &TestPki, handshake_timeout: Option<Duration>) -> TestServer {
    TestServer::with(|raw| {
        raw.tls_cert = Some(pki.cert.clone());
        raw.tls_key = Some(pki.key.clone());
        raw.handshake_timeout = handshake_timeout.map(switchboard::config::DurationArg);
    })
    .await
}

async fn wss_client(server: &TestServer, pki: &TestPki, user: &str) -> Client {
    let url = format!("wss://localhost:{}/?userId={user}", server.addr.port());
    Client::connect_with(&url, Some(Connector::Rustls(pki.client_config()))).await
}

#[tokio::test]
async fn wss_clients_join_and_exchange_messages() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, None).await;
    let mut alice = wss_client(&server, &pki, "alice").await;
    let mut bob = wss_client(&server, &pki, "bob").await;
    alice.join("general").await;
    bob.join("general").await;
    alice.expect("user_joined").await;
    // Large enough to span several TLS records and writes; few enough to stay within the
    // rate limit's burst (20, the join included).
    let content = "x".repeat(9_000);
    for n in 0..10 {
        alice
            .send_type(
                "message",
                json!({"room": "general", "content": content, "n": n}),
            )
            .await;
    }
    for n in 0..10 {
        let message = bob.expect("message").await;
        assert_eq!(message["userId"], "alice");
        assert_eq!(message["payload"]["n"], n);
        assert_eq!(message["payload"]["content"], content.as_str());
    }
    bob.expect_nothing_pending().await;
    assert_eq!(server.hub.stats().connections, 2);
    drop((alice, bob));
    assert!(server.shutdown().await, "clean shutdown over TLS");
}

#[tokio::test]
async fn https_serves_the_http_endpoints() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, None).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let connector = TlsConnector::from(pki.client_config());
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // The server may end with close_notify or a bare FIN; the response is complete either way.
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
        .await
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_fails_cleanly() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, None).await;
    let plain = tokio_tungstenite::connect_async(format!("ws://{}/?userId=plain", server.addr));
    let result = tokio::time::timeout(WAIT, plain).await.unwrap();
    assert!(result.is_err(), "a plain WebSocket handshake must fail");
    let (status, _) = tokio::time::timeout(WAIT, http_get(server.addr, "/health"))
        .await
        .unwrap();
    assert_ne!(status, 200, "no plain HTTP on the TLS port");
    // The server is unaffected.
    let mut alice = wss_client(&server, &pki, "alice").await;
    alice.expect_nothing_pending().await;
}

#[tokio::test]
async fn the_handshake_timeout_covers_the_tls_handshake() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, Some(Duration::from_millis(300))).await;
    // Opens TCP and says nothing: no ClientHello.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buffer))
        .await
        .expect("a silent client must be dropped");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Half a ClientHello: a TLS record header promising more than is sent.
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let read = tokio::time::timeout(WAIT, partial.read(&mut buffer))
        .await
        .expect("a half handshake must be dropped");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
