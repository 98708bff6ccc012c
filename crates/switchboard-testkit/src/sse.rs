//! [`SseClient`]: a client of the SSE transport (`GET /sse`, `POST /sse/{connectionId}`)
//! written by hand over a socket, so tests see the response head, the chunked body and each
//! event exactly as the server (or a proxy in front of it) sent them.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::{WAIT, http_request};

/// What the stream carried next.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A comment line (`: ping`), without its colon and leading space.
    Comment(String),
    /// A field other than `data` (`retry: 1000`), as written.
    Field(String),
    /// An event's data, parsed as JSON.
    Event(Value),
    /// The body ended.
    End,
}

/// An open SSE stream.
pub struct SseClient {
    /// Where the stream was opened (POSTs go to the same server unless told otherwise).
    pub addr: SocketAddr,
    /// The response's status.
    pub status: u16,
    /// The response's head, lowercased header names, as sent.
    pub head: String,
    /// The `connect` event's payload, once read by [`SseClient::read_connect`].
    pub connect: Option<Value>,
    reader: BufReader<TcpStream>,
    /// Bytes of the current chunk not read yet.
    chunk_left: usize,
    /// Whether the terminating chunk was read.
    ended: bool,
}

impl SseClient {
    /// Sends `GET path_and_query` with `headers`; returns once the response head is read.
    pub async fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
        let mut request =
            format!("GET {path_and_query} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        tokio::time::timeout(WAIT, async {
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await.expect("read the head") == 0 {
                    break;
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
        })
        .await
        .expect("SSE response head timed out");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Self {
            addr,
            status,
            head: head.to_ascii_lowercase(),
            connect: None,
            reader,
            chunk_left: 0,
            ended: false,
        }
    }

    /// Opens `/sse?userId=user` and reads the `connect` event.
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        let mut client = Self::open(addr, &format!("/sse?userId={user}"), &[]).await;
        assert_eq!(client.status, 200, "{}", client.head);
        client.read_connect().await;
        client
    }

    /// Reads the `connect` event (the first event) and keeps its payload.
    pub async fn read_connect(&mut self) -> Value {
        let connect = self.expect("connect").await;
        self.connect = Some(connect["payload"].clone());
        connect
    }

    /// The connection's id from its `connect` event.
    pub fn connection_id(&self) -> String {
        self.connect_field("connectionId")
    }

    /// The session secret from its `connect` event.
    pub fn session(&self) -> String {
        self.connect_field("session")
    }

    fn connect_field(&self, name: &str) -> String {
        let connect = self.connect.as_ref().expect("connect was read");
        connect[name].as_str().expect("a string field").to_owned()
    }

    /// POSTs `body` to this connection with its session; returns the status and the JSON body
    /// (`Value::Null` when there is none).
    pub async fn post(&self, body: &str) -> (u16, Value) {
        let session = self.session();
        self.post_as(&self.connection_id(), Some(&session), body, "text/plain")
            .await
    }

    /// POSTs `body` to `/sse/{id}` with `session` (if any) and `content_type`.
    pub async fn post_as(
        &self,
        id: &str,
        session: Option<&str>,
        body: &str,
        content_type: &str,
    ) -> (u16, Value) {
        post_to(self.addr, id, session, body, content_type).await
    }

    /// POSTs one frame.
    pub async fn send(&self, frame: Value) {
        let (status, body) = self.post(&frame.to_string()).await;
        assert_eq!(status, 204, "POST {frame}: {body}");
    }

    /// The next item of the stream, bounded by [`WAIT`].
    pub async fn next_item(&mut self) -> Item {
        tokio::time::timeout(WAIT, self.read_item())
            .await
            .expect("no SSE event in time")
    }

    /// The next event's data, skipping comments and other fields; fails at the end.
    pub async fn recv(&mut self) -> Value {
        loop {
            match self.next_item().await {
                Item::Event(value) => return value,
                Item::End => panic!("the SSE stream ended"),
                Item::Comment(_) | Item::Field(_) => {}
            }
        }
    }

    /// The next event, which must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let event = self.recv().await;
        assert_eq!(event["type"], kind, "expected {kind}, got {event}");
        event
    }

    /// The next event, which must be an `error` with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let event = self.expect("error").await;
        assert_eq!(event["payload"]["code"], code, "{event}");
        event
    }

    /// Reads until the stream ends; returns the events read on the way.
    pub async fn ended(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            match self.next_item().await {
                Item::End => return events,
                Item::Event(value) => events.push(value),
                Item::Comment(_) | Item::Field(_) => {}
            }
        }
    }

    async fn read_item(&mut self) -> Item {
        let mut data: Option<String> = None;
        loop {
            let Some(line) = self.read_line().await else {
                return Item::End;
            };
            if line.is_empty() {
                if let Some(data) = data.take() {
                    let value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                    return Item::Event(value);
                }
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                return Item::Comment(comment.trim_start().to_owned());
            }
            match line.strip_prefix("data:") {
                Some(value) => {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match &mut data {
                        Some(data) => {
                            data.push('\n');
                            data.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    }
                }
                None => return Item::Field(line),
            }
        }
    }

    /// One line of the event stream (without its `\n`), across chunk boundaries; `None` at
    /// the end of the body.
    async fn read_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        loop {
            let byte = self.read_body_byte().await?;
            if byte == b'\n' {
                return Some(String::from_utf8(line).expect("UTF-8 event stream"));
            }
            line.push(byte);
        }
    }

    async fn read_body_byte(&mut self) -> Option<u8> {
        if self.ended {
            return None;
        }
        if self.chunk_left == 0 {
            let mut size = String::new();
            let n = self.reader.read_line(&mut size).await.ok()?;
            if n == 0 {
                self.ended = true;
                return None;
            }
            if size.trim().is_empty() {
                // The CRLF after the previous chunk's data.
                size.clear();
                self.reader.read_line(&mut size).await.ok()?;
            }
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            if size == 0 {
                self.ended = true;
                return None;
            }
            self.chunk_left = size;
        }
        let byte = self.reader.read_u8().await.ok()?;
        self.chunk_left -= 1;
        Some(byte)
    }
}

/// POSTs `body` to `/sse/{id}` on `addr` with `session` (if any) and `content_type`; returns
/// the status and the JSON body (`Value::Null` when there is none).
pub async fn post_to(
    addr: SocketAddr,
    id: &str,
    session: Option<&str>,
    body: &str,
    content_type: &str,
) -> (u16, Value) {
    let mut request = format!(
        "POST /sse/{id} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(session) = session {
        request.push_str(&format!("X-Switchboard-Session: {session}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let (status, text) = http_request(addr, &request).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
