//! Abuse limits, each at its edge, against a real server: the handshake timeout (slowloris),
//! the request head size, the per-IP connection cap and the repeated-violation disconnect.
//! Misbehaving clients are raw sockets.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;
use switchboard::config::DurationArg;
use switchboard_testkit::{
    Client, Ended, RawClient, TestServer, WAIT, masked_frame, wait_until_async,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Reads until the server closes the connection; returns what it sent. Panics if it does not
/// close within `WAIT`.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(WAIT, stream.read(&mut buffer))
            .await
            .expect("the server did not close the connection");
        match read {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

fn short_handshake_timeout() -> impl FnOnce(&mut switchboard::config::RawSettings) {
    |s| s.handshake_timeout = Some("300ms".parse::<DurationArg>().unwrap())
}

#[tokio::test]
async fn a_client_that_sends_nothing_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::with(short_handshake_timeout()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    read_until_closed(&mut silent).await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::with(short_handshake_timeout()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let response = read_until_closed(&mut slow).await;
    assert!(!response.contains("101"), "{response}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_dropped_after_the_handshake_timeout() {
    let server = TestServer::with(short_handshake_timeout()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let response = read_until_closed(&mut idle).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// An upgrade request whose head is exactly `size` bytes long.
fn upgrade_request_of(size: usize) -> String {
    let start = "GET /ws?userId=big HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nX-Padding: ";
    let end = "\r\n\r\n";
    let padding = size - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(padding))
}

#[tokio::test]
async fn request_heads_up_to_16_kib_are_served_and_larger_ones_get_431() {
    let server = TestServer::start().await;
    let mut fits = TcpStream::connect(server.addr).await.unwrap();
    fits.write_all(upgrade_request_of(16 * 1024).as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    tokio::time::timeout(WAIT, fits.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");

    let mut too_big = TcpStream::connect(server.addr).await.unwrap();
    // The server answers as soon as it has 16 KiB without the end of the head; the rest of
    // the request may then be refused by the closed socket.
    let _ = too_big
        .write_all(upgrade_request_of(16 * 1024 + 1).as_bytes())
        .await;
    let response = read_until_closed(&mut too_big).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");

    // A head of any size is never buffered beyond the limit: a megabyte of header gets the
    // same answer.
    let mut huge = TcpStream::connect(server.addr).await.unwrap();
    let _ = huge.write_all(upgrade_request_of(1 << 20).as_bytes()).await;
    let response = read_until_closed(&mut huge).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
}

/// A TCP connection to `server` from the loopback address `127.0.0.<last>`.
async fn connect_from(last: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
            0,
        ))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// A protocol client of `user` connecting from `127.0.0.<last>`. A refusal (429) is retried,
/// polling every 10 ms for at most `WAIT`: a count the test just freed is released when the
/// server has dropped the connection, a moment after the client saw it close, and nothing
/// announces that moment.
async fn client_from(last: u8, server: &TestServer, user: &str) -> Client {
    let url = server.url(&format!("/?userId={user}"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stream = connect_from(last, server.addr).await;
        let connected = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(
                url.as_str(),
                tokio_tungstenite::MaybeTlsStream::Plain(stream),
            ),
        )
        .await
        .expect("handshake timed out");
        match connected {
            Ok((ws, _)) => return Client::from_stream(ws).await,
            Err(tokio_tungstenite::tungstenite::Error::Http(response))
                if response.status() == 429 && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(error) => panic!("connect from 127.0.0.{last} failed: {error}"),
        }
    }
}

/// Whether a connection from `127.0.0.<last>` is refused with 429.
async fn refused_from(last: u8, server: SocketAddr) -> bool {
    let mut stream = connect_from(last, server).await;
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await;
    let response = read_until_closed(&mut stream).await;
    if response.starts_with("HTTP/1.1 200") {
        return false;
    }
    assert!(
        response.starts_with("HTTP/1.1 429") && response.contains("too many connections"),
        "{response:?}"
    );
    true
}

#[tokio::test]
async fn the_per_ip_cap_counts_websockets_and_idle_sockets_and_releases_on_close() {
    let server = TestServer::with(|s| s.max_connections_per_ip = Some(3)).await;
    let mut first = client_from(2, &server, "a").await;
    let _second = client_from(2, &server, "b").await;
    // A socket that has not even sent its request counts too (slowloris).
    let silent = connect_from(2, server.addr).await;
    assert!(
        refused_from(2, server.addr).await,
        "the 4th is over the cap"
    );
    // Another address has its own count.
    let _other = client_from(3, &server, "c").await;
    assert!(!refused_from(3, server.addr).await);

    // Closing a WebSocket releases its count.
    first.ws.close(None).await.unwrap();
    assert!(matches!(first.ended().await, Ended::Closed { .. }));
    wait_until_async("the closed WebSocket's count is released", || async {
        !refused_from(2, server.addr).await
    })
    .await;
    // So does dropping a raw socket.
    let _third = client_from(2, &server, "d").await;
    assert!(refused_from(2, server.addr).await);
    drop(silent);
    wait_until_async("the dropped socket's count is released", || async {
        !refused_from(2, server.addr).await
    })
    .await;
}

#[tokio::test]
async fn the_per_ip_cap_is_off_by_default() {
    let server = TestServer::start().await;
    let mut clients = Vec::new();
    for i in 0..20 {
        clients.push(client_from(4, &server, &format!("u{i}")).await);
    }
    assert!(!refused_from(4, server.addr).await);
}

fn violations(max: u32) -> impl FnOnce(&mut switchboard::config::RawSettings) {
    move |s| {
        s.max_violations = Some(max);
        s.violation_window = Some("1h".parse::<DurationArg>().unwrap());
        s.rate_limit = Some(0);
    }
}

#[tokio::test]
async fn a_client_that_keeps_sending_bad_frames_is_closed_with_1008_at_the_threshold() {
    let server = TestServer::with(violations(5)).await;
    let mut client = server.connect("mallory").await;
    let bad: [(&str, &str); 4] = [
        ("not json", "INVALID_JSON"),
        (r#"{"type":"nope"}"#, "UNKNOWN_TYPE"),
        (r#"{"type":"join_room","payload":{}}"#, "INVALID_MESSAGE"),
        (
            r#"{"type":"message","payload":{"room":"r","content":"hi"}}"#,
            "NOT_IN_ROOM",
        ),
    ];
    for (frame, code) in bad {
        client.send_text(frame).await;
        client.expect_error(code).await;
    }
    // Good frames in between neither count nor reset the count.
    client.expect_nothing_pending().await;
    client.send_text("still not json").await;
    client.expect_error("INVALID_JSON").await;
    assert_eq!(
        client.ended().await,
        Ended::Closed {
            code: 1008,
            reason: "too many invalid messages".into()
        }
    );
}

#[tokio::test]
async fn a_client_below_the_threshold_stays_connected() {
    let server = TestServer::with(violations(5)).await;
    let mut client = server.connect("clumsy").await;
    for _ in 0..4 {
        client.send_text("{").await;
        client.expect_error("INVALID_JSON").await;
    }
    for _ in 0..50 {
        client.expect_nothing_pending().await;
    }
    client.join("general").await;
}

#[tokio::test]
async fn rate_limited_and_oversize_frames_count_as_violations() {
    let server = TestServer::with(|s| {
        s.max_violations = Some(3);
        s.violation_window = Some("1h".parse::<DurationArg>().unwrap());
        s.rate_limit = Some(1);
        s.rate_limit_burst = Some(2);
        s.max_content_length = Some(5);
    })
    .await;
    let mut client = server.connect("flooder").await;
    client.join("r").await;
    client
        .send_type("message", json!({"room": "r", "content": "too long"}))
        .await;
    client.expect_error("MESSAGE_TOO_LARGE").await;
    // The burst is spent (join, message): the next pings are rate limited, and the second
    // of them is the third violation.
    for _ in 0..10 {
        client.send_type("ping", json!({})).await;
    }
    assert_eq!(client.close_code().await, 1008);
    let rate_limited = server.stats().await["rateLimited"].as_u64().unwrap();
    assert!(rate_limited >= 2, "{rate_limited}");
}

#[tokio::test]
async fn bad_frames_sent_after_the_closing_one_are_not_acted_on() {
    let server = TestServer::with(violations(2)).await;
    let mut watcher = server.member("watcher", "room").await;
    let mut raw = RawClient::connect(server.addr, "/?userId=raw").await;
    // Two bad frames and a join in one write: the join arrives after the close was decided.
    let mut burst = masked_frame(0x81, b"x");
    burst.extend(masked_frame(0x81, b"y"));
    burst.extend(masked_frame(
        0x81,
        br#"{"type":"join_room","payload":{"room":"room"}}"#,
    ));
    raw.send_frame_bytes(&burst).await;
    assert_eq!(raw.read_close().await, Some(1008));
    watcher.expect_nothing_pending().await;
}

#[tokio::test]
async fn websocket_pings_spend_rate_tokens_and_a_ping_flood_is_closed_with_1008() {
    let server = TestServer::with(|s| {
        s.rate_limit = Some(1);
        s.rate_limit_burst = Some(3);
        s.max_violations = Some(2);
        s.violation_window = Some("1h".parse::<DurationArg>().unwrap());
    })
    .await;
    let mut bystander = RawClient::connect(server.addr, "/?userId=bystander").await;
    let mut flooder = RawClient::connect(server.addr, "/?userId=flooder").await;
    for raw in [&mut bystander, &mut flooder] {
        assert_eq!(raw.read_frame().await.0, 0x81, "connect");
    }
    let flood: Vec<u8> = (0..1000)
        .flat_map(|n: u32| switchboard_testkit::masked_frame(0x89, n.to_string().as_bytes()))
        .collect();
    flooder.send_frame_bytes(&flood).await;
    // The burst is answered. The next ping is not (no pong, no error frame), and the one after
    // it is the second violation: the very next frame is the close.
    for n in ["0", "1", "2"] {
        assert_eq!(flooder.read_frame().await, (0x8A, n.as_bytes().to_vec()));
    }
    let (opcode, payload) = flooder.read_frame().await;
    assert_eq!(opcode, 0x88, "{payload:?}");
    assert_eq!(payload[..2], 1008u16.to_be_bytes());
    // Another user's connection is not affected.
    bystander.send_frame(0x89, b"still here").await;
    assert_eq!(bystander.read_frame().await, (0x8A, b"still here".to_vec()));
    assert_eq!(server.stats().await["rateLimited"], 2);
}
