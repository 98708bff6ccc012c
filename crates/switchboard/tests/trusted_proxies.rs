//! `--trusted-proxies`: from a trusted peer the forwarding headers name the client the per-IP
//! cap counts and the logs show; from any other peer they are ignored. The tests connect from 127.0.0.1, which
//! is or is not in the trusted blocks.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Running, wait_for_log};
use switchboard_testkit::{Client, TestServer, WAIT, http_request};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A server that caps each client address at one connection and trusts `proxies`.
async fn capped(proxies: &str) -> TestServer {
    let proxies = proxies.to_owned();
    TestServer::with(move |s| {
        s.max_connections_per_ip = Some(1);
        s.trusted_proxies = Some(proxies);
    })
    .await
}

/// Opens a WebSocket as `user` with `headers`; `Err(status)` when the upgrade is refused.
async fn upgrade(
    server: &TestServer,
    user: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, u16> {
    upgrade_at(server.addr, user, headers).await
}

async fn upgrade_at(
    addr: SocketAddr,
    user: &str,
    headers: &[(&'static str, &str)],
) -> Result<Client, u16> {
    let mut request = format!("ws://{addr}/?userId={user}")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .append(*name, HeaderValue::from_str(value).unwrap());
    }
    let connecting = tokio_tungstenite::connect_async(request);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_stream(ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let server = capped("127.0.0.0/8").await;
    let _a = upgrade(&server, "a", &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .unwrap();
    // The same client again: over its cap, though the proxy's address has no connection.
    assert_eq!(
        upgrade(&server, "a2", &[("X-Forwarded-For", "198.51.100.1")])
            .await
            .err(),
        Some(429)
    );
    // Other clients through the same proxy each have their own count.
    let _b = upgrade(&server, "b", &[("X-Forwarded-For", "198.51.100.2")])
        .await
        .unwrap();
    let _c = upgrade(&server, "c", &[("Forwarded", "for=\"[2001:db8::7]:4711\"")])
        .await
        .unwrap();
    // A client that forges an entry is still counted under the address the proxy appended.
    assert_eq!(
        upgrade(
            &server,
            "forger",
            &[("X-Forwarded-For", "203.0.113.99, 198.51.100.2")]
        )
        .await
        .err(),
        Some(429)
    );
    // Without a header the proxy is the client: its own first connection.
    let _proxy = upgrade(&server, "proxy", &[]).await.unwrap();
    assert_eq!(upgrade(&server, "proxy2", &[]).await.err(), Some(429));
    // A refusal answers the request and leaves the proxy's connection usable: plain HTTP from
    // a new client on the same terms works.
    let (status, _) = http_request(
        server.addr,
        "GET /health HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.3\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_closed_forwarded_connection_releases_its_client_count() {
    let server = capped("127.0.0.1").await;
    let headers = [("X-Forwarded-For", "198.51.100.1")];
    let mut first = upgrade(&server, "a", &headers).await.unwrap();
    assert_eq!(upgrade(&server, "a2", &headers).await.err(), Some(429));
    first.ws.close(None).await.unwrap();
    first.ended().await;
    switchboard_testkit::wait_until_async("the count is released", || async {
        upgrade(&server, "a3", &headers).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn from_an_untrusted_peer_the_headers_are_ignored() {
    let server = capped("10.0.0.0/8").await;
    let _a = upgrade(&server, "a", &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .unwrap();
    // A different forwarded address changes nothing: both are 127.0.0.1.
    assert_eq!(
        upgrade(&server, "b", &[("X-Forwarded-For", "198.51.100.2")])
            .await
            .err(),
        Some(429)
    );
    assert_eq!(
        upgrade(&server, "c", &[("Forwarded", "for=198.51.100.3")])
            .await
            .err(),
        Some(429)
    );
}

#[tokio::test]
async fn debug_logs_name_the_client_a_trusted_proxy_forwards() {
    let mut server = Running::start(
        &[
            "--log-level",
            "switchboard=debug",
            "--trusted-proxies",
            "127.0.0.1",
        ],
        &[],
    )
    .await;
    let _client = upgrade_at(server.addr, "dana", &[("X-Forwarded-For", "198.51.100.1")])
        .await
        .unwrap();
    let forwarded = wait_for_log(&mut server.logs, "forwarded request").await;
    assert_eq!(forwarded["fields"]["proxy"], "127.0.0.1");
    assert_eq!(forwarded["fields"]["client"], "198.51.100.1");
    let connected = wait_for_log(&mut server.logs, "connected").await;
    assert_eq!(connected["fields"]["user"], "dana");
    assert_eq!(connected["span"]["address"], "198.51.100.1", "{connected}");
}

/// Opens a WebSocket as `user` over a TCP connection that first sends `header` (a PROXY
/// protocol header, or anything); `Err(None)` when the server closed it without an answer.
async fn upgrade_behind(
    addr: SocketAddr,
    header: &[u8],
    user: &str,
) -> Result<Client, Option<u16>> {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let request = format!("ws://{addr}/?userId={user}")
        .into_client_request()
        .unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let connecting = tokio_tungstenite::client_async(request, stream);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_stream(ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(Some(response.status().as_u16()))
        }
        Err(_) => Err(None),
    }
}

/// A version 2 PROXY header for an IPv4 client.
fn v2_header(client: [u8; 4], port: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&client);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&port.to_be_bytes());
    header.extend_from_slice(&3000u16.to_be_bytes());
    header
}

#[tokio::test]
async fn with_the_proxy_protocol_the_header_names_the_client_the_cap_counts() {
    let server = TestServer::with(|s| {
        s.max_connections_per_ip = Some(1);
        s.trusted_proxies = Some("127.0.0.0/8".into());
        s.proxy_protocol = Some(true);
    })
    .await;
    let v1 = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 3000\r\n").into_bytes();
    let first = upgrade_behind(server.addr, &v1("203.0.113.1"), "a").await;
    assert!(first.is_ok(), "the first connection of 203.0.113.1");
    let again = upgrade_behind(server.addr, &v1("203.0.113.1"), "b").await;
    assert_eq!(again.err(), Some(Some(429)), "its second is over the cap");
    let other = upgrade_behind(server.addr, &v2_header([203, 0, 113, 2], 40001), "c").await;
    assert!(other.is_ok(), "another client, in a version 2 header");
    let again = upgrade_behind(server.addr, &v2_header([203, 0, 113, 2], 40002), "d").await;
    assert_eq!(again.err(), Some(Some(429)));
    // The proxy's own health check (LOCAL) counts as the proxy, which the cap leaves alone.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let check = upgrade_behind(server.addr, &local, "e").await;
    assert!(check.is_ok(), "LOCAL");
    // From a trusted proxy a connection without the header is refused: a client could not
    // otherwise be told from the proxy.
    assert_eq!(
        upgrade_behind(server.addr, b"", "f").await.err(),
        Some(None)
    );
    let forged = b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\n";
    assert_eq!(
        upgrade_behind(server.addr, forged, "g").await.err(),
        Some(None)
    );
    drop(first);
}

#[tokio::test]
async fn the_proxy_protocol_needs_trusted_proxies() {
    let error = switchboard::Config::load_from(["switchboard", "--proxy-protocol"]).unwrap_err();
    assert!(error.to_string().contains("proxy_protocol"), "{error}");
}
