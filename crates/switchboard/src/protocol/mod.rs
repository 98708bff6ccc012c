//! Wire protocol v1 (DESIGN.md §2): client frame parsing, server frame encoding, error codes and
//! close codes. Nothing here knows about connections or rooms.

mod client;
mod codes;
mod server;

pub use client::{Command, Inbound, MAX_ID_LEN, ParseLimits, Rejection, parse};
pub use codes::{CloseCode, ErrorCode};
pub use server::{
    AckPayload, ConnectPayload, ErrorPayload, ServerFrame, ack_frame, error_frame,
    error_frame_with_retry, now_ms,
};
