//! The SSE transport in a cluster (real redis-server, and nats-server or rabbitmq-server as the
//! broker beside it): a POST that reaches another node than the one holding the stream is
//! relayed to it through the broker, so sticky sessions are an optimisation, not a requirement.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use switchboard_testkit::sse::{SseClient, post_to};
use switchboard_testkit::{NatsServer, RabbitMqServer, RedisServer, TestServer};

fn ping(n: u64) -> String {
    json!({"type": "ping", "payload": {"n": n}}).to_string()
}

#[tokio::test]
async fn a_post_to_another_node_reaches_the_stream_through_the_broker() {
    relayed_across_nodes(None).await;
}

#[tokio::test]
async fn a_post_is_relayed_through_nats_beside_redis() {
    let nats = NatsServer::start().await;
    relayed_across_nodes(Some(nats.url())).await;
}

#[tokio::test]
async fn a_post_is_relayed_through_rabbitmq_beside_redis() {
    let rabbit = RabbitMqServer::start().await;
    relayed_across_nodes(Some(rabbit.url())).await;
}

/// Relays through Redis, or through the broker at `broker_url` (`--broker-url`).
async fn relayed_across_nodes(broker_url: Option<String>) {
    let redis = RedisServer::start().await;
    let node = |name: &'static str| {
        let broker_url = broker_url.clone();
        TestServer::cluster_node(&redis, name, move |s| s.broker_url = broker_url)
    };
    let one = node("one").await;
    let two = node("two").await;
    let mut alice = two.member("alice", "general").await;
    let mut bob = SseClient::connect(one.addr, "bob").await;
    // Node one's subscription to bob's connection is in effect.
    one.settled().await;
    let (id, session) = (bob.connection_id(), bob.session());

    let batch = json!([
        {"type": "join_room", "payload": {"room": "general"}, "id": 1},
        {"type": "message", "payload": {"room": "general", "content": "via node two"}},
    ]);
    let (status, body) = post_to(
        two.addr,
        &id,
        Some(&session),
        &batch.to_string(),
        "text/plain",
    )
    .await;
    assert_eq!((status, body), (202, Value::Null));
    assert_eq!(bob.expect("room_joined").await["room"], "general");
    assert_eq!(bob.expect("ack").await["id"], 1);
    // The membership's `user_joined` and the broker's message take different paths.
    let message = loop {
        let frame = alice.recv().await;
        if frame["type"] == "message" {
            break frame;
        }
        assert_eq!(frame["type"], "user_joined", "{frame}");
    };
    assert_eq!(message["payload"]["content"], "via node two");
    assert_eq!(message["userId"], "bob");

    // The holder checks the session: a relayed POST with a wrong one is dropped there, so the
    // next event answers the POST after it (relayed in order, from the same node).
    let (status, _) = post_to(two.addr, &id, Some("wrong"), &ping(2), "text/plain").await;
    assert_eq!(status, 202);
    let (status, _) = post_to(two.addr, &id, Some(&session), &ping(3), "text/plain").await;
    assert_eq!(status, 202);
    assert_eq!(bob.expect("pong").await["payload"]["n"], 3);

    // What the relaying node can check, it refuses itself.
    let (status, error) = post_to(two.addr, &id, None, &ping(4), "text/plain").await;
    assert_eq!((status, error["code"].as_str()), (403, Some("FORBIDDEN")));
    let (status, error) = post_to(two.addr, &id, Some(&session), "{nope", "text/plain").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("INVALID_JSON"))
    );
    // On its own node, the POST is handled there (204).
    let (status, _) = post_to(one.addr, &id, Some(&session), &ping(5), "text/plain").await;
    assert_eq!(status, 204);
    assert_eq!(bob.expect("pong").await["payload"]["n"], 5);
}
