//! [`RawClient`]: a TCP connection that completed the WebSocket handshake and then does only
//! what the test tells it to, byte by byte; [`masked_frame`] encodes its frames.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// A raw TCP connection after the WebSocket handshake: it does not answer pings and may never
/// read.
pub struct RawClient {
    /// The socket, for tests that write or read bytes themselves.
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects to `addr`, upgrades `path_and_query` and reads the `101` head, nothing more.
    pub async fn connect(addr: SocketAddr, path_and_query: &str) -> Self {
        Self::connect_with(addr, path_and_query, "").await.0
    }

    /// [`RawClient::connect`] with `headers` (each line ending in `\r\n`) added to the
    /// upgrade request; returns the response head too.
    pub async fn connect_with(
        addr: SocketAddr,
        path_and_query: &str,
        headers: &str,
    ) -> (Self, String) {
        let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n{headers}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        // Read the response head byte by byte so no frame bytes are consumed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tokio::time::timeout(WAIT, stream.read_exact(&mut byte))
                .await
                .expect("handshake timed out")
                .expect("read the upgrade response");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (Self { stream }, head)
    }

    /// Sends one masked frame: `first_byte` (FIN, RSV, opcode) and `payload`.
    pub async fn send_frame(&mut self, first_byte: u8, payload: &[u8]) {
        self.send_frame_bytes(&masked_frame(first_byte, payload))
            .await;
    }

    /// Sends raw bytes.
    pub async fn send_frame_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Reads one server frame: (first byte, payload).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(WAIT, self.next_frame())
            .await
            .expect("timed out reading a frame")
            .expect("connection ended")
    }

    /// Reads frames until a close frame; returns its code (1005 without one), or `None` when
    /// the connection ends first.
    pub async fn read_close(&mut self) -> Option<u16> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.next_frame())
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

    /// One unmasked server frame: (first byte, payload).
    async fn next_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
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
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok((head[0], payload))
    }
}

/// A client frame: `first_byte` (FIN, RSV, opcode) as given, masked `payload` (the protocol
/// crate's encoder, the one the bench tool uses too).
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    switchboard_protocol::ws::encode_masked_frame(
        &mut out,
        first_byte,
        payload,
        [0x11, 0x22, 0x33, 0x44],
    );
    out
}
