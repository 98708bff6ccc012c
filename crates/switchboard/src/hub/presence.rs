//! Presence in the hub: the state a user's connections share, pushing `presence` frames when
//! a user's visible presence changes, the away sweep, and the library's presence view.
//!
//! A change goes to every connection in a room the user is in and to every subscriber of the
//! channel `presence:USER` (or a pattern matching it), each connection once, and to the
//! handlers registered with [`PresenceView::on_update`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use serde_json::value::RawValue;

use super::{ConnHandle, Hub, HubInner, Target};
use crate::config::RateLimit;
use crate::ids::{ChannelId, ConnId, PRESENCE_PREFIX, RoomId, UserId};
use crate::limits::RateLimiter;
use crate::presence::{Presence, PresenceState, Status};
use crate::protocol::{ServerFrame, ServerKind, now_ms};

/// Offline users' last presence is kept this long for `presence().get`.
const OFFLINE_RETENTION_MS: u64 = 60 * 60 * 1000;

/// A presence handler registered by the application.
pub(crate) type PresenceHandler = Arc<dyn Fn(&Presence) + Send + Sync>;

/// What all of a user's connections on this node share.
pub(crate) struct UserState {
    /// The user's rate limiter, when rate limiting is on.
    pub(crate) limiter: Option<RateLimiter>,
    /// Hub-clock ms of the user's last message on any connection.
    last_active: AtomicU64,
    /// Mirrors the presence state's idleness, so a message checks it without a lock.
    idle: AtomicBool,
    pub(crate) presence: Mutex<PresenceState>,
    /// Rooms the user is in on this node, with the number of their connections in each; a
    /// short list, kept at its exact size (most users are in a room or two).
    rooms: Mutex<Vec<(RoomId, u32)>>,
}

