//! Recovery on one node (DESIGN.md §7), from outside: clients whose connections die (TCP
//! resets, restarts) come back with `since` and get exactly what they missed, in order, once,
//! while a publisher keeps sending; and are told `recovered: false` when that is not possible.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchboard_testkit::{Client, TestServer};

/// A client's last position in one stream.
#[derive(Clone)]
struct Position {
    offset: u64,
    epoch: String,
}

impl Position {
    fn of(reply: &Value) -> Self {
        Self {
            offset: reply["payload"]["offset"].as_u64().unwrap(),
            epoch: reply["payload"]["epoch"].as_str().unwrap().to_owned(),
        }
    }

    fn since(&self) -> Value {
        json!({ "offset": self.offset, "epoch": self.epoch })
    }
}

/// Where a stream's messages are read and rejoined: a room or a channel.
#[derive(Clone, Copy)]
enum Stream {
    Room,
    Channel,
}

impl Stream {
    const NAME: &'static str = "feed";

    async fn join(self, client: &mut Client, since: Option<&Position>) -> Value {
        let since = since.map(Position::since);
        match self {
            Self::Room => {
                let payload = json!({ "room": Self::NAME, "since": since });
                client.send_type("join_room", payload).await;
                client.expect("room_joined").await
            }
            Self::Channel => {
                let payload = json!({ "channel": Self::NAME, "since": since });
                client.send_type("subscribe", payload).await;
                client.expect("subscribed").await
            }
        }
    }

    async fn send(self, client: &mut Client, n: u64) {
        let frame = match self {
            Self::Room => json!({"type": "message", "payload": {"room": Self::NAME, "content": n}}),
            Self::Channel => {
                json!({"type": "publish", "payload": {"channel": Self::NAME, "data": {"n": n}}})
            }
        };
        client.send(frame).await;
    }

    /// Sends `n` and waits for its `ack`, so that publishing lasts as long as the server takes
    /// to process it, and overlaps the reader's resets.
    async fn send_acked(self, client: &mut Client, n: u64) {
        let mut frame = match self {
            Self::Room => json!({"type": "message", "payload": {"room": Self::NAME, "content": n}}),
            Self::Channel => {
                json!({"type": "publish", "payload": {"channel": Self::NAME, "data": {"n": n}}})
            }
        };
        frame["id"] = json!(n);
        client.send(frame).await;
        loop {
            let frame = client.recv().await;
            if frame["type"] == "ack" && frame["id"] == n {
                assert_eq!(frame["payload"]["offset"], n, "the ack says where it went");
                return;
            }
        }
    }

    /// The next message of the stream: (offset, the number the publisher put in it).
    async fn next(self, client: &mut Client) -> (u64, u64) {
        loop {
            let frame = client.recv().await;
            let number = match (self, frame["type"].as_str()) {
                (Self::Room, Some("message")) => &frame["payload"]["content"],
                (Self::Channel, Some("publish")) => &frame["payload"]["n"],
                _ => continue,
            };
            return (frame["offset"].as_u64().unwrap(), number.as_u64().unwrap());
        }
    }
}

async fn server(history_size: usize) -> TestServer {
    TestServer::with(|raw| {
        raw.rate_limit = Some(0);
        raw.history_size = Some(history_size);
    })
    .await
}

