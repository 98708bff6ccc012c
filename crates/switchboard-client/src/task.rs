//! The connection task: connects (asking the token provider, if any, for the `auth` frame's
//! token), restores rooms, channels and presence, flushes the queue, routes what arrives
//! (replies to waiting requests, everything else to [`Events`]), refreshes the token when the
//! server warns that it expires, keeps the heartbeat, and reconnects with backoff until the client is closed, refused, or out
//! of attempts. One task per client; it ends with [`Event::Closed`].
//!
//! [`Events`]: crate::Events

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_protocol::msgpack;
use switchboard_protocol::{ClientKind, CloseCode, ErrorPayload, ServerKind, StreamPosition};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::config::{ClientConfig, Format};
use crate::error::Error;
use crate::event::{ClosedBy, ConnectInfo, Event, Frame};
use crate::shared::Shared;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The close code with which the server refuses a client for good (authentication, policy).
const POLICY_VIOLATION: u16 = CloseCode::Policy.as_u16();

/// The reason of the server's close for a token that expired without a refresh.
const TOKEN_EXPIRED: &str = "token expired";

/// How a connection or an attempt at one ended.
enum Ended {
    /// The client closed; the close handshake is done.
    ByClient,
    /// The server refused this client; it must not come back.
    Refused(String),
    /// Lost (or never made); try again.
    Lost { code: Option<u16>, reason: String },
}

impl Ended {
    fn lost(reason: impl Into<String>) -> Self {
        Self::Lost {
            code: None,
            reason: reason.into(),
        }
    }

    /// How a close from the server ends the connection. With `renewable` (a token provider
    /// that can bring a fresh token), a close for an expired token is no refusal: the client
    /// reconnects.
    fn from_close(frame: Option<CloseFrame>, renewable: bool) -> Self {
        match frame {
            Some(frame)
                if u16::from(frame.code) == POLICY_VIOLATION
                    && !(renewable && frame.reason == TOKEN_EXPIRED) =>
            {
                Self::Refused(format!("close {POLICY_VIOLATION}: {}", frame.reason))
            }
            Some(frame) => Self::Lost {
                code: Some(frame.code.into()),
                reason: frame.reason.to_string(),
            },
            None => Self::Lost {
                code: None,
                reason: "closed by the server".to_owned(),
            },
        }
    }
}

pub(crate) struct Task {
    config: ClientConfig,
    url: String,
    shared: Arc<Shared>,
    /// Events for the application; its receiver is `Events`. A full channel makes this task
    /// wait (and so stop reading the socket); a dropped receiver discards events.
    events: mpsc::Sender<Event>,
    /// Answers `Client::connect`: the first connection is up, or the client gave up.
    ready: Option<oneshot::Sender<Result<(), Error>>>,
}

impl Task {
    pub(crate) fn new(
        config: ClientConfig,
        url: String,
        shared: Arc<Shared>,
        events: mpsc::Sender<Event>,
        ready: oneshot::Sender<Result<(), Error>>,
    ) -> Self {
        Self {
            config,
            url,
            shared,
            events,
            ready: Some(ready),
        }
    }

