//! Yjs documents on `/yjs/{document}` (DESIGN.md §8), driven by a y-websocket peer written
//! here on yrs (the npm clients are tested in `clients/js/test/yjs.test.mjs`): sync, relay,
//! late joiners, awareness and its removal, persistence in `--data-dir` across a restart,
//! permissions from the `docs` claim, and every kind of bad input, each closing only its own
//! connection with a clear code and leaving the document intact.

#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::config::{ByteSize, RawSettings};
use switchboard_testkit::{Ended, TestServer, WAIT};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::encoding::write::Write;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A y-websocket client: a Yjs document kept in sync over one connection.
struct Peer {
    ws: Ws,
    doc: Doc,
    /// The awareness states last received, by client id (`None`: removed).
    awareness: Vec<(u64, Option<String>)>,
}

fn sync_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = vec![0, kind];
    message.write_buf(body);
    message
}

fn awareness_message(client: u64, clock: u64, state: &str) -> Vec<u8> {
    let mut update = Vec::new();
    update.write_var(1u64);
    update.write_var(client);
    update.write_var(clock);
    update.write_string(state);
    let mut message = vec![1];
    message.write_buf(&update);
    message
}

/// Reads a varint from the front of `bytes`.
fn var(bytes: &mut &[u8]) -> u64 {
    let mut value = 0;
    for shift in (0..).step_by(7) {
        let byte = bytes[0];
        *bytes = &bytes[1..];
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    unreachable!()
}

fn buf<'a>(bytes: &mut &'a [u8]) -> &'a [u8] {
    let len = var(bytes) as usize;
    let (head, tail) = bytes.split_at(len);
    *bytes = tail;
    head
}

impl Peer {
    async fn connect(server: &TestServer, doc: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.url(&format!("/yjs/{doc}")))
            .await
            .unwrap();
        Self::start(ws).await
    }

    /// Sends sync step 1, as y-websocket does on open.
    async fn start(ws: Ws) -> Self {
        let mut peer = Self {
            ws,
            doc: Doc::new(),
            awareness: Vec::new(),
        };
        let state_vector = peer.doc.transact().state_vector().encode_v1();
        peer.send(sync_message(0, &state_vector)).await;
        peer
    }

    async fn send(&mut self, message: Vec<u8>) {
        self.ws.send(WsMessage::binary(message)).await.unwrap();
    }

    /// Handles the next message; returns its type and sync type (0 for awareness).
    async fn step(&mut self) -> (u64, u64) {
        let message = loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no message in time")
                .expect("connection ended")
                .unwrap();
            match next {
                WsMessage::Binary(data) => break data,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        };
        let mut bytes = &message[..];
        match var(&mut bytes) {
            0 => {
                let kind = var(&mut bytes);
                let body = buf(&mut bytes);
                match kind {
                    0 => {
                        let theirs = StateVector::decode_v1(body).unwrap();
                        let diff = self.doc.transact().encode_diff_v1(&theirs);
                        self.send(sync_message(1, &diff)).await;
                    }
                    _ => self
                        .doc
                        .transact_mut()
                        .apply_update(Update::decode_v1(body).unwrap())
                        .unwrap(),
                }
                (0, kind)
            }
            1 => {
                let mut update = buf(&mut bytes);
                for _ in 0..var(&mut update) {
                    let client = var(&mut update);
                    let _clock = var(&mut update);
                    let state = String::from_utf8(buf(&mut update).to_vec()).unwrap();
                    let state = (state != "null").then_some(state);
                    self.awareness.retain(|(c, _)| *c != client);
                    self.awareness.push((client, state));
                }
                (1, 0)
            }
            other => panic!("unexpected message type {other}"),
        }
    }

    /// Handles messages until the document's text is `expected`.
    async fn until_text(&mut self, expected: &str) {
        while self.text() != expected {
            self.step().await;
        }
    }

    /// Handles messages until the awareness state of `client` is `state`.
    async fn until_awareness(&mut self, client: u64, state: Option<&str>) {
        while !self
            .awareness
            .iter()
            .any(|(c, s)| *c == client && s.as_deref() == state)
        {
            self.step().await;
        }
    }

    fn text(&self) -> String {
        let text = self.doc.get_or_insert_text("text");
        text.get_string(&self.doc.transact())
    }

    /// Appends `content` to the shared text and sends the update.
    async fn type_text(&mut self, content: &str) {
        let text = self.doc.get_or_insert_text("text");
        let before = self.doc.transact().state_vector();
        {
            let mut txn = self.doc.transact_mut();
            let len = text.len(&txn);
            text.insert(&mut txn, len, content);
        }
        let update = self.doc.transact().encode_diff_v1(&before);
        self.send(sync_message(2, &update)).await;
    }

    /// Waits for the server to close the connection; returns the code.
    async fn closed(mut self) -> u16 {
        match switchboard_testkit::Client::ended_stream(&mut self.ws).await {
            Ended::Closed { code, .. } => code,
            Ended::Dropped => panic!("dropped without a close frame"),
        }
    }
}

