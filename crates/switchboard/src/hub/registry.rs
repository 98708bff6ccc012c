//! The connection registry: every local connection by id, and by user with the state the user's
//! connections share; admission against the node-wide and per-user connection limits.
//!
//! It owns the connection and user maps and their counts, and nothing else: it knows nothing of
//! rooms, the broker or other nodes. What others must learn about a user's connections (the
//! broker subscription of a user's first connection, the cluster's counts) is told to a
//! [`UserObserver`] under the user's lock, so that the calls for one user come in the order of
//! the changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use triomphe::Arc;

use super::shard::ShardedSet;
use super::{ConnHandle, UserState, Wire};
use crate::config::{Limits, RateLimit};
use crate::ids::{ConnId, UserId};
use crate::protocol::CloseCode;

/// Told about each user's connections on this node, under the user's lock.
pub(super) trait UserObserver {
    /// `user` got their first connection on this node.
    fn user_arrived(&self, user: &UserId);
    /// `user` now has `count` connections on this node (0 after the last one closed).
    fn user_connections(&self, user: &UserId, count: u32);
    /// `user`'s last connection on this node closed.
    fn user_departed(&self, user: &UserId);
}

/// Why a connection was not admitted. Each maps to a close code with the message as reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("server at capacity")]
    ServerFull,
    #[error("too many connections for this user")]
    UserFull,
    #[error("server shutting down")]
    Draining,
    /// The node is over `--max-memory` (see `hub::memory`).
    #[error("server low on memory")]
    MemoryPressure,
}

impl Refusal {
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            Self::ServerFull | Self::UserFull | Self::MemoryPressure => CloseCode::TryAgainLater,
            Self::Draining => CloseCode::GoingAway,
        }
    }
}

/// An admitted connection.
pub(super) struct Admitted {
    pub(super) handle: ConnHandle,
    /// It is the user's first connection on this node.
    pub(super) first_here: bool,
}

/// A removed connection.
pub(super) struct Removed {
    /// The state the user's connections shared.
    pub(super) state: Arc<UserState>,
    /// It was the user's last connection on this node.
    pub(super) last_here: bool,
}

/// The limits admission enforces.
struct Admission {
    max_connections: usize,
    max_per_user: usize,
    rate: Option<RateLimit>,
}

/// Connections by id and by user. Both tables hold values that carry their key (a handle its
/// id, a user's state the user's id and the user's connections), one word per entry.
pub(super) struct Registry {
    admission: Admission,
    conns: ShardedSet<ConnHandle>,
    users: ShardedSet<Arc<UserState>>,
    conn_count: AtomicUsize,
    user_count: AtomicUsize,
}

