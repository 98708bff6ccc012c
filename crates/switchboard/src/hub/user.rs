//! What all of a user's connections on this node share: the user's id, the rate limiter, the
//! activity clock, the presence state machine and the rooms the user is in here. Created with
//! the user's first connection (by the registry) and dropped with the last.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::config::RateLimit;
use crate::ids::{RoomId, UserId};
use crate::limits::RateLimiter;
use crate::presence::PresenceState;

/// The state a user's connections on this node share.
pub(crate) struct UserState {
    /// Held here rather than in each connection's handle: one copy per user, and the handle
    /// stays in a smaller allocator size class (`hub::handle`'s size guard).
    user: UserId,
    /// The user's rate limiter, when rate limiting is on.
    pub(crate) limiter: Option<RateLimiter>,
    /// Hub-clock ms of the user's last message on any connection.
    last_active: AtomicU64,
    /// Mirrors the presence state's idleness, so a message checks it without a lock.
    idle: AtomicBool,
    pub(crate) presence: Mutex<PresenceState>,
    /// Rooms the user is in on this node, with the number of their connections in each; a
    /// short list, kept at its exact size (most users are in a room or two), so a boxed slice:
    /// a `Vec`'s capacity word would always equal its length.
    rooms: Mutex<Box<[(RoomId, u32)]>>,
}

impl UserState {
    pub(crate) fn new(user: UserId, rate: Option<RateLimit>, now: u64) -> Self {
        Self {
            user,
            limiter: rate.map(|rate| RateLimiter::new(rate, now)),
            last_active: AtomicU64::new(now),
            idle: AtomicBool::new(false),
            presence: Mutex::new(PresenceState::connected()),
            rooms: Mutex::new(Box::default()),
        }
    }

    /// Records one more of the user's connections in `room`.
    pub(super) fn add_room(&self, room: &RoomId) {
        let mut rooms = self.rooms.lock();
        match rooms.iter_mut().find(|(r, _)| r == room) {
            Some((_, count)) => *count += 1,
            None => {
                let mut grown = std::mem::take(&mut *rooms).into_vec();
                grown.reserve_exact(1);
                grown.push((room.clone(), 1));
                *rooms = grown.into_boxed_slice();
            }
        }
    }

    /// Records one fewer of the user's connections in `room`.
    pub(super) fn remove_room(&self, room: &RoomId) {
        let mut rooms = self.rooms.lock();
        if let Some(index) = rooms.iter().position(|(r, _)| r == room) {
            rooms[index].1 -= 1;
            if rooms[index].1 == 0 {
                let mut shrunk = std::mem::take(&mut *rooms).into_vec();
                shrunk.swap_remove(index);
                *rooms = shrunk.into_boxed_slice();
            }
        }
    }

    /// The user.
    pub(crate) fn user(&self) -> &UserId {
        &self.user
    }

    /// The rooms the user is in on this node.
    pub(super) fn rooms(&self) -> Vec<RoomId> {
        self.rooms
            .lock()
            .iter()
            .map(|(room, _)| room.clone())
            .collect()
    }

    /// Hub-clock ms of the user's last message.
    pub(super) fn last_active(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }

    /// Records a message at hub-clock ms `now`; returns whether the user was idle.
    pub(super) fn activity(&self, now: u64) -> bool {
        self.last_active.store(now, Ordering::Relaxed);
        self.idle.swap(false, Ordering::AcqRel)
    }

    /// Marks the user idle; returns whether they were not already.
    pub(super) fn mark_idle(&self) -> bool {
        !self.idle.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// One per user on this node, in an `Arc`: at 128 bytes or less the `ArcInner` stays in
    /// the 144-byte class, with the user's id held here instead of in every handle.
    #[test]
    fn the_user_state_stays_small() {
        let state = size_of::<UserState>();
        assert!(state <= 128, "UserState grew to {state} bytes");
    }
}
