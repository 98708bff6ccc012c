//! Test support shared by the workspace's tests (`switchboard`, `switchboard-client`,
//! `switchboard-bench`): one copy of what each crate's tests used to carry on its own.
//!
//! - [`server`]: [`TestServer`], a real server in the test's process on an ephemeral port.
//! - [`client`]: [`Client`], a protocol v1 client over tokio-tungstenite (an independent
//!   WebSocket implementation), and how a connection [`Ended`].
//! - [`raw`]: [`RawClient`], a socket that completed the handshake and then misbehaves as told,
//!   and [`masked_frame`], the one client-frame encoder of the tests.
//! - [`http`]: plain HTTP/1.1 requests on a fresh connection.
//! - [`wait`]: waiting for events, each bounded by [`WAIT`].
//! - [`redis`]: [`RedisServer`], a `redis-server` child process on a free port. It uses no
//!   `switchboard` type, so the server crate's own unit tests can start one too (they see a
//!   distinct copy of the server crate through this one, a dev-dependency cycle).
//! - [`redis_cluster`]: [`RedisClusterServer`], a three-master Redis Cluster of child
//!   processes, for `--redis-cluster`.
//! - [`nats`], [`rabbitmq`]: [`NatsServer`] and [`RabbitMqServer`], the other brokers as child
//!   processes on free ports (RabbitMQ with its own epmd and data directory).
//! - [`cluster`]: in-process nodes sharing a [`RedisServer`], and the barrier that crosses it.
//! - [`pki`]: [`TestPki`], a self-signed certificate per test for `wss://` and `https://`.
//! - [`sse`]: [`sse::SseClient`], a client of the SSE transport over a socket.
//! - [`tokens`]: [`hs256_token`], a JWT with the claims and `exp` a test needs.
//!
//! ## Waiting
//!
//! Tests wait for events, never for a fixed time: a frame, the end of a connection, a log line,
//! a state the server reports. Every wait is bounded by [`WAIT`] and fails the test with what it
//! waited for. Where no event exists (a port that starts listening, a count released a moment
//! after a socket closed) a wait polls, still bounded by [`WAIT`].
//!
//! Tests run on tokio's default current-thread runtime, on which the in-process server runs too:
//! a blocking call in a test (a thread sleep, a blocking process wait) freezes the server. Every
//! helper here is async for that reason. The single thread also makes a server-side operation
//! that does not await (a connection's clean-up, say) atomic for the test: once a test sees its
//! first effect, all of it has happened.
//!
//! ## Proving that nothing arrived
//!
//! Never with a sleep. On one node, [`Client::expect_nothing_pending`] sends a `ping` whose
//! `pong` must be the very next frame: the server answers a connection's frames in order, so
//! anything queued for it earlier would come first. Across nodes that is not enough: a frame
//! wrongly routed through Redis can still be on its way when the local `pong` comes back.
//! [`Client::expect_nothing_pending_across`] has another node send a marker through Redis on the
//! same path (that node's one publishing connection, this node's one subscribing connection):
//! Redis and each node keep that order, so a frame published earlier arrives before the marker.

pub mod client;
pub mod cluster;
mod daemon;
pub mod http;
pub mod nats;
pub mod pki;
pub mod rabbitmq;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod server;
pub mod sse;
pub mod tokens;
pub mod wait;

use std::time::Duration;

pub use client::{Client, Ended};
pub use http::{http_get, http_json, http_request};
pub use nats::NatsServer;
pub use pki::TestPki;
pub use rabbitmq::RabbitMqServer;
pub use raw::{RawClient, masked_frame};
pub use redis::{RedisServer, free_port};
pub use redis_cluster::RedisClusterServer;
pub use server::TestServer;
pub use tokens::{hs256_token, now_secs};
pub use wait::{next_event, received_events, wait_for_port, wait_until, wait_until_async};

/// Upper bound for any single expected event.
pub const WAIT: Duration = Duration::from_secs(10);
