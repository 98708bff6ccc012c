//! Switchboard embedded in an application: custom message handlers, hooks, and its router
//! merged into the application's own, served by `axum::serve`. Also runs the `chat` example.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use serde_json::json;
use switchboard::handlers::Reject;
use switchboard::protocol::ErrorCode;
use switchboard::{Config, Switchboard};
use switchboard_testkit::{Client, WAIT, http_get, wait_until};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Serves `switchboard` merged into an app with its own `/app` route; returns the address.
async fn serve(switchboard: &Switchboard) -> SocketAddr {
    let app = Router::new()
        .route("/app", get(|| async { "the application's own route" }))
        .merge(switchboard.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn custom_handlers_reply_send_and_reject() {
    let switchboard = Switchboard::builder(Config::default().hub)
        .on_message("echo", |ctx, payload| {
            ctx.reply("echoed", &json!({ "you": ctx.user_id(), "sent": payload }));
            Ok(())
        })
        .on_message("shout", |ctx, payload| {
            ctx.broadcast("shouted", payload);
            Ok(())
        })
        .on_message("vote", |ctx, payload| {
            let Some(room) = ctx.rooms().first() else {
                return Err(Reject::new(ErrorCode::NotInRoom, "join a room to vote"));
            };
            ctx.send_to_room(room, "voted", payload);
            Ok(())
        })
        .on_message("forbidden", |_, _| {
            Err(Reject::new(ErrorCode::Forbidden, "not for you"))
        })
        .build();
    let addr = serve(&switchboard).await;
    let (status, body) = http_get(addr, "/app").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "the application's own route")
    );

    let mut alice = Client::connect(&format!("ws://{addr}/?userId=alice")).await;
    let mut bob = Client::connect(&format!("ws://{addr}/ws?userId=bob")).await;
    alice
        .send(json!({"type": "echo", "payload": {"n": 1}, "id": "e1"}))
        .await;
    let echoed = alice.expect("echoed").await;
    assert_eq!(echoed["payload"], json!({"you": "alice", "sent": {"n": 1}}));
    assert_eq!(echoed["id"], "e1");
    assert_eq!(alice.expect("ack").await["id"], "e1");

    alice.send_type("shout", json!("hey")).await;
    for client in [&mut alice, &mut bob] {
        let frame = client.expect("shouted").await;
        assert_eq!(
            (frame["userId"].clone(), frame["payload"].clone()),
            (json!("alice"), json!("hey"))
        );
    }

    alice
        .send(json!({"type": "vote", "payload": {"for": "pizza"}, "id": 7}))
        .await;
    let error = alice.expect_error("NOT_IN_ROOM").await;
    assert_eq!(error["id"], 7);
    alice.join("lunch").await;
    bob.join("lunch").await;
    alice.expect("user_joined").await;
    alice.send_type("vote", json!({"for": "pizza"})).await;
    let vote = bob.expect("voted").await;
    assert_eq!(
        (vote["room"].clone(), vote["userId"].clone()),
        (json!("lunch"), json!("alice"))
    );
    alice.expect_nothing_pending().await;

    alice.send_type("forbidden", json!(null)).await;
    let error = alice.expect_error("FORBIDDEN").await;
    assert_eq!(error["payload"]["message"], "not for you");
    alice.send_type("unregistered", json!({})).await;
    alice.expect_error("UNKNOWN_TYPE").await;
}

#[tokio::test]
async fn connect_and_disconnect_hooks_run_once_per_connection() {
    let connected = Arc::new(AtomicUsize::new(0));
    let disconnected = Arc::new(AtomicUsize::new(0));
    let (c, d) = (connected.clone(), disconnected.clone());
    let switchboard = Switchboard::builder(Config::default().hub)
        .on_connect(move |info| {
            assert_eq!(info.user_id.as_str(), "hooked");
            c.fetch_add(1, Ordering::SeqCst);
        })
        .on_disconnect(move |_| {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    let addr = serve(&switchboard).await;
    let client = Client::connect(&format!("ws://{addr}/?userId=hooked")).await;
    assert_eq!(connected.load(Ordering::SeqCst), 1);
    assert_eq!(disconnected.load(Ordering::SeqCst), 0);
    drop(client);
    wait_until("the disconnect hook ran", || {
        disconnected.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        switchboard
            .shutdown(std::time::Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn the_chat_example_runs_and_relays_typing() {
    // A full `cargo test` builds the examples into target/<profile>/examples; a filtered run
    // (`cargo test --test library`) does not, so build it then.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("chat");
    if !example.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "switchboard", "--example", "chat"])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }
    assert!(example.exists(), "no example at {}", example.display());
    let mut child = Command::new(&example)
        .env("PORT", "0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    tokio::time::timeout(WAIT, stdout.read_line(&mut line))
        .await
        .expect("the example did not say where it listens")
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("chat listening on ")
        .unwrap()
        .parse()
        .unwrap();

    let mut alice = Client::connect(&format!("ws://{addr}/?userId=alice")).await;
    let mut bob = Client::connect(&format!("ws://{addr}/?userId=bob")).await;
    alice.join("general").await;
    bob.join("general").await;
    alice.expect("user_joined").await;
    bob.send_type("typing", json!({"room": "general", "typing": true}))
        .await;
    let typing = alice.expect("typing").await;
    assert_eq!(typing["userId"], "bob");
    assert_eq!(typing["payload"], json!({"typing": true}));
    bob.send_type("typing", json!({"room": "elsewhere"})).await;
    bob.expect_error("NOT_IN_ROOM").await;
    let (status, body) = http_get(addr, "/hello").await;
    assert_eq!((status, body.as_str()), (200, "Hello from the chat app\n"));
    child.kill().await.unwrap();
}
