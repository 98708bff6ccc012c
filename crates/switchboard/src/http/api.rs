//! The server HTTP API for backends (`/api/...`): publish to rooms, channels, users and
//! everyone; list rooms and members; read presence; disconnect users. JSON in and out, behind
//! an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`). Without a key the API refuses
//! every request with 403, unless the operator declared it open (`--api-insecure`): secure by
//! default ([`ApiAccess`]).
//!
//! Every `POST` must say `Content-Type: application/json` (a charset may follow), even with an
//! empty body, or gets 415: a browser sends a cross-site form or `text/plain` POST without
//! asking first, but not a JSON one, so an open API cannot be driven from another site's page.
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` with the matching HTTP status.

use std::fmt;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{AppState, history};
use crate::cluster::StateError;
use crate::config::ApiConfig;
use crate::hub::{Hub, PublishError};
use crate::ids::{ChannelId, NameError, RoomId, UserId};
use crate::protocol::{CloseCode, ServerFrame, ServerKind};

/// An API failure. Its `Display` is the `message` of the JSON error body.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// No API key, or not the configured one.
    #[error("missing or wrong API key")]
    Unauthorized,
    /// No key is configured and the API was not declared open.
    #[error(
        "the server API is off: no API key is configured; start the server with --api-key KEY \
         (env SWITCHBOARD_API_KEY, TOML api_key) and send it as `Authorization: Bearer KEY`, \
         or with --api-insecure to serve the API to anyone who can reach it"
    )]
    NoKeyConfigured,
    /// A `POST` whose body is not declared as JSON.
    #[error("the body must be JSON: send `Content-Type: application/json`")]
    NotJson,
    /// The body (or the `data` it carries) is not JSON.
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The body is JSON but not the shape the endpoint expects.
    #[error("{0}")]
    InvalidBody(#[source] serde_json::Error),
    /// The body could not be read.
    #[error(transparent)]
    UnreadableBody(BytesRejection),
    /// A room, user or channel name in the path or the body is not valid.
    #[error("{name}: {source}")]
    InvalidName {
        /// Which name.
        name: Name,
        /// What is wrong with it.
        #[source]
        source: NameError,
    },
    /// The `type` field is not a valid message type.
    #[error("type: 1 to 64 of A-Z a-z 0-9 _ - . :")]
    InvalidType,
    /// The hub refused the publication.
    #[error(transparent)]
    Publish(PublishError),
    /// Valid, but not allowed to a backend.
    #[error("{0}")]
    Forbidden(Forbidden),
    /// The room has no members, so it does not exist.
    #[error("no room {0:?}")]
    NotFound(RoomId),
    /// The body is over the size limit.
    #[error("the body is larger than the limit")]
    TooLarge,
    /// No endpoint has this path.
    #[error("no API endpoint {0}")]
    NoRoute(String),
    /// The path exists, but not with this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method of the request.
        method: String,
        /// The path of the request.
        path: String,
    },
    /// The query string is not what the endpoint takes.
    #[error("{0}")]
    InvalidQuery(#[source] axum::extract::rejection::QueryRejection),
    /// A query parameter is out of its range or missing its pair.
    #[error("{0}")]
    InvalidParameter(&'static str),
    /// A history request while history is off.
    #[error("history is off on this server (--history-size 0)")]
    HistoryOff,
    /// The cluster's state store could not answer (cluster mode: Redis is unreachable).
    #[error("the cluster state store cannot answer right now")]
    StateStore(#[source] StateError),
}

/// A name the API validates.
#[derive(Debug, Clone, Copy)]
pub(super) enum Name {
    Room,
    User,
    Channel,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Room => "room",
            Self::User => "user",
            Self::Channel => "channel",
        })
    }
}

/// What a backend may not do, even with the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Forbidden {
    /// Send a frame of a kind the protocol defines (clients would take it for the server's).
    #[error("type {:?} is reserved by the protocol", .0.as_str())]
    ReservedType(ServerKind),
    /// Publish on a `presence:` channel.
    #[error("presence channels carry presence updates only")]
    PresenceChannel,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Self::NoKeyConfigured => (StatusCode::FORBIDDEN, "API_KEY_NOT_CONFIGURED"),
            Self::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "INVALID_JSON"),
            Self::InvalidBody(_)
            | Self::UnreadableBody(_)
            | Self::InvalidName { .. }
            | Self::InvalidType
            | Self::Publish(_)
            | Self::InvalidQuery(_)
            | Self::InvalidParameter(_)
            | Self::HistoryOff => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            Self::NotFound(_) | Self::NoRoute(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            Self::StateStore(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        (status, Json(body)).into_response()
    }
}

pub(super) type ApiResult = Result<Json<Value>, ApiError>;

/// The `/api` routes.
pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/broadcast", post(broadcast))
        .route("/api/rooms", get(rooms))
        .route("/api/rooms/{room}/messages", post(room_message))
        .route("/api/rooms/{room}/members", get(room_members))
        .route("/api/rooms/{room}/history", get(history::room))
        .route("/api/channels/{channel}/publish", post(publish))
        .route("/api/channels/{channel}/history", get(history::channel))
        .route("/api/users/{user}/messages", post(user_message))
        .route("/api/users/{user}/presence", get(user_presence))
        .route("/api/users/{user}/disconnect", post(disconnect))
        .route("/api/presence", get(online))
        .route_layer(middleware::from_fn_with_state(state, require_key))
}

/// What an unknown path answers: under `/api`, a JSON `NOT_FOUND` like every API error (a
/// backend parses one error shape); elsewhere, an empty 404.
pub(super) async fn fallback(uri: axum::http::Uri) -> Response {
    if is_api(uri.path()) {
        return ApiError::NoRoute(uri.path().to_owned()).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

/// What a known path answers to a method it does not take: under `/api`, a JSON
/// `METHOD_NOT_ALLOWED`; elsewhere, an empty 405.
pub(super) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> Response {
    if is_api(uri.path()) {
        let path = uri.path().to_owned();
        let method = method.to_string();
        return ApiError::MethodNotAllowed { method, path }.into_response();
    }
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Who may use the server API.
#[derive(Clone)]
pub(crate) enum ApiAccess {
    /// Callers that present this key.
    Key(Arc<str>),
    /// Anyone (`--api-insecure`).
    Open,
    /// No one: no key is configured.
    Closed,
}

impl ApiAccess {
    /// The access `config` gives: its key, else open only when declared insecure.
    pub(crate) fn from_config(config: &ApiConfig) -> Self {
        match (&config.key, config.insecure) {
            (Some(key), _) => Self::Key(Arc::from(key.as_str())),
            (None, true) => Self::Open,
            (None, false) => Self::Closed,
        }
    }
}

/// Refuses requests without the key (401), every request when no key is configured (403), and
/// a `POST` not declared as JSON (415).
async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let allowed = match &state.api {
        ApiAccess::Key(key) => super::keys::authorized(request.headers(), Some(key)),
        ApiAccess::Open => true,
        ApiAccess::Closed => return ApiError::NoKeyConfigured.into_response(),
    };
    if !allowed {
        return ApiError::Unauthorized.into_response();
    }
    if request.method() == Method::POST && !declares_json(request.headers()) {
        return ApiError::NotJson.into_response();
    }
    next.run(request).await
}

/// Whether the `Content-Type` is `application/json`, with or without parameters (`charset`).
fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Body of the message-sending endpoints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    payload: Box<RawValue>,
    user_id: Option<String>,
}

/// Body of the publish endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PublishBody {
    data: Box<RawValue>,
    user_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    reason: Option<String>,
}

fn body<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
        _ => ApiError::UnreadableBody(rejection),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e),
        _ => ApiError::InvalidJson(e),
    })
}

pub(super) fn name<T>(
    name: Name,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, NameError>,
) -> Result<T, ApiError> {
    parse(value).map_err(|source| ApiError::InvalidName { name, source })
}

pub(super) fn room(hub: &Hub, value: &str) -> Result<RoomId, ApiError> {
    let max = hub.config().limits.max_name_length;
    name(Name::Room, value, |v| RoomId::parse(v, max))
}

fn user(hub: &Hub, value: &str) -> Result<UserId, ApiError> {
    let max = hub.config().limits.max_name_length;
    name(Name::User, value, |v| UserId::parse(v, max))
}

fn sender(hub: &Hub, user_id: Option<&str>) -> Result<Option<UserId>, ApiError> {
    user_id.map(|id| user(hub, id)).transpose()
}

fn message_type<'a>(kind: Option<&'a str>, default: &'a str) -> Result<&'a str, ApiError> {
    let kind = kind.unwrap_or(default);
    let valid = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
    if !valid {
        return Err(ApiError::InvalidType);
    }
    match ServerKind::parse(kind) {
        Some(reserved) if reserved.is_reserved() => {
            Err(ApiError::Forbidden(Forbidden::ReservedType(reserved)))
        }
        _ => Ok(kind),
    }
}

fn frame<'a>(
    kind: &'a str,
    payload: &'a RawValue,
    sender: Option<&'a UserId>,
) -> ServerFrame<'a, &'a RawValue> {
    let frame = ServerFrame::custom(kind, payload).stamped();
    match sender {
        Some(user) => frame.user(user.as_str()),
        None => frame,
    }
}

fn recipients(count: usize) -> ApiResult {
    Ok(Json(json!({ "recipients": count })))
}

async fn broadcast(State(state): State<AppState>, raw: Result<Bytes, BytesRejection>) -> ApiResult {
    let request: SendBody = body(raw)?;
    let hub = &state.hub;
    let kind = message_type(request.kind.as_deref(), "broadcast")?;
    let sender = sender(hub, request.user_id.as_deref())?;
    recipients(hub.broadcast(&frame(kind, &request.payload, sender.as_ref())))
}

async fn room_message(
    State(state): State<AppState>,
    Path(room_name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let hub = &state.hub;
    let room = room(hub, &room_name)?;
    let request: SendBody = body(raw)?;
    let kind = message_type(request.kind.as_deref(), "message")?;
    let sender = sender(hub, request.user_id.as_deref())?;
    let frame = frame(kind, &request.payload, sender.as_ref()).room(room.as_str());
    recipients(hub.send_to_room(&room, &frame, None))
}

async fn user_message(
    State(state): State<AppState>,
    Path(user_name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let hub = &state.hub;
    let target = user(hub, &user_name)?;
    let request: SendBody = body(raw)?;
    let kind = message_type(request.kind.as_deref(), "message")?;
    let sender = sender(hub, request.user_id.as_deref())?;
    recipients(hub.send_to_user(&target, &frame(kind, &request.payload, sender.as_ref())))
}

async fn publish(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let hub = &state.hub;
    let max = hub.config().limits.max_name_length;
    name(Name::Channel, &channel, |v| ChannelId::parse(v, max))?;
    let request: PublishBody = body(raw)?;
    let sender = sender(hub, request.user_id.as_deref())?;
    let data: Value = serde_json::from_str(request.data.get()).map_err(ApiError::InvalidJson)?;
    match hub.pubsub().publish_as(&channel, &data, sender.as_ref()) {
        Ok(count) => recipients(count),
        Err(PublishError::Reserved) => Err(ApiError::Forbidden(Forbidden::PresenceChannel)),
        Err(error) => Err(ApiError::Publish(error)),
    }
}

async fn rooms(State(state): State<AppState>) -> ApiResult {
    let mut rooms = state.hub.rooms();
    rooms.sort_by(|a, b| a.room.cmp(&b.room));
    Ok(Json(json!({ "rooms": rooms })))
}

async fn room_members(State(state): State<AppState>, Path(room_name): Path<String>) -> ApiResult {
    let hub = &state.hub;
    let room = room(hub, &room_name)?;
    let mut members = hub
        .cluster_room_members(&room)
        .await
        .map_err(ApiError::StateStore)?;
    if members.is_empty() {
        return Err(ApiError::NotFound(room));
    }
    members.sort();
    Ok(Json(
        json!({ "room": room, "members": hub.presence_of(&members) }),
    ))
}

async fn user_presence(State(state): State<AppState>, Path(user_name): Path<String>) -> ApiResult {
    let hub = &state.hub;
    let user = user(hub, &user_name)?;
    Ok(Json(json!(hub.presence().get(&user))))
}

async fn online(State(state): State<AppState>) -> ApiResult {
    let mut users = state.hub.presence().online_users();
    users.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(Json(json!({ "users": users })))
}

async fn disconnect(
    State(state): State<AppState>,
    Path(user_name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let hub = &state.hub;
    let target = user(hub, &user_name)?;
    let request: DisconnectBody = match &raw {
        Ok(bytes) if bytes.is_empty() => DisconnectBody::default(),
        _ => body(raw)?,
    };
    let reason = match request.reason {
        Some(reason) => reason.chars().take(120).collect::<String>(),
        None => "disconnected by the server".to_owned(),
    };
    let closed = hub.disconnect_user(&target, CloseCode::Policy, reason);
    Ok(Json(json!({ "disconnected": closed })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_what_is_wrong() {
        let invalid_name = ApiError::InvalidName {
            name: Name::Room,
            source: NameError::Empty,
        };
        assert_eq!(invalid_name.to_string(), "room: must not be empty");
        assert_eq!(
            ApiError::Forbidden(Forbidden::ReservedType(ServerKind::UserJoined)).to_string(),
            r#"type "user_joined" is reserved by the protocol"#
        );
        assert_eq!(
            ApiError::Forbidden(Forbidden::PresenceChannel).to_string(),
            "presence channels carry presence updates only"
        );
        let room = RoomId::from_trusted("lobby");
        assert_eq!(ApiError::NotFound(room).to_string(), r#"no room "lobby""#);
        let not_json = serde_json::from_str::<Value>("{").unwrap_err();
        let message = not_json.to_string();
        assert_eq!(
            ApiError::InvalidJson(not_json).to_string(),
            format!("the body is not valid JSON: {message}")
        );
    }

    #[test]
    fn only_json_content_types_are_json() {
        let with = |value: &'static str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            declares_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON;charset=UTF-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("application/jsonx"));
        assert!(!with("multipart/form-data; boundary=application/json"));
        assert!(!declares_json(&axum::http::HeaderMap::new()));
    }

    #[test]
    fn access_follows_the_key_then_the_insecure_flag() {
        let access = |key: Option<&str>, insecure| {
            ApiAccess::from_config(&ApiConfig {
                key: key.map(str::to_owned),
                insecure,
            })
        };
        assert!(matches!(access(None, false), ApiAccess::Closed));
        assert!(matches!(access(None, true), ApiAccess::Open));
        assert!(matches!(access(Some("k"), false), ApiAccess::Key(key) if &*key == "k"));
    }

    #[test]
    fn message_types_are_checked() {
        assert_eq!(message_type(None, "message").unwrap(), "message");
        assert_eq!(
            message_type(Some("announcement"), "x").unwrap(),
            "announcement"
        );
        assert!(matches!(
            message_type(Some("ack"), "x"),
            Err(ApiError::Forbidden(Forbidden::ReservedType(
                ServerKind::Ack
            )))
        ));
        assert!(matches!(
            message_type(Some("a b"), "x"),
            Err(ApiError::InvalidType)
        ));
        assert!(matches!(
            message_type(Some(""), "x"),
            Err(ApiError::InvalidType)
        ));
    }
}
