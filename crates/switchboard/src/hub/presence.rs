//! Presence in the hub: the presence book (the last presence of users who went offline, and the
//! application's presence handlers), pushing `presence` frames when a user's visible presence
//! changes, the away sweep, and the library's presence view.
//!
//! A change goes to every connection in a room the user is in (on this node, and this node's
//! members of rooms the user is in elsewhere) and to every subscriber of the channel
//! `presence:USER` (or a pattern matching it), each connection once, and to the handlers
//! registered with [`PresenceView::on_update`]. Connected users' presence lives in their
//! [`UserState`]; this part holds only what outlives a connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use serde_json::value::RawValue;

use super::shard::Sharded;
use super::{ConnHandle, Hub, HubInner, Target, UserState};
use crate::ids::{ChannelId, ConnId, PRESENCE_PREFIX, RoomId, UserId};
use crate::presence::{Presence, Status};
use crate::protocol::{ServerFrame, ServerKind, now_ms};

/// Offline users' last presence is kept this long for `presence().get`.
const OFFLINE_RETENTION_MS: u64 = 60 * 60 * 1000;

/// A presence handler registered by the application.
pub(crate) type PresenceHandler = Arc<dyn Fn(&Presence) + Send + Sync>;

/// What presence remembers beyond connected users.
pub(super) struct PresenceBook {
    /// The last presence of users who went offline, for a while (see [`Hub::purge_offline`]).
    offline: Sharded<UserId, Presence>,
    handlers: RwLock<Vec<(u64, PresenceHandler)>>,
}

impl PresenceBook {
    pub(super) fn new() -> Self {
        Self {
            offline: Sharded::new(),
            handlers: RwLock::new(Vec::new()),
        }
    }

    /// Remembers the presence of a user who went offline.
    pub(super) fn went_offline(&self, presence: &Presence) {
        let user = &presence.user_id;
        self.offline
            .write(user)
            .insert(user.clone(), presence.clone());
    }

    /// Forgets the offline presence of a user who came back.
    pub(super) fn came_back(&self, user: &UserId) {
        self.offline.write(user).remove(user);
    }

    /// The last presence of an offline user, if still remembered.
    fn last(&self, user: &UserId) -> Option<Presence> {
        self.offline.read(user).get(user).cloned()
    }

    /// Forgets offline users last seen before `cutoff` (epoch ms). Returns how many.
    fn forget_before(&self, cutoff: u64) -> usize {
        let mut forgotten = 0;
        self.offline.retain(|_, presence| {
            let keep = presence.last_seen >= cutoff;
            forgotten += usize::from(!keep);
            keep
        });
        forgotten
    }

    fn handlers(&self) -> Vec<PresenceHandler> {
        let handlers = self.handlers.read();
        handlers
            .iter()
            .map(|(_, handler)| handler.clone())
            .collect()
    }
}

impl Hub {
    /// Epoch milliseconds of a hub-clock time.
    fn epoch_ms(&self, hub_ms: u64) -> u64 {
        self.inner.started_epoch_ms + hub_ms
    }

    /// The current presence of a connected user, as this node's state has it.
    pub(super) fn view(&self, user: &UserId, state: &UserState) -> Presence {
        let last_seen = self.epoch_ms(state.last_active());
        state.presence.lock().view(user, last_seen)
    }

    /// The presence of a user connected here as this node's clients were last shown it: its
    /// own view, or another node's later report.
    fn shown(&self, user: &UserId, state: &UserState) -> Presence {
        if state.presence.lock().shows_elsewhere()
            && let Some(reported) = self.inner.cluster.presence(user)
        {
            return reported;
        }
        self.view(user, state)
    }

    /// Records a message from one of `user`'s connections; an idle user is online again.
    pub(crate) fn user_active(&self, user: &UserId, state: &UserState) {
        if state.activity(self.now_ms()) && state.presence.lock().active() {
            self.presence_changed(state, self.view(user, state));
        }
    }

    /// Applies a `presence` frame.
    pub(crate) fn set_presence(
        &self,
        user: &UserId,
        state: &UserState,
        status: Status,
        metadata: Option<Box<RawValue>>,
    ) {
        state.activity(self.now_ms());
        let changed = state.presence.lock().set(status, metadata.map(Arc::from));
        if changed {
            self.presence_changed(state, self.view(user, state));
        }
    }

    /// Marks users whose connections have all been quiet for the away timeout as idle (away).
    /// Returns how many changed.
    pub(crate) fn away_sweep(&self) -> usize {
        let away_after = self.inner.config.away_timeout.as_millis() as u64;
        let now = self.now_ms();
        let mut went_away: Vec<(UserId, triomphe::Arc<UserState>)> = Vec::new();
        self.inner.registry.for_each_user(|user, state, _| {
            let quiet = now.saturating_sub(state.last_active());
            if quiet >= away_after && state.mark_idle() {
                went_away.push((user.clone(), state.clone()));
            }
        });
        let mut changed = 0;
        for (user, state) in went_away {
            if state.presence.lock().went_idle() {
                changed += 1;
                let presence = self.view(&user, &state);
                // Announced as idleness: a node where the user is active says otherwise.
                self.deliver_to_user_rooms(&state, &presence);
                self.inner.cluster.went_idle(&presence);
                self.inner
                    .events
                    .emit(|| super::HubEvent::PresenceChanged { presence });
            }
        }
        changed
    }

