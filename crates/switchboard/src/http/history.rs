//! The server API's history endpoints (DESIGN.md §7): `GET /api/rooms/{room}/history` and
//! `GET /api/channels/{channel}/history`, answering `{epoch, offset, publications}` like the
//! protocol's `history` reply.
//!
//! Query: `limit` (0 to the history size; default every retained message) and, together,
//! `offset` and `epoch` (a position: return the messages after it instead of the latest).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::{self, ApiError, ApiResult, Forbidden, Name};
use crate::hub::Hub;
use crate::ids::{ChannelId, StreamId};
use crate::protocol::StreamPosition;

/// The query of a history request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
    offset: Option<u64>,
    epoch: Option<String>,
}

/// `GET /api/rooms/{room}/history`.
pub(super) async fn room(
    State(state): State<AppState>,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    let room = api::room(&state.hub, &room)?;
    read(&state.hub, &StreamId::Room(room), query).await
}

/// `GET /api/channels/{channel}/history`.
pub(super) async fn channel(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    let max = state.hub.config().limits.max_name_length;
    let channel = api::name(Name::Channel, &channel, |v| ChannelId::parse(v, max))?;
    if channel.watched_user().is_some() {
        return Err(ApiError::Forbidden(Forbidden::PresenceChannel));
    }
    read(&state.hub, &StreamId::Channel(channel), query).await
}

async fn read(
    hub: &Hub,
    stream: &StreamId,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(ApiError::InvalidQuery)?;
    let size = hub.config().history.size;
    if size == 0 {
        return Err(ApiError::HistoryOff);
    }
    if query.limit.is_some_and(|limit| limit > size) {
        return Err(ApiError::InvalidParameter(
            "limit: must be at most the history size (--history-size)",
        ));
    }
    let since = match (query.offset, query.epoch) {
        (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch }),
        (None, None) => None,
        _ => {
            return Err(ApiError::InvalidParameter(
                "offset and epoch: give both (a position) or neither",
            ));
        }
    };
    let page = hub
        .read_history(stream, query.limit, since.as_ref())
        .await
        .ok_or(ApiError::HistoryOff)?;
    Ok(Json(json!(page.payload())))
}
