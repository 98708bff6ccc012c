//! The session's commands about rooms' and channels' streams: joining and subscribing (with
//! `since`, to recover what the client missed) and reading `history` (DESIGN.md §7). The hub
//! queues the reply and the replay under the stream's lock (`hub/streams.rs`); the session
//! builds the reply.

use serde::Serialize;
use serde_json::value::RawValue;

use super::Session;
use crate::connection::refused::Refused;
use crate::hub::{RoomJoin, Subscribed};
use crate::ids::{ChannelSpec, RoomId, StreamId, UserId};
use crate::presence::Presence;
use crate::protocol::{HistoryRequest, ServerFrame, ServerKind, StreamPosition};

/// Payload of `room_joined`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomJoinedPayload<'a> {
    room: &'a RoomId,
    members: Vec<Presence>,
    member_count: usize,
    /// The room's latest `offset` and `epoch`, when history is on.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    position: Option<&'a StreamPosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
}

/// Payload of `subscribed`.
#[derive(Serialize)]
struct SubscribedPayload<'a> {
    channel: &'a ChannelSpec,
    /// The channel's latest `offset` and `epoch`, when it has a stream.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    position: Option<&'a StreamPosition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<bool>,
}

impl Session {
    pub(super) fn join(
        &mut self,
        room: RoomId,
        since: Option<StreamPosition>,
        id: Option<&RawValue>,
    ) -> Result<Option<u64>, Refused> {
        let hub = &self.endpoint.hub;
        let max = hub.config().limits.max_rooms_per_connection;
        if !self.rooms.contains(&room) && self.rooms.len() >= max {
            return Err(Refused::TooManyRooms(max));
        }
        let reply = |join: &RoomJoin| {
            let payload = RoomJoinedPayload {
                room: &room,
                members: hub.presence_of(&join.members.users),
                member_count: join.members.count,
                position: join.position.as_ref(),
                recovered: join.recovered,
            };
            ServerFrame::new(ServerKind::RoomJoined, payload)
                .room(room.as_str())
                .stamped()
                .reply_to(id)
                .encode()
        };
        if hub.join_room(&room, &self.handle, since.as_ref(), reply) {
            tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), %room, "join");
            self.rooms.reserve_exact(1);
            self.rooms.push(room);
        }
        Ok(None)
    }

    pub(super) fn subscribe(
        &mut self,
        channel: ChannelSpec,
        since: Option<StreamPosition>,
        id: Option<&RawValue>,
    ) -> Result<Option<u64>, Refused> {
        let hub = &self.endpoint.hub;
        let config = hub.config();
        if matches!(channel, ChannelSpec::Prefix(_)) && !config.pubsub.client_patterns {
            return Err(Refused::PatternsNotAllowed);
        }
        let max = config.limits.max_channels_per_connection;
        if !self.channels.contains(&channel) && self.channels.len() >= max {
            return Err(Refused::TooManyChannels(max));
        }
        let reply = |subscribed: &Subscribed| {
            let payload = SubscribedPayload {
                channel: &channel,
                position: subscribed.position.as_ref(),
                recovered: subscribed.recovered,
            };
            ServerFrame::new(ServerKind::Subscribed, payload)
                .stamped()
                .reply_to(id)
                .encode()
        };
        if hub.subscribe_conn(&channel, &self.handle, since.as_ref(), reply) {
            self.channels.push(channel.clone());
        }
        // A presence watcher starts from the watched user's current presence.
        if let ChannelSpec::Exact(exact) = &channel {
            if let Some(watched) = exact.watched_user() {
                if let Ok(user) = UserId::parse(watched, crate::ids::MAX_NAME_CHARS) {
                    let presence = hub.presence().get(&user);
                    self.reply(
                        ServerFrame::new(ServerKind::Presence, &presence)
                            .user(user.as_str())
                            .stamped()
                            .encode(),
                    );
                }
            }
        }
        Ok(None)
    }

    pub(super) fn history(
        &mut self,
        request: HistoryRequest,
        id: Option<&RawValue>,
    ) -> Result<Option<u64>, Refused> {
        if let StreamId::Channel(channel) = &request.stream {
            if channel.watched_user().is_some() {
                return Err(Refused::PresenceChannel);
            }
        }
        let hub = &self.endpoint.hub;
        let Some(page) = hub.history(&request.stream, request.limit, request.since.as_ref()) else {
            return Err(Refused::HistoryOff);
        };
        let frame = ServerFrame::new(ServerKind::History, page.payload());
        let frame = match &request.stream {
            StreamId::Room(room) => frame.room(room.as_str()),
            StreamId::Channel(channel) => frame.channel(channel.as_str()),
        };
        self.reply(frame.stamped().reply_to(id).encode());
        Ok(None)
    }
}
