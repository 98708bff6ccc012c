//! The hub's multi-step operations, each in one place: a connection is registered, joins and
//! leaves rooms, and disconnects; dead connections are purged. Each step goes to the part that
//! owns the state (registry, rooms, channels, presence book) with the cluster part as observer,
//! and the hub adds what follows for clients (`user_joined`, `user_left`, presence).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::Serialize;

use super::registry::Refusal;
use super::rooms::{Joined, MemberList};
use super::{CloseRequest, ConnHandle, Counters, Hub, HubEvent, Wire};
use crate::broker::Topic;
use crate::ids::{ChannelSpec, RoomId, StreamId, UserId};
use crate::protocol::{ServerFrame, ServerKind, now_ms};

/// Most members listed in a `room_joined` reply; `memberCount` is always exact.
pub(crate) const MAX_MEMBERS_LISTED: usize = 1000;

/// Payload of `user_joined` and `user_left`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberEvent<'a> {
    user_id: &'a UserId,
    room: &'a RoomId,
}

/// The `user_joined` or `user_left` frame (`kind`) of `user` in `room`.
pub(super) fn member_frame(kind: ServerKind, room: &RoomId, user: &UserId) -> Bytes {
    ServerFrame::new(
        kind,
        MemberEvent {
            user_id: user,
            room,
        },
    )
    .room(room.as_str())
    .user(user.as_str())
    .stamped()
    .encode()
}

impl Hub {
    /// Registers a protocol connection of `user` (tests).
    #[cfg(test)]
    pub(crate) fn register(&self, user: UserId) -> Result<ConnHandle, Refusal> {
        self.register_as(user, Wire::Json)
    }

