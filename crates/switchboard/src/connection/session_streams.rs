//! The session's commands about rooms' and channels' streams: joining and subscribing (with
//! `since`, to recover what the client missed) and reading `history` (DESIGN.md §7). The hub
//! queues the reply and the replay under the stream's lock (`hub/streams.rs`); the session
//! builds the reply.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Done, Session};
use crate::connection::refused::Refused;
use crate::exact;
use crate::hub::{Answered, Request, RoomJoin, Subscribed};
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
    ) -> Result<Done, Refused> {
        let hub = &self.endpoint.hub;
        let member = self.rooms.contains(&room);
        self.may_join(&room)?;
        let (replying, name, reply_id) = (hub.clone(), room.clone(), owned(id));
        let reply = Box::new(move |join: &RoomJoin| {
            let payload = RoomJoinedPayload {
                room: &name,
                members: replying.presence_of(&join.members.users),
                member_count: join.members.count,
                position: join.position.as_ref(),
                recovered: join.recovered,
            };
            ServerFrame::new(ServerKind::RoomJoined, payload)
                .room(name.as_str())
                .stamped()
                .reply_to(reply_id.as_deref())
                .encode()
        });
        let request = Request {
            since,
            reply,
            id: owned(id),
        };
        let answered = hub.join_room(&room, &self.handle, request);
        let done = match answered {
            Answered::Now { new: false } => return Ok(Done::Ack(None)),
            Answered::Now { new: true } => Done::Ack(None),
            // Counted as in the room from now on, so that leaving or disconnecting before the
            // answer comes leaves it.
            Answered::Later if member => return Ok(Done::AckedLater(None)),
            Answered::Later => Done::AckedLater(None),
        };
        tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), %room, "join");
        exact::push(&mut self.rooms, hub.shared_room_name(&room));
        Ok(done)
    }

    pub(super) fn subscribe(
        &mut self,
        channel: ChannelSpec,
        since: Option<StreamPosition>,
        id: Option<&RawValue>,
    ) -> Result<Done, Refused> {
        let hub = &self.endpoint.hub;
        let subscribed = self.channels.contains(&channel);
        self.may_subscribe(&channel)?;
        let (name, reply_id) = (channel.clone(), owned(id));
        let reply = Box::new(move |subscribed: &Subscribed| {
            let payload = SubscribedPayload {
                channel: &name,
                position: subscribed.position.as_ref(),
                recovered: subscribed.recovered,
            };
            let channel = name.to_string();
            ServerFrame::new(ServerKind::Subscribed, payload)
                .channel(&channel)
                .stamped()
                .reply_to(reply_id.as_deref())
                .encode()
        });
        let request = Request {
            since,
            reply,
            id: owned(id),
        };
        let done = match hub.subscribe_conn(&channel, &self.handle, request) {
            Answered::Now { .. } => Done::Ack(None),
            Answered::Later => Done::AckedLater(None),
        };
        if !subscribed {
            // Exact size, as the rooms: most connections hold one or two.
            exact::push(&mut self.channels, channel.clone());
        }
        // A presence watcher starts from the watched user's current presence.
        if let ChannelSpec::Exact(exact) = &channel
            && let Some(watched) = exact.watched_user()
            && let Ok(user) = UserId::parse(watched, crate::ids::MAX_NAME_CHARS)
        {
            let presence = hub.presence().get(&user);
            self.reply(
                ServerFrame::new(ServerKind::Presence, &presence)
                    .user(user.as_str())
                    .stamped()
                    .encode(),
            );
        }
        Ok(done)
    }

    /// The local checks of a join: the connection is in the room, or in fewer rooms than
    /// it may be.
    pub(super) fn may_join(&self, room: &RoomId) -> Result<(), Refused> {
        let max = self.hub().config().limits.max_rooms_per_connection;
        if !self.rooms.contains(room) && self.rooms.len() >= max {
            return Err(Refused::TooManyRooms(max));
        }
        Ok(())
    }

    /// The local checks of a subscribe: patterns only when clients may use them, and fewer
    /// channels than the connection may have unless it has this one.
    pub(super) fn may_subscribe(&self, channel: &ChannelSpec) -> Result<(), Refused> {
        let config = self.hub().config();
        if matches!(channel, ChannelSpec::Prefix(_)) && !config.pubsub.client_patterns {
            return Err(Refused::PatternsNotAllowed);
        }
        let max = config.limits.max_channels_per_connection;
        if !self.channels.contains(channel) && self.channels.len() >= max {
            return Err(Refused::TooManyChannels(max));
        }
        Ok(())
    }

    pub(super) fn history(
        &mut self,
        request: HistoryRequest,
        id: Option<&RawValue>,
    ) -> Result<Done, Refused> {
        if let StreamId::Channel(channel) = &request.stream
            && channel.watched_user().is_some()
        {
            return Err(Refused::PresenceChannel);
        }
        match self
            .endpoint
            .hub
            .history_request(&self.handle, &request, id)
        {
            None => Err(Refused::HistoryOff),
            Some(Answered::Now { .. }) => Ok(Done::Ack(None)),
            Some(Answered::Later) => Ok(Done::AckedLater(None)),
        }
    }
}

/// An owned copy of the client's id, for an answer given later.
fn owned(id: Option<&RawValue>) -> Option<Box<RawValue>> {
    id.map(ToOwned::to_owned)
}
