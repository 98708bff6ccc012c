//! What the connection's unit tests share: a hub built as the server builds it (without its
//! sweeps: a test runs them by hand), a connection served over an in-memory duplex stream, and
//! the client's end of that stream.
//!
//! The client speaks raw frames through tungstenite's frame codec (an independent
//! implementation of RFC 6455), so a test decides exactly what it sends and whether it answers.
//! Every read is bounded by [`WAIT`] of tokio time, so a test that expects a frame the server
//! never sends fails instead of hanging, paused clock or not.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, Join, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use super::driver::Driver;
use super::session::Session;
use super::{Endpoint, Mode};
use crate::broker::LocalBroker;
use crate::cluster::NoPeers;
use crate::config::{Config, HubConfig};
use crate::handlers::Extensions;
use crate::hub::{ConnHandle, Hub};
use crate::ids::UserId;

/// Upper bound for any one expected event, in tokio time.
pub(super) const WAIT: Duration = Duration::from_secs(60);

/// Bytes the in-memory stream buffers in each direction.
const PIPE: usize = 64 * 1024;

/// The server's end of the in-memory stream.
pub(super) type ServerIo = Join<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

/// A hub with the default configuration adjusted by `configure`, on a lone node.
pub(super) fn hub(configure: impl FnOnce(&mut HubConfig)) -> Hub {
    let mut config = Config::default().hub;
    configure(&mut config);
    Hub::new(
        config,
        Arc::new(LocalBroker::standalone()),
        Arc::new(NoPeers),
        None,
        Box::new(crate::docstore::MemoryDocs::default()),
    )
}

/// What the connections of `hub` share, with no application handlers.
pub(super) fn endpoint(hub: &Hub) -> Arc<Endpoint> {
    Arc::new(Endpoint {
        hub: hub.clone(),
        extensions: Extensions::default(),
        jwt: None,
        expiry: crate::auth::TokenExpiry::default(),
        proxy: None,
        sse: super::SseLinks::default(),
    })
}

/// A connected in-memory stream: the client's end and the server's.
pub(super) fn pipe() -> (Client, ServerIo) {
    let (client, server) = tokio::io::duplex(PIPE);
    let (read, write) = tokio::io::split(server);
    (Client::new(client), tokio::io::join(read, write))
}

/// A connection served as the server serves an admitted one, with what a test needs to drive
/// it: the client's end, the hub's handle and the connection's task.
pub(super) struct Served {
    pub(super) client: Client,
    pub(super) handle: ConnHandle,
    pub(super) task: JoinHandle<()>,
}

/// Admits a connection of `user` and spawns its task; the `connect` frame is queued.
pub(super) fn open(hub: &Hub, user: &str) -> Served {
    let (client, io) = pipe();
    let handle = hub.register(UserId::from_trusted(user)).expect("admitted");
    let session = Session::start(endpoint(hub), handle.clone(), Mode::Protocol, None);
    let task = tokio::spawn(Driver::new(io, session, bytes::Bytes::new()));
    Served {
        client,
        handle,
        task,
    }
}

/// Waits for a connection's task to end, at most [`WAIT`].
pub(super) async fn ended(task: &mut JoinHandle<()>) {
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the connection's task did not end")
        .expect("the connection's task panicked");
}

/// A frame as the client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Received {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The close code (`None`: an empty close frame) and reason.
    Close(Option<u16>, String),
}

/// The client's end of a connection.
pub(super) struct Client {
    io: DuplexStream,
    /// Bytes read but not yet parsed into frames.
    buffer: Vec<u8>,
}

impl Client {
    fn new(io: DuplexStream) -> Self {
        Self {
            io,
            buffer: Vec::new(),
        }
    }

    /// Sends `frames` masked, as a client must, in one write.
    pub(super) async fn send(&mut self, frames: impl IntoIterator<Item = Frame>) {
        let mut bytes = Vec::new();
        for mut frame in frames {
            frame.header_mut().mask = Some(fastrand::u32(..).to_be_bytes());
            frame.format(&mut bytes).expect("a frame formats");
        }
        self.send_raw(&bytes).await;
    }

    /// Sends bytes as they are.
    pub(super) async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("the server reads");
    }

    /// The next frame, or `None` when the server closed the stream.
    pub(super) async fn next(&mut self) -> Option<Received> {
        tokio::time::timeout(WAIT, self.read_frame())
            .await
            .expect("timed out waiting for a frame")
    }

    /// The next frame, which must be a text frame of protocol type `kind`; returns it as JSON.
    pub(super) async fn expect(&mut self, kind: &str) -> Value {
        match self.next().await {
            Some(Received::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).expect("a JSON frame");
                assert_eq!(frame["type"], kind, "unexpected frame {frame}");
                frame
            }
            other => panic!("expected a {kind:?} frame, got {other:?}"),
        }
    }

    /// The next frame, which must be a close frame; returns its code and reason.
    pub(super) async fn expect_close(&mut self) -> (Option<u16>, String) {
        match self.next().await {
            Some(Received::Close(code, reason)) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Requires the server to have closed the stream, with nothing more sent.
    pub(super) async fn expect_eof(&mut self) {
        let next = self.next().await;
        assert_eq!(next, None, "expected the end of the stream");
    }

    /// Reads until the server closes the stream; returns every whole frame.
    pub(super) async fn until_eof(&mut self) -> Vec<Received> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }

    async fn read_frame(&mut self) -> Option<Received> {
        loop {
            let mut cursor = Cursor::new(self.buffer.as_slice());
            if let Some((header, len)) = FrameHeader::parse(&mut cursor).expect("a valid header") {
                let start = cursor.position() as usize;
                let end = start + usize::try_from(len).expect("a length that fits");
                if self.buffer.len() >= end {
                    let payload = self.buffer[start..end].to_vec();
                    self.buffer.drain(..end);
                    return Some(received(&header, payload));
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn received(header: &FrameHeader, payload: Vec<u8>) -> Received {
    assert!(header.mask.is_none(), "server frames are not masked");
    assert!(header.is_final, "the server does not fragment");
    match header.opcode {
        OpCode::Data(Data::Text) => Received::Text(String::from_utf8(payload).expect("UTF-8")),
        OpCode::Data(Data::Binary) => Received::Binary(payload),
        OpCode::Control(Control::Ping) => Received::Ping(payload),
        OpCode::Control(Control::Pong) => Received::Pong(payload),
        OpCode::Control(Control::Close) => match payload.as_slice() {
            [] => Received::Close(None, String::new()),
            [high, low, reason @ ..] => Received::Close(
                Some(u16::from_be_bytes([*high, *low])),
                String::from_utf8(reason.to_vec()).expect("a UTF-8 reason"),
            ),
            [_] => panic!("a close frame with a one-byte payload"),
        },
        other => panic!("unexpected opcode {other:?}"),
    }
}

/// A text frame.
pub(super) fn text(text: &str) -> Frame {
    Frame::message(text.to_owned(), OpCode::Data(Data::Text), true)
}

/// A ping frame with `payload`.
pub(super) fn ping(payload: &str) -> Frame {
    Frame::ping(payload.as_bytes().to_vec())
}

/// A close frame with `code` and `reason`.
pub(super) fn close(code: u16, reason: &str) -> Frame {
    Frame::close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}
