//! A backend that receives Switchboard's webhooks: it checks each request's signature and
//! age, then prints the events.
//!
//! Run it with `cargo run --example webhook_backend` (env `PORT`, default 4000;
//! `WEBHOOK_SECRET`, default `dev-secret`), then start the server pointing at it:
//!
//! ```text
//! cargo run --release -- --webhook-url http://127.0.0.1:4000/webhooks --webhook-secret dev-secret
//! ```
//!
//! Connect to `ws://localhost:3000/?userId=alice` and join a room: the backend prints
//! `presence_changed`, `room_occupied` and `member_added`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Requests older than this are refused: a captured request cannot be replayed later.
const MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// Checks the signature (in constant time) and the timestamp of a webhook request.
fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), &'static str> {
    let signature = headers
        .get("x-switchboard-signature")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("sha256="))
        .ok_or("no signature")?;
    let signature = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(signature.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "a malformed signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "a bad secret")?;
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| "a wrong signature")?;
    let sent: u64 = headers
        .get("x-switchboard-timestamp")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .ok_or("no timestamp")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    if now.saturating_sub(sent) > MAX_AGE_MS {
        return Err("too old");
    }
    Ok(())
}

async fn webhooks(State(secret): State<Arc<[u8]>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if let Err(why) = verify(&secret, &headers, &body) {
        eprintln!("refused a request: {why}");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(batch) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for event in batch["events"].as_array().into_iter().flatten() {
        println!("{event}");
    }
    // Any 2xx: the events are taken. Anything else (or no answer in 5 s) is retried.
    StatusCode::NO_CONTENT
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_else(|_| "dev-secret".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "4000".into());
    let app = Router::new()
        .route("/webhooks", post(webhooks))
        .with_state(Arc::<[u8]>::from(secret.as_bytes()));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "webhook backend on http://{}/webhooks",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