    /// Admits a new connection of `user` whose client reads `wire`, or refuses it at a limit.
    /// A user's first connection in the cluster makes them online; their first on this node
    /// is a [`HubEvent::Connected`].
    pub(crate) fn register_as(&self, user: UserId, wire: Wire) -> Result<ConnHandle, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let inner = &self.inner;
        if self.is_under_memory_pressure() {
            Counters::add(&inner.counters.connections_refused, 1);
            Counters::add(&inner.counters.memory_refused, 1);
            return Err(Refusal::MemoryPressure);
        }
        let elsewhere = inner.cluster.user_connections(&user);
        let admitted = inner
            .registry
            .admit(user, wire, elsewhere, self.now_ms(), &inner.cluster)
            .inspect_err(|_| Counters::add(&inner.counters.connections_refused, 1))?;
        Counters::add(&inner.counters.connections_opened, 1);
        let handle = admitted.handle;
        if admitted.first_here {
            let (user, state) = (handle.user(), handle.user_state());
            // Not shown when the user is connected elsewhere: the new state takes over what
            // this node's clients were shown, the other nodes' latest report.
            if elsewhere > 0
                && let Some(reported) = inner.cluster.presence(user)
                && state.presence.lock().adopt(&reported)
            {
                state.mark_idle();
            }
            let presence = state.presence.lock().view(user, now_ms());
            if elsewhere == 0 {
                inner.presence.came_back(user);
                self.show_presence(state, &presence);
            }
            inner.events.emit(|| HubEvent::Connected { presence });
        }
        Ok(handle)
    }

    /// Removes a connection from the registry. Idempotent. When it was the user's last one in
    /// the cluster the user goes offline: their rooms and watchers get an `offline` presence.
    /// Their last on this node is a [`HubEvent::Disconnected`], and is announced to the other
    /// nodes as an `offline` even while this node's replica says others remain: they decide
    /// from their own replicas, where another node's closing may already show (two tabs on two
    /// nodes that close at once would otherwise both leave the user online everywhere).
    pub(crate) fn unregister(&self, handle: &ConnHandle) {
        let inner = &self.inner;
        let Some(removed) = inner.registry.remove(handle, &inner.cluster) else {
            return;
        };
        let user = handle.user();
        if !removed.last_here {
            return;
        }
        let presence = removed.state.presence.lock().disconnected(user, now_ms());
        if self.user_connection_count(user) == 0 {
            inner.presence.went_offline(&presence);
            self.show_presence(&removed.state, &presence);
        } else {
            inner.cluster.presence_changed(&presence);
        }
        inner.events.emit(|| HubEvent::Disconnected { presence });
    }

    /// Adds `conn` to `room`, creating the room on its first member. When it is the user's
    /// first connection in the room on any node, the room's other members get `user_joined`.
    /// Returns whether `conn` was not a member before. (Clients join through
    /// [`Hub::join_room`], which adds the reply and the recovery.)
    pub(super) fn add_member(&self, room: &RoomId, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        match inner.rooms.join(room, conn, &inner.observers()) {
            Joined::Already => false,
            Joined::Joined { user_connections } => {
                conn.user_state().add_room(&inner.rooms.shared_name(room));
                if user_connections == 1 {
                    // This node's view, as every hub event (`events.rs`).
                    inner.events.emit(|| HubEvent::MemberAdded {
                        room: room.clone(),
                        user: conn.user().clone(),
                    });
                    if !inner.cluster.in_room(room, conn.user()) {
                        self.announce_member(ServerKind::UserJoined, room, conn);
                    }
                }
                true
            }
        }
    }

    /// Removes `conn` from `room`, deleting the room when it empties. When it was the user's
    /// last connection in the room on any node, the others get `user_left`. Returns whether
    /// `conn` was a member.
    pub(crate) fn leave_room(&self, room: &RoomId, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        if inner.cluster.store().is_some() {
            // Cluster mode: the room's copy is released with its last member, under the
            // stream's lock (so that a join being answered meanwhile sees it).
            let id = StreamId::Room(room.clone());
            let mut stream = self.lock_stream(&id);
            let left = self.leave_unlocked(room, conn);
            self.release_if_vacated(&id, &mut stream);
            return left;
        }
        self.leave_unlocked(room, conn)
    }

    fn leave_unlocked(&self, room: &RoomId, conn: &ConnHandle) -> bool {
        let inner = &self.inner;
        let Some(remaining) = inner.rooms.leave(room, conn, &inner.observers()) else {
            return false;
        };
        conn.user_state().remove_room(room);
        if remaining == 0 && !inner.cluster.in_room(room, conn.user()) {
            self.announce_member(ServerKind::UserLeft, room, conn);
        }
        true
    }

    /// Ends a connection: unsubscribes its `channels`, unregisters it (the user goes offline
    /// if it was their last connection) and then leaves its `rooms`, so that `user_left`
    /// follows the `offline` presence.
    pub(crate) fn disconnect(
        &self,
        conn: &ConnHandle,
        rooms: Vec<RoomId>,
        channels: Vec<ChannelSpec>,
    ) {
        // Marked closed first: a join or subscription answered later (cluster mode) then
        // leaves the connection out instead of adding it after these leaves.
        conn.close(CloseRequest::FINISHED, self.now_ms());
        for channel in &channels {
            self.unsubscribe_conn(channel, conn);
        }
        self.unregister(conn);
        for room in &rooms {
            self.leave_room(room, conn);
        }
    }

    /// Removes the connections for which `dead` holds from every room, and rooms left empty.
    /// Returns (memberships removed, rooms removed).
    pub(crate) fn purge_rooms(&self, dead: impl Fn(&ConnHandle) -> bool) -> (usize, usize) {
        let inner = &self.inner;
        let purged = inner.rooms.purge(dead, &inner.observers());
        for (room, handle) in &purged.members {
            handle.user_state().remove_room(room);
            if inner.cluster.store().is_some() {
                let id = StreamId::Room(room.clone());
                let mut stream = self.lock_stream(&id);
                self.release_if_vacated(&id, &mut stream);
            }
        }
        (purged.members.len(), purged.rooms)
    }

    /// Tells the other members of `room` that `conn`'s user joined or left it.
    fn announce_member(&self, kind: ServerKind, room: &RoomId, conn: &ConnHandle) {
        let frame = member_frame(kind, room, conn.user());
        let topic = Topic::Room(room.clone());
        if self.inner.cluster.replicated() {
            // The other nodes learn it from the membership event the room part announces,
            // each telling its own members once (`cluster::Replica::apply`): an arrival
            // their replica also learns from a snapshot is not announced twice.
            self.deliver_local(&topic, &frame, Some(conn.id()));
        } else {
            // No membership (a lone node, or an application's own broker): the frame is
            // how other nodes hear of it.
            self.publish(topic, frame, Some(conn.id()));
        }
    }

    /// The distinct users in `room` on every node, at most `cap` listed.
    pub(crate) fn member_list(&self, room: &RoomId, cap: usize) -> MemberList {
        let inner = &self.inner;
        inner
            .rooms
            .member_list(room, inner.cluster.room_users(room), cap)
    }

    /// Whether the hub is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
}