    pub(crate) async fn run(mut self) {
        let mut failed = 0u32;
        let mut last_error = String::new();
        let closed_by = loop {
            let attempt = connect(&self.config, &self.url);
            let outcome = tokio::select! {
                outcome = attempt => outcome,
                () = until_closed(&self.shared) => break ClosedBy::Client,
            };
            let ended = match outcome {
                Ok((ws, info)) => {
                    failed = 0;
                    let reconnected = self.ready.is_none();
                    self.emit(Event::Connected { info, reconnected }).await;
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                    let ended = self.session(ws).await;
                    self.shared.connection_lost();
                    if let Ended::Lost { code, reason } = &ended {
                        self.emit(Event::Disconnected {
                            code: *code,
                            reason: reason.clone(),
                        })
                        .await;
                    }
                    ended
                }
                Err(ended) => ended,
            };
            match ended {
                Ended::ByClient => break ClosedBy::Client,
                Ended::Refused(reason) => break ClosedBy::Refused(reason),
                Ended::Lost { reason, .. } => last_error = reason,
            }
            failed = failed.saturating_add(1);
            if !self.config.reconnect.allows(failed) {
                break ClosedBy::GaveUp { attempts: failed };
            }
            let attempt = failed.saturating_add(1);
            let delay = self.config.reconnect.delay(attempt, fastrand::f64());
            // Before the first connection `Client::connect` is still waiting and nobody
            // reads events: only its outcome is reported.
            if self.ready.is_none() {
                self.emit(Event::Reconnecting { attempt, delay }).await;
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = until_closed(&self.shared) => break ClosedBy::Client,
            }
        };
        self.shared.finish();
        if let Some(ready) = self.ready.take() {
            let error = match &closed_by {
                ClosedBy::Refused(reason) => Error::Refused(reason.clone()),
                ClosedBy::GaveUp { attempts } => Error::GaveUp {
                    attempts: *attempts,
                    last: last_error,
                },
                ClosedBy::Client => Error::Closed,
            };
            let _ = ready.send(Err(error));
            return;
        }
        self.emit(Event::Closed(closed_by)).await;
    }

    async fn emit(&self, event: Event) {
        // The application may have dropped `Events`; it then wants no events.
        let _ = self.events.send(event).await;
    }

    /// Serves one connection until it ends.
    async fn session(&mut self, mut ws: Ws) -> Ended {
        let heartbeat = self.config.heartbeat;
        let write_timeout = heartbeat.map_or(self.config.connect_timeout, |h| h.timeout);
        for frame in restore_frames(&self.shared) {
            if let Err(ended) = send(&mut ws, self.config.format, frame, write_timeout).await {
                return ended;
            }
        }
        let mut pings = heartbeat.map(|h| {
            let mut pings = tokio::time::interval_at(Instant::now() + h.interval, h.interval);
            pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
            pings
        });
        let mut pong_deadline: Option<Instant> = None;
        loop {
            while let Some(frame) = self.shared.front() {
                if let Err(ended) = send(&mut ws, self.config.format, frame, write_timeout).await {
                    return ended;
                }
                self.shared.sent();
            }
            if self.shared.is_closed() {
                close(&mut ws, write_timeout).await;
                return Ended::ByClient;
            }
            tokio::select! {
                // Reads first: a pong already received must count before its deadline.
                biased;
                message = ws.next() => match message {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        let text = match decode(self.config.format, message) {
                            Ok(Some(text)) => text,
                            Ok(None) => continue,
                            Err(ended) => return ended,
                        };
                        if let Some(ended) = self.on_text(&mut ws, &text, &mut pong_deadline, write_timeout).await {
                            return ended;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        // Polling on lets tungstenite answer the close and see TCP end.
                        let _ = tokio::time::timeout(write_timeout, async {
                            while ws.next().await.is_some() {}
                        })
                        .await;
                        return Ended::from_close(frame, self.config.token_provider.is_some());
                    }
                    // WebSocket pings are answered by tungstenite.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Ended::lost(error.to_string()),
                    None => return Ended::lost("the connection ended"),
                },
                () = self.shared.wake.notified() => {}
                () = tick(&mut pings) => {
                    if pong_deadline.is_none() {
                        let ping = json!({
                            "type": ClientKind::Ping.as_str(),
                            "payload": {"timestamp": now_ms()},
                        });
                        if let Err(ended) = send(&mut ws, self.config.format, ping.to_string(), write_timeout).await {
                            return ended;
                        }
                        pong_deadline = heartbeat.map(|h| Instant::now() + h.timeout);
                    }
                }
                () = deadline(pong_deadline) => {
                    return Ended::lost("heartbeat timeout: no pong from the server");
                }
            }
        }
    }