impl UserState {
    pub(crate) fn new(rate: Option<RateLimit>, now: u64) -> Self {
        Self {
            limiter: rate.map(|rate| RateLimiter::new(rate, now)),
            last_active: AtomicU64::new(now),
            idle: AtomicBool::new(false),
            presence: Mutex::new(PresenceState::connected()),
            rooms: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn add_room(&self, room: &RoomId) {
        let mut rooms = self.rooms.lock();
        match rooms.iter_mut().find(|(r, _)| r == room) {
            Some((_, count)) => *count += 1,
            None => {
                rooms.reserve_exact(1);
                rooms.push((room.clone(), 1));
            }
        }
    }

    pub(crate) fn remove_room(&self, room: &RoomId) {
        let mut rooms = self.rooms.lock();
        if let Some(index) = rooms.iter().position(|(r, _)| r == room) {
            rooms[index].1 -= 1;
            if rooms[index].1 == 0 {
                rooms.swap_remove(index);
                rooms.shrink_to_fit();
            }
        }
    }

    pub(super) fn rooms(&self) -> Vec<RoomId> {
        self.rooms
            .lock()
            .iter()
            .map(|(room, _)| room.clone())
            .collect()
    }
}

impl Hub {
    /// Epoch milliseconds of a hub-clock time.
    fn epoch_ms(&self, hub_ms: u64) -> u64 {
        self.inner.started_epoch_ms + hub_ms
    }

    /// The current presence of a connected user.
    pub(super) fn view(&self, user: &UserId, state: &UserState) -> Presence {
        let last_seen = self.epoch_ms(state.last_active.load(Ordering::Relaxed));
        state.presence.lock().view(user, last_seen)
    }

    /// Records a message from one of `user`'s connections; an idle user is online again.
    pub(crate) fn user_active(&self, user: &UserId, state: &UserState) {
        state.last_active.store(self.now_ms(), Ordering::Relaxed);
        if state.idle.swap(false, Ordering::AcqRel) && state.presence.lock().active() {
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
        state.last_active.store(self.now_ms(), Ordering::Relaxed);
        state.idle.store(false, Ordering::Release);
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
        let mut went_away: Vec<(UserId, Arc<UserState>)> = Vec::new();
        self.inner.users.for_each(|user, entry| {
            let state = &entry.state;
            let quiet = now.saturating_sub(state.last_active.load(Ordering::Relaxed));
            if quiet >= away_after && !state.idle.swap(true, Ordering::AcqRel) {
                went_away.push((user.clone(), state.clone()));
            }
        });
        let mut changed = 0;
        for (user, state) in went_away {
            if state.presence.lock().went_idle() {
                changed += 1;
                self.presence_changed(&state, self.view(&user, &state));
            }
        }
        changed
    }

    /// A presence change on this node: shown to this node's clients in the user's rooms (here
    /// and, for rooms the user is in on other nodes, their local members) and announced to the
    /// other nodes, which show it to theirs.
    pub(crate) fn presence_changed(&self, state: &UserState, presence: Presence) {
        let mut rooms = state.rooms();
        if let Some(remote) = self.with_replica(|replica| replica.user_rooms(&presence.user_id)) {
            for room in remote {
                if !rooms.contains(&room) {
                    rooms.push(room);
                }
            }
        }
        self.deliver_presence(&presence, &rooms);
        self.announce(|| crate::cluster::Event::Presence(presence.clone()));
    }

    /// Shows `presence` to this node's connections in `rooms` and watching the user (each
    /// connection once), and to the registered handlers.
    pub(super) fn deliver_presence(&self, presence: &Presence, rooms: &[RoomId]) {
        let user = &presence.user_id;
        let mut recipients: HashMap<ConnId, ConnHandle> = HashMap::new();
        for room in rooms {
            self.collect_room_members(room, &mut recipients);
        }
        if self.channel_count() > 0 {
            let watch = ChannelId::from_trusted(format!("{PRESENCE_PREFIX}{user}"));
            self.collect_channel_subscribers(&watch, &mut recipients);
        }
        // Most connects and disconnects have nobody to tell: no frame to encode then.
        if !recipients.is_empty() {
            let frame = ServerFrame::new(ServerKind::Presence, presence)
                .user(user.as_str())
                .stamped()
                .encode();
            let delivered = recipients
                .values()
                .filter(|handle| self.deliver(handle, &frame))
                .count();
            self.inner.counters.count_out(Target::Presence, delivered);
        }
        let handlers: Vec<PresenceHandler> = self
            .inner
            .presence_handlers
            .read()
            .iter()
            .map(|(_, handler)| handler.clone())
            .collect();
        for handler in handlers {
            handler(presence);
        }
    }

    /// The state of a user connected to this node.
    pub(super) fn local_user_state(&self, user: &UserId) -> Option<Arc<UserState>> {
        self.inner
            .users
            .read(user)
            .get(user)
            .map(|entry| entry.state.clone())
    }

    /// Forgets offline users last seen longer ago than the retention. Returns how many.
    pub(crate) fn purge_offline(&self) -> usize {
        let cutoff = now_ms().saturating_sub(OFFLINE_RETENTION_MS);
        let mut purged = 0;
        self.inner.offline.retain(|_, presence| {
            let keep = presence.last_seen >= cutoff;
            purged += usize::from(!keep);
            keep
        });
        purged
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

/// The library's view of presence on this node; see [`Hub::presence`].
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
        if let Some(state) = self.hub.local_user_state(user) {
            return self.hub.view(user, &state);
        }
        if let Some(presence) = self.hub.remote_presence(user) {
            return presence;
        }
        inner
            .offline
            .read(user)
            .get(user)
            .cloned()
            .unwrap_or_else(|| Presence {
                user_id: user.clone(),
                status: Status::Offline,
                metadata: None,
                last_seen: 0,
            })
    }

    /// Every connected user (online or away, on any node) with their presence.
    pub fn online_users(&self) -> Vec<Presence> {
        let mut states = Vec::new();
        self.hub
            .inner
            .users
            .for_each(|user, entry| states.push((user.clone(), entry.state.clone())));
        let mut users: Vec<Presence> = states
            .iter()
            .map(|(user, state)| self.hub.view(user, state))
            .collect();
        if let Some(remote) = self.hub.with_replica(|replica| replica.users()) {
            let local: std::collections::HashSet<UserId> =
                states.into_iter().map(|(user, _)| user).collect();
            users.extend(remote.into_iter().filter(|p| !local.contains(&p.user_id)));
        }
        users
    }

    /// Calls `handler` with every presence change of any user, until the returned watch is
    /// dropped. The handler runs on the thread that made the change: keep it short and do not
    /// block (spawn a task for slow work).
    pub fn on_update(&self, handler: impl Fn(&Presence) + Send + Sync + 'static) -> PresenceWatch {
        let id = self.hub.next_id();
        self.hub
            .inner
            .presence_handlers
            .write()
            .push((id, Arc::new(handler)));
        PresenceWatch {
            hub: Arc::downgrade(&self.hub.inner),
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
                .presence_handlers
                .write()
                .retain(|(id, _)| *id != self.id);
        }
    }
}
