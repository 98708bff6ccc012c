//! A backend for Switchboard: it receives the webhooks (checking each request's signature and
//! age, then printing the events) and answers the proxies (docs/proxy.md): who connects,
//! whether a join or subscribe may go ahead, and the custom message types `whoami` and `echo`.
//!
//! Run it with `cargo run --example webhook_backend` (env `PORT`, default 4000;
//! `WEBHOOK_SECRET`, default `dev-secret`), then start the server pointing at it:
//!
//! ```text
//! cargo run --release -- --webhook-url http://127.0.0.1:4000/webhooks --webhook-secret dev-secret \
//!   --proxy-connect-url http://127.0.0.1:4000/proxy/connect \
//!   --proxy-join-url http://127.0.0.1:4000/proxy/join \
//!   --proxy-subscribe-url http://127.0.0.1:4000/proxy/subscribe \
//!   --proxy-rpc-url http://127.0.0.1:4000/proxy/rpc
//! ```
//!
//! Connect to `ws://localhost:3000/?token=alice` (this backend takes any token as the user's
//! name; a real one looks its session up) and join a room: the backend prints
//! `presence_changed`, `room_occupied` and `member_added`. Rooms named `admin-…` are for the
//! user `admin` only; `{"type":"whoami","id":1}` is answered by the backend.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
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

/// The connect proxy: names the user and what it may do, or refuses (401). The token, from
/// `?token=` or an `auth` frame, is the user's name here; a cookie `session=<name>` works too.
async fn connect(Json(request): Json<Value>) -> Json<Value> {
    let cookie = request["headers"]["cookie"].as_str().unwrap_or_default();
    let session = cookie
        .split("; ")
        .find_map(|pair| pair.strip_prefix("session="));
    let user = request["token"].as_str().or(session).unwrap_or_default();
    if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Json(json!({"error": {"code": 401, "message": "log in first"}}));
    }
    println!("connect: {user} from {}", request["remoteAddr"]);
    // The same shape as a token's claims: every room, the news channels and the user's own.
    Json(json!({"result": {
        "user": user,
        "rooms": ["*"],
        "channels": {"subscribe": ["news:*", format!("user:{user}")], "publish": []},
    }}))
}

/// The join and subscribe proxies: `admin-…` rooms are for `admin`; everything else is allowed.
async fn approve(Json(request): Json<Value>) -> Json<Value> {
    let room = request["room"].as_str().unwrap_or_default();
    if room.starts_with("admin-") && request["userId"] != "admin" {
        return Json(json!({"error": {"message": "admins only"}}));
    }
    Json(json!({"result": {}}))
}

/// The RPC proxy: answers `whoami` and `echo`; other types are refused.
async fn rpc(Json(request): Json<Value>) -> Json<Value> {
    match request["type"].as_str() {
        Some("whoami") => Json(json!({"result": {
            "userId": request["userId"],
            "connectionId": request["connectionId"],
        }})),
        Some("echo") => Json(json!({"result": request["payload"]})),
        _ => Json(json!({"error": {"code": "INVALID_MESSAGE", "message": "no such procedure"}})),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_else(|_| "dev-secret".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "4000".into());
    let app = Router::new()
        .route("/webhooks", post(webhooks))
        .route("/proxy/connect", post(connect))
        .route("/proxy/join", post(approve))
        .route("/proxy/subscribe", post(approve))
        .route("/proxy/rpc", post(rpc))
        .with_state(Arc::<[u8]>::from(secret.as_bytes()));
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "backend on http://{} (/webhooks, /proxy/connect, /proxy/join, /proxy/subscribe, /proxy/rpc)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
