//! Shared harness for the integration tests: a real server on an ephemeral port, real
//! WebSocket clients (tokio-tungstenite, an independent implementation), raw sockets for
//! misbehaving clients, and plain HTTP.
//!
//! Waiting is always for an event, bounded by `WAIT`; "nothing arrived" is proven with a
//! barrier (a `ping` whose `pong` must be the next frame), never with a sleep.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod redis;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::config::RawSettings;
use switchboard::{Config, Hub, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<bool>>,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// Starts a server on 127.0.0.1:0 with settings adjusted by `configure`.
    pub async fn with(configure: impl FnOnce(&mut RawSettings)) -> Self {
        let mut raw = RawSettings {
            host: Some("127.0.0.1".into()),
            port: Some(0),
            ..RawSettings::default()
        };
        configure(&mut raw);
        let config = Config::from_settings(raw).expect("valid test config");
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let hub = server.hub().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Connects `user` on `/`.
    pub async fn connect(&self, user: &str) -> Client {
        Client::connect(&self.url(&format!("/?userId={user}"))).await
    }

    /// Connects `user` and joins `room`, consuming `connect` and `room_joined`.
    pub async fn member(&self, user: &str, room: &str) -> Client {
        let mut client = self.connect(user).await;
        client.join(room).await;
        client
    }

    /// Connects `user` with the project's Rust client (`switchboard-client`), for tests of
    /// well-behaved clients; waits for the connection.
    pub async fn client(
        &self,
        user: &str,
    ) -> (switchboard_client::Client, switchboard_client::Events) {
        let config =
            switchboard_client::ClientConfig::new(format!("ws://{}", self.addr)).with_user_id(user);
        tokio::time::timeout(WAIT, switchboard_client::Client::connect(config))
            .await
            .expect("client connect timed out")
            .expect("client connect failed")
    }

    /// Triggers graceful shutdown and waits for it; returns whether it was clean.
    pub async fn shutdown(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }

    /// Fetches `/stats` as JSON.
    pub async fn stats(&self) -> Value {
        let (status, body) = http_get(self.addr, "/stats").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A WebSocket client speaking protocol v1.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `connect` frame's payload.
    pub connect: Value,
    barrier: u64,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed { code: u16, reason: String },
    Dropped,
}

impl Client {
    /// Connects and reads the `connect` frame.
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, None).await
    }

    /// Connects with a TLS configuration for `wss://` (`None`: the default roots) and reads
    /// the `connect` frame.
    pub async fn connect_with(url: &str, tls: Option<tokio_tungstenite::Connector>) -> Self {
        let connecting = tokio_tungstenite::connect_async_tls_with_config(url, None, true, tls);
        let (ws, _) = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Self::from_stream(ws).await
    }

    /// Takes over an upgraded WebSocket and reads the `connect` frame.
    pub async fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut client = Self::upgraded(ws);
        client.read_connect().await;
        client
    }

    /// A client on an upgraded stream whose `connect` frame has not been read yet.
    pub fn upgraded(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            connect: Value::Null,
            barrier: 0,
        }
    }

    /// Reads the `connect` frame, which must be the next one.
    pub async fn read_connect(&mut self) {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "connect", "first frame: {frame}");
        self.connect = frame["payload"].clone();
    }

    pub fn user_id(&self) -> &str {
        self.connect["userId"].as_str().unwrap()
    }

    pub fn connection_id(&self) -> &str {
        self.connect["connectionId"].as_str().unwrap()
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends `{type, payload}`.
    pub async fn send_type(&mut self, kind: &str, payload: Value) {
        self.send(json!({ "type": kind, "payload": payload })).await;
    }

    /// The next protocol frame (text), answering nothing itself; panics on close or timeout.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("closed while waiting for a frame: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next frame, which must have type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    /// The next frame, which must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let frame = self.expect("error").await;
        assert_eq!(frame["payload"]["code"], code, "{frame}");
        frame
    }

    /// Joins `room` and returns the `room_joined` frame.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send_type("join_room", json!({ "room": room })).await;
        self.expect("room_joined").await
    }

    /// Proves that nothing else is queued for this client: sends a `ping` and requires its
    /// `pong` to be the very next frame.
    pub async fn expect_nothing_pending(&mut self) {
        self.barrier += 1;
        let stamp = self.barrier;
        self.send_type("ping", json!({ "barrier": stamp })).await;
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "pong",
            "expected nothing pending, got {frame}"
        );
        assert_eq!(frame["payload"]["barrier"], stamp);
    }

    /// Waits for the connection to end, skipping frames, and says how.
    pub async fn ended(&mut self) -> Ended {
        Self::ended_stream(&mut self.ws).await
    }

    /// Waits for `ws` to end, skipping frames, and says how. After a close frame it keeps
    /// polling until the stream ends, which is when tungstenite sends its close reply: the
    /// close handshake completes as with any well-behaved client.
    pub async fn ended_stream(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ended {
        let mut ended = None;
        loop {
            let next = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("timed out waiting for the connection to end");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    ended.get_or_insert(match frame {
                        Some(CloseFrame { code, reason }) => Ended::Closed {
                            code: code.into(),
                            reason: reason.to_string(),
                        },
                        None => Ended::Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return ended.unwrap_or(Ended::Dropped),
            }
        }
    }

    /// Waits for a close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        match self.ended().await {
            Ended::Closed { code, .. } => code,
            Ended::Dropped => panic!("connection dropped without a close frame"),
        }
    }
}