    /// Handles one text frame; returns how the connection ended if answering it failed.
    async fn on_text(
        &mut self,
        ws: &mut Ws,
        text: &str,
        pong_deadline: &mut Option<Instant>,
        write_timeout: Duration,
    ) -> Option<Ended> {
        // A frame that is not protocol JSON is ignored: the server never sends one.
        let frame: Frame = serde_json::from_str(text).ok()?;
        let kind = ServerKind::parse(&frame.kind);
        match kind {
            // Any pong proves the server reads and answers (ours, or a request's).
            Some(ServerKind::Pong) => *pong_deadline = None,
            Some(ServerKind::Ping) => {
                let pong = json!({"type": ClientKind::Pong.as_str(), "payload": frame.payload});
                if let Err(ended) =
                    send(ws, self.config.format, pong.to_string(), write_timeout).await
                {
                    return Some(ended);
                }
                return None;
            }
            Some(ServerKind::TokenExpiring) => {
                if let Err(ended) = self.refresh(ws, write_timeout).await {
                    return Some(ended);
                }
            }
            _ => {}
        }
        // Before the frame is answered or passed on: whoever sees it next may rejoin or ask
        // for history from the position it leaves.
        self.shared.observe(&frame);
        let is_error = kind == Some(ServerKind::Error);
        let mut answered = false;
        if let Some(id) = frame.reply_to() {
            let reply = if is_error {
                Err(server_error(&frame.payload))
            } else {
                Ok(frame.clone())
            };
            answered = self.shared.resolve(&id, reply);
        }
        // Protocol plumbing is not an event; neither is an error or a history page that its
        // request already got.
        let plumbing = matches!(
            kind,
            Some(ServerKind::Pong | ServerKind::Ack | ServerKind::Connect)
        );
        let only_a_reply =
            answered && matches!(kind, Some(ServerKind::Error | ServerKind::History));
        if !plumbing && !only_a_reply {
            self.emit(Event::from(frame)).await;
        }
        None
    }

    /// Asks the token provider for a newer token and sends it in a `refresh` frame. A provider
    /// that fails (or takes longer than the connect timeout) leaves the old token in force: the
    /// server closes the connection at its expiry and the next attempt asks again. The server
    /// answers a refused token with an `error` event.
    async fn refresh(&self, ws: &mut Ws, write_timeout: Duration) -> Result<(), Ended> {
        let Some(provider) = &self.config.token_provider else {
            return Ok(());
        };
        match tokio::time::timeout(self.config.connect_timeout, provider.fetch()).await {
            Ok(Ok(token)) => {
                let refresh =
                    json!({"type": ClientKind::Refresh.as_str(), "payload": {"token": token}});
                send(ws, self.config.format, refresh.to_string(), write_timeout).await
            }
            Ok(Err(_)) | Err(_) => Ok(()),
        }
    }
}

/// One connection attempt: a token from the provider (if any), the WebSocket handshake, the
/// `auth` frame with that token, and the server's `connect` frame, within the connect timeout.
async fn connect(config: &ClientConfig, url: &str) -> Result<(Ws, ConnectInfo), Ended> {
    let attempt =
        async {
            let token =
                match &config.token_provider {
                    Some(provider) => Some(provider.fetch().await.map_err(|error| {
                        Ended::lost(format!("the token provider failed: {error}"))
                    })?),
                    None => None,
                };
            let connector = config.tls.clone().map(Connector::Rustls);
            let mut request = url.into_client_request().map_err(handshake_failure)?;
            if config.format == Format::MsgPack {
                request.headers_mut().insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(msgpack::SUBPROTOCOL),
                );
            }
            let (mut ws, _) =
                tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
                    .await
                    .map_err(handshake_failure)?;
            if let Some(token) = token {
                let auth = json!({"type": ClientKind::Auth.as_str(), "payload": {"token": token}});
                send(
                    &mut ws,
                    config.format,
                    auth.to_string(),
                    config.connect_timeout,
                )
                .await?;
            }
            loop {
                match ws.next().await {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        let Some(text) = decode(config.format, message)? else {
                            continue;
                        };
                        let info = serde_json::from_str::<Frame>(&text)
                            .ok()
                            .filter(|frame| frame.kind == ServerKind::Connect.as_str())
                            .and_then(|frame| serde_json::from_value(frame.payload).ok())
                            .ok_or_else(|| Ended::lost("the first frame was not `connect`"))?;
                        return Ok((ws, info));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(Ended::from_close(frame, config.token_provider.is_some()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(Ended::lost(error.to_string())),
                    None => return Err(Ended::lost("the connection ended before `connect`")),
                }
            }
        };
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(Ended::lost(format!(
            "no connection within {:?}",
            config.connect_timeout
        ))),
    }
}