/// A fresh peer syncs and finds `expected`: the document was left intact.
async fn intact(server: &TestServer, doc: &str, expected: &str) {
    let mut check = Peer::connect(server, doc).await;
    check.until_text(expected).await;
}

#[tokio::test]
async fn concurrent_edits_converge_and_a_late_joiner_gets_everything() {
    let server = TestServer::start().await;
    let mut ana = Peer::connect(&server, "notes").await;
    let mut ben = Peer::connect(&server, "notes").await;
    ana.type_text("ana ").await;
    ben.type_text("ben ").await;
    // Both edits reach both; Yjs orders concurrent inserts the same way everywhere.
    while ana.text().len() < 8 {
        ana.step().await;
    }
    while ben.text().len() < 8 {
        ben.step().await;
    }
    assert_eq!(ana.text(), ben.text());
    let both = ana.text();
    assert!(both.contains("ana ") && both.contains("ben "), "{both}");
    let mut late = Peer::connect(&server, "notes").await;
    late.until_text(&both).await;
    // Another document is another document.
    let mut other = Peer::connect(&server, "other").await;
    other.send(vec![3]).await;
    assert_eq!(
        other.step().await,
        (0, 0),
        "the server's sync step 1 comes first"
    );
    assert_eq!(other.step().await, (0, 1), "then its answer to ours");
    assert_eq!(other.step().await, (1, 0), "then the awareness asked for");
    assert_eq!(other.text(), "");
    let stats = server.stats().await;
    assert_eq!(stats["documents"], 2);
    assert_eq!(stats["documentClients"], 4);
    // Each edit, and each client's answer to the server's sync step 1 that carried one.
    assert!(stats["documentUpdates"].as_u64().unwrap() >= 2, "{stats}");
    let (status, metrics) = switchboard_testkit::http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "switchboard_documents 2",
        "switchboard_document_clients 4",
        "switchboard_messages_in_total{type=\"document\"}",
        "switchboard_messages_out_total{target=\"document\"}",
        "switchboard_document_updates_total",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
}

