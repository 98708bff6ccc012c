//! A chat application that embeds Switchboard: its own axum routes next to Switchboard's, a
//! custom `typing` message type, and connect/disconnect hooks.
//!
//! Run it with `cargo run --example chat` (env `PORT`, default 3000), then connect to
//! `ws://localhost:3000/?userId=alice`, join a room and send
//! `{"type":"typing","payload":{"room":"general","typing":true}}`: the other members get
//! `{"type":"typing","room":"general","userId":"alice","payload":{"typing":true}}`.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use switchboard::handlers::{MessageContext, Reject};
use switchboard::ids::RoomId;
use switchboard::protocol::ErrorCode;
use switchboard::{Config, Switchboard};

/// `typing {room, typing}`: tells the room's other members that the sender is (not) typing.
fn typing(ctx: &MessageContext<'_>, payload: &Value) -> Result<(), Reject> {
    let room = payload["room"]
        .as_str()
        .ok_or_else(|| Reject::new(ErrorCode::InvalidMessage, "typing needs a room"))?;
    let room = RoomId::parse(room, 128)
        .map_err(|e| Reject::new(ErrorCode::InvalidMessage, format!("room: {e}")))?;
    if !ctx.in_room(&room) {
        return Err(Reject::new(ErrorCode::NotInRoom, "join the room first"));
    }
    let typing = payload["typing"].as_bool().unwrap_or(true);
    ctx.send_to_room(&room, "typing", &json!({ "typing": typing }));
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let switchboard = Switchboard::builder(Config::default().hub)
        .on_message("typing", typing)
        .on_connect(|conn| tracing::info!(user = %conn.user_id, "joined the chat"))
        .on_disconnect(|conn| tracing::info!(user = %conn.user_id, "left the chat"))
        .build();
    let app = Router::new()
        .route("/hello", get(|| async { "Hello from the chat app\n" }))
        .merge(switchboard.router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("chat listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    switchboard.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
