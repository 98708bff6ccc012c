//! History and recovery across nodes (DESIGN.md §7), with a real redis-server: offsets come
//! from Redis, so every node shows the same offset for the same message; a client recovers on
//! whichever node it comes back to; a Redis that lost everything means a new epoch; and a node
//! whose pub/sub connection was cut fills the gap from the store.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchboard::ids::{RoomId, UserId};
use switchboard_testkit::{Client, RedisServer, TestServer, wait_until};

async fn node(redis: &RedisServer, name: &str, history_size: usize) -> TestServer {
    TestServer::cluster_node(redis, name, |s| {
        s.node_ttl = Some("2s".parse().unwrap());
        s.rate_limit = Some(0);
        s.history_size = Some(history_size);
        // The tests read history through the server API too, without a key.
        s.api_insecure = Some(true);
    })
    .await
}

/// Waits until `server` knows `user` is in `room`.
async fn sees_member(server: &TestServer, room: &str, user: &str) {
    let (room, user) = (RoomId::from_trusted(room), UserId::from_trusted(user));
    wait_until("the member is known cluster-wide", || {
        server.hub.room_members(&room).contains(&user)
    })
    .await;
}

/// Joins `room` (with `since` when given) and returns the `room_joined` frame.
async fn join(client: &mut Client, room: &str, since: Option<&Value>) -> Value {
    client
        .send_type("join_room", json!({"room": room, "since": since}))
        .await;
    client.expect("room_joined").await
}

/// The next room message: (offset, content).
async fn next_message(client: &mut Client) -> (u64, u64) {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "message" {
            return (
                frame["offset"].as_u64().unwrap(),
                frame["payload"]["content"].as_u64().unwrap(),
            );
        }
    }
}

/// The next channel publication: (offset, the number in it).
async fn publication(client: &mut Client) -> (u64, u64) {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "publish" {
            return (
                frame["offset"].as_u64().unwrap(),
                frame["payload"]["n"].as_u64().unwrap(),
            );
        }
    }
}

/// Proves that no further room message is queued for `client` on its node: a `ping`'s `pong`
/// must come before any. (Membership notices may still come: when a reset connection's node
/// and the reader's new node learn of each other's changes in the other order, the notices
/// about the reader itself cross; that is the membership replica's business, not history's.)
async fn no_more_messages(client: &mut Client) {
    client
        .send_type("ping", json!({"barrier": "history"}))
        .await;
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("pong") if frame["payload"]["barrier"] == "history" => return,
            Some("message" | "publish") => panic!("a message after the last one: {frame}"),
            _ => {}
        }
    }
}

