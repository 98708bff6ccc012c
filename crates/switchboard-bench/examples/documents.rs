//! What Yjs documents (`/yjs`) cost the server, measured from outside on the release binary:
//!
//! - memory: server RSS with DOCS documents open with 2 clients each, against the same number
//!   of plain protocol connections, so the difference is the documents' own cost; and with 100
//!   documents of 100 KB of text each (one client each);
//! - CPU: server CPU time per delivery of a relayed update (one writer and one reader per
//!   document, distinct 64-byte text inserts) against a room message of the same content (one
//!   sender and one receiver per room), in interleaved rounds on one server process.
//!
//!     cargo run --release -p switchboard-bench --example documents -- BIN [DOCS RATE SECONDS ROUNDS]
//!
//! BIN is the server binary (e.g. target/release/switchboard); RATE is messages per second over
//! all senders. Prints one line per measurement.

mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use yrs::{Doc, ReadTxn, Text, Transact};

use common::{Error, Server};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// What the server runs with besides the common settings (`common::Server::start`).
const ARGS: &[&str] = &["--document-rate-limit", "0"];

/// The content every message carries.
const CONTENT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bin) = args.first().cloned() else {
        return Err("usage: documents BIN [DOCS RATE SECONDS ROUNDS]".into());
    };
    let number = |i: usize, default: u64| -> Result<u64, Error> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (docs, rate, seconds, rounds) = (
        number(1, 1000)?,
        number(2, 2000)?,
        number(3, 10)?,
        number(4, 3)?,
    );

    // Memory: documents with 2 clients each, against as many plain connections.
    let plain = Server::start(&bin, ARGS).await?;
    let base = plain.rss_kib()?;
    let mut held = Vec::new();
    for i in 0..docs * 2 {
        let mut ws = plain.connect(&format!("/ws?userId=u{i}")).await?;
        next_text(&mut ws).await?;
        held.push(ws);
    }
    let plain_kib = plain.rss_kib()? - base;
    drop(held);
    plain.stop().await;

    let server = Server::start(&bin, ARGS).await?;
    let base = server.rss_kib()?;
    let mut held = Vec::new();
    for i in 0..docs * 2 {
        held.push(server.open(&format!("mem-{}", i / 2), i).await?);
    }
    let docs_kib = server.rss_kib()? - base;
    println!(
        "memory: {docs} documents x 2 clients: {} B per document (RSS {docs_kib} KiB; {} plain connections: {plain_kib} KiB)",
        (docs_kib - plain_kib) * 1024 / docs,
        docs * 2
    );
    drop(held);
    server.stop().await;

    let server = Server::start(&bin, ARGS).await?;
    let base = server.rss_kib()?;
    let big = 100;
    let text = "x".repeat(100 * 1024);
    let mut held = Vec::new();
    for i in 0..big {
        let mut ws = server.open(&format!("big-{i}"), i).await?;
        let doc = Doc::new();
        let update = insert(&doc, &text);
        ws.send(Message::binary(sync(2, &update))).await?;
        held.push(ws);
    }
    // The updates are applied once the server answers a later query in order.
    for ws in &mut held {
        ws.send(Message::binary(vec![3])).await?;
        while !matches!(ws.next().await, Some(Ok(Message::Binary(b))) if b.first() == Some(&1)) {}
    }
    let big_kib = server.rss_kib()? - base;
    println!(
        "memory: {big} documents of 100 KB of text, 1 client each: {} KiB per document",
        big_kib / big
    );
    drop(held);
    server.stop().await;

    // CPU per delivery: relayed updates against room messages, interleaved.
    let server = Server::start(&bin, ARGS).await?;
    let pairs = docs.min(100);
    let mut doc_pairs = Vec::new();
    for i in 0..pairs {
        let writer = server.open(&format!("cpu-{i}"), 2 * i).await?;
        let reader = server.open(&format!("cpu-{i}"), 2 * i + 1).await?;
        doc_pairs.push((writer, reader, Doc::new()));
    }
    let mut room_pairs = Vec::new();
    for i in 0..pairs {
        let mut sender = server.connect(&format!("/ws?userId=s{i}")).await?;
        let mut receiver = server.connect(&format!("/ws?userId=r{i}")).await?;
        for ws in [&mut sender, &mut receiver] {
            next_text(ws).await?;
            let join = format!(r#"{{"type":"join_room","payload":{{"room":"room-{i}"}}}}"#);
            ws.send(Message::text(join)).await?;
            while !next_text(ws).await?.contains("room_joined") {}
        }
        room_pairs.push((sender, receiver));
    }
    let messages = rate * seconds;
    for round in 1..=rounds {
        let cpu = server.cpu_seconds()?;
        relay_updates(&mut doc_pairs, messages, rate).await?;
        let per_update = (server.cpu_seconds()? - cpu) / messages as f64 * 1e6;
        let cpu = server.cpu_seconds()?;
        relay_messages(&mut room_pairs, messages, rate).await?;
        let per_message = (server.cpu_seconds()? - cpu) / messages as f64 * 1e6;
        println!(
            "cpu round {round}: {per_update:.2} µs per relayed update, {per_message:.2} µs per room message ({messages} each, {rate}/s, {pairs} pairs)"
        );
    }
    server.stop().await;
    Ok(())
}

