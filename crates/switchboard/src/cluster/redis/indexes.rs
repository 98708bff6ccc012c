//! What the state store derives from the nodes' facts (the `u:`, `m:` and `c:` fields of their
//! state hashes, `keys.rs`), so that a question about the whole cluster is one read, not a scan
//! of every node's state (issue 15: a node asks the store for what its own connections do not
//! need it to keep):
//!
//! - the **room member index**: per room, a hash `PREFIX{cluster}rm:ROOM` whose fields are
//!   `NODE\nUSER` and whose values are that node's connections of the user in the room, read by
//!   [`load`];
//! - the **cluster counts**: each room's distinct users (a sorted set, so the largest rooms are
//!   one range), each user's connections, each channel's subscribed nodes, and the connections
//!   over every node, read by [`counts`]. A user in a room on two nodes counts once.
//!
//! `scripts/facts.lua` holds the rules, and is put before each script that changes facts: a
//! fact goes from the value the node's state hash holds to its new one, and everything derived
//! from it follows in the same step. They are written where the state hash is, in the same
//! transaction and before the hash's own writes, so the two never disagree: a run's changes
//! ([`add_changes`], from `announcements.rs`), a rewrite's difference (the same, from
//! `rewrite.rs`), and the removal of a node that leaves or is reaped ([`add_drop`], after
//! [`drop_pages`] for a reaped one, whose state may be large). The state hashes carry no TTL,
//! so what a node counted is taken back when it is reaped, however late (a node that starts
//! reaps the dead ones left in the node set). The keys share the membership state's hash tag,
//! so each transaction and script stays on one slot of a Redis Cluster.

use std::sync::LazyLock;

use super::conn::Conn;
use super::keys::{self, Keys, parse_version};
use crate::cluster::{ClusterCounts, RoomLoad};
use crate::ids::{MAX_NAME_CHARS, NodeId, RoomId, UserId};

/// The rules every script that changes facts starts with.
macro_rules! with_facts {
    ($body:literal) => {
        concat!(include_str!("scripts/facts.lua"), include_str!($body))
    };
}

/// The scripts that run outside transactions (cached by Redis, called by their hash).
pub(super) struct IndexScripts {
    load: redis::Script,
    drop_page: redis::Script,
}

impl IndexScripts {
    pub(super) fn new() -> Self {
        Self {
            load: redis::Script::new(with_facts!("scripts/room_members.lua")),
            drop_page: redis::Script::new(with_facts!("scripts/drop_facts_page.lua")),
        }
    }
}

/// The fields of a dead node's state one page of [`drop_pages`] removes (a hint to `HSCAN`).
const DROP_PAGE: usize = 1000;

/// Removes a dead node's state and what it counted one page at a time, each page its own
/// script, so that Redis serves other clients between them: one script over a node of 50 000
/// users took ≈ 0.5 s. Whatever the scan did not see is left to [`add_drop`], which follows.
pub(super) async fn drop_pages(
    scripts: &IndexScripts,
    keys: &Keys,
    connection: &mut Conn,
    node: &NodeId,
) -> redis::RedisResult<()> {
    let mut cursor = 0_u64;
    loop {
        cursor = scripts
            .drop_page
            .key(keys.state(node))
            .arg(keys.control())
            .arg(node.as_str())
            .arg(cursor)
            .arg(DROP_PAGE)
            .invoke_async(connection)
            .await?;
        if cursor == 0 {
            return Ok(());
        }
    }
}

/// Changing facts runs inside transactions, where a script not yet cached could not be loaded
/// first: these are sent whole, without their comments (Redis hashes the text of every `EVAL`).
static SET_FACTS: LazyLock<String> =
    LazyLock::new(|| without_comments(with_facts!("scripts/set_facts.lua")));
static DROP_FACTS: LazyLock<String> =
    LazyLock::new(|| without_comments(with_facts!("scripts/drop_facts.lua")));

/// `script` without its comment lines and blank lines.
fn without_comments(script: &str) -> String {
    script
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with("--")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Keys {
    /// The index of `room`'s members.
    pub(super) fn room_index(&self, room: &RoomId) -> String {
        format!("{}rm:{room}", self.control())
    }

    /// The rooms by distinct users.
    fn rooms(&self) -> String {
        format!("{}rooms", self.control())
    }
}

/// Adds to `pipe` the changes of `node`'s facts among `set` (fields with their new values) and
/// `deleted`, as a script that reads each one's old value from the state hash: part of a
/// transaction, before the hash's own writes.
pub(super) fn add_changes<'a>(
    keys: &Keys,
    pipe: &mut redis::Pipeline,
    node: &NodeId,
    set: impl Iterator<Item = &'a (String, String)>,
    deleted: &[String],
) {
    let mut facts = set
        .filter(|(field, _)| keys::is_fact(field))
        .map(|(field, value)| (field.as_str(), value.as_str()))
        .chain(
            deleted
                .iter()
                .filter(|field| keys::is_fact(field))
                .map(|field| (field.as_str(), "0")),
        )
        .peekable();
    if facts.peek().is_none() {
        return;
    }
    let mut eval = redis::cmd("EVAL");
    eval.arg(SET_FACTS.as_str())
        .arg(1)
        .arg(keys.state(node))
        .arg(keys.control())
        .arg(node.as_str());
    for (field, value) in facts {
        eval.arg(field).arg(value);
    }
    pipe.add_command(eval).ignore();
}

/// Adds the removal of `node`'s state to `pipe`: what its facts counted, then its state hash.
pub(super) fn add_drop(keys: &Keys, pipe: &mut redis::Pipeline, node: &NodeId) {
    pipe.cmd("EVAL")
        .arg(DROP_FACTS.as_str())
        .arg(1)
        .arg(keys.state(node))
        .arg(keys.control())
        .arg(node.as_str())
        .ignore();
}

/// Reads the cluster counts, with the `top` rooms with the most distinct users, in one atomic
/// step.
pub(super) async fn counts(
    keys: &Keys,
    connection: &mut Conn,
    top: usize,
) -> redis::RedisResult<ClusterCounts> {
    let control = keys.control();
    // Ranks `start..=stop`; none when `top` is 0 (a stop of -1 would mean the last).
    let (start, stop) = match isize::try_from(top) {
        Ok(0) => (1, 0),
        Ok(top) => (0, top - 1),
        Err(_) => (0, -1),
    };
    let (connections, rooms, users, channels, largest): (
        Option<i64>,
        usize,
        usize,
        usize,
        Vec<(String, f64)>,
    ) = redis::pipe()
        .atomic()
        .hget(format!("{control}counts"), "connections")
        .zcard(keys.rooms())
        .hlen(format!("{control}users"))
        .hlen(format!("{control}channels"))
        .zrange_withscores(keys.rooms(), start, stop)
        .query_async(connection)
        .await?;
    Ok(ClusterCounts {
        connections: connections.map_or(0, |n| u64::try_from(n).unwrap_or(0)),
        rooms,
        users,
        channels,
        top_rooms: parse_top(largest),
    })
}

/// Reads the largest rooms, scored minus their distinct users; names that do not parse are
/// skipped.
fn parse_top(largest: Vec<(String, f64)>) -> Vec<(RoomId, usize)> {
    largest
        .into_iter()
        .filter_map(|(room, score)| {
            let room = RoomId::parse(&room, MAX_NAME_CHARS).ok()?;
            Some((room, (-score) as usize))
        })
        .collect()
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
        .arg(keys.control())
        .arg(room.as_str())
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
#[path = "indexes_tests.rs"]
mod tests;
