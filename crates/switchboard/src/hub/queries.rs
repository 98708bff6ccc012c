//! The library's read API over the hub's parts: connections, users and rooms, on this node and
//! (where it says so) over the cluster; and closing a user's connections.

use std::borrow::Cow;

use super::{CloseRequest, ConnInfo, Hub, RoomMembers, RoomSummary};
use crate::cluster::StateError;
use crate::ids::{ConnId, RoomId, UserId};
use crate::protocol::CloseCode;

impl Hub {
    /// A connection on this node, by id.
    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        let now = self.now_ms();
        self.inner.registry.get(id).map(|handle| handle.info(now))
    }

    /// A user's connections on this node.
    pub fn user_connections(&self, user: &UserId) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let handles = self.inner.registry.user_handles(user);
        handles.iter().map(|handle| handle.info(now)).collect()
    }

    /// Every connection on this node.
    pub fn connections(&self) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let mut all = Vec::new();
        self.inner
            .registry
            .for_each_conn(|handle| all.push(handle.info(now)));
        all
    }

    /// `room`'s name as the room holds it while it has a member here (else a copy of
    /// `room`): a connection keeps this one in its list of rooms, sharing it with the others.
    pub(crate) fn shared_room_name(&self, room: &RoomId) -> RoomId {
        self.inner.rooms.shared_name(room)
    }

    /// Users with at least one connection on this node.
    pub fn online_users(&self) -> Vec<UserId> {
        let mut all = Vec::new();
        self.inner
            .registry
            .for_each_user(|user, _, _| all.push(user.clone()));
        all
    }

    /// How many connections `user` has, on this node and (in a cluster) on the others.
    pub fn user_connection_count(&self, user: &UserId) -> usize {
        let inner = &self.inner;
        inner.registry.user_connection_count(user) + inner.cluster.user_connections(user)
    }

    /// Closes every connection of `user` on this node with `code` and `reason`. Returns how
    /// many were closed.
    pub fn disconnect_user(
        &self,
        user: &UserId,
        code: CloseCode,
        reason: impl Into<Cow<'static, str>>,
    ) -> usize {
        let request = CloseRequest {
            code,
            reason: reason.into(),
            graceful: true,
        };
        let now = self.now_ms();
        let handles = self.inner.registry.user_handles(user);
        handles
            .iter()
            .filter(|handle| handle.close(request.clone(), now))
            .count()
    }

    /// Every room on this node with its member counts.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        self.inner.rooms.summaries()
    }

    /// The `n` rooms on this node with the most members (distinct users), most first; rooms
    /// with as many members are ordered by name. One pass over the rooms, one shard read lock
    /// at a time; only rooms that enter the running top `n` are cloned.
    pub fn top_rooms(&self, n: usize) -> Vec<RoomMembers> {
        self.inner.rooms.top(n)
    }

    /// The distinct users in `room`, on this node and (in a cluster) on every other node as this
    /// node knows them: from its replica, which the other nodes' announcements keep current.
    pub fn room_members(&self, room: &RoomId) -> Vec<UserId> {
        self.member_list(room, usize::MAX).users
    }

    /// The distinct users in `room` across the cluster, read from the state store: exact
    /// whatever this node keeps of the others (a lone node answers from its own rooms, without
    /// waiting). [`Hub::room_members`] answers at once from this node's view of the others, which
    /// lags the store by the time announcements take to arrive.
    pub async fn cluster_room_members(&self, room: &RoomId) -> Result<Vec<UserId>, StateError> {
        let inner = &self.inner;
        let others = inner
            .cluster
            .room_users_in_store(room, self.node_id())
            .await?;
        Ok(inner.rooms.member_list(room, others, usize::MAX).users)
    }

    /// The connections in `room` on this node.
    pub fn room_connections(&self, room: &RoomId) -> Vec<ConnInfo> {
        let now = self.now_ms();
        let handles = self.inner.rooms.connections(room);
        handles.iter().map(|handle| handle.info(now)).collect()
    }
}
