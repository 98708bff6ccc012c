//! Backend proxies for SSE connections (the fallback transport is a full connection): the
//! connect proxy admits them, and a POSTed join, subscribe or RPC that a proxy decides waits
//! for the backend's answer, frames after it (in the POST or in the next POST) handled after.

#![allow(clippy::unwrap_used)]

mod proxy_backend;

use proxy_backend::{backend, next, proxied_by, server};
use serde_json::json;
use switchboard_testkit::sse::{SseClient, post_to};
use switchboard_testkit::{RedisServer, TestServer, http_get, wait_until_async};
use tokio::sync::oneshot;

#[tokio::test]
async fn an_sse_connection_is_admitted_by_the_connect_proxy_too() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = SseClient::open(server.addr, "/sse?token=good-alice", &[]).await;
    assert_eq!(alice.status, 200, "{}", alice.head);
    let connect = alice.read_connect().await;
    assert_eq!(connect["payload"]["userId"], "alice");
    let asked = next(&mut received).await;
    assert_eq!(
        (
            asked.body["transport"].as_str(),
            asked.body["path"].as_str()
        ),
        (Some("sse"), Some("/sse"))
    );
    // Not `userId`: with the connect proxy set, only the backend says who connects.
    let anonymous = SseClient::open(server.addr, "/sse?userId=mallory", &[]).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.head);
    let refused = SseClient::open(server.addr, "/sse?token=banned", &[]).await;
    assert_eq!(refused.status, 403, "{}", refused.head);
}

#[tokio::test]
async fn a_posted_join_subscribe_or_rpc_waits_for_the_backend_and_keeps_the_order() {
    let (addr, mut received, _) = backend().await;
    let server = server(addr, |_| {}).await;
    let mut alice = SseClient::open(server.addr, "/sse?token=good-alice", &[]).await;
    alice.read_connect().await;
    next(&mut received).await;

    let frames = json!([
        {"type": "join_room", "payload": {"room": "secret-plans"}, "id": "j0"},
        {"type": "join_room", "payload": {"room": "general"}, "id": "j1"},
        {"type": "subscribe", "payload": {"channel": "news:1"}},
        {"type": "sum", "payload": {"a": 2, "b": 3}, "id": "r1"},
        {"type": "ping", "payload": {"after": "sum"}},
    ]);
    let (status, body) = alice.post(&frames.to_string()).await;
    assert_eq!(status, 204, "{body}");
    let refused = alice.expect_error("FORBIDDEN").await;
    assert_eq!(
        (&refused["payload"]["message"], &refused["id"]),
        (&json!("secret-plans is members only"), &json!("j0"))
    );
    assert_eq!(alice.expect("room_joined").await["id"], "j1");
    assert_eq!(alice.expect("ack").await["payload"]["id"], "j1");
    assert_eq!(
        alice.expect("subscribed").await["payload"]["channel"],
        "news:1"
    );
    let sum = alice.expect("sum").await;
    assert_eq!(
        (&sum["payload"], &sum["id"]),
        (&json!({"sum": 5}), &json!("r1"))
    );
    assert_eq!(alice.expect("ack").await["payload"]["id"], "r1");
    assert_eq!(alice.expect("pong").await["payload"]["after"], "sum");
    let asked: Vec<String> = [
        next(&mut received).await,
        next(&mut received).await,
        next(&mut received).await,
        next(&mut received).await,
    ]
    .iter()
    .map(|r| {
        format!(
            "{} {}",
            r.proxy,
            r.body["room"]
                .as_str()
                .or(r.body["channel"].as_str())
                .or(r.body["type"].as_str())
                .unwrap()
        )
    })
    .collect();
    assert_eq!(
        asked,
        [
            "join secret-plans",
            "join general",
            "subscribe news:1",
            "rpc sum"
        ]
    );
    assert_eq!(
        server
            .hub
            .room_members(&switchboard::ids::RoomId::from_trusted("general"))
            .len(),
        1,
        "alice joined"
    );
}

#[tokio::test]
async fn a_post_waits_for_the_backend_calls_of_the_one_before() {
    let (addr, mut received, backend) = backend().await;
    let server = server(addr, |_| {}).await;
    let (release, held) = oneshot::channel();
    backend.held.lock().unwrap().push(held);
    let mut alice = SseClient::open(server.addr, "/sse?token=good-alice", &[]).await;
    alice.read_connect().await;
    next(&mut received).await;
    let post = |frame: serde_json::Value| {
        let (addr, id, session) = (server.addr, alice.connection_id(), alice.session());
        tokio::spawn(async move {
            post_to(addr, &id, Some(&session), &frame.to_string(), "text/plain").await
        })
    };

    let first = post(json!({"type": "held", "id": "h"}));
    assert_eq!(next(&mut received).await.body["type"], "held");
    let second = post(json!({"type": "ping", "payload": {"after": "held"}}));
    release.send(()).unwrap();
    let answer = alice.expect("held").await;
    assert_eq!(
        (&answer["payload"], &answer["id"]),
        (&json!("released"), &json!("h"))
    );
    assert_eq!(alice.expect("ack").await["payload"]["id"], "h");
    assert_eq!(alice.expect("pong").await["payload"]["after"], "held");
    assert_eq!(first.await.unwrap().0, 204);
    assert_eq!(second.await.unwrap().0, 204);
}

#[tokio::test]
#[cfg_attr(
    not(feature = "external"),
    ignore = "needs redis-server: --features external"
)]
async fn posts_relayed_from_another_node_wait_for_the_backend_in_their_order_and_are_bounded() {
    let (addr, mut received, backend) = backend().await;
    let redis = RedisServer::start().await;
    let node =
        |name: &'static str| TestServer::cluster_node(&redis, name, move |s| proxied_by(s, addr));
    let (holder, other) = (node("holder").await, node("other").await);
    let (release, held) = oneshot::channel();
    backend.held.lock().unwrap().push(held);
    let mut alice = SseClient::open(holder.addr, "/sse?token=good-alice", &[]).await;
    alice.read_connect().await;
    next(&mut received).await;
    holder.settled().await;
    let (id, session) = (alice.connection_id(), alice.session());
    let post = |frame: serde_json::Value| {
        let (id, session) = (id.clone(), session.clone());
        async move {
            let (status, _) = post_to(
                other.addr,
                &id,
                Some(&session),
                &frame.to_string(),
                "text/plain",
            )
            .await;
            assert_eq!(status, 202, "relayed");
        }
    };

    post(json!({"type": "held", "id": "h"})).await;
    assert_eq!(next(&mut received).await.body["type"], "held");
    // Sixteen relayed POSTs may wait behind it; the seventeenth is dropped and counted.
    for n in 1..=17 {
        post(json!({"type": "ping", "payload": {"n": n}})).await;
    }
    wait_until_async("the seventeenth relayed POST is refused", || async {
        let (_, metrics) = http_get(holder.addr, "/metrics").await;
        metrics.contains("switchboard_sse_posts_refused_total 1\n")
    })
    .await;
    release.send(()).unwrap();
    assert_eq!(alice.expect("held").await["id"], "h");
    assert_eq!(alice.expect("ack").await["payload"]["id"], "h");
    for n in 1..=16 {
        assert_eq!(alice.expect("pong").await["payload"]["n"], n);
    }
    post(json!({"type": "sum", "payload": {"a": 1, "b": 2}, "id": "s"})).await;
    assert_eq!(alice.expect("sum").await["payload"]["sum"], 3);
    assert_eq!(next(&mut received).await.body["type"], "sum");
}