#[tokio::test]
async fn awareness_is_relayed_and_removed_when_its_client_disconnects() {
    let server = TestServer::start().await;
    let mut ana = Peer::connect(&server, "doc").await;
    let mut ben = Peer::connect(&server, "doc").await;
    ana.send(awareness_message(11, 1, r#"{"user":"ana"}"#))
        .await;
    ben.until_awareness(11, Some(r#"{"user":"ana"}"#)).await;
    // The sender gets its own state back, which y-websocket counts as a sign of life.
    ana.until_awareness(11, Some(r#"{"user":"ana"}"#)).await;
    // A later joiner is told the states on arrival.
    let mut cid = Peer::connect(&server, "doc").await;
    cid.until_awareness(11, Some(r#"{"user":"ana"}"#)).await;
    // A stale clock changes nothing; another client's id cannot be overwritten.
    ben.send(awareness_message(11, 5, r#"{"user":"mallory"}"#))
        .await;
    ana.send(awareness_message(11, 2, r#"{"user":"ana2"}"#))
        .await;
    cid.until_awareness(11, Some(r#"{"user":"ana2"}"#)).await;
    drop(ana);
    ben.until_awareness(11, None).await;
    cid.until_awareness(11, None).await;
}

#[tokio::test]
async fn documents_survive_a_restart_in_the_data_dir() {
    let dir = std::env::temp_dir().join(format!("switchboard-docs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let configure = |raw: &mut RawSettings| raw.data_dir = Some(dir.clone());
    let server = TestServer::with(configure).await;
    let mut writer = Peer::connect(&server, "kept").await;
    writer.type_text("still here").await;
    let mut reader = Peer::connect(&server, "kept").await;
    reader.until_text("still here").await;
    assert!(server.shutdown().await, "clean shutdown");
    let restarted = TestServer::with(configure).await;
    intact(&restarted, "kept", "still here").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_messages_close_only_their_connection_with_a_clear_code() {
    let server = TestServer::start().await;
    let mut writer = Peer::connect(&server, "doc").await;
    writer.type_text("safe").await;
    intact(&server, "doc", "safe").await;
    let mut invalid_update = vec![0, 2];
    invalid_update.write_buf([7, 7, 7, 7, 7]);
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("a truncated varint", vec![0x80], 1007),
        ("a truncated update", vec![0, 2, 10, 1, 2], 1007),
        ("an unknown message type", vec![9], 1003),
        ("an unknown sync type", vec![0, 7, 0], 1003),
        ("the server-only auth type", vec![2, 0], 1003),
        ("an update that is not a Yjs update", invalid_update, 1007),
    ];
    for (what, message, code) in cases {
        let mut bad = Peer::connect(&server, "doc").await;
        bad.send(message).await;
        assert_eq!(bad.closed().await, code, "{what}");
    }
    let mut text = Peer::connect(&server, "doc").await;
    text.ws.send(WsMessage::text("{}")).await.unwrap();
    assert_eq!(text.closed().await, 1003, "a text frame");
    intact(&server, "doc", "safe").await;
    // The writer saw none of it.
    writer.type_text("!").await;
    intact(&server, "doc", "safe!").await;
}

#[tokio::test]
async fn size_and_rate_limits_close_at_their_edge() {
    let server = TestServer::with(|raw| raw.max_document_size = Some(ByteSize(1024))).await;
    let mut big = Peer::connect(&server, "small").await;
    big.type_text(&"x".repeat(900)).await;
    intact(&server, "small", &"x".repeat(900)).await;
    big.type_text(&"y".repeat(200)).await;
    assert_eq!(big.closed().await, 1009, "past the document size");
    intact(&server, "small", &"x".repeat(900)).await;

    // A burst of 2 at 1/s: the sync step 1 and one query pass, the third message closes.
    let server = TestServer::with(|raw| raw.document_rate_limit = Some(1)).await;
    let mut chatty = Peer::connect(&server, "chatty").await;
    chatty.send(vec![3]).await;
    chatty.send(vec![3]).await;
    assert_eq!(chatty.closed().await, 1008);
}

#[tokio::test]
async fn json_traffic_never_reaches_a_document_connection() {
    let server = TestServer::start().await;
    let (ws, _) = tokio_tungstenite::connect_async(server.url("/yjs/doc?userId=ana"))
        .await
        .unwrap();
    let mut peer = Peer::start(ws).await;
    assert_eq!(peer.step().await, (0, 0));
    assert_eq!(peer.step().await, (0, 1));
    let mut chat = server.connect("ana").await;
    chat.send_type("broadcast", json!({"content": "hi"})).await;
    chat.expect("broadcast").await;
    let frame = switchboard::protocol::ServerFrame::new(
        switchboard::protocol::ServerKind::Message,
        json!({"content": "direct"}),
    );
    let ana = switchboard::ids::UserId::parse("ana", 128).unwrap();
    assert_eq!(
        server.hub.send_to_user(&ana, &frame),
        1,
        "the chat connection only"
    );
    // The next message is the answer to this query: nothing JSON came before it.
    peer.send(vec![3]).await;
    assert_eq!(peer.step().await, (1, 0));
}

#[tokio::test]
async fn the_docs_claim_decides_who_reads_and_who_writes() {
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &str = "documents-test-secret-0123456789";
    let server = TestServer::with(|raw| raw.jwt_secret = Some(SECRET.into())).await;
    let token = |docs: serde_json::Value| {
        let claims =
            json!({"sub": "ana", "exp": jsonwebtoken::get_current_timestamp() + 60, "docs": docs});
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let refused = |path: String| {
        let url = server.url(&path);
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    response.status().as_u16()
                }
                other => panic!("not refused: {:?}", other.map(|_| ())),
            }
        }
    };
    assert_eq!(refused("/yjs/doc".into()).await, 401, "no token");
    let other = token(json!(["other"]));
    assert_eq!(refused(format!("/yjs/doc?token={other}")).await, 403);

    let writer = token(json!({"write": ["doc"]}));
    let (ws, _) = tokio_tungstenite::connect_async(server.url(&format!("/yjs/doc?token={writer}")))
        .await
        .unwrap();
    let mut writer = Peer::start(ws).await;
    writer.type_text("by the writer").await;

    let reader = token(json!({"read": ["doc"]}));
    let url = server.url(&format!("/yjs/doc?token={reader}"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut reader = Peer::start(ws).await;
    reader.until_text("by the writer").await;
    reader.type_text(" and the reader").await;
    assert_eq!(reader.closed().await, 1008, "a read-only client's update");
    writer.type_text(".").await;
    let (ws, _) = tokio_tungstenite::connect_async(
        server.url(&format!("/yjs/doc?token={}", token(json!(["doc"])))),
    )
    .await
    .unwrap();
    Peer::start(ws).await.until_text("by the writer.").await;
}

/// A peer of document `doc` on `node` as `user`.
async fn peer_on(node: &TestServer, doc: &str) -> Peer {
    Peer::connect(node, doc).await
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn clients_on_different_nodes_converge_and_a_new_node_loads_the_document() {
    converge_across_nodes(None, false).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and redis-cli: --features external"
)]
async fn documents_converge_across_nodes_on_a_redis_cluster() {
    converge_across_nodes(None, true).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and nats-server: --features external"
)]
async fn documents_converge_across_nodes_through_nats() {
    let nats = switchboard_testkit::NatsServer::start().await;
    converge_across_nodes(Some(nats.url()), false).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and rabbitmq-server: --features external"
)]
async fn documents_converge_across_nodes_through_rabbitmq() {
    let rabbit = switchboard_testkit::RabbitMqServer::start().await;
    converge_across_nodes(Some(rabbit.url()), false).await;
}

/// Two nodes edit one document, a third loads it, with Redis (or a three-master Redis
/// Cluster) as the store and the updates crossing through Redis or through the broker at
/// `broker_url`.
async fn converge_across_nodes(broker_url: Option<String>, on_redis_cluster: bool) {
    let (redis, redis_cluster) = if on_redis_cluster {
        let cluster = switchboard_testkit::RedisClusterServer::start().await;
        (None, Some(cluster))
    } else {
        (Some(switchboard_testkit::RedisServer::start().await), None)
    };
    let node = |name: &'static str| {
        let broker_url = broker_url.clone();
        let configure = move |s: &mut switchboard::config::RawSettings| s.broker_url = broker_url;
        let (redis, redis_cluster) = (redis.as_ref(), redis_cluster.as_ref());
        async move {
            match (redis, redis_cluster) {
                (Some(redis), _) => TestServer::cluster_node(redis, name, configure).await,
                (None, Some(cluster)) => {
                    TestServer::redis_cluster_node(cluster, name, configure).await
                }
                (None, None) => unreachable!("one store or the other"),
            }
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let mut on_a = peer_on(&a, "shared").await;
    let mut on_b = peer_on(&b, "shared").await;
    on_a.until_text("").await;
    on_a.type_text("from a ").await;
    on_b.type_text("from b ").await;
    while on_a.text().len() < 14 {
        on_a.step().await;
    }
    while on_b.text().len() < 14 {
        on_b.step().await;
    }
    assert_eq!(on_a.text(), on_b.text());
    let both = on_a.text();
    // A node that never had the document reads it from Redis.
    let c = node("c").await;
    peer_on(&c, "shared").await.until_text(&both).await;
    // And after every client left every node, it is still there.
    drop((on_a, on_b));
    switchboard_testkit::wait_until("the documents to unload", || {
        a.hub.stats().documents == 0 && b.hub.stats().documents == 0
    })
    .await;
    peer_on(&b, "shared").await.until_text(&both).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn awareness_crosses_nodes_and_leaves_with_its_client() {
    let redis = switchboard_testkit::RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", |_| {}).await;
    let b = TestServer::cluster_node(&redis, "b", |_| {}).await;
    let mut ana = peer_on(&a, "cursors").await;
    let mut ben = peer_on(&b, "cursors").await;
    // Both documents are loaded (each peer got the server's sync step 1) before Ana speaks.
    assert_eq!(ana.step().await, (0, 0));
    assert_eq!(ben.step().await, (0, 0));
    ana.send(awareness_message(21, 1, r#"{"user":"ana"}"#))
        .await;
    ben.until_awareness(21, Some(r#"{"user":"ana"}"#)).await;
    // A client that opens the document later on node b is told Ana's state.
    let mut cid = peer_on(&b, "cursors").await;
    cid.until_awareness(21, Some(r#"{"user":"ana"}"#)).await;
    drop(ana);
    ben.until_awareness(21, None).await;
    cid.until_awareness(21, None).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn the_log_in_redis_is_compacted_and_still_loads() {
    let redis = switchboard_testkit::RedisServer::start().await;
    let a = TestServer::cluster_node(&redis, "a", |_| {}).await;
    let mut writer = peer_on(&a, "long").await;
    let mut expected = String::new();
    for i in 0..40 {
        let word = format!("{i} ");
        writer.type_text(&word).await;
        expected.push_str(&word);
    }
    let mut reader = peer_on(&a, "long").await;
    reader.until_text(&expected).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let length: usize = redis::cmd("LLEN")
        .arg("switchboard:d:{long}")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(length >= 40, "every update is in the log ({length})");
    // The last client's departure saves the document, which compacts the long log.
    drop((writer, reader));
    switchboard_testkit::wait_until_async("the log to be compacted", || {
        let mut connection = connection.clone();
        async move {
            let length: usize = redis::cmd("LLEN")
                .arg("switchboard:d:{long}")
                .query_async(&mut connection)
                .await
                .unwrap();
            length == 1
        }
    })
    .await;
    let b = TestServer::cluster_node(&redis, "b", |_| {}).await;
    peer_on(&b, "long").await.until_text(&expected).await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server and redis-cli: --features external"
)]
async fn documents_converge_and_load_on_a_redis_cluster() {
    let redis = switchboard_testkit::RedisClusterServer::start().await;
    let a = TestServer::redis_cluster_node(&redis, "a", |_| {}).await;
    let b = TestServer::redis_cluster_node(&redis, "b", |_| {}).await;
    let mut on_a = peer_on(&a, "shared").await;
    let mut on_b = peer_on(&b, "shared").await;
    on_a.until_text("").await;
    // More edits than the log keeps before a save compacts it (on the document's master).
    let mut expected = String::new();
    for i in 0..40 {
        let word = format!("{i} ");
        on_a.type_text(&word).await;
        expected.push_str(&word);
    }
    on_b.until_text(&expected).await;
    drop((on_a, on_b));
    switchboard_testkit::wait_until("the documents to unload", || {
        a.hub.stats().documents == 0 && b.hub.stats().documents == 0
    })
    .await;
    // A node that never had the document reads it from its slot's master.
    let c = TestServer::redis_cluster_node(&redis, "c", |_| {}).await;
    peer_on(&c, "shared").await.until_text(&expected).await;
}
