//! [`Client`]: a protocol v1 client over tokio-tungstenite, which answers the server's
//! WebSocket pings whenever the test reads from it, and does nothing else by itself.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;
use crate::cluster::is_barrier_for_another;

/// A WebSocket client speaking protocol v1.
pub struct Client {
    /// The upgraded stream, for tests that send or read WebSocket messages themselves.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `connect` frame's payload (`Null` until it is read).
    pub connect: Value,
    /// Stamp of the last barrier sent, so each barrier's answer is told from earlier ones.
    pub(crate) barrier: u64,
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// With a close frame (1005 when it carried no code).
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Without a close frame.
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

    /// Drops the connection with a TCP reset: no close frame and no FIN, as when a phone
    /// loses its network or a laptop sleeps. The server learns of it from the reset.
    pub fn reset(self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            tcp.set_zero_linger().expect("SO_LINGER 0 on a test socket");
        }
    }

    /// Reads the `connect` frame, which must be the next one.
    pub async fn read_connect(&mut self) {
        let frame = self.recv().await;
        assert_eq!(frame["type"], "connect", "first frame: {frame}");
        self.connect = frame["payload"].clone();
    }

    /// The user the server gave this connection.
    pub fn user_id(&self) -> &str {
        self.connect["userId"]
            .as_str()
            .expect("the connect frame names the user")
    }

    /// The id the server gave this connection.
    pub fn connection_id(&self) -> &str {
        self.connect["connectionId"]
            .as_str()
            .expect("the connect frame names the connection")
    }

    /// Sends `frame` as a text frame.
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends `text` as a text frame, whatever it holds.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Sends `{type, payload}`.
    pub async fn send_type(&mut self, kind: &str, payload: Value) {
        self.send(json!({ "type": kind, "payload": payload })).await;
    }

    /// The next protocol frame (text), answering nothing itself; panics on close or timeout.
    /// Skips the markers of [`Client::expect_nothing_pending_across`] addressed to another
    /// connection of the same user: they are the harness's, not the server's.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    if !is_barrier_for_another(&frame, &self.connect) {
                        return frame;
                    }
                }
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

    /// Proves that nothing else is queued for this client on its node: sends a `ping` and
    /// requires its `pong` to be the very next frame. For frames that may still be crossing
    /// Redis, see [`Client::expect_nothing_pending_across`].
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
