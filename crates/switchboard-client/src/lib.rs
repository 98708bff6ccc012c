//! # switchboard-client
//!
//! An async (tokio) client for the Switchboard WebSocket server's protocol v1, with the same
//! behaviour as the JavaScript client:
//!
//! - **Reconnection** with exponential backoff and jitter ([`Reconnect`]); none after
//!   [`Client::close`] or a refusal by the server (HTTP 401/403 at the handshake, close 1008).
//! - **Outgoing queue**: frames sent while disconnected wait in a bounded queue
//!   ([`ClientConfig::with_queue_capacity`]) and are sent in order once connected. A send to a
//!   full queue fails with [`Error::QueueFull`]; nothing already queued is dropped.
//! - **Restore after reconnect**: rooms are rejoined, channels resubscribed and presence set
//!   again before the queue is flushed, so queued room messages find their room.
//! - **Heartbeat**: an app-level `ping` every interval; no `pong` within the deadline (or a
//!   write that hangs that long) and the connection is replaced, even when TCP looks alive
//!   ([`Heartbeat`]). The server's own `ping` frames are answered.
//! - **Request/response**: [`Client::request`] sends a frame with an `id` and resolves with the
//!   reply or `ack` carrying it, fails on the `error` carrying it or on timeout.
//! - **Typed events** ([`Event`]) on a stream ([`Events`]), room and channel helpers
//!   ([`Client::room`], [`Client::channel`]), [`Client::set_presence`].
//! - `wss://` with rustls (Mozilla roots, or your own [`rustls::ClientConfig`]).
//!
//! Delivery is at most once per connection: a frame is taken off the queue once written to
//! the socket, and a frame written just before a connection dies may be lost.
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
//! - `config`: [`ClientConfig`], [`Reconnect`], [`Heartbeat`].
//! - `client`: [`Client`], [`Room`], [`Channel`], [`Events`].
//! - `event`: [`Event`] and the wire [`Frame`].
//! - `shared`: the queue, waiting requests and what to restore, shared with the task.
//! - `task`: the connection task (connect, restore, flush, route, heartbeat, reconnect).
//!
//! Frame kinds, error and close codes and the `connect` and `error` payloads come from
//! [`switchboard_protocol`], the wire types the server is built on too.

mod client;
mod config;
mod error;
mod event;
mod shared;
mod task;

pub use client::{Channel, Client, DEFAULT_REQUEST_TIMEOUT, Events, Room, Status};
pub use config::{ClientConfig, Heartbeat, Reconnect};
pub use error::Error;
pub use event::{ClosedBy, ConnectInfo, Event, Frame, Presence};
pub use rustls;
pub use switchboard_protocol;
