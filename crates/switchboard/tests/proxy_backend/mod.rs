//! A backend for the proxy tests: an axum app on a free port that records every request and
//! decides connects, joins, subscribes and RPCs by what the request says, and a server whose
//! every proxy is that backend.

// Each test binary that declares `mod proxy_backend` uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard::config::RawSettings;
use switchboard_testkit::{TestServer, WAIT};
use tokio::sync::{mpsc, oneshot};

/// One request the backend received: which proxy, and its JSON.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) proxy: String,
    pub(crate) body: Value,
}

#[derive(Clone)]
pub(crate) struct Backend {
    received: mpsc::UnboundedSender<Received>,
    /// RPCs of type `held` wait for the test to let them go.
    pub(crate) held: Arc<Mutex<Vec<oneshot::Receiver<()>>>>,
}

/// The backend's decisions, by what the request says.
async fn answer(
    State(backend): State<Backend>,
    Path(proxy): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let _ = backend.received.send(Received {
        proxy: proxy.clone(),
        body: body.clone(),
    });
    match proxy.as_str() {
        "hooks" => StatusCode::OK.into_response(),
        "connect" => decide_connect(&body).into_response(),
        "join" | "subscribe" => {
            let name = body["room"].as_str().or(body["channel"].as_str()).unwrap();
            if name.starts_with("secret") || name == "news:private" {
                Json(json!({"error": {"message": format!("{name} is members only")}}))
                    .into_response()
            } else {
                Json(json!({"result": {}})).into_response()
            }
        }
        _ => rpc(&backend, &body).await,
    }
}

fn decide_connect(body: &Value) -> Json<Value> {
    let cookie = body["headers"]["cookie"].as_str();
    let answer = match (body["token"].as_str(), cookie) {
        (Some("good-alice"), _) => json!({"result": {
            "user": "alice",
            "rooms": ["general", "secret-*"],
            "channels": {"subscribe": ["news:*"]},
        }}),
        (_, Some("session=bob")) => json!({"result": {"user": "bob"}}),
        (Some("banned"), _) => json!({"error": {"code": 403, "message": "banned"}}),
        (Some("kicked"), _) => json!({"disconnect": {"code": 4003, "reason": "kicked"}}),
        (Some("nonsense"), _) => json!({"disconnect": {"code": 1000}}),
        _ => json!({"error": {"message": "who are you?"}}),
    };
    Json(answer)
}

async fn rpc(backend: &Backend, body: &Value) -> Response {
    match body["type"].as_str().unwrap() {
        "sum" => {
            let sum =
                body["payload"]["a"].as_i64().unwrap() + body["payload"]["b"].as_i64().unwrap();
            Json(json!({"result": {"sum": sum}})).into_response()
        }
        "refuse" => {
            Json(json!({"error": {"code": "FORBIDDEN", "message": "not you"}})).into_response()
        }
        "weird" => Json(json!({"error": {"code": "TEAPOT"}})).into_response(),
        "held" => {
            let release = backend.held.lock().unwrap().pop();
            if let Some(release) = release {
                let _ = release.await;
            }
            Json(json!({"result": "released"})).into_response()
        }
        "hang" => std::future::pending().await,
        "garbage" => "not json".into_response(),
        "huge" => Json(json!({"result": "x".repeat(300 * 1024)})).into_response(),
        // An answer of exactly `bytes` bytes.
        "sized" => {
            let bytes = body["payload"]["bytes"].as_u64().unwrap() as usize;
            let filler = "x".repeat(bytes - r#"{"result":""}"#.len());
            format!(r#"{{"result":"{filler}"}}"#).into_response()
        }
        "broken" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => Json(json!({"error": {"message": "no such procedure"}})).into_response(),
    }
}

/// A backend on a free port: its address, what it receives, and where held RPCs queue.
pub(crate) async fn backend() -> (SocketAddr, mpsc::UnboundedReceiver<Received>, Backend) {
    let (sender, received) = mpsc::unbounded_channel();
    let state = Backend {
        received: sender,
        held: Arc::default(),
    };
    let app = Router::new()
        .route("/proxy/{proxy}", post(answer))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received, state)
}

/// A server whose every proxy is `backend`'s, adjusted by `configure`.
pub(crate) async fn server(
    backend: SocketAddr,
    configure: impl FnOnce(&mut RawSettings),
) -> TestServer {
    TestServer::with(move |s| {
        proxied_by(s, backend);
        configure(s);
    })
    .await
}

/// Makes `backend` every proxy of the settings `s`.
pub(crate) fn proxied_by(s: &mut RawSettings, backend: SocketAddr) {
    s.proxy_connect_url = Some(format!("http://{backend}/proxy/connect"));
    s.proxy_join_url = Some(format!("http://{backend}/proxy/join"));
    s.proxy_subscribe_url = Some(format!("http://{backend}/proxy/subscribe"));
    s.proxy_rpc_url = Some(format!("http://{backend}/proxy/rpc"));
}

/// The next request the backend received.
pub(crate) async fn next(received: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("a proxy request in time")
        .unwrap()
}
