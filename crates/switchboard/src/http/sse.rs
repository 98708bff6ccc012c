//! The SSE transport's routes (DESIGN.md §9): `GET /sse` opens a connection whose server
//! frames arrive as events; `POST /sse/{connectionId}` carries its client frames; `OPTIONS`
//! on the same path answers browsers' CORS preflight (the session header makes the POST
//! non-simple). Identity, the origin allowlist and the per-IP cap are the WebSocket
//! endpoint's; the connection itself is `connection::sse`.
//!
//! A POST body is one client frame or a JSON array of at most [`MAX_FRAMES`] of them, at most
//! `--max-frame-size` bytes in all: a batch may not hold more than one WebSocket frame could.
//! Refused POSTs get a status and a JSON body `{code, message}`, and nothing of them is
//! handled. In a cluster, a POST for a connection this node does not hold is checked here for
//! everything but the session, relayed to the node that holds it (which checks the session)
//! and answered 202.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::value::RawValue;

use super::AppState;
use super::ws::{Admission, ConnectParams, Identify, draining};
use crate::connection::sse::SseTarget;
use crate::connection::{self, PostError};
use crate::hub::Counters;
use crate::ids::ConnId;
use crate::per_ip::IpSlot;

/// Most client frames in one POST body.
pub(crate) const MAX_FRAMES: usize = 100;

/// The header that carries the `session` secret of the connection's `connect` event.
const SESSION_HEADER: &str = "x-switchboard-session";

/// A refused SSE request. Its `Display` is the `message` of the JSON error body.
#[derive(Debug, thiserror::Error)]
pub(super) enum SseError {
    #[error("origin not allowed")]
    Origin,
    #[error("a token is required: ?token= or Authorization: Bearer")]
    NoToken,
    #[error(transparent)]
    Post(#[from] PostError),
    #[error("the body must be text/plain or application/json")]
    MediaType,
    #[error("the body is larger than {0} bytes (--max-frame-size)")]
    TooLarge(usize),
    #[error("the body could not be read")]
    Unreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    #[error("the body is not UTF-8")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("{0} frames in one body; at most {MAX_FRAMES}")]
    TooManyFrames(usize),
    #[error("no randomness for the session secret")]
    NoRandomness(#[source] getrandom::Error),
}

impl SseError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Origin | Self::Post(PostError::WrongSession) => {
                (StatusCode::FORBIDDEN, "FORBIDDEN")
            }
            Self::NoToken => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::Post(PostError::UnknownConnection(_)) => {
                (StatusCode::NOT_FOUND, "UNKNOWN_CONNECTION")
            }
            Self::MediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "MESSAGE_TOO_LARGE"),
            Self::TooManyFrames(_) => (StatusCode::PAYLOAD_TOO_LARGE, "LIMIT_EXCEEDED"),
            Self::Unreadable(_) | Self::InvalidJson(_) | Self::NotUtf8(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_JSON")
            }
            Self::NoRandomness(_) => (StatusCode::SERVICE_UNAVAILABLE, "INTERNAL"),
        }
    }
}

impl IntoResponse for SseError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "code": code, "message": self.to_string() });
        (status, axum::Json(body)).into_response()
    }
}

/// `GET /sse`: opens an SSE connection (the same query parameters and identity rules as the
/// WebSocket endpoint; with authentication on, the token must come with the request).
pub(super) async fn stream(
    State(state): State<AppState>,
    Query(params): Query<ConnectParams>,
    mut request: Request,
) -> Response {
    if let Some(response) = draining(&state) {
        return response;
    }
    let origin = match allowed_origin(&state, request.headers()) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let identify = Identify::from(&state, &params, &request, "sse");
    let peer = match identify.admission(&state).await {
        Ok(Admission::Known(peer)) => peer,
        Ok(Admission::AwaitToken(_)) => return SseError::NoToken.into_response(),
        Err(response) => return *response,
    };
    let slot = request.extensions_mut().remove::<IpSlot>();
    let stream = match connection::sse::open(state.endpoint.clone(), peer, slot) {
        Ok(stream) => stream,
        Err(error) => return SseError::NoRandomness(error).into_response(),
    };
    let mut response = axum::body::Body::new(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers responses unless told otherwise, which would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    cors(headers, origin);
    response
}

/// `POST /sse/{connectionId}`: hands the body's frames to the connection.
pub(super) async fn post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let origin = match allowed_origin(&state, request.headers()) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let mut response = match handle_post(&state, &id, request).await {
        Ok(Accepted::Handled) => StatusCode::NO_CONTENT.into_response(),
        Ok(Accepted::Relayed) => StatusCode::ACCEPTED.into_response(),
        Err(error) => {
            Counters::add(&state.hub.counters().sse_posts_refused, 1);
            error.into_response()
        }
    };
    cors(response.headers_mut(), origin);
    response
}

