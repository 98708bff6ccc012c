//! The accept path's own answer to WebSocket upgrades on `/` and `/ws` (no hyper), at its
//! edges, against a real server: a head split over several segments, bytes pipelined after
//! the head, refusals that keep the connection for the next request (or close it when asked),
//! bad handshake headers, and requests handed to hyper before an upgrade on the same
//! connection. The handshake timeout, the head size limit and a half-sent head are in
//! `abuse.rs`.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use switchboard_testkit::{RawClient, TestServer, WAIT, masked_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upgrade request to `target`, with `extra` header lines (each ending in `\r\n`).
fn upgrade(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads one HTTP response head and its `content-length` body; returns both as text.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
            .await
            .expect("response timed out")
            .expect("read the response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tokio::time::timeout(WAIT, stream.read_exact(&mut body))
        .await
        .expect("body timed out")
        .expect("read the body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// The `connect` frame a raw client reads first after its 101.
async fn read_connect(client: &mut RawClient) -> Value {
    let (first, payload) = client.read_frame().await;
    assert_eq!(first, 0x81, "a text frame");
    let frame: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(frame["type"], "connect", "{frame}");
    frame
}

#[tokio::test]
async fn a_head_split_over_several_segments_is_upgraded() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let request = upgrade("/ws?userId=split", "");
    // Each piece is its own segment: the server's first read sees an incomplete head and hands
    // the connection to hyper with it, which reads the rest.
    for piece in request.as_bytes().chunks(17) {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
    }
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut client = RawClient { stream };
    let connect = read_connect(&mut client).await;
    assert_eq!(connect["payload"]["userId"], "split");
}

#[tokio::test]
async fn a_frame_sent_with_the_head_is_read_after_the_upgrade() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut bytes = upgrade("/?userId=eager", "").into_bytes();
    bytes.extend(masked_frame(
        0x81,
        br#"{"type":"ping","payload":{"timestamp":7}}"#,
    ));
    stream.write_all(&bytes).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut client = RawClient { stream };
    read_connect(&mut client).await;
    let (_, payload) = client.read_frame().await;
    let pong: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["payload"]["timestamp"], 7);
}

#[tokio::test]
async fn bad_keys_and_versions_are_refused_and_the_connection_serves_the_next_request() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();

    let bad_key = upgrade("/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
    stream.write_all(bad_key.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body.contains("Sec-WebSocket-Key"), "{body}");

    let bad_version = upgrade("/ws", "").replace("Version: 13", "Version: 8");
    stream.write_all(bad_version.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 426"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{head}"
    );

    // The same connection then carries a plain request, served by hyper.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_refusal_closes_the_connection_when_the_client_asks() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = upgrade("/ws?userId=has%20space", "")
        .replace("Connection: Upgrade", "Connection: Upgrade, close");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("invalid userId"), "{response}");
}

#[tokio::test]
async fn a_plain_request_then_an_upgrade_on_the_same_connection_is_served_by_hyper() {
    let server = TestServer::start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The landing page: `/` without an upgrade is hyper's.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("Switchboard"));
    // hyper upgrades the next request; the connection runs on the bare socket again.
    stream
        .write_all(upgrade("/ws?userId=later", "").as_bytes())
        .await
        .unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut client = RawClient { stream };
    let connect = read_connect(&mut client).await;
    assert_eq!(connect["payload"]["userId"], "later");
    client
        .send_frame(0x81, br#"{"type":"ping","payload":{"timestamp":1}}"#)
        .await;
    let (_, payload) = client.read_frame().await;
    let pong: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(pong["type"], "pong", "{pong}");
}

#[tokio::test]
async fn subprotocol_and_compression_are_negotiated_on_the_direct_path() {
    let server = TestServer::start().await;
    let (_client, head) = RawClient::connect_with(
        server.addr,
        "/ws?userId=terms",
        "Sec-WebSocket-Protocol: switchboard.v1.msgpack\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("sec-websocket-protocol: switchboard.v1.msgpack"),
        "{head}"
    );
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate"),
        "{head}"
    );
}
