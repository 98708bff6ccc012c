//! Connecting: the `connect` frame, both endpoints, identities, and admission limits.

#![allow(clippy::unwrap_used)]

use switchboard::ids::{ConnId, UserId};
use switchboard_testkit::{Client, Ended, TestServer, http_get, http_request, wait_until};

#[tokio::test]
async fn the_first_frame_is_connect_with_ids_and_heartbeat() {
    let server = TestServer::with(|s| s.node_id = Some("node-a".into())).await;
    let client = server.connect("user123").await;
    assert_eq!(client.connect["userId"], "user123");
    assert_eq!(client.connect["heartbeatInterval"], 30_000);
    assert_eq!(client.connect["node"], "node-a");
    let id = ConnId::parse(client.connection_id()).unwrap();
    let info = server.hub.connection(id).unwrap();
    assert_eq!(info.user_id.as_str(), "user123");
}

#[tokio::test]
async fn both_endpoints_accept_websockets() {
    let server = TestServer::start().await;
    let on_ws = Client::connect(&server.url("/ws?userId=a")).await;
    assert_eq!(on_ws.user_id(), "a");
    let on_root = Client::connect(&server.url("/?userId=b")).await;
    assert_eq!(on_root.user_id(), "b");
}

#[tokio::test]
async fn without_a_user_id_the_connection_is_anonymous() {
    let server = TestServer::start().await;
    let a = Client::connect(&server.url("/")).await;
    let b = Client::connect(&server.url("/ws")).await;
    assert!(a.user_id().starts_with("anon-"), "{}", a.user_id());
    assert_ne!(a.user_id(), b.user_id());
}

#[tokio::test]
async fn invalid_user_ids_and_non_upgrades_are_refused_over_http() {
    let server = TestServer::start().await;
    let (status, body) = http_get(server.addr, "/ws?userId=has%20space").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = http_get(server.addr, "/ws").await;
    assert_eq!(status, 400, "a plain GET on /ws is not an upgrade");
    let (status, body) = http_request(
        server.addr,
        "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert_eq!(status, 426, "{body}");
    let (status, body) = http_get(server.addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("Switchboard"));
}

#[tokio::test]
async fn the_registry_finds_connections_by_id_user_and_room() {
    let server = TestServer::start().await;
    let alice1 = server.member("alice", "general").await;
    let _alice2 = server.connect("alice").await;
    let _bob = server.member("bob", "general").await;
    let hub = &server.hub;
    let alice = UserId::from_trusted("alice");
    assert_eq!(hub.user_connections(&alice).len(), 2);
    let in_room = hub.room_connections(&switchboard::ids::RoomId::from_trusted("general"));
    assert_eq!(in_room.len(), 2);
    assert!(
        in_room
            .iter()
            .any(|c| c.connection_id.to_string() == alice1.connection_id())
    );
    assert_eq!(hub.connections().len(), 3);
    let mut online: Vec<String> = hub.online_users().iter().map(|u| u.to_string()).collect();
    online.sort();
    assert_eq!(online, ["alice", "bob"]);
}

#[tokio::test]
async fn over_max_connections_the_client_gets_1013_not_a_hang() {
    let server = TestServer::with(|s| s.max_connections = Some(2)).await;
    let _a = server.connect("a").await;
    let _b = server.connect("b").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url("/?userId=c"))
        .await
        .unwrap();
    let ended = Client::ended_stream(&mut ws).await;
    assert_eq!(
        ended,
        Ended::Closed {
            code: 1013,
            reason: "server at capacity".into()
        }
    );
    assert_eq!(server.stats().await["connectionsRefused"], 1);
    drop(_a);
    wait_until("the slot is freed", || server.hub.stats().connections == 1).await;
    let _c = server.connect("c").await;
}

#[tokio::test]
async fn over_max_connections_per_user_the_client_gets_1013() {
    let server = TestServer::with(|s| s.max_connections_per_user = Some(2)).await;
    let _a1 = server.connect("a").await;
    let _a2 = server.connect("a").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.url("/?userId=a"))
        .await
        .unwrap();
    let ended = Client::ended_stream(&mut ws).await;
    assert_eq!(
        ended,
        Ended::Closed {
            code: 1013,
            reason: "too many connections for this user".into()
        }
    );
    let _b = server.connect("b").await;
}