/// Where a POST's frames go.
enum Destination {
    /// A connection of this node.
    Here(SseTarget),
    /// Another node's connection (in a cluster), with the session the POST claims.
    Elsewhere(ConnId, String),
}

/// What became of an accepted POST.
enum Accepted {
    /// Its frames were handled (204).
    Handled,
    /// It was relayed to the node holding the connection (202).
    Relayed,
}

async fn handle_post(state: &AppState, id: &str, request: Request) -> Result<Accepted, SseError> {
    if !is_text_or_json(request.headers()) {
        return Err(SseError::MediaType);
    }
    let secret = request.headers().get(SESSION_HEADER).cloned();
    // Unknown connections and wrong secrets are refused before the body is read. In a
    // cluster a connection this node does not hold may be another node's: that node checks.
    let found = state
        .endpoint
        .sse
        .find(id, secret.as_ref().map(HeaderValue::as_bytes));
    let destination = match (found, ConnId::parse(id)) {
        (Ok(target), _) => Destination::Here(target),
        (Err(PostError::UnknownConnection(_)), Some(conn)) if state.hub.relays_across_nodes() => {
            let session = secret.as_ref().and_then(|value| value.to_str().ok());
            let session = session.ok_or(SseError::Post(PostError::WrongSession))?;
            Destination::Elsewhere(conn, session.to_owned())
        }
        (Err(error), _) => return Err(error.into()),
    };
    let limit = state.hub.config().limits.max_frame_size;
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|error| match error.downcast::<LengthLimitError>() {
            Ok(_) => SseError::TooLarge(limit),
            Err(error) => SseError::Unreadable(error),
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(SseError::NotUtf8)?;
    let frames: Vec<&RawValue> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(SseError::InvalidJson)?
    } else {
        vec![serde_json::from_str(text).map_err(SseError::InvalidJson)?]
    };
    if frames.len() > MAX_FRAMES {
        return Err(SseError::TooManyFrames(frames.len()));
    }
    match destination {
        Destination::Here(target) => {
            let frames: Vec<&str> = frames.iter().map(|frame| frame.get()).collect();
            target.handle(&frames).await;
            Ok(Accepted::Handled)
        }
        Destination::Elsewhere(conn, session) => {
            connection::sse::relay(&state.hub, conn, &session, frames);
            Ok(Accepted::Relayed)
        }
    }
}

/// `OPTIONS /sse/{connectionId}`: the CORS preflight of a browser's POST.
pub(super) async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let origin = match allowed_origin(&state, &headers) {
        Ok(origin) => origin,
        Err(error) => return error.into_response(),
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-switchboard-session"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    cors(out, origin);
    response
}

/// The request's `Origin` when it has one the allowlist allows (every origin when there is
/// no allowlist); an error when it is not allowed.
fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Result<Option<HeaderValue>, SseError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    match &state.auth.allowed_origins {
        Some(allowed) if !allowed.allows(origin.as_bytes()) => Err(SseError::Origin),
        _ => Ok(Some(origin.clone())),
    }
}

/// Lets a browser page of `origin` read the response (no credentials: the token is in the
/// query, the session in a header).
fn cors(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
}

/// Whether the body is declared as text or JSON, or not declared (both are read as JSON).
fn is_text_or_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "text/plain" || essence == "application/json"
}