/// Sends `count` distinct updates round-robin over the writers at `rate` per second, and waits
/// until every reader has received its share.
async fn relay_updates(pairs: &mut [(Ws, Ws, Doc)], count: u64, rate: u64) -> Result<(), Error> {
    let started = Instant::now();
    for n in 0..count {
        let (writer, _, doc) = &mut pairs[(n % pairs.len() as u64) as usize];
        let update = insert(doc, CONTENT);
        writer.send(Message::binary(sync(2, &update))).await?;
        pace(started, n, rate).await;
    }
    let n = pairs.len() as u64;
    for (i, (_, reader, _)) in pairs.iter_mut().enumerate() {
        let share = count / n + u64::from((i as u64) < count % n);
        let mut got = 0;
        while got < share {
            if let Some(Ok(Message::Binary(b))) = reader.next().await {
                got += u64::from(b.starts_with(&[0, 2]));
            }
        }
    }
    Ok(())
}

/// The same with room messages carrying [`CONTENT`].
async fn relay_messages(pairs: &mut [(Ws, Ws)], count: u64, rate: u64) -> Result<(), Error> {
    let started = Instant::now();
    let frame =
        format!(r#"{{"type":"message","payload":{{"room":"ROOM","content":"{CONTENT}"}}}}"#);
    for n in 0..count {
        let i = (n % pairs.len() as u64) as usize;
        let text = frame.replace("ROOM", &format!("room-{i}"));
        pairs[i].0.send(Message::text(text)).await?;
        pace(started, n, rate).await;
    }
    let n = pairs.len() as u64;
    for (i, (_, receiver)) in pairs.iter_mut().enumerate() {
        let share = count / n + u64::from((i as u64) < count % n);
        let mut got = 0;
        while got < share {
            got += u64::from(next_text(receiver).await?.contains(r#""type":"message""#));
        }
    }
    Ok(())
}

async fn pace(started: Instant, sent: u64, rate: u64) {
    let due = started + Duration::from_secs_f64((sent + 1) as f64 / rate as f64);
    tokio::time::sleep_until(due.into()).await;
}

/// Appends `text` to `doc`'s shared text; returns the update.
fn insert(doc: &Doc, text: &str) -> Vec<u8> {
    let shared = doc.get_or_insert_text("text");
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let len = shared.len(&txn);
        shared.insert(&mut txn, len, text);
    }
    doc.transact().encode_diff_v1(&before)
}

/// A y-websocket sync message of type `kind` carrying `body`.
fn sync(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![0, kind];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            message.push(byte);
            break;
        }
        message.push(byte | 0x80);
    }
    message.extend_from_slice(body);
    message
}

async fn next_text(ws: &mut Ws) -> Result<String, Error> {
    loop {
        match ws.next().await.ok_or("connection ended")?? {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(_) => return Err("closed".into()),
            _ => {}
        }
    }
}

impl Server {
    async fn connect(&self, path: &str) -> Result<Ws, Error> {
        Ok(connect_async(format!("ws://127.0.0.1:{}{path}", self.port))
            .await?
            .0)
    }

    /// A client of document `doc` that has received the server's sync step 1 and answer.
    async fn open(&self, doc: &str, user: u64) -> Result<Ws, Error> {
        let mut ws = self.connect(&format!("/yjs/{doc}?userId=d{user}")).await?;
        ws.send(Message::binary(vec![0, 0, 1, 0])).await?;
        let mut synced = 0;
        while synced < 2 {
            if let Some(Ok(Message::Binary(b))) = ws.next().await {
                synced += u8::from(b.starts_with(&[0, 0]) || b.starts_with(&[0, 1]));
            }
        }
        Ok(ws)
    }
}