impl Registry {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            admission: Admission {
                max_connections: limits.max_connections,
                max_per_user: limits.max_connections_per_user,
                rate: limits.rate,
            },
            conns: ShardedSet::new(),
            users: ShardedSet::new(),
            conn_count: AtomicUsize::new(0),
            user_count: AtomicUsize::new(0),
        }
    }

    /// Admits a connection of `user` speaking `wire`, who has `elsewhere` connections on other nodes, at
    /// hub-clock time `now`; or refuses it at a limit.
    pub(super) fn admit(
        &self,
        user: UserId,
        wire: Wire,
        elsewhere: usize,
        now: u64,
        observer: &impl UserObserver,
    ) -> Result<Admitted, Refusal> {
        let admission = &self.admission;
        let admitted = self
            .conn_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < admission.max_connections).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(Refusal::ServerFull);
        }
        // The user's shard stays locked until the handle is in the user's list (keys are
        // SipHashed: user ids are the client's choice).
        let mut users = self.users.write(&user);
        let existing = users.get(&user).cloned();
        let here = existing
            .as_ref()
            .map_or(0, |state| state.connection_count());
        if here as usize + elsewhere >= admission.max_per_user {
            drop(users);
            self.conn_count.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::UserFull);
        }
        let state = match existing {
            Some(state) => state,
            None => {
                self.user_count.fetch_add(1, Ordering::Relaxed);
                observer.user_arrived(&user);
                let state = Arc::new(UserState::new(user, admission.rate, now));
                users.insert_new(state.clone());
                state
            }
        };
        let handle = ConnHandle::new(ConnId::next(), wire, state, now);
        let count = handle.user_state().add_connection(handle.clone());
        observer.user_connections(handle.user(), count);
        drop(users);
        self.conns.write(&handle.id()).insert_new(handle.clone());
        Ok(Admitted {
            handle,
            first_here: here == 0,
        })
    }

    /// Removes a connection; `None` if it was not registered (removal is idempotent).
    pub(super) fn remove(
        &self,
        handle: &ConnHandle,
        observer: &impl UserObserver,
    ) -> Option<Removed> {
        self.conns.write(&handle.id()).remove(&handle.id())?;
        self.conn_count.fetch_sub(1, Ordering::AcqRel);
        let user = handle.user();
        let mut users = self.users.write(user);
        let state = users.get(user)?.clone();
        let count = state.remove_connection(handle.id());
        observer.user_connections(user, count);
        if count > 0 {
            return Some(Removed {
                state,
                last_here: false,
            });
        }
        users.remove(user);
        self.user_count.fetch_sub(1, Ordering::Relaxed);
        observer.user_departed(user);
        Some(Removed {
            state,
            last_here: true,
        })
    }

    /// A connection by id.
    pub(super) fn get(&self, id: ConnId) -> Option<ConnHandle> {
        self.conns.with(&id, |handle| handle.cloned())
    }

    /// The state of a user connected to this node.
    pub(super) fn user_state(&self, user: &UserId) -> Option<Arc<UserState>> {
        self.users.with(user, |state| state.cloned())
    }

    /// A user's connections on this node.
    pub(super) fn user_handles(&self, user: &UserId) -> Vec<ConnHandle> {
        self.users.with(user, |state| {
            state.map_or_else(Vec::new, |state| state.with_connections(<[_]>::to_vec))
        })
    }

    /// How many connections `user` has on this node.
    pub(super) fn user_connection_count(&self, user: &UserId) -> usize {
        self.users.with(user, |state| {
            state.map_or(0, |s| s.connection_count() as usize)
        })
    }

    /// Offers `frame` to each of `user`'s connections with `deliver`; returns how many took it.
    pub(super) fn deliver_to_user(
        &self,
        user: &UserId,
        mut deliver: impl FnMut(&ConnHandle) -> bool,
    ) -> usize {
        self.users.with(user, |state| {
            state.map_or(0, |state| {
                state.with_connections(|conns| conns.iter().filter(|h| deliver(h)).count())
            })
        })
    }

    /// Visits every connection, one shard read lock at a time.
    pub(super) fn for_each_conn(&self, mut visit: impl FnMut(&ConnHandle)) {
        self.conns.for_each(|handle| visit(handle));
    }

    /// Visits every user with their shared state and number of connections here.
    pub(super) fn for_each_user(&self, mut visit: impl FnMut(&UserId, &Arc<UserState>, u32)) {
        self.users
            .for_each(|state| visit(state.user(), state, state.connection_count()));
    }

    /// Open connections.
    pub(super) fn connection_count(&self) -> usize {
        self.conn_count.load(Ordering::Relaxed)
    }

    /// Users with at least one connection.
    pub(super) fn user_count(&self) -> usize {
        self.user_count.load(Ordering::Relaxed)
    }
}

impl Drop for Registry {
    /// A user's state holds the handles of the user's connections, and each handle holds the
    /// state: a registry dropped with connections still in it (an embedding application that
    /// drops its hub while connections are open) breaks those cycles, so that their memory is
    /// freed.
    fn drop(&mut self) {
        self.users.for_each(|state| state.forget_connections());
    }
}
