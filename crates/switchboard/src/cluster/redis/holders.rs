//! The Redis cluster as the [`Holders`] store: one set of node ids per held thing, and per
//! node an index of the sets it is in, so that a dead node's holdings can be released without
//! a scan. Each change of a holder set is atomic (`scripts/holders.lua` for a batch of a node's
//! changes, `scripts/holders_release.lua` for a page of a release), which is what makes
//! exactly one node the first or the last.
//!
//! Keys: `PREFIX{cluster}h:r:ROOM`, `PREFIX{cluster}h:m:ROOM USER` (names hold no spaces),
//! `PREFIX{cluster}h:c:CHANNEL`, `PREFIX{cluster}h:u:USER`, and the index
//! `PREFIX{cluster}hi:NODE`. They carry no TTL: a holder leaves by its own change, by its
//! successor's release, or by the reaper's. They share the membership state's hash tag
//! (`keys.rs`): a node's batch and a page of a release span many holder sets and its index, and
//! stay one atomic script on one slot of a Redis Cluster.

use super::conn::Conn;
use super::keys::Keys;
use super::{RedisCluster, Shared};
use crate::cluster::StateError;
use crate::cluster::holders::{Held, Holders, Holding, OrphanSink};
use crate::ids::{ChannelId, MAX_NAME_CHARS, NodeId, RoomId, UserId};
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

/// The two scripts.
pub(super) struct HolderScripts {
    apply: redis::Script,
    release: redis::Script,
}

impl HolderScripts {
    pub(super) fn new() -> Self {
        Self {
            apply: redis::Script::new(include_str!("scripts/holders.lua")),
            release: redis::Script::new(include_str!("scripts/holders_release.lua")),
        }
    }
}

impl Keys {
    /// The holder set of `held`.
    fn holders(&self, held: &Held) -> String {
        let p = self.control();
        match held {
            Held::Member(room, user) => format!("{p}h:m:{room} {user}"),
            Held::Room(room) => format!("{p}h:r:{room}"),
            Held::Channel(channel) => format!("{p}h:c:{channel}"),
            Held::User(user) => format!("{p}h:u:{user}"),
        }
    }

    /// What a holder set's key names; `None` for a key this version did not write.
    fn held(&self, key: &str) -> Option<Held> {
        let rest = key.strip_prefix(&self.control())?.strip_prefix("h:")?;
        let (kind, name) = rest.split_once(':')?;
        let room = |name: &str| RoomId::parse(name, MAX_NAME_CHARS).ok();
        let user = |name: &str| UserId::parse(name, MAX_NAME_CHARS).ok();
        Some(match kind {
            "m" => {
                let (r, u) = name.split_once(' ')?;
                Held::Member(room(r)?, user(u)?)
            }
            "r" => Held::Room(room(name)?),
            "c" => Held::Channel(ChannelId::parse(name, MAX_NAME_CHARS).ok()?),
            "u" => Held::User(user(name)?),
            _ => return None,
        })
    }

    /// The index of the holder sets `node` is in.
    fn holder_index(&self, node: &NodeId) -> String {
        format!("{}hi:{node}", self.control())
    }
}

/// The holder sets one call of the release script goes through (a hint to `SSCAN`).
const RELEASE_PAGE: usize = 1000;

/// Releases everything `node` holds, a page of its holder sets per script (so that Redis
/// serves other clients between pages of a large node); returns what lost its last holder,
/// members first, then rooms, channels and users (the order of [`Held`]).
pub(super) async fn release(
    shared: &Shared,
    connection: &mut Conn,
    node: &NodeId,
) -> redis::RedisResult<Vec<Held>> {
    let mut orphaned = Vec::new();
    let mut cursor = "0".to_owned();
    loop {
        let reply: Vec<String> = shared
            .holder_scripts
            .release
            .key(shared.keys.holder_index(node))
            .arg(node.as_str())
            .arg(&cursor)
            .arg(RELEASE_PAGE)
            .invoke_async(connection)
            .await?;
        let mut reply = reply.into_iter();
        let next = reply.next().unwrap_or_else(|| "0".to_owned());
        orphaned.extend(reply.filter_map(|key| shared.keys.held(&key)));
        if next == "0" {
            break;
        }
        cursor = next;
    }
    orphaned.sort();
    Ok(orphaned)
}

/// Releases a reaped node's holdings and hands what lost its last holder to the sink. Run by
/// the one node that holds the reap lock.
pub(super) async fn release_reaped(
    shared: &Shared,
    connection: &mut Conn,
    node: &NodeId,
) -> redis::RedisResult<()> {
    let orphaned = release(shared, connection, node).await?;
    if let Some(sink) = shared.orphan_sink.get()
        && !orphaned.is_empty()
    {
        sink(orphaned);
    }
    Ok(())
}

impl Holders for RedisCluster {
    fn apply(&self, changes: Vec<Holding>) -> BoxFuture<'_, Result<Vec<bool>, StateError>> {
        async move {
            let shared = &self.shared;
            let mut connection = shared.connection().ok_or(StateError::NotConnected)?;
            let mut invocation = shared.holder_scripts.apply.prepare_invoke();
            invocation
                .key(shared.keys.holder_index(&shared.node))
                .arg(shared.node.as_str());
            for change in &changes {
                invocation
                    .key(shared.keys.holders(&change.held))
                    .arg(if change.gained { "+" } else { "-" });
            }
            let decided: Vec<u8> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(StateError::Store)?;
            Ok(decided
                .into_iter()
                .map(|first_or_last| first_or_last == 1)
                .collect())
        }
        .boxed()
    }

    fn release_own(&self) -> BoxFuture<'_, Result<Vec<Held>, StateError>> {
        async move {
            let shared = &self.shared;
            let mut connection = shared.connection().ok_or(StateError::NotConnected)?;
            release(shared, &mut connection, &shared.node)
                .await
                .map_err(StateError::Store)
        }
        .boxed()
    }

    fn set_orphan_sink(&self, sink: OrphanSink) {
        let _ = self.shared.orphan_sink.set(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_key_names_what_it_holds() {
        let keys = Keys::new("sb:", true);
        let room = RoomId::from_trusted("lobby/1");
        let user = UserId::from_trusted("alice@example.com");
        for held in [
            Held::Member(room.clone(), user.clone()),
            Held::Room(room),
            Held::Channel(ChannelId::from_trusted("news:eu")),
            Held::User(user),
        ] {
            assert_eq!(keys.held(&keys.holders(&held)), Some(held));
        }
        assert_eq!(keys.held("sb:h:q:x"), None);
        assert_eq!(keys.held("other:h:r:x"), None);
    }
}
