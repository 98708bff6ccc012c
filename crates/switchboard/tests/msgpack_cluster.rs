//! MessagePack across a cluster, with a real redis-server: a MessagePack client's bytes cross
//! the broker and the Redis history stream (both keep the JSON form) and reach a MessagePack
//! client on the other node as bytes, live and in `history`; a JSON client there gets the
//! base64 form.

#![allow(clippy::unwrap_used)]

mod deflate_support;
mod msgpack_support;

use msgpack_support::{Pack, Packed, frame};
use serde_json::json;
use switchboard_testkit::{RedisServer, TestServer};

#[tokio::test]
async fn bytes_cross_nodes_as_bytes() {
    let redis = RedisServer::start().await;
    let node = |name: &'static str| {
        TestServer::cluster_node(&redis, name, |s| {
            s.history_size = Some(10);
            s.rate_limit = Some(0);
        })
    };
    let a = node("a").await;
    let b = node("b").await;
    let mut reader = Packed::member(&b, "reader", "files", false).await;
    let mut plain = b.member("plain", "files").await;
    let mut writer = Packed::member(&a, "writer", "files", true).await;
    let blob: Vec<u8> = (0..=255).rev().collect();
    let message = frame(
        "message",
        vec![
            ("room", Pack::from("files")),
            ("content", Pack::Binary(blob.clone())),
        ],
        Some("m1"),
    );
    writer.send(&message).await;
    let ack = writer.until("ack").await;
    assert_eq!(ack["payload"]["offset"], 1);

    let live = loop {
        let frame = reader.next_pack().await;
        if frame["type"] == Pack::from("message") {
            break frame;
        }
    };
    assert_eq!(live["payload"]["content"], Pack::Binary(blob.clone()));
    assert_eq!(live["offset"], Pack::from(1));
    let seen = loop {
        let frame = plain.recv().await;
        if frame["type"] == "message" {
            break frame;
        }
    };
    assert!(seen["payload"]["content"]["$bytes"].is_string(), "{seen}");

    reader
        .send_json(&json!({"type": "history", "payload": {"room": "files"}}))
        .await;
    let history = loop {
        let frame = reader.next_pack().await;
        if frame["type"] == Pack::from("history") {
            break frame;
        }
    };
    let publications = history["payload"]["publications"].as_array().unwrap();
    assert_eq!(publications.len(), 1);
    assert_eq!(publications[0]["payload"]["content"], Pack::Binary(blob));
}