/// A reader reset 100 times while a publisher streams at full speed sees offsets 1..=TOTAL,
/// each once, in order; each rejoin recovers.
async fn resets_lose_nothing(stream: Stream) {
    const TOTAL: u64 = 6_000;
    const RESETS: u64 = 100;
    let server = server(TOTAL as usize).await;
    let mut reader = server.connect("reader").await;
    let mut position = Position::of(&stream.join(&mut reader, None).await);
    assert_eq!(position.offset, 0, "a new stream starts empty");
    let mut publisher = server.connect("publisher").await;
    stream.join(&mut publisher, None).await;
    let publishing = tokio::spawn(async move {
        for n in 1..=TOTAL {
            stream.send_acked(&mut publisher, n).await;
        }
        publisher
    });
    // Rejoins that happened while messages were still coming: the race this test is about.
    let mut during = 0;
    let mut next_expected = 1;
    for round in 1..=RESETS {
        // Read a varying share, so resets land at many points of the stream.
        let target = (TOTAL * round / (RESETS + 1)).max(next_expected) + round % 7;
        while next_expected <= target.min(TOTAL) {
            let (offset, number) = stream.next(&mut reader).await;
            assert_eq!(offset, next_expected, "offsets come in order, each once");
            assert_eq!(number, offset, "the message at each offset is the one sent");
            next_expected += 1;
        }
        position.offset = next_expected - 1;
        reader.reset();
        reader = server.connect("reader").await;
        let reply = stream.join(&mut reader, Some(&position)).await;
        assert_eq!(
            reply["payload"]["recovered"], true,
            "round {round}: {reply}"
        );
        assert_eq!(reply["payload"]["epoch"], position.epoch.as_str());
        if reply["payload"]["offset"].as_u64() < Some(TOTAL) {
            during += 1;
        }
    }
    assert!(
        during >= RESETS / 2,
        "only {during} rejoins raced the publisher"
    );
    while next_expected <= TOTAL {
        let (offset, number) = stream.next(&mut reader).await;
        assert_eq!((offset, number), (next_expected, next_expected));
        next_expected += 1;
    }
    let publisher = publishing.await.unwrap();
    reader.expect_nothing_pending().await;
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_member_reset_100_times_misses_nothing_and_gets_nothing_twice() {
    resets_lose_nothing(Stream::Room).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_subscriber_reset_100_times_misses_nothing_and_gets_nothing_twice() {
    resets_lose_nothing(Stream::Channel).await;
}

/// Sends `count` messages from `publisher` and waits until `witness` (another member) has them.
async fn publish(stream: Stream, publisher: &mut Client, witness: &mut Client, count: u64) {
    for n in 1..=count {
        stream.send(publisher, n).await;
    }
    for _ in 0..count {
        stream.next(witness).await;
    }
}

#[tokio::test]
async fn positions_that_cannot_be_recovered_are_told_so_and_nothing_is_replayed() {
    for stream in [Stream::Room, Stream::Channel] {
        let server = server(3).await;
        let mut publisher = server.connect("publisher").await;
        stream.join(&mut publisher, None).await;
        let mut witness = server.connect("witness").await;
        let start = Position::of(&stream.join(&mut witness, None).await);
        publish(stream, &mut publisher, &mut witness, 5).await;
        let cases = [
            // Kept: 3, 4, 5. After 1, message 2 is gone.
            (start.offset + 1, start.epoch.clone(), false),
            (start.offset + 2, start.epoch.clone(), true),
            (start.offset + 6, start.epoch.clone(), false),
            (start.offset + 2, "not-the-epoch".to_owned(), false),
        ];
        for (offset, epoch, recovered) in cases {
            let mut client = server.connect("comeback").await;
            let since = Position { offset, epoch };
            let reply = stream.join(&mut client, Some(&since)).await;
            assert_eq!(reply["payload"]["recovered"], recovered, "{reply}");
            assert_eq!(reply["payload"]["offset"], 5);
            assert_eq!(reply["payload"]["epoch"], start.epoch.as_str());
            if recovered {
                for expected in 3..=5 {
                    assert_eq!(stream.next(&mut client).await.0, expected);
                }
            }
            client.expect_nothing_pending().await;
        }
    }
}

#[tokio::test]
async fn after_a_restart_the_epoch_is_new_and_nothing_is_recovered() {
    let first = server(100).await;
    let mut reader = first.member("reader", "general").await;
    let mut writer = first.member("writer", "general").await;
    reader.expect("user_joined").await;
    writer
        .send_type("message", json!({"room": "general", "content": "before"}))
        .await;
    let before = reader.expect("message").await;
    let old = Position {
        offset: before["offset"].as_u64().unwrap(),
        epoch: reader_epoch(&first, "general").await,
    };
    drop((reader, writer));
    assert!(first.shutdown().await);
    let second = server(100).await;
    let mut reader = second.connect("reader").await;
    let reply = Stream::Room.join(&mut reader, Some(&old)).await;
    let payload = &reply["payload"];
    assert_eq!(payload["recovered"], false);
    assert_ne!(payload["epoch"], old.epoch.as_str());
    assert_eq!(payload["offset"], 0);
    reader.expect_nothing_pending().await;
}

/// The epoch of `room` on `server`, as a new member is told.
async fn reader_epoch(server: &TestServer, room: &str) -> String {
    let mut probe = server.connect("probe").await;
    let joined = probe.join(room).await;
    joined["payload"]["epoch"].as_str().unwrap().to_owned()
}