/// Sends message `n` to `room` and waits for its ack; returns the offset the ack carries.
async fn send_acked(client: &mut Client, room: &str, n: u64) -> u64 {
    client
        .send(json!({"type": "message", "payload": {"room": room, "content": n}, "id": n}))
        .await;
    loop {
        let frame = client.recv().await;
        if frame["type"] == "ack" && frame["id"] == n {
            return frame["payload"]["offset"].as_u64().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_the_same_offsets_in_the_same_order() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a", 100).await, node(&redis, "b", 100).await);
    let mut on_a = a.connect("on-a").await;
    let first = join(&mut on_a, "general", None).await;
    assert_eq!(first["payload"]["offset"], 0);
    let mut on_b = b.connect("on-b").await;
    let joined = join(&mut on_b, "general", None).await;
    assert_eq!(
        joined["payload"]["epoch"], first["payload"]["epoch"],
        "one epoch"
    );
    sees_member(&a, "general", "on-b").await;
    sees_member(&b, "general", "on-a").await;
    let mut writer_a = a.member("writer-a", "general").await;
    let mut writer_b = b.member("writer-b", "general").await;
    // Each writer's messages are numbered in its own order, interleaved with the other's.
    let mut acked = Vec::new();
    for n in 1..=20 {
        acked.push(send_acked(&mut writer_a, "general", n).await);
        acked.push(send_acked(&mut writer_b, "general", 100 + n).await);
    }
    acked.sort_unstable();
    assert_eq!(acked, (1..=40).collect::<Vec<u64>>(), "40 offsets, no gap");
    let seen_a: Vec<(u64, u64)> = {
        let mut seen = Vec::new();
        for _ in 0..40 {
            seen.push(next_message(&mut on_a).await);
        }
        seen
    };
    let mut seen_b = Vec::new();
    for _ in 0..40 {
        seen_b.push(next_message(&mut on_b).await);
    }
    assert_eq!(
        seen_a, seen_b,
        "the same message at the same offset on both nodes"
    );
    let offsets: Vec<u64> = seen_a.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (1..=40).collect::<Vec<u64>>());
}

/// A room or a channel, as the reset tests use them.
#[derive(Clone, Copy)]
enum Stream {
    Room,
    Channel,
}

impl Stream {
    const NAME: &'static str = "feed";

    /// Joins or subscribes, with `since` when given; returns the reply.
    async fn enter(self, client: &mut Client, since: Option<&Value>) -> Value {
        match self {
            Self::Room => join(client, Self::NAME, since).await,
            Self::Channel => {
                let payload = json!({"channel": Self::NAME, "since": since});
                client.send_type("subscribe", payload).await;
                client.expect("subscribed").await
            }
        }
    }

    /// Sends message `n` and waits for its ack; returns the offset the ack carries.
    async fn send_acked(self, client: &mut Client, n: u64) -> u64 {
        match self {
            Self::Room => send_acked(client, Self::NAME, n).await,
            Self::Channel => {
                let payload = json!({"channel": Self::NAME, "data": {"n": n}});
                client
                    .send(json!({"type": "publish", "payload": payload, "id": n}))
                    .await;
                loop {
                    let frame = client.recv().await;
                    if frame["type"] == "ack" && frame["id"] == n {
                        return frame["payload"]["offset"].as_u64().unwrap();
                    }
                }
            }
        }
    }

    /// The next message of the stream: (offset, the number in it).
    async fn next(self, client: &mut Client) -> (u64, u64) {
        match self {
            Self::Room => next_message(client).await,
            Self::Channel => publication(client).await,
        }
    }
}

/// A reader reset 100 times, each time coming back on the other node, while a publisher on
/// node A streams: offsets 1..=TOTAL, each once, in order, every rejoin recovered.
async fn resets_across_nodes(stream: Stream) {
    const TOTAL: u64 = 1_500;
    const RESETS: u64 = 100;
    let redis = RedisServer::start().await;
    let nodes = [
        node(&redis, "a", 2_000).await,
        node(&redis, "b", 2_000).await,
    ];
    let mut reader = nodes[1].connect("reader").await;
    let epoch = stream.enter(&mut reader, None).await["payload"]["epoch"].clone();
    let mut publisher = nodes[0].connect("publisher").await;
    if let Stream::Room = stream {
        stream.enter(&mut publisher, None).await;
    }
    let publishing = tokio::spawn(async move {
        for n in 1..=TOTAL {
            let offset = stream.send_acked(&mut publisher, n).await;
            assert_eq!(offset, n, "the publisher is the stream's only one");
        }
        publisher
    });
    let mut next = 1;
    for round in 1..=RESETS {
        let target = (TOTAL * round / (RESETS + 1)).max(next);
        while next <= target {
            assert_eq!(
                stream.next(&mut reader).await,
                (next, next),
                "round {round}"
            );
            next += 1;
        }
        reader.reset();
        reader = nodes[(round % 2) as usize].connect("reader").await;
        let since = json!({"offset": next - 1, "epoch": epoch});
        let reply = stream.enter(&mut reader, Some(&since)).await;
        assert_eq!(
            reply["payload"]["recovered"], true,
            "round {round}: {reply}"
        );
        assert_eq!(reply["payload"]["epoch"], epoch);
    }
    while next <= TOTAL {
        assert_eq!(stream.next(&mut reader).await, (next, next));
        next += 1;
    }
    let _publisher = publishing.await.unwrap();
    no_more_messages(&mut reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_member_reset_and_rejoining_on_the_other_node_misses_nothing() {
    resets_across_nodes(Stream::Room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_subscriber_resubscribing_on_the_other_node_misses_nothing() {
    resets_across_nodes(Stream::Channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_everything_means_a_new_epoch_and_no_recovery() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a", 100).await, node(&redis, "b", 100).await);
    let mut reader = a.connect("reader").await;
    let joined = join(&mut reader, "general", None).await;
    let old_epoch = joined["payload"]["epoch"].clone();
    let mut writer = b.member("writer", "general").await;
    sees_member(&a, "general", "writer").await;
    assert_eq!(send_acked(&mut writer, "general", 1).await, 1);
    assert_eq!(next_message(&mut reader).await, (1, 1));
    drop(reader);
    redis.restart().await;
    a.settled().await;
    b.settled().await;
    let mut comeback = b.connect("comeback").await;
    let since = json!({"offset": 1, "epoch": old_epoch});
    let reply = join(&mut comeback, "general", Some(&since)).await;
    assert_eq!(reply["payload"]["recovered"], false, "{reply}");
    assert_ne!(reply["payload"]["epoch"], old_epoch);
    comeback.expect_nothing_pending().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_pub_sub_connection_loses_nothing_the_store_kept() {
    const TOTAL: u64 = 300;
    let redis = RedisServer::start().await;
    let (a, b) = (
        node(&redis, "a", 1_000).await,
        node(&redis, "b", 1_000).await,
    );
    let mut reader = b.connect("reader").await;
    join(&mut reader, "feed", None).await;
    let mut publisher = a.member("publisher", "feed").await;
    sees_member(&a, "feed", "reader").await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    for n in 1..=TOTAL {
        send_acked(&mut publisher, "feed", n).await;
        if n % 100 == 50 {
            // Every node's subscriber is cut; messages published until it is back are only
            // in the store.
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut admin)
                .await
                .unwrap();
            assert!(killed >= 2, "both nodes' subscribers");
        }
    }
    for n in 1..=TOTAL {
        assert_eq!(
            next_message(&mut reader).await,
            (n, n),
            "every offset, in order"
        );
    }
    no_more_messages(&mut reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_from_redis_on_a_node_without_the_room() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a", 100).await, node(&redis, "b", 100).await);
    let mut writer = a.member("writer", "general").await;
    for n in 1..=3 {
        send_acked(&mut writer, "general", n).await;
    }
    // Node B has nobody in the room: it holds no copy and reads Redis.
    let mut reader = b.connect("reader").await;
    reader
        .send(json!({"type": "history", "payload": {"room": "general", "limit": 2}, "id": "h"}))
        .await;
    let reply = reader.expect("history").await;
    assert_eq!(reply["id"], "h");
    assert_eq!(reply["payload"]["offset"], 3);
    let contents: Vec<&Value> = reply["payload"]["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| &frame["payload"]["content"])
        .collect();
    assert_eq!(contents, [&json!(2), &json!(3)]);
    assert_eq!(
        reader.expect("ack").await["id"],
        "h",
        "the ack follows the reply"
    );
    let epoch = reply["payload"]["epoch"].as_str().unwrap();
    let path = format!("/api/rooms/general/history?offset=1&epoch={epoch}");
    let (status, body) = switchboard_testkit::http_json(b.addr, "GET", &path, None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offset"], 3);
    assert_eq!(body["publications"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["publications"][0]["offset"], 2);
}
