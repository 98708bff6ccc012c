//! The state store's index of room members: per room, one hash `PREFIX{cluster}rm:ROOM` whose
//! fields are `NODE\nUSER` and whose values are that node's connections of the user in the
//! room. These are the counts of the member fields of the nodes' state hashes (`keys.rs`),
//! kept again per room so that one room's members across the cluster are one read, not a scan
//! of every node's state (issue 15: a node asks the store for what its own connections do not
//! need it to keep).
//!
//! Written where the state hash is, in the same transaction, so the two never disagree: a run's
//! member changes ([`add_changes`], from `announcements.rs`), a rewrite's whole snapshot
//! ([`add_snapshot`], after [`add_drop`]), and the removal of a node that leaves or is reaped
//! ([`add_drop`]: `scripts/drop_node.lua` finds the node's entries through the member fields
//! of its state hash, then deletes the hash). The keys carry no TTL, as a room spans nodes: a
//! [`load`] removes the entries of a node whose state hash is gone (it expired with nobody left
//! to reap it). They share the membership state's hash tag, so each transaction and script
//! stays on one slot of a Redis Cluster.

use std::collections::HashMap;

use super::conn::Conn;
use super::keys::{Keys, parse_version};
use crate::cluster::{Event, RoomLoad};
use crate::ids::{MAX_NAME_CHARS, NodeId, RoomId, UserId};

/// The scripts of the index.
pub(super) struct IndexScripts {
    load: redis::Script,
}

impl IndexScripts {
    pub(super) fn new() -> Self {
        Self {
            load: redis::Script::new(include_str!("scripts/room_members.lua")),
        }
    }
}

/// Removing a node's state runs rarely (a departure, a reap, a rewrite) and inside
/// transactions, where a script not yet cached could not be loaded first: it is sent whole.
const DROP_NODE: &str = include_str!("scripts/drop_node.lua");

impl Keys {
    /// The prefix of the index keys, followed by the room's name.
    fn room_index_prefix(&self) -> String {
        format!("{}rm:", self.control())
    }

    /// The index of `room`'s members.
    pub(super) fn room_index(&self, room: &RoomId) -> String {
        format!("{}{room}", self.room_index_prefix())
    }

    /// The prefix of the state hashes, followed by a node id.
    fn state_prefix(&self) -> String {
        format!("{}state:", self.control())
    }
}

/// An index field: the node and the user. Names hold no newline (`ids.rs`).
fn field(node: &NodeId, user: &UserId) -> String {
    format!("{node}\n{user}")
}

/// Adds the member changes among `events` of `node` to `pipe`, each member at its last count
/// in the run (0: removed). Part of the run's transaction.
pub(super) fn add_changes(
    keys: &Keys,
    pipe: &mut redis::Pipeline,
    node: &NodeId,
    events: &[Event],
) {
    let members = events.iter().filter_map(|event| match event {
        Event::Member { room, user, count } => Some((room, user, *count)),
        _ => None,
    });
    add_members(keys, pipe, node, members);
}

/// Adds the members of a rewritten snapshot of `node` to `pipe`, after [`add_drop`] removed
/// what the index held of it.
pub(super) fn add_snapshot<'a>(
    keys: &Keys,
    pipe: &mut redis::Pipeline,
    node: &NodeId,
    members: impl Iterator<Item = (&'a (RoomId, UserId), &'a u32)>,
) {
    let members = members.map(|((room, user), count)| (room, user, *count));
    add_members(keys, pipe, node, members);
}

/// Per room, one `HSET` of the members with connections and one `HDEL` of those without, each
/// member at its last count in `members`.
fn add_members<'a>(
    keys: &Keys,
    pipe: &mut redis::Pipeline,
    node: &NodeId,
    members: impl Iterator<Item = (&'a RoomId, &'a UserId, u32)>,
) {
    let mut rooms: HashMap<&RoomId, HashMap<&UserId, u32>> = HashMap::new();
    for (room, user, count) in members {
        rooms.entry(room).or_default().insert(user, count);
    }
    for (room, users) in rooms {
        let key = keys.room_index(room);
        let (mut set, mut gone) = (Vec::new(), Vec::new());
        for (user, count) in users {
            if count > 0 {
                set.push((field(node, user), count));
            } else {
                gone.push(field(node, user));
            }
        }
        if !set.is_empty() {
            pipe.hset_multiple(&key, &set).ignore();
        }
        if !gone.is_empty() {
            pipe.hdel(&key, gone).ignore();
        }
    }
}

/// Adds the removal of `node`'s state to `pipe`: its index entries, then its state hash.
pub(super) fn add_drop(keys: &Keys, pipe: &mut redis::Pipeline, node: &NodeId) {
    pipe.cmd("EVAL")
        .arg(DROP_NODE)
        .arg(1)
        .arg(keys.state(node))
        .arg(keys.room_index_prefix())
        .arg(node.as_str())
        .ignore();
}

/// Reads `room`'s members on every node, with each node's version, in one atomic step.
pub(super) async fn load(
    scripts: &IndexScripts,
    keys: &Keys,
    connection: &mut Conn,
    room: &RoomId,
) -> redis::RedisResult<RoomLoad> {
    let (versions, members): (Vec<String>, Vec<String>) = scripts
        .load
        .key(keys.room_index(room))
        .arg(keys.state_prefix())
        .invoke_async(connection)
        .await?;
    Ok(parse_load(&versions, &members))
}

/// Reads the load script's answer; entries that do not parse are skipped.
fn parse_load(versions: &[String], members: &[String]) -> RoomLoad {
    let node = |name: &str| NodeId::parse(name, MAX_NAME_CHARS).ok();
    RoomLoad {
        versions: versions
            .chunks_exact(2)
            .filter_map(|pair| Some((node(&pair[0])?, parse_version(&pair[1])?)))
            .collect(),
        members: members
            .chunks_exact(3)
            .filter_map(|entry| {
                let user = UserId::parse(&entry[1], MAX_NAME_CHARS).ok()?;
                Some((node(&entry[0])?, user, entry[2].parse().ok()?))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Version;

    #[test]
    fn a_load_reads_versions_and_members_and_skips_what_does_not_parse() {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let load = parse_load(
            &strings(&["n1", "7:3", "n2", "garbage"]),
            &strings(&["n1", "alice", "2", "n1", "bob", "x", "n{", "carol", "1"]),
        );
        assert_eq!(
            load.versions,
            vec![(
                NodeId::from_trusted("n1"),
                Version {
                    instance: 7,
                    seq: 3
                }
            )]
        );
        assert_eq!(
            load.members,
            vec![(NodeId::from_trusted("n1"), UserId::from_trusted("alice"), 2)]
        );
    }
}