/// The events a Rust client has received so far, proven complete by a `ping` round trip: the
/// server answers in order, so everything it sent before the `pong` is already there.
pub async fn received_events(
    client: &switchboard_client::Client,
    events: &mut switchboard_client::Events,
) -> Vec<switchboard_client::Event> {
    client.request("ping", json!({}), WAIT).await.expect("ping");
    std::iter::from_fn(|| events.try_recv()).collect()
}

/// The next event of a Rust client that `wanted` accepts, skipping others, at most `WAIT`.
pub async fn next_event(
    events: &mut switchboard_client::Events,
    what: &str,
    mut wanted: impl FnMut(&switchboard_client::Event) -> bool,
) -> switchboard_client::Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("client events ended");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until `condition` holds, checking every 10 ms, at most `WAIT`. For state the server
/// changes after a client can observe anything (such as cleanup after a disconnect).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`] for a condition that needs to await (an HTTP call, say).
pub async fn wait_until_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET path` over a fresh connection; returns the status and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `METHOD path` with a JSON body and extra headers; returns the status and the body as JSON
/// (`Value::Null` when it is not JSON).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let (status, text) = http_request(addr, &request).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends a raw HTTP request and reads the whole response.
pub async fn http_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("HTTP response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A raw TCP connection that has completed the WebSocket handshake and then does only what the
/// test tells it to: it does not answer pings and may never read.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr, path_and_query: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // Read the response head byte by byte so no frame bytes are consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
                .await
                .expect("handshake timed out")
                .unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { stream }
    }

    /// Sends one masked frame with `opcode` and `payload`.
    pub async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.stream
            .write_all(&masked_frame(first_byte, payload))
            .await
            .unwrap();
    }

    /// Sends raw bytes.
    pub async fn send_frame_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one server frame: (first byte, payload).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(WAIT, async {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await?;
            let len = match head[1] & 0x7F {
                126 => {
                    let mut b = [0u8; 2];
                    self.stream.read_exact(&mut b).await?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.stream.read_exact(&mut b).await?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await?;
            std::io::Result::Ok((head[0], payload))
        })
        .await
        .expect("timed out reading a frame")
        .expect("connection ended")
    }

    /// Reads frames until a close frame; returns its code (or `None` on EOF first).
    pub async fn read_close(&mut self) -> Option<u16> {
        loop {
            let frame = tokio::time::timeout(WAIT, async {
                let mut head = [0u8; 2];
                self.stream.read_exact(&mut head).await?;
                let mut payload = vec![0u8; usize::from(head[1] & 0x7F)];
                if head[1] & 0x7F >= 126 {
                    let extra = if head[1] & 0x7F == 126 { 2 } else { 8 };
                    let mut b = vec![0u8; extra];
                    self.stream.read_exact(&mut b).await?;
                    let len = b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
                    payload = vec![0u8; len as usize];
                }
                self.stream.read_exact(&mut payload).await?;
                std::io::Result::Ok((head[0], payload))
            })
            .await
            .expect("timed out waiting for close");
            match frame {
                Ok((0x88, payload)) if payload.len() >= 2 => {
                    return Some(u16::from_be_bytes([payload[0], payload[1]]));
                }
                Ok((0x88, _)) => return Some(1005),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

/// A client frame: `first_byte` (FIN, RSV, opcode), masked `payload`.
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}
