//! The session's commands, as the client sends them: what each one does once the frame is
//! decoded (`execute`), and what the connection's token must grant first (`authorize`).
//! Commands about streams, documents and tokens live in their own sibling files.

use serde_json::value::RawValue;

use super::{ChannelPayload, Done, EmptyPayload, RoomPayload, Session};
use crate::broker::Topic;
use crate::connection::refused::{Action, Refused};
use crate::exact;
use crate::handlers::MessageContext;
use crate::hub::Publication;
use crate::ids::{ChannelId, ChannelSpec, RoomId, StreamId};
use crate::protocol::{Command, ServerFrame, ServerKind, now_ms};

impl Session {
    /// Carries out a command; says how it is acknowledged.
    pub(super) fn execute(
        &mut self,
        command: Command<'_>,
        id: Option<&RawValue>,
    ) -> Result<Done, Refused> {
        self.authorize(&command)?;
        match command {
            Command::JoinRoom { room, since } => self.join(room, since, id),
            Command::LeaveRoom { room } => self.leave(&room, id),
            Command::Message { room, payload } => {
                if !self.rooms.contains(&room) {
                    return Err(Refused::NotInRoom(room));
                }
                let frame = ServerFrame::new(ServerKind::Message, &*payload)
                    .room(room.as_str())
                    .user(self.handle.user().as_str())
                    .stamped();
                let ack = id.map(|id| (&self.handle, id));
                let sent = self
                    .hub()
                    .send_room_frame(&room, &frame, Some(self.handle.id()), ack);
                Ok(Done::of(sent.offset))
            }
            Command::Broadcast { payload } => {
                let frame = ServerFrame::new(ServerKind::Broadcast, payload)
                    .user(self.handle.user().as_str())
                    .stamped()
                    .encode();
                self.hub().publish(Topic::Broadcast, frame, None);
                Ok(Done::Ack(None))
            }
            Command::Subscribe { channel, since } => self.subscribe(channel, since, id),
            Command::Unsubscribe { channel } => {
                self.unsubscribe(channel, id);
                Ok(Done::Ack(None))
            }
            Command::Publish { channel, data } => self.publish(channel, data, id),
            Command::History(request) => self.history(request, id),
            Command::Presence { status, metadata } => {
                let user = self.handle.user();
                self.hub()
                    .set_presence(user, self.handle.user_state(), status, metadata);
                Ok(Done::Ack(None))
            }
            Command::Ping { payload } => {
                let pong = match payload {
                    Some(payload) => ServerFrame::new(ServerKind::Pong, payload)
                        .reply_to(id)
                        .encode(),
                    None => ServerFrame::new(ServerKind::Pong, EmptyPayload {})
                        .reply_to(id)
                        .encode(),
                };
                self.reply(pong);
                Ok(Done::Ack(None))
            }
            Command::Pong => Ok(Done::Ack(None)),
            Command::Refresh { token } => self.refresh(&token),
            Command::Auth { .. } if self.grants().is_some() => Err(Refused::AlreadyAuthenticated),
            Command::Auth { .. } => Err(Refused::AuthenticationOff),
            Command::Other { kind, payload } => {
                self.custom(&kind, payload, id).map(|()| Done::Ack(None))
            }
        }
    }

    /// Refuses with `FORBIDDEN` what the connection's token does not grant, before anything
    /// reaches a room or channel.
    pub(super) fn authorize(&self, command: &Command<'_>) -> Result<(), Refused> {
        let Some(grants) = self.grants() else {
            return Ok(());
        };
        let denied = match command {
            Command::JoinRoom { room, .. } => {
                (!grants.may_join(room)).then(|| Action::JoinRoom(room.clone()))
            }
            Command::Message { room, .. } => {
                (!grants.may_message(room)).then(|| Action::Message(room.clone()))
            }
            Command::Subscribe { channel, .. } => {
                (!grants.may_subscribe(channel)).then(|| Action::Subscribe(channel.clone()))
            }
            Command::History(request) => {
                let allowed = match &request.stream {
                    StreamId::Room(room) => grants.may_join(room),
                    StreamId::Channel(channel) => {
                        grants.may_subscribe(&ChannelSpec::Exact(channel.clone()))
                    }
                };
                (!allowed).then(|| Action::ReadHistory(request.stream.clone()))
            }
            Command::Publish { channel, .. } => {
                (!grants.may_publish(channel)).then(|| Action::Publish(channel.clone()))
            }
            Command::Broadcast { .. } => (!grants.may_broadcast()).then_some(Action::Broadcast),
            _ => None,
        };
        denied.map_or(Ok(()), |action| Err(Refused::Forbidden(action)))
    }

    pub(super) fn leave(&mut self, room: &RoomId, id: Option<&RawValue>) -> Result<Done, Refused> {
        let Some(index) = self.rooms.iter().position(|r| r == room) else {
            return Err(Refused::NotInRoom(room.clone()));
        };
        exact::swap_remove(&mut self.rooms, index);
        tracing::debug!(conn = %self.handle.id(), user = %self.handle.user(), %room, "leave");
        self.hub().leave_room(room, &self.handle);
        self.reply(
            ServerFrame::new(ServerKind::RoomLeft, RoomPayload { room })
                .room(room.as_str())
                .stamped()
                .reply_to(id)
                .encode(),
        );
        Ok(Done::Ack(None))
    }

    pub(super) fn unsubscribe(&mut self, channel: ChannelSpec, id: Option<&RawValue>) {
        if let Some(index) = self.channels.iter().position(|c| c == &channel) {
            exact::swap_remove(&mut self.channels, index);
            self.hub().unsubscribe_conn(&channel, &self.handle);
        }
        self.reply_with(
            id,
            ServerKind::Unsubscribed,
            &ChannelPayload { channel: &channel },
        );
    }

    fn publish(
        &mut self,
        channel: ChannelId,
        data: &RawValue,
        id: Option<&RawValue>,
    ) -> Result<Done, Refused> {
        if channel.watched_user().is_some() {
            return Err(Refused::PresenceChannel);
        }
        let publication = Publication {
            channel,
            user_id: Some(self.handle.user().clone()),
            timestamp: now_ms(),
            offset: None,
            data: serde_json::from_str(data.get()).map_err(Refused::InvalidData)?,
        };
        let hub = self.hub();
        let except = (!hub.config().pubsub.deliver_to_publisher).then(|| self.handle.id());
        let ack = id.map(|id| (&self.handle, id));
        Ok(Done::of(
            hub.publish_to_channel(publication, except, ack).offset,
        ))
    }

    fn custom(
        &mut self,
        kind: &str,
        payload: Option<&RawValue>,
        id: Option<&RawValue>,
    ) -> Result<(), Refused> {
        let Some(handler) = self.endpoint.extensions.messages.get(kind) else {
            return Err(Refused::UnknownType(kind.to_owned()));
        };
        let payload = match payload {
            Some(raw) => serde_json::from_str(raw.get()).map_err(Refused::InvalidData)?,
            None => serde_json::Value::Null,
        };
        let context = MessageContext {
            hub: &self.endpoint.hub,
            conn: &self.handle,
            rooms: &self.rooms,
            id,
            kind,
        };
        handler(&context, &payload).map_err(Refused::Handler)
    }
}
