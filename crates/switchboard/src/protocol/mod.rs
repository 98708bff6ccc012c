//! Wire protocol v1 (DESIGN.md §2): client frame parsing and server frame encoding. Nothing
//! here knows about connections or rooms.
//!
//! The types the server shares with clients (frame kinds, error and close codes, the
//! `connect`, `error` and `history` payloads, stream positions) live in the
//! `switchboard-protocol` crate and are re-exported here.

mod client;
mod connect;
mod history;
mod server;

pub use client::{Command, Inbound, MAX_ID_LEN, ParseLimits, Rejection, parse};
pub(crate) use connect::Connect;
pub use history::HistoryRequest;
pub use server::{AckPayload, ServerFrame, ack_frame, error_frame, error_frame_with_retry, now_ms};
pub use switchboard_protocol::{
    ClientKind, CloseCode, ConnectPayload, ErrorCode, ErrorPayload, HistoryPayload, MAX_EPOCH_LEN,
    ServerKind, StreamPosition, TokenExpiringPayload,
};
