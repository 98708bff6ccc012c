//! A node's rewrite of its own state (after a reconnect, or a write that failed): the store is
//! made to hold the node's snapshot, and the others are told to reload it.
//!
//! The store usually still holds most of it (Redis came back with its data, or only one write
//! failed), so the rewrite reads what the store holds of the node (`HSCAN`, a page at a time)
//! and writes only the difference. The difference goes in transactions of at most
//! [`CHUNK_FIELDS`] fields each, the facts' script first (`indexes.rs`), so that Redis serves
//! other clients between them: at 3.8 µs of Redis time per fact, one transaction of a node with
//! 50 000 users (a million connections on 20 nodes) held Redis for ≈ 0.9 s, and every node
//! rewrites after an outage. A reader between two transactions sees some of the rewrite and
//! the node's old version; the `Reload` that ends the rewrite, with the new version, makes
//! every replica read the state again. Each field's facts follow it in its own transaction,
//! so the counts always agree with the state hashes. When there is no difference (a blip: the
//! node's connections were cut and Redis kept its data) the rewrite writes nothing and
//! publishes no `Reload`, so that the other nodes do not all read every node's whole state.

use std::collections::HashMap;

use super::announcements::{self, FieldChanges};
use super::conn::Conn;
use super::keys::{self, Keys};
use super::{Event, Shared, indexes, tasks};
use crate::ids::NodeId;

/// Most fields one transaction of a rewrite changes.
pub(super) const CHUNK_FIELDS: usize = 1000;

/// The fields of a node's state hash read per `HSCAN` page (a hint to Redis).
const SCAN_PAGE: usize = 1000;

/// Rewrites this node's state: registers it, writes the difference between what the store
/// holds and the node's snapshot, then its version and a `Reload`; with no difference (and a
/// version stored) nothing more. On a fresh connection the scripts are loaded first, as before
/// any write.
pub(super) async fn run(
    shared: &Shared,
    connection: &mut Conn,
    fresh: bool,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    tasks::register(shared, &mut pipe);
    pipe.query_async::<()>(connection).await?;
    if fresh {
        shared.scripts.load(connection).await?;
    }
    let Some(sink) = shared.membership_sink() else {
        return Ok(());
    };
    let mut held = read_state(shared, connection).await?;
    let stored_version = held.remove(keys::VERSION_FIELD);
    let snapshot = sink.snapshot();
    let changes = difference(held, keys::snapshot_fields(&snapshot));
    if changes == FieldChanges::default() && stored_version.is_some() {
        // Every change reached the store, and was published with it: the others' replicas
        // hold it (those that missed a publication compare versions when they subscribe
        // again, `liveness::resync_peers`), so nothing makes them read the state again.
        return Ok(());
    }
    let mut pipe = redis::pipe();
    add_chunks(
        &shared.keys,
        &mut pipe,
        &shared.node,
        &changes,
        CHUNK_FIELDS,
    );
    let version = shared.next_version();
    pipe.cmd("MULTI")
        .ignore()
        .hset(
            shared.keys.state(&shared.node),
            keys::VERSION_FIELD,
            keys::version_value(version),
        )
        .ignore();
    announcements::publish(shared, &mut pipe, vec![Event::Reload], Some(version));
    pipe.cmd("EXEC").ignore();
    pipe.query_async::<()>(connection).await
}

/// Every field of this node's state hash, read a page at a time.
async fn read_state(
    shared: &Shared,
    connection: &mut Conn,
) -> redis::RedisResult<HashMap<String, String>> {
    let state = shared.keys.state(&shared.node);
    let mut held = HashMap::new();
    let mut cursor = 0_u64;
    loop {
        let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&state)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_PAGE)
            .query_async(connection)
            .await?;
        held.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(held)
}

/// What turns a state hash holding `held` into one holding `wanted` (the version aside):
/// the fields to set (absent, or holding a value that says something else: `keys::same_value`)
/// and those to delete.
pub(super) fn difference(
    mut held: HashMap<String, String>,
    wanted: Vec<(String, String)>,
) -> FieldChanges {
    let mut changes = FieldChanges::default();
    for (field, value) in wanted {
        let stored = held.remove(&field);
        if !stored.is_some_and(|stored| keys::same_value(&field, &stored, &value)) {
            changes.set.push((field, value));
        }
    }
    changes.delete.extend(held.into_keys());
    changes
}

/// Adds `changes` to `pipe` as transactions of at most `chunk_fields` fields each
/// ([`CHUNK_FIELDS`] but in tests): the facts' script, then the hash's writes.
pub(super) fn add_chunks(
    keys: &Keys,
    pipe: &mut redis::Pipeline,
    node: &NodeId,
    changes: &FieldChanges,
    chunk_fields: usize,
) {
    let state = keys.state(node);
    for chunk in changes.set.chunks(chunk_fields) {
        pipe.cmd("MULTI").ignore();
        indexes::add_changes(keys, pipe, node, chunk.iter(), &[]);
        pipe.hset_multiple(&state, chunk).ignore();
        pipe.cmd("EXEC").ignore();
    }
    for chunk in changes.delete.chunks(chunk_fields) {
        pipe.cmd("MULTI").ignore();
        indexes::add_changes(keys, pipe, node, [].iter(), chunk);
        pipe.hdel(&state, chunk).ignore();
        pipe.cmd("EXEC").ignore();
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
