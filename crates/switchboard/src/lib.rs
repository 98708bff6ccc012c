//! # Switchboard
//!
//! A scalable WebSocket server: rooms, pub/sub channels, presence and broadcast, on one node
//! with no dependencies or on many nodes sharing a broker. This crate is both the
//! `switchboard` binary and a library to embed the same hub in an axum/tokio application.
//!
//! ## How a message flows
//!
//! ```text
//!  client ──frame──▶ connection task ──────────▶ session ──▶ hub ──▶ outboxes ──▶ connection tasks ──writev──▶ clients
//!                    (driver: read into a        (parse,     (rooms,  (bounded,    (each drains its
//!                     per-thread buffer,          validate,   users;   shared       whole queue in one
//!                     decode frames)              rate limit) sharded) `Bytes`)     vectored write)
//!                                                               │  ▲
//!                                                      publish  ▼  │ deliver (other nodes' messages)
//!                                                              broker
//! ```
//!
//! A message is encoded once into a complete WebSocket frame; every recipient's outbox holds
//! a reference to the same buffer.
//!
//! ## Modules
//!
//! - [`auth`]: JWT verification, permissions from claims, origin allowlist, admin key.
//! - [`config`]: flags, env vars and TOML into a validated [`config::Config`].
//! - [`protocol`]: the wire protocol v1: client frame parsing, server frame encoding; frame
//!   kinds, error and close codes re-exported from the `switchboard-protocol` crate.
//! - `ws`: our RFC 6455 layer: handshake, frame parsing, message assembly.
//! - `connection`: the per-connection task (driver) and protocol state (session).
//! - [`hub`]: registry of local connections, users, rooms and channels; the fan-out path;
//!   presence; sweeps.
//! - [`presence`]: the presence model (status, metadata, last seen).
//! - [`handlers`]: application hooks: custom message types, connect/disconnect.
//! - [`broker`]: cross-node publish/subscribe (in-process, or Redis in cluster mode).
//! - [`cluster`]: cluster membership: a replica of the other nodes' users, rooms and presence;
//!   Redis-backed in cluster mode (the same object is the Redis broker).
//! - [`metrics`]: the Prometheus collector behind `/metrics`, reading the hub's counters.
//! - `http`: the axum routes: WebSocket upgrade, `/stats`, `/health`, `/ready`, `/metrics`,
//!   `/dashboard`.
//! - [`switchboard`]: the embeddable instance; [`server`]: the standalone server.
//! - `limits`, `per_ip`: the rate limiter, the violation counter, the per-IP connection cap.

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
mod connection;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handlers;
mod http;
pub mod hub;
pub mod ids;
mod limits;
pub mod metrics;
mod per_ip;
pub mod presence;
pub mod protocol;
pub mod server;
pub mod switchboard;
mod ws;

pub use config::Config;
pub use hub::Hub;
pub use server::Server;
pub use switchboard::Switchboard;