    /// A presence change on this node: shown to this node's clients in the user's rooms (here
    /// and, for rooms the user is in on other nodes, their local members) and announced to the
    /// other nodes, which show it to theirs.
    pub(super) fn presence_changed(&self, state: &UserState, presence: Presence) {
        self.show_presence(state, &presence);
        self.inner
            .events
            .emit(|| super::HubEvent::PresenceChanged { presence });
    }

    /// Shows a presence change to this node's clients and announces it to the other nodes
    /// (see [`Hub::presence_changed`]), without a hub event.
    pub(super) fn show_presence(&self, state: &UserState, presence: &Presence) {
        self.deliver_to_user_rooms(state, presence);
        self.inner.cluster.presence_changed(presence);
    }

    /// Shows a presence change of this node's user to this node's clients: in the user's rooms
    /// here and elsewhere, and watching the user.
    fn deliver_to_user_rooms(&self, state: &UserState, presence: &Presence) {
        self.inner.cluster.shown_here(presence);
        let mut rooms = state.rooms();
        for room in self.inner.cluster.user_rooms(&presence.user_id) {
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        self.deliver_presence(presence, &rooms);
    }

    /// Shows `presence` to this node's connections in `rooms` and watching the user (each
    /// connection once), and to the registered handlers.
    pub(super) fn deliver_presence(&self, presence: &Presence, rooms: &[RoomId]) {
        let inner = &self.inner;
        let user = &presence.user_id;
        let mut recipients: HashMap<ConnId, ConnHandle> = HashMap::new();
        for room in rooms {
            inner.rooms.collect_members(room, &mut recipients);
        }
        if inner.channels.count() > 0 {
            let watch = ChannelId::from_trusted(format!("{PRESENCE_PREFIX}{user}"));
            inner.channels.collect_subscribers(&watch, &mut recipients);
        }
        // Most connects and disconnects have nobody to tell: no frame to encode then.
        if !recipients.is_empty() {
            let frame = ServerFrame::new(ServerKind::Presence, presence)
                .user(user.as_str())
                .stamped()
                .encode();
            let outgoing = super::Outgoing::new(&frame);
            let delivered = recipients
                .values()
                .filter(|handle| self.deliver_shared(handle, &outgoing))
                .count();
            inner.counters.count_out(Target::Presence, delivered);
        }
        for handler in inner.presence.handlers() {
            handler(presence);
        }
    }

    /// Forgets offline users last seen longer ago than the retention. Returns how many.
    pub(crate) fn purge_offline(&self) -> usize {
        let cutoff = now_ms().saturating_sub(OFFLINE_RETENTION_MS);
        self.inner.presence.forget_before(cutoff)
    }

    /// The presence of each of `users`.
    pub(crate) fn presence_of(&self, users: &[UserId]) -> Vec<Presence> {
        users.iter().map(|user| self.presence().get(user)).collect()
    }

    /// Presence queries and change notifications.
    pub fn presence(&self) -> PresenceView<'_> {
        PresenceView { hub: self }
    }
}

/// The library's view of presence; see [`Hub::presence`].
pub struct PresenceView<'a> {
    hub: &'a Hub,
}

/// Keeps a presence handler registered; dropping it (or [`PresenceWatch::cancel`]) removes it.
#[must_use = "dropping the watch removes the handler"]
pub struct PresenceWatch {
    hub: Weak<HubInner>,
    id: u64,
}

impl PresenceView<'_> {
    /// A user's presence: their current one when connected (here, or in a cluster on another
    /// node), else `offline` with the time they were last seen (0 when never seen or
    /// forgotten).
    pub fn get(&self, user: &UserId) -> Presence {
        let inner = &self.hub.inner;
        if let Some(state) = inner.registry.user_state(user) {
            return self.hub.shown(user, &state);
        }
        inner
            .cluster
            .presence(user)
            .or_else(|| inner.presence.last(user))
            .unwrap_or_else(|| Presence {
                user_id: user.clone(),
                status: Status::Offline,
                metadata: None,
                last_seen: 0,
            })
    }

    /// Every connected user (online or away, on any node) with their presence.
    pub fn online_users(&self) -> Vec<Presence> {
        let inner = &self.hub.inner;
        let mut states = Vec::new();
        inner
            .registry
            .for_each_user(|user, state, _| states.push((user.clone(), state.clone())));
        let mut users: Vec<Presence> = states
            .iter()
            .map(|(user, state)| self.hub.shown(user, state))
            .collect();
        let local: HashSet<UserId> = states.into_iter().map(|(user, _)| user).collect();
        users.extend(
            inner
                .cluster
                .users()
                .into_iter()
                .filter(|presence| !local.contains(&presence.user_id)),
        );
        users
    }

    /// Calls `handler` with every presence change of any user, until the returned watch is
    /// dropped. The handler runs on the thread that made the change: keep it short and do not
    /// block (spawn a task for slow work).
    pub fn on_update(&self, handler: impl Fn(&Presence) + Send + Sync + 'static) -> PresenceWatch {
        let id = self.hub.next_id();
        let inner = &self.hub.inner;
        inner
            .presence
            .handlers
            .write()
            .push((id, Arc::new(handler)));
        PresenceWatch {
            hub: Arc::downgrade(inner),
            id,
        }
    }
}

impl PresenceWatch {
    /// Removes the handler.
    pub fn cancel(self) {}
}

impl Drop for PresenceWatch {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            inner
                .presence
                .handlers
                .write()
                .retain(|(id, _)| *id != self.id);
        }
    }
}
