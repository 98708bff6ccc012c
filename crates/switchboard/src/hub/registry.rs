//! The connection registry ("pool"): connections by id, by user, and the whole node; admission
//! against the node-wide and per-user connection limits.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{ConnHandle, ConnInfo, Counters, Hub, UserState};
use crate::broker::Topic;
use crate::cluster::Event;
use crate::ids::{ConnId, UserId};
use crate::protocol::{CloseCode, now_ms};

/// A user's connections on this node and the state they share.
pub(crate) struct UserEntry {
    pub(super) conns: Vec<ConnHandle>,
    pub(super) state: Arc<UserState>,
}

/// Why a connection was not admitted. Each maps to close 1013 with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("server at capacity")]
    ServerFull,
    #[error("too many connections for this user")]
    UserFull,
    #[error("server shutting down")]
    Draining,
}

impl Refusal {
    pub(crate) fn close_code(self) -> CloseCode {
        match self {
            Self::ServerFull | Self::UserFull => CloseCode::TryAgainLater,
            Self::Draining => CloseCode::GoingAway,
        }
    }
}

impl Hub {
    /// Admits a new connection of `user`, or refuses it at a limit. A user's first connection
    /// makes them online.
    pub(crate) fn register(&self, user: UserId) -> Result<ConnHandle, Refusal> {
        let inner = &self.inner;
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let limits = &inner.config.limits;
        let admitted = inner
            .conn_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limits.max_connections).then_some(n + 1)
            });
        if admitted.is_err() {
            Counters::add(&inner.counters.connections_refused, 1);
            return Err(Refusal::ServerFull);
        }
        let now = self.now_ms();
        let elsewhere = self
            .with_replica(|replica| replica.user_connections(&user) as usize)
            .unwrap_or(0);
        let (handle, first, count) = {
            let mut users = inner.users.write(&user);
            let first = !users.contains_key(&user);
            let entry = users.entry(user.clone()).or_insert_with(|| {
                inner.user_count.fetch_add(1, Ordering::Relaxed);
                inner.broker.subscribe(&Topic::User(user.clone()));
                UserEntry {
                    conns: Vec::new(),
                    state: Arc::new(UserState::new(limits.rate, now)),
                }
            });
            if entry.conns.len() + elsewhere >= limits.max_connections_per_user {
                // The entry existed (it has connections), so nothing to undo but the count.
                drop(users);
                inner.conn_count.fetch_sub(1, Ordering::AcqRel);
                Counters::add(&inner.counters.connections_refused, 1);
                return Err(Refusal::UserFull);
            }
            let state = entry.state.clone();
            let handle = ConnHandle::new(ConnId::next(), user.clone(), state, now);
            // Most users hold one connection: no spare capacity.
            entry.conns.reserve_exact(1);
            entry.conns.push(handle.clone());
            (handle, first, entry.conns.len() as u32)
        };
        inner
            .conns
            .write(&handle.id())
            .insert(handle.id(), handle.clone());
        Counters::add(&inner.counters.connections_opened, 1);
        self.announce(|| Event::User {
            user: user.clone(),
            count,
        });
        if first && elsewhere == 0 {
            inner.offline.write(&user).remove(&user);
            let presence = handle.user_state().presence.lock().view(&user, now_ms());
            self.presence_changed(handle.user_state(), presence);
        }
        Ok(handle)
    }

    /// Removes a connection from the registry. Idempotent. When it was the user's last one
    /// the user goes offline: their rooms and watchers get an `offline` presence. The caller
    /// leaves the connection's rooms afterwards, so `user_left` follows the presence frame.
    pub(crate) fn unregister(&self, handle: &ConnHandle) {
        let inner = &self.inner;
        if inner
            .conns
            .write(&handle.id())
            .remove(&handle.id())
            .is_none()
        {
            return;
        }
        inner.conn_count.fetch_sub(1, Ordering::AcqRel);
        let user = handle.user();
        let mut users = inner.users.write(user);
        let Some(entry) = users.get_mut(user) else {
            return;
        };
        entry.conns.retain(|c| c.id() != handle.id());
        entry.conns.shrink_to_fit();
        let count = entry.conns.len() as u32;
        self.announce(|| Event::User {
            user: user.clone(),
            count,
        });
        if count > 0 {
            return;
        }
        let Some(entry) = users.remove(user) else {
            return;
        };
        drop(users);
        inner.user_count.fetch_sub(1, Ordering::Relaxed);
        inner.broker.unsubscribe(&Topic::User(user.clone()));
        if self.user_connection_count(user) > 0 {
            // Still connected to another node: no offline presence.
            return;
        }
        let presence = entry.state.presence.lock().disconnected(user, now_ms());
        inner
            .offline
            .write(user)
            .insert(user.clone(), presence.clone());
        self.presence_changed(&entry.state, presence);
    }

    pub(crate) fn deliver_to_user(&self, user: &UserId, frame: &Bytes) -> usize {
        let users = self.inner.users.read(user);
        let Some(entry) = users.get(user) else {
            return 0;
        };
        entry
            .conns
            .iter()
            .filter(|handle| self.deliver(handle, frame))
            .count()
    }

    pub(crate) fn deliver_to_all(&self, frame: &Bytes, except: Option<ConnId>) -> usize {
        let mut delivered = 0;
        self.inner.conns.for_each(|id, handle| {
            if Some(*id) != except && self.deliver(handle, frame) {
                delivered += 1;
            }
        });
        delivered
    }

    /// A connection on this node, by id.
    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        let now = self.now_ms();
        self.inner.conns.read(&id).get(&id).map(|h| h.info(now))
    }

    /// A user's connections on this node.
    pub fn user_connections(&self, user: &UserId) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let users = self.inner.users.read(user);
        users
            .get(user)
            .map(|entry| entry.conns.iter().map(|h| h.info(now)).collect())
            .unwrap_or_default()
    }

    /// Every connection on this node.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let mut all = Vec::new();
        self.inner.conns.for_each(|_, h| all.push(h.info(now)));
        all
    }

    /// Users with at least one connection on this node.
    pub fn online_users(&self) -> Vec<UserId> {
        let mut all = Vec::new();
        self.inner.users.for_each(|user, _| all.push(user.clone()));
        all
    }

    /// Closes every connection of `user` on this node with `code` and `reason`. Returns how
    /// many were closed.
    pub fn disconnect_user(
        &self,
        user: &UserId,
        code: CloseCode,
        reason: impl Into<std::borrow::Cow<'static, str>>,
    ) -> usize {
        let handles: Vec<ConnHandle> = self
            .inner
            .users
            .read(user)
            .get(user)
            .map(|entry| entry.conns.clone())
            .unwrap_or_default();
        let request = super::CloseRequest {
            code,
            reason: reason.into(),
            graceful: true,
        };
        let now = self.now_ms();
        handles
            .iter()
            .filter(|h| h.close(request.clone(), now))
            .count()
    }
}
