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
//! a reference to the same buffer (and it is compressed at most once, shared the same way by
//! the recipients that negotiated permessage-deflate).
//!
//! ## Modules
//!
//! Layered bottom to top: a module uses only modules above it in this list, never one below
//! (`tests/architecture.rs` fails on any two modules that use each other).
//!
//! - [`process`]: the process's own resources (the open-file limit the binary raises).
//! - [`uring`]: batched socket writes through one io_uring per worker thread (`--io-uring`):
//!   the crate's only `unsafe` code for it, with its invariants.
//! - [`ids`]: names and ids; `exact`: short lists kept at their exact size; `ws`: our
//!   RFC 6455 layer (handshake, frame parsing, message assembly, permessage-deflate);
//!   `limits`, `per_ip`: the rate limiter, the violation counter, the per-IP cap;
//!   [`forwarded`]: the client address behind trusted proxies; `proxy_protocol`: the PROXY
//!   protocol header a TCP load balancer puts before a connection; `sse`: the
//!   `text/event-stream` form of server frames (the SSE fallback).
//! - [`presence`]: the presence model (status, metadata, last seen), a pure state machine.
//! - [`protocol`]: the wire protocol v1: client frame parsing, server frame encoding; frame
//!   kinds, error and close codes come from the `switchboard-protocol` crate.
//! - `yjs`: the y-websocket wire format of collaborative documents (lib0 messages).
//! - [`broker`]: cross-node publish/subscribe: the trait, the in-process broker, and the NATS
//!   and RabbitMQ ones (which a Redis cluster can use for its messages, `--broker-url`);
//!   [`store`]: the trait of a cluster's shared store of streams (offsets and history);
//!   [`docstore`]: where Yjs documents are kept while no client has them open (memory, files).
//! - [`cluster`]: cluster membership (a replica of the other nodes' users, rooms and presence)
//!   and cluster mode over Redis, which is both a broker and a membership.
//! - [`auth`]: JWT verification, permissions from claims, origin allowlist, admin key.
//! - [`config`]: flags, env vars and TOML into a validated [`config::Config`].
//! - [`hub`]: this node's state, in parts that own it (registry of connections and users,
//!   rooms, channels, presence book, and the one part that talks to the broker and the
//!   membership); the fan-out path; sweeps. Its module doc says where each piece of state
//!   lives and who may change it.
//! - [`handlers`]: application hooks: custom message types, connect/disconnect.
//! - `backend`: the pooled HTTP client to the application's backend (webhooks, proxies).
//! - [`webhooks`]: lifecycle events and chosen client messages POSTed, signed, to a backend.
//! - `proxy`: the backend asked who connects, whether a join or subscribe may go ahead, and
//!   what to answer to custom message types (RPC).
//! - `connection`: the per-connection task (driver) and protocol state (session); the only
//!   place that holds a socket.
//! - [`metrics`]: the Prometheus collector behind `/metrics`, reading the hub's counters.
//! - `http`: the axum routes: WebSocket upgrade, `/stats`, `/health`, `/ready`, `/metrics`, the
//!   server API under `/api`, the pages and scripts (`/demo`, `/demo/doc`, `/dashboard`,
//!   `/client.js`, `/yjs.js`).
//! - [`reload`]: reading the TLS and JWT key files again (SIGHUP).
//! - [`switchboard`]: the embeddable instance; [`server`]: the standalone server.
//! - [`cli`]: the binary's subcommands (`check-config`, `token`, `healthcheck`).

pub mod auth;
mod backend;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod config;
mod connection;
pub mod docstore;
mod exact;
pub mod forwarded;
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
pub mod process;
pub mod protocol;
mod proxy;
mod proxy_protocol;
pub mod reload;
pub mod server;
mod sse;
pub mod store;
pub mod switchboard;
#[allow(unsafe_code)]
pub mod uring;
#[cfg(test)]
mod wake_counter;
pub mod webhooks;
mod ws;
mod yjs;

pub use config::Config;
pub use hub::Hub;
pub use server::Server;
pub use switchboard::Switchboard;
