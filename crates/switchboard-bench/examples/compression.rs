//! What permessage-deflate costs and saves, measured from outside on the release binary:
//!
//! - fan-out: one sender, RECEIVERS members of one room, MESSAGES room messages whose content is
//!   SIZE bytes of JSON text (records with varying numbers, as a dashboard sends), each size
//!   run once with receivers that offer permessage-deflate and once with receivers that do
//!   not, each against a fresh server: server CPU time per delivery and bytes on the wire per
//!   delivery (frame header and payload, as the receivers read them);
//! - idle memory: server RSS per idle connection, IDLE connections that negotiated the
//!   extension against IDLE that did not.
//!
//!     cargo run --release -p switchboard-bench --example compression -- BIN [RECEIVERS MESSAGES IDLE]
//!
//! BIN is the server binary (e.g. target/release/switchboard). Prints one line per measurement.
//! The receivers are raw sockets that count frames without inflating them once they have
//! joined (a compressed frame is then always a room message: the other frames stay under the
//! threshold); before, they inflate to find their `room_joined`, which lists the room's members
//! and may be compressed.

mod common;

use std::time::Duration;

use common::{Error, Server};
use switchboard_testkit::RawClient;

/// What the server runs with besides the common settings (`common::Server::start`).
const ARGS: &[&str] = &[
    "--max-content-length",
    "100000",
    "--max-queued-bytes",
    "256MiB",
];

/// What a browser offers.
const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bin) = args.first().cloned() else {
        return Err("usage: compression BIN [RECEIVERS MESSAGES IDLE]".into());
    };
    let number = |i: usize, default: usize| -> Result<usize, Error> {
        Ok(args
            .get(i)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let (receivers, messages, idle) = (number(1, 50)?, number(2, 500)?, number(3, 2000)?);
    for size in [1 << 10, 16 << 10] {
        for deflate in [false, true] {
            let server = Server::start(&bin, ARGS).await?;
            let (cpu_us, wire) = fan_out(&server, receivers, messages, size, deflate).await?;
            println!(
                "fan-out: {size} B JSON, {receivers} receivers x {messages} messages, {}: \
                 {cpu_us:.2} µs server CPU per delivery, {wire:.0} B on the wire per delivery",
                if deflate { "deflate" } else { "plain" }
            );
            server.stop().await;
        }
    }
    for deflate in [false, true] {
        let server = Server::start(&bin, ARGS).await?;
        let base = server.rss_kib()?;
        let mut held = Vec::new();
        for i in 0..idle {
            held.push(server.raw(&format!("/ws?userId=idle{i}"), deflate).await?);
        }
        // Each has its `connect` frame; reading one proves the server answered all before it.
        for client in &mut held {
            client.read_frame().await;
        }
        let kib = server.rss_kib()? - base;
        println!(
            "idle: {idle} connections, {}: {} B RSS per connection",
            if deflate { "deflate" } else { "plain" },
            kib * 1024 / idle as u64
        );
        drop(held);
        server.stop().await;
    }
    Ok(())
}

/// A compressed message's payload inflated (RFC 7692 §7.2.2: the sync-flush tail put back).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut decompress = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(64 << 10);
    let _ = decompress.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync);
    out
}

/// SIZE bytes of JSON text: records whose numbers vary, so it compresses like real data.
fn json_content(size: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(size as u64);
    let mut text = String::from("[");
    while text.len() < size {
        let id = rng.u32(..100_000);
        text.push_str(&format!(
            "{{'id':{id},'name':'user-{id}','score':{},'online':{},'room':'r{}'}},",
            rng.u32(..10_000),
            rng.bool(),
            rng.u8(..50)
        ));
    }
    text.truncate(size);
    text
}

/// Runs one fan-out; returns server CPU µs per delivery and wire bytes per delivery.
async fn fan_out(
    server: &Server,
    receivers: usize,
    messages: usize,
    size: usize,
    deflate: bool,
) -> Result<(f64, f64), Error> {
    let join = r#"{"type":"join_room","payload":{"room":"bench"}}"#;
    let mut sender = server.raw("/ws?userId=sender", false).await?;
    sender.send_frame(0x81, join.as_bytes()).await;
    while !sender
        .read_frame()
        .await
        .1
        .starts_with(br#"{"type":"room_joined""#)
    {}
    let mut tasks = Vec::new();
    let (ready, mut all_ready) = tokio::sync::mpsc::channel(receivers);
    for i in 0..receivers {
        let mut client = server.raw(&format!("/ws?userId=r{i}"), deflate).await?;
        client.send_frame(0x81, join.as_bytes()).await;
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut joined = false;
            let (mut received, mut wire) = (0, 0);
            while received < messages {
                let (first, payload) = client.read_frame().await;
                let compressed = first & 0x40 != 0;
                if !joined {
                    let text = if compressed {
                        inflate(&payload)
                    } else {
                        payload
                    };
                    joined = text.starts_with(br#"{"type":"room_joined""#);
                    if joined {
                        let _ = ready.send(()).await;
                    }
                    continue;
                }
                if compressed || payload.starts_with(br#"{"type":"message""#) {
                    received += 1;
                    wire += payload.len() + if payload.len() < 126 { 2 } else { 4 };
                }
            }
            wire
        }));
    }
    for _ in 0..receivers {
        all_ready.recv().await.ok_or("a receiver ended")?;
    }
    let content = json_content(size);
    let frame =
        format!(r#"{{"type":"message","payload":{{"room":"bench","content":"{content}"}}}}"#);
    let before = server.cpu_seconds()?;
    for _ in 0..messages {
        sender.send_frame(0x81, frame.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut wire = 0;
    for task in tasks {
        wire += task.await?;
    }
    let cpu = server.cpu_seconds()? - before;
    let deliveries = (receivers * messages) as f64;
    Ok((cpu * 1e6 / deliveries, wire as f64 / deliveries))
}

impl Server {
    /// A raw client of `path` that offered permessage-deflate (and got it) or not.
    async fn raw(&self, path: &str, deflate: bool) -> Result<RawClient, Error> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let (client, head) =
            RawClient::connect_with(addr, path, if deflate { OFFER } else { "" }).await;
        if deflate != head.to_ascii_lowercase().contains("permessage-deflate") {
            return Err(format!("unexpected negotiation: {head}").into());
        }
        Ok(client)
    }
}
