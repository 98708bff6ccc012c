//! # switchboard-client
//!
//! An async (tokio) client for the Switchboard WebSocket server's protocol v1, with the same
//! behaviour as the JavaScript client:
//!
//! - **Reconnection** with exponential backoff and jitter ([`Reconnect`]); none after
//!   [`Client::close`] or a refusal by the server (HTTP 401/403 at the handshake, close 1008;
//!   but a close 1008 "token expired" reconnects when a token provider can bring a new one).
//! - **Outgoing queue**: frames sent while disconnected wait in a bounded queue
//!   ([`ClientConfig::with_queue_capacity`]) and are sent in order once connected. A send to a
//!   full queue fails with [`Error::QueueFull`]; nothing already queued is dropped.
//! - **Restore after reconnect**: rooms are rejoined, channels resubscribed and presence set
//!   again before the queue is flushed, so queued room messages find their room.
//! - **Recovery**: the client keeps its position (epoch and last offset) in every room and
//!   channel, rejoins with it, and tells the application whether the server replayed what it
//!   missed (see below); [`Client::history`] reads a stream's retained messages.
//! - **Heartbeat**: an app-level `ping` every interval; no `pong` within the deadline (or a
//!   write that hangs that long) and the connection is replaced, even when TCP looks alive
//!   ([`Heartbeat`]). The server's own `ping` frames are answered.
//! - **Request/response**: [`Client::request`] sends a frame with an `id` and resolves with the
//!   reply or `ack` carrying it, fails on the `error` carrying it or on timeout.
//! - **Typed events** ([`Event`]) on a stream ([`Events`]), room and channel helpers
//!   ([`Client::room`], [`Client::channel`]), [`Client::set_presence`].
//! - **Tokens that refresh**: with [`ClientConfig::with_token_provider`] the client asks the
//!   application for a token before every connection attempt and sends it in an `auth`
//!   frame; when the server warns that it expires ([`Event::TokenExpiring`]) the client asks
//!   again and sends it in a `refresh` frame, so the connection outlives the first token.
//! - `wss://` with rustls (Mozilla roots, or your own [`rustls::ClientConfig`]).
//!
//! Delivery is at most once per connection: a frame is taken off the queue once written to
//! the socket, and a frame written just before a connection dies may be lost.
//!
//! ## Recovery after a reconnect
//!
//! With history on (the server's default), every room message and channel publication has
//! an offset in its stream ([`Event::Message`]`::offset`, [`Event::Publish`]`::offset`). The
//! client remembers, per room and exact channel, the stream's epoch and the highest offset it
//! received (or was acked for its own message: room messages and publications to a followed
//! stream are sent with an id for that). After a reconnect it rejoins with that position as
//! `since`, and the reply's event carries the verdict:
//!
//! - [`Event::RoomJoined`] / [`Event::Subscribed`] with `recovered: Some(true)`: every
//!   message missed meanwhile follows, in order and once, as ordinary [`Event::Message`] /
//!   [`Event::Publish`] events, then live ones. Nothing to do.
//! - `recovered: Some(false)`: the server no longer has them (they fell out of its history,
//!   or it restarted). Nothing is replayed; reload from the application's own source of
//!   truth, or read what the server still has with [`Client::history`].
//! - `recovered: None`: a join without a position (the first one).
//!
//! ```no_run
//! # async fn run(client: switchboard_client::Client, mut events: switchboard_client::Events)
//! # -> Result<(), switchboard_client::Error> {
//! use switchboard_client::{Event, HistoryQuery};
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::RoomJoined { room, recovered: Some(false), .. } => {
//!             // Messages may be missing: show the last 50 the server kept instead.
//!             let page = client.history(HistoryQuery::room(&room).limit(50)).await?;
//!             for frame in page.publications {
//!                 println!("{room} (reloaded): {}", frame.payload["content"]);
//!             }
//!         }
//!         Event::Message { room, offset, payload, .. } => {
//!             println!("{room} #{offset:?}: {}", payload["content"]);
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ```no_run
//! use std::time::Duration;
//! use switchboard_client::{Client, ClientConfig, Event};
//!
//! # async fn run() -> Result<(), switchboard_client::Error> {
//! let config = ClientConfig::new("ws://localhost:3000").with_user_id("alice");
//! let (client, mut events) = Client::connect(config).await?;
//! client.room("general").join().await?;
//! client.room("general").send("Hello")?;
//! let ack = client
//!     .request("publish", serde_json::json!({"channel": "news", "data": 1}), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(ack.kind, "ack");
//! while let Some(event) = events.recv().await {
//!     if let Event::Message { room, user_id, payload, .. } = event {
//!         println!("{room} {user_id:?}: {payload}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//!
//! - `config`: [`ClientConfig`], [`Reconnect`], [`Heartbeat`], [`TokenProvider`].
//! - `client`: [`Client`], [`Room`], [`Channel`], [`Events`].
//! - `event`: [`Event`] and the wire [`Frame`].
//! - `history`: [`HistoryQuery`], a `history` request.
//! - `position`: the position in each stream, kept from the frames that arrive.
//! - `shared`: the queue, waiting requests and what to restore, shared with the task.
//! - `task`: the connection task (connect, restore, flush, route, heartbeat, reconnect).
//!
//! Frame kinds, error and close codes and the `connect` and `error` payloads come from
//! [`switchboard_protocol`], the wire types the server is built on too.

mod client;
mod config;
mod error;
mod event;
mod history;
mod position;
mod shared;
mod task;

pub use client::{Channel, Client, DEFAULT_REQUEST_TIMEOUT, Events, Room, Status};
pub use config::{ClientConfig, Format, Heartbeat, Reconnect, TokenProvider, TokenResult};
pub use error::Error;
pub use event::{ClosedBy, ConnectInfo, Event, Frame, Presence};
pub use history::HistoryQuery;
pub use rustls;
pub use switchboard_protocol;
pub use switchboard_protocol::{HistoryPayload, StreamPosition};
