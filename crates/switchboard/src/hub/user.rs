//! What all of a user's connections on this node share: the user's id, the rate limiter, the
//! activity clock, the presence state machine, the user's connections here and the rooms the
//! user is in here. Created with the user's first connection (by the registry) and dropped with
//! the last.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::ConnHandle;
use super::shard::Keyed;
use crate::config::RateLimit;
use crate::exact;
use crate::ids::{ConnId, RoomId, UserId};
use crate::limits::RateLimiter;
use crate::presence::PresenceState;

/// The state a user's connections on this node share.
pub(crate) struct UserState {
    /// Held here rather than in each connection's handle: one copy per user, and the handle
    /// stays in a smaller allocator size class (`hub::handle`'s size guard). The registry's
    /// user table keys each state by it (`Keyed`), so it is stored once.
    user: UserId,
    /// The user's rate limiter, when rate limiting is on; boxed, so that with it off the state
    /// is a size class smaller (`tests::the_user_state_stays_small`).
    pub(crate) limiter: Option<Box<RateLimiter>>,
    /// Hub-clock ms of the user's last message on any connection, shifted left by one, and
    /// in the low bit whether the user is idle (mirroring the presence state's idleness, so a
    /// message checks it without a lock): one word, changed together.
    activity: AtomicU64,
    pub(crate) presence: Mutex<PresenceState>,
    /// The user's connections and rooms here. Its lock is taken after the registry's shard
    /// lock and never the other way round.
    here: Mutex<Here>,
}

/// A user's connections and rooms on this node: short lists, kept at their exact size (most
/// users hold one connection and are in a room or two), so boxed slices, as a `Vec`'s capacity
/// word would always equal its length.
#[derive(Default)]
struct Here {
    /// Changed by the registry only, under its lock of the user's shard, so that its counts
    /// reach its observer in order. A connection's handle holds this state, and this list
    /// holds the handle until the registry removes the connection.
    conns: Box<[ConnHandle]>,
    /// Rooms with the number of the user's connections in each.
    rooms: Box<[(RoomId, u32)]>,
}

/// The low bit of `UserState::activity`: the user is idle.
const IDLE: u64 = 1;

impl Keyed for triomphe::Arc<UserState> {
    type Key = UserId;
    fn key(&self) -> &UserId {
        &self.user
    }
}

impl UserState {
    pub(crate) fn new(user: UserId, rate: Option<RateLimit>, now: u64) -> Self {
        Self {
            user,
            limiter: rate.map(|rate| Box::new(RateLimiter::new(rate, now))),
            activity: AtomicU64::new(now << 1),
            presence: Mutex::new(PresenceState::connected()),
            here: Mutex::default(),
        }
    }

    /// Adds a connection of the user's (the registry's, under its shard lock); returns how
    /// many the user has here now.
    pub(super) fn add_connection(&self, conn: ConnHandle) -> u32 {
        let mut here = self.here.lock();
        exact::push(&mut here.conns, conn);
        here.conns.len() as u32
    }

    /// Removes connection `id` (the registry's, under its shard lock); returns how many the
    /// user has here now.
    pub(super) fn remove_connection(&self, id: ConnId) -> u32 {
        let mut here = self.here.lock();
        if let Some(index) = here.conns.iter().position(|c| c.id() == id) {
            exact::swap_remove(&mut here.conns, index);
        }
        here.conns.len() as u32
    }

    /// Drops the user's connections (the registry's, when it is dropped).
    pub(super) fn forget_connections(&self) {
        self.here.lock().conns = Box::default();
    }

    /// Runs `visit` on the user's connections here, under the user's lock.
    pub(super) fn with_connections<R>(&self, visit: impl FnOnce(&[ConnHandle]) -> R) -> R {
        visit(&self.here.lock().conns)
    }

    /// How many connections the user has here.
    pub(super) fn connection_count(&self) -> u32 {
        self.here.lock().conns.len() as u32
    }

    /// Records one more of the user's connections in `room`.
    pub(super) fn add_room(&self, room: &RoomId) {
        let mut here = self.here.lock();
        match here.rooms.iter_mut().find(|(r, _)| r == room) {
            Some((_, count)) => *count += 1,
            None => exact::push(&mut here.rooms, (room.clone(), 1)),
        }
    }

    /// Records one fewer of the user's connections in `room`.
    pub(super) fn remove_room(&self, room: &RoomId) {
        let mut here = self.here.lock();
        if let Some(index) = here.rooms.iter().position(|(r, _)| r == room) {
            here.rooms[index].1 -= 1;
            if here.rooms[index].1 == 0 {
                exact::swap_remove(&mut here.rooms, index);
            }
        }
    }

    /// The user.
    pub(crate) fn user(&self) -> &UserId {
        &self.user
    }

    /// The rooms the user is in on this node.
    pub(super) fn rooms(&self) -> Vec<RoomId> {
        self.here
            .lock()
            .rooms
            .iter()
            .map(|(room, _)| room.clone())
            .collect()
    }

    /// Hub-clock ms of the user's last message.
    pub(super) fn last_active(&self) -> u64 {
        self.activity.load(Ordering::Relaxed) >> 1
    }

    /// Records a message at hub-clock ms `now`; returns whether the user was idle.
    pub(super) fn activity(&self, now: u64) -> bool {
        self.activity.swap(now << 1, Ordering::AcqRel) & IDLE != 0
    }

    /// Marks the user idle; returns whether they were not already.
    pub(super) fn mark_idle(&self) -> bool {
        self.activity.fetch_or(IDLE, Ordering::AcqRel) & IDLE == 0
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// One per user on this node, in a `triomphe::Arc` (8 bytes of count before it): at 104
    /// bytes or less the allocation is in jemalloc's 112-byte class, with the user's id and
    /// connections held here instead of in every handle and in the registry's table; at 112
    /// it was in the 128-byte one (BENCHMARKS.md, "Idle memory"). Adding a field means making
    /// room first.
    #[test]
    fn the_user_state_stays_small() {
        let state = size_of::<UserState>();
        assert!(state <= 104, "UserState grew to {state} bytes");
    }

    #[test]
    fn activity_and_idleness_change_together() {
        let state = UserState::new(UserId::anonymous(), None, 5);
        assert_eq!(state.last_active(), 5);
        assert!(state.mark_idle(), "was not idle");
        assert!(!state.mark_idle(), "already idle");
        assert_eq!(state.last_active(), 5, "idleness keeps the time");
        assert!(state.activity(9), "was idle");
        assert_eq!(state.last_active(), 9);
        assert!(!state.activity(10), "active again");
    }
}
