//! # switchboard-protocol
//!
//! The wire types of Switchboard's protocol v1 (DESIGN.md §2) that the server (`switchboard`),
//! the Rust client (`switchboard-client`) and the load tool (`switchboard-bench`) must agree on.
//! Each is written once here, so the three cannot drift apart.
//!
//! ## Modules
//!
//! - `kind`: [`ServerKind`] and [`ClientKind`], the `type` of every frame each side sends,
//!   with the wire names and the kinds an application may not impersonate.
//! - `codes`: [`ErrorCode`] (the `code` of `error` frames) and [`CloseCode`] (WebSocket close
//!   codes), each with its one `match` to the wire value.
//! - `payload`: [`ConnectPayload`], [`ErrorPayload`], [`HistoryPayload`],
//!   [`TokenExpiringPayload`] and [`RefreshPayload`], the payloads both sides read or write,
//!   and [`StreamPosition`], a position in a room's or channel's history.
//! - [`msgpack`]: the MessagePack form of frames (subprotocol `switchboard.v1.msgpack`),
//!   transcoded to and from their JSON text.
//! - [`ws`]: the client side of WebSocket framing: masked client frames and opcodes.
//!
//! Not here: parsing client frames and encoding server frames (the server's `protocol`
//! module), sockets, and anything async. The dependencies are `serde`, `serde_json`, and for
//! MessagePack `rmp` and `base64`.

mod codes;
mod kind;
pub mod msgpack;
mod payload;
pub mod ws;

pub use codes::{CloseCode, ErrorCode};
pub use kind::{ClientKind, ServerKind};
pub use payload::{
    ConnectPayload, ErrorPayload, HistoryPayload, MAX_EPOCH_LEN, RefreshPayload, StreamPosition,
    TokenExpiringPayload,
};
