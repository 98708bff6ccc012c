//! Parsing of what clients send about history (DESIGN.md §7): the `since` position of
//! `join_room` and `subscribe`, and the `history` request.
//!
//! A position of the wrong shape (not an object of exactly a non-negative integer `offset` and
//! a string `epoch`), a `limit` out of range, or a request naming both or neither of a room
//! and a channel is an `INVALID_MESSAGE`. An epoch the server does not know, or an offset
//! beyond a stream's top, is not an error: the reply says the position could not be
//! recovered.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::client::{ParseLimits, Rejection, field, room_name_to_id};
use super::{ErrorCode, MAX_EPOCH_LEN, StreamPosition};
use crate::ids::{ChannelId, StreamId};

/// A `history` request.
#[derive(Debug)]
pub struct HistoryRequest {
    /// The room or channel.
    pub stream: StreamId,
    /// Most messages to return (`None`: every retained one).
    pub limit: Option<usize>,
    /// Return the messages after this position instead of the latest ones.
    pub since: Option<StreamPosition>,
}

#[derive(Deserialize)]
struct HistoryPayload<'a> {
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    limit: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
}

/// What `since` must be.
const SINCE_SHAPE: &str =
    "since: must be {\"offset\": a non-negative integer, \"epoch\": a string}";

fn invalid(message: impl Into<Cow<'static, str>>) -> Rejection<'static> {
    Rejection::new(ErrorCode::InvalidMessage, message)
}

/// Reads an optional `since`; `null` is the same as none.
pub(super) fn since(raw: Option<&RawValue>) -> Result<Option<StreamPosition>, Rejection<'static>> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok(None);
    };
    // serde would also read a struct from an array; the protocol's shape is an object.
    if !raw.get().starts_with('{') {
        return Err(invalid(SINCE_SHAPE));
    }
    let position: StreamPosition =
        serde_json::from_str(raw.get()).map_err(|e| invalid(format!("{SINCE_SHAPE}: {e}")))?;
    if position.epoch.len() > MAX_EPOCH_LEN {
        return Err(invalid(format!(
            "since: the epoch is longer than {MAX_EPOCH_LEN} bytes"
        )));
    }
    Ok(Some(position))
}

/// Reads the payload of a `history` request.
pub(super) fn request(
    payload: &RawValue,
    limits: &ParseLimits,
) -> Result<HistoryRequest, Rejection<'static>> {
    let HistoryPayload {
        room,
        channel,
        limit,
        since: raw_since,
    } = field(payload)?;
    let stream = match (room, channel) {
        (Some(room), None) => StreamId::Room(room_name_to_id(&room, limits)?),
        (None, Some(channel)) => StreamId::Channel(
            ChannelId::parse(&channel, limits.max_name_chars)
                .map_err(|e| invalid(format!("channel: {e}")))?,
        ),
        _ => {
            return Err(invalid(
                "history: name exactly one of \"room\" and \"channel\"",
            ));
        }
    };
    if limits.max_history == 0 {
        return Err(invalid("history is off on this server (--history-size 0)"));
    }
    let limit = match limit.filter(|raw| raw.get() != "null") {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<usize>(raw.get())
                .ok()
                .filter(|&limit| limit <= limits.max_history)
                .ok_or_else(|| {
                    invalid(format!(
                        "limit: must be an integer from 0 to {}",
                        limits.max_history
                    ))
                })?,
        ),
    };
    Ok(HistoryRequest {
        stream,
        limit,
        since: since(raw_since)?,
    })
}
