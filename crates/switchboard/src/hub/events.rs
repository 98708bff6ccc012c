//! Lifecycle events for the application: a room or channel got its first member or lost its
//! last, a user joined or left a room, a user's presence changed. Webhooks are built on them
//! (`crate::webhooks`); a library user registers its own with
//! [`crate::switchboard::Builder::on_event`].
//!
//! Events are this node's view: a room is occupied when it has a member *on this node*. On a
//! lone node that is the whole picture; in a cluster each node reports its own members.
//!
//! This part owns the registered hooks and nothing else. Rooms and channels tell it their
//! first and last members through the same observer traits they tell the cluster part
//! ([`Observers`]), under their own locks, so the events of one room come in the order of its
//! changes; that is also why a hook must be quick and must not call back into the hub.

use std::sync::{Arc, OnceLock};

use super::channels::ChannelObserver;
use super::cluster::Cluster;
use super::rooms::RoomObserver;
use crate::ids::{ChannelId, ChannelSpec, RoomId, UserId};
use crate::presence::Presence;

/// Something that happened on this node that a backend may want to know.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// `room` got its first member.
    RoomOccupied {
        /// The room.
        room: RoomId,
    },
    /// `room`'s last member left: the room is gone.
    RoomVacated {
        /// The room.
        room: RoomId,
    },
    /// `user`'s first connection joined `room`.
    MemberAdded {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// `user`'s last connection left `room`.
    MemberRemoved {
        /// The room.
        room: RoomId,
        /// The user.
        user: UserId,
    },
    /// `presence.user_id`'s first connection on this node opened (`presence` as it stands:
    /// `online`, or the status the user keeps on another node).
    Connected {
        /// The user's presence.
        presence: Presence,
    },
    /// `presence.user_id`'s last connection on this node closed (`presence`: `offline`, with
    /// the time).
    Disconnected {
        /// The user's presence as they left.
        presence: Presence,
    },
    /// A connected user's presence changed: a `presence` frame, going away after the idle
    /// timeout, or coming back from it. (Arrivals and departures are
    /// [`HubEvent::Connected`] and [`HubEvent::Disconnected`].)
    PresenceChanged {
        /// The new presence.
        presence: Presence,
    },
    /// `channel` got its first subscriber (patterns are not channels and have no events).
    ChannelOccupied {
        /// The channel.
        channel: ChannelId,
    },
    /// `channel` lost its last subscriber.
    ChannelVacated {
        /// The channel.
        channel: ChannelId,
    },
}

/// A hook called with every event. It runs under the lock of the room or channel the event is
/// about: it must be quick (queue the event) and must not call into the hub.
pub type EventHook = Arc<dyn Fn(&HubEvent) + Send + Sync>;

/// The application's event hooks, set once when the instance is built.
#[derive(Default)]
pub(super) struct Events {
    hooks: OnceLock<Vec<EventHook>>,
}

impl Events {
    /// Sets the hooks; only the first call counts.
    pub(super) fn set(&self, hooks: Vec<EventHook>) {
        if !hooks.is_empty() {
            let _ = self.hooks.set(hooks);
        }
    }

    /// Calls every hook with the event `make` builds, if there is a hook.
    pub(super) fn emit(&self, make: impl FnOnce() -> HubEvent) {
        if let Some(hooks) = self.hooks.get() {
            let event = make();
            hooks.iter().for_each(|hook| hook(&event));
        }
    }
}

/// What the rooms and channels tell of their first and last members: the cluster part, then
/// the application's hooks.
pub(super) struct Observers<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) events: &'a Events,
}

impl RoomObserver for Observers<'_> {
    fn room_occupied(&self, room: &RoomId) {
        self.cluster.room_occupied(room);
        self.events
            .emit(|| HubEvent::RoomOccupied { room: room.clone() });
    }

    fn member_connections(&self, room: &RoomId, user: &UserId, count: u32) {
        self.cluster.member_connections(room, user, count);
        // A count of 0 comes only from a leave (or a purge), before the room's vacancy.
        // The first connection's join is told by the hub (`lifecycle.rs`), which knows it
        // is a join.
        if count == 0 {
            self.events.emit(|| HubEvent::MemberRemoved {
                room: room.clone(),
                user: user.clone(),
            });
        }
    }

    fn room_vacated(&self, room: &RoomId) {
        self.cluster.room_vacated(room);
        self.events
            .emit(|| HubEvent::RoomVacated { room: room.clone() });
    }
}

impl ChannelObserver for Observers<'_> {
    fn channel_occupied(&self, spec: &ChannelSpec) {
        self.cluster.channel_occupied(spec);
        if let ChannelSpec::Exact(channel) = spec {
            self.events.emit(|| HubEvent::ChannelOccupied {
                channel: channel.clone(),
            });
        }
    }

    fn channel_vacated(&self, spec: &ChannelSpec) {
        self.cluster.channel_vacated(spec);
        if let ChannelSpec::Exact(channel) = spec {
            self.events.emit(|| HubEvent::ChannelVacated {
                channel: channel.clone(),
            });
        }
    }
}
