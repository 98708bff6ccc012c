//! `--admin-port`: the admin routes (`/api`, `/metrics`, `/stats`, `/dashboard`) move to a
//! listener of their own and answer 404 on the public one, which keeps serving clients.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::Running;
use serde_json::json;
use switchboard_testkit::{TestServer, http_get, http_json};

const KEY: &str = "admin-port-key";

/// The admin paths, each with a path to GET.
const ADMIN_PATHS: [&str; 4] = ["/api/rooms", "/metrics", "/stats", "/dashboard"];

async fn split() -> (TestServer, SocketAddr) {
    let server = TestServer::with(|s| {
        s.admin_port = Some(0);
        s.api_key = Some(KEY.into());
    })
    .await;
    let admin = server.admin_addr.expect("an admin listener");
    assert_ne!(admin.port(), server.addr.port());
    (server, admin)
}

#[tokio::test]
async fn the_admin_routes_move_to_the_admin_port() {
    let (server, admin) = split().await;
    let auth = format!("Bearer {KEY}");
    for path in ADMIN_PATHS {
        let (status, body) = http_json(admin, "GET", path, None, &[("Authorization", &auth)]).await;
        assert_eq!(status, 200, "admin port {path}: {body}");
        let (status, _) = http_get(server.addr, path).await;
        assert_eq!(status, 404, "public port {path}");
    }
    // A POST to the API on the public port is not found either, key or not.
    let body = json!({"payload": 1});
    let (status, _) = http_json(
        server.addr,
        "POST",
        "/api/broadcast",
        Some(&body),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 404);
    // The key still guards the API on the admin port.
    let (status, reply) = http_json(admin, "GET", "/api/rooms", None, &[]).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (401, &json!("UNAUTHORIZED"))
    );
}

#[tokio::test]
async fn clients_stay_on_the_public_port_and_the_api_reaches_them_from_the_admin_port() {
    let (server, admin) = split().await;
    let mut member = server.member("alice", "general").await;
    let (status, _) = http_get(server.addr, "/health").await;
    assert_eq!(status, 200);
    let auth = format!("Bearer {KEY}");
    let (status, reply) = http_json(
        admin,
        "POST",
        "/api/rooms/general/messages",
        Some(&json!({"payload": {"content": "from the admin port"}})),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!((status, reply), (200, json!({"recipients": 1})));
    let frame = member.expect("message").await;
    assert_eq!(frame["payload"]["content"], "from the admin port");
    // The admin listener serves no client routes.
    for path in ["/", "/ws", "/health", "/demo", "/client.js"] {
        let (status, _) = http_get(admin, path).await;
        assert_eq!(status, 404, "admin port {path}");
    }
}

#[tokio::test]
async fn without_an_admin_port_everything_is_on_the_public_port() {
    let server = TestServer::with(|s| s.api_key = Some(KEY.into())).await;
    assert_eq!(server.admin_addr, None);
    let auth = format!("Bearer {KEY}");
    for path in ADMIN_PATHS {
        let (status, _) =
            http_json(server.addr, "GET", path, None, &[("Authorization", &auth)]).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_binary_logs_the_admin_address_and_serves_it() {
    let server = Running::start(&["--admin-port", "0", "--api-insecure"], &[]).await;
    let line = server
        .startup
        .iter()
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("admin routes listening"))
        })
        .unwrap_or_else(|| panic!("no admin listener in {:?}", server.startup));
    let admin: SocketAddr = line["fields"]["address"].as_str().unwrap().parse().unwrap();
    assert_ne!(admin, server.addr);
    assert_eq!(http_get(admin, "/metrics").await.0, 200);
    assert_eq!(http_get(server.addr, "/metrics").await.0, 404);
    assert_eq!(http_get(server.addr, "/health").await.0, 200);
}