fn handshake_failure(error: tungstenite::Error) -> Ended {
    match &error {
        tungstenite::Error::Http(response) if matches!(response.status().as_u16(), 401 | 403) => {
            Ended::Refused(format!("HTTP {}", response.status()))
        }
        _ => Ended::lost(error.to_string()),
    }
}

/// The frames that put a new connection where the last one was: rooms and channels, each
/// with the position to recover from (`since`), and presence.
fn restore_frames(shared: &Shared) -> Vec<String> {
    let restore = shared.restore();
    let rooms = (restore.rooms.into_iter())
        .map(|(room, since)| rejoin(ClientKind::JoinRoom, json!({"room": room}), since));
    let channels = (restore.channels.into_iter())
        .map(|(channel, since)| rejoin(ClientKind::Subscribe, json!({"channel": channel}), since));
    let presence = restore
        .presence
        .map(|payload| json!({"type": ClientKind::Presence.as_str(), "payload": payload}));
    rooms
        .chain(channels)
        .chain(presence)
        .map(|frame| frame.to_string())
        .collect()
}

/// A `join_room` or `subscribe` frame, asking for what followed `since` when there is one.
fn rejoin(kind: ClientKind, mut payload: Value, since: Option<StreamPosition>) -> Value {
    if let Some(since) = since {
        payload["since"] = json!(since);
    }
    json!({"type": kind.as_str(), "payload": payload})
}

/// Writes one frame, given as JSON text, in `format`; a write that cannot finish in `limit`
/// means the connection is dead.
async fn send(ws: &mut Ws, format: Format, text: String, limit: Duration) -> Result<(), Ended> {
    let message = match format {
        Format::Json => Message::text(text),
        // The frames are the client's own JSON, so this fails only on a bug of ours.
        Format::MsgPack => match msgpack::from_json(text.as_bytes()) {
            Ok(packed) => Message::binary(packed),
            Err(error) => {
                return Err(Ended::lost(format!(
                    "a frame could not be encoded: {error}"
                )));
            }
        },
    };
    match tokio::time::timeout(limit, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Ended::lost(error.to_string())),
        Err(_) => Err(Ended::lost(format!(
            "a write did not complete in {limit:?}"
        ))),
    }
}

/// The JSON text of a data frame in `format`; `None` for a frame of the other kind, which the
/// server never sends. A MessagePack frame that does not transcode ends the connection: the
/// server sent something it must not.
fn decode(format: Format, message: Message) -> Result<Option<String>, Ended> {
    match (format, message) {
        (Format::Json, Message::Text(text)) => Ok(Some(text.as_str().to_owned())),
        (Format::MsgPack, Message::Binary(data)) => msgpack::to_json(&data)
            .map(Some)
            .map_err(|error| Ended::lost(format!("the server sent {error}"))),
        _ => Ok(None),
    }
}

/// The close handshake, at most `limit`.
async fn close(ws: &mut Ws, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        let _ = ws.close(None).await;
        while ws.next().await.is_some() {}
    })
    .await;
}

/// Completes when the client is closed. Consumes wake-ups meant for the queue, which is
/// flushed at the start of every connection anyway.
async fn until_closed(shared: &Shared) {
    while !shared.is_closed() {
        shared.wake.notified().await;
    }
}

async fn tick(pings: &mut Option<Interval>) {
    match pings {
        Some(pings) => {
            pings.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The error an `error` reply fails its request with. A payload the client cannot read still
/// fails the request, with an empty code and message.
fn server_error(payload: &Value) -> Error {
    match ErrorPayload::<String>::deserialize(payload) {
        Ok(error) => Error::Server {
            code: error.code,
            message: error.message.into_owned(),
            retry_after: error.retry_after,
        },
        Err(_) => Error::Server {
            code: String::new(),
            message: String::new(),
            retry_after: None,
        },
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
