//! The liveness task of a Redis-backed node: it refreshes the node's liveness key, reaps the
//! nodes whose key expired, and keeps the replica holding exactly the live nodes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::announcements;
use super::keys;
use super::subscriber::load_snapshot;
use super::tasks::register;
use super::{Event, Shared, Version};
use crate::ids::NodeId;

/// Refreshes this node's liveness, reaps dead nodes and reconciles the replica, every third of
/// the node TTL.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.ttl / 3);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let Some(mut connection) = shared.connection() else {
            continue;
        };
        let registration = shared.registration.lock().await;
        if shared.departed.load(Ordering::Acquire) {
            // The node left the cluster: refreshing would bring it back.
            return;
        }
        let mut pipe = redis::pipe();
        register(&shared, &mut pipe);
        let heartbeat = pipe.query_async::<()>(&mut connection).await;
        drop(registration);
        if heartbeat.is_ok() {
            let _ = refresh_peers(&shared, &mut connection).await;
        }
    }
}

/// Reads which nodes are alive; reaps the dead; makes the replica hold exactly the live ones.
pub(super) async fn refresh_peers(
    shared: &Shared,
    connection: &mut super::conn::Conn,
) -> redis::RedisResult<()> {
    let keys = &shared.keys;
    let members: Vec<String> = connection.smembers(keys.nodes()).await?;
    let others: Vec<NodeId> = members
        .iter()
        .filter(|node| node.as_str() != shared.node.as_str())
        .map(|node| NodeId::from_trusted(node.as_str()))
        .collect();
    let alive: Vec<Option<String>> = if others.is_empty() {
        Vec::new()
    } else {
        redis::cmd("MGET")
            .arg(
                others
                    .iter()
                    .map(|node| keys.alive(node))
                    .collect::<Vec<_>>(),
            )
            .query_async(connection)
            .await?
    };
    let mut live = HashSet::new();
    let mut stats = Vec::new();
    for (node, value) in others.iter().zip(alive) {
        match value {
            Some(value) => {
                stats.push(serde_json::from_str(&value).unwrap_or(serde_json::Value::Null));
                live.insert(node.clone());
            }
            None => reap(shared, connection, node).await?,
        }
    }
    *shared.peer_stats.lock() = stats;
    let known: HashSet<NodeId> = shared.replica.read().nodes().cloned().collect();
    for node in known.difference(&live) {
        // Reaped by another node while we were not listening.
        let changes = shared.replica.write().replace(node, None);
        shared.announce_changes(changes);
    }
    for node in live.difference(&known) {
        let snapshot = load_snapshot(keys, connection, node).await?;
        let changes = shared.replica.write().replace(node, Some(snapshot));
        shared.announce_changes(changes);
    }
    Ok(())
}

/// After this node subscribed again: it may have missed the others' announcements while it
/// was not subscribed (its subscription alone may have been cut), and a node that rewrote its
/// state meanwhile published its `Reload` then. Refreshes the node set as [`refresh_peers`]
/// does, then reloads each known node whose stored version is not the one the replica holds
/// (the others cost one `HGET` each). A reload the replica already covers changes nothing.
pub(super) async fn resync_peers(
    shared: &Shared,
    connection: &mut super::conn::Conn,
) -> redis::RedisResult<()> {
    refresh_peers(shared, connection).await?;
    let held: Vec<(NodeId, Option<Version>)> = {
        let replica = shared.replica.read();
        (replica.nodes())
            .map(|node| (node.clone(), replica.version(node)))
            .collect()
    };
    if held.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (node, _) in &held {
        pipe.hget(shared.keys.state(node), keys::VERSION_FIELD);
    }
    let stored: Vec<Option<String>> = pipe.query_async(connection).await?;
    for ((node, version), stored) in held.into_iter().zip(stored) {
        if stored.as_deref().and_then(keys::parse_version) == version {
            continue;
        }
        let snapshot = load_snapshot(&shared.keys, connection, &node).await?;
        let changes = shared.replica.write().replace(&node, Some(snapshot));
        shared.announce_changes(changes);
    }
    Ok(())
}

/// Removes a node whose liveness key expired: one node (holding the reap lock) deletes its
/// state and tells the others; every node drops it from its replica.
async fn reap(
    shared: &Shared,
    connection: &mut super::conn::Conn,
    node: &NodeId,
) -> redis::RedisResult<()> {
    let keys = &shared.keys;
    let locked: Option<String> = redis::cmd("SET")
        .arg(keys.reap(node))
        .arg(shared.node.as_str())
        .arg("NX")
        .arg("PX")
        .arg(shared.ttl.as_millis() as u64)
        .query_async(connection)
        .await?;
    if locked.is_some() {
        tracing::warn!(node = %node, "a node stopped refreshing its liveness: reaping it");
        super::holders::release_reaped(shared, connection, node).await?;
        super::indexes::drop_pages(&shared.index_scripts, keys, connection, node).await?;
        let mut pipe = redis::pipe();
        super::indexes::add_drop(keys, &mut pipe, node);
        pipe.srem(keys.nodes(), node.as_str()).ignore();
        // Unversioned: the version of this node's announcements is its publisher's.
        announcements::publish(
            shared,
            &mut pipe,
            vec![Event::Dead { node: node.clone() }],
            None,
        );
        pipe.query_async::<()>(connection).await?;
    }
    let changes = shared.replica.write().replace(node, None);
    shared.announce_changes(changes);
    Ok(())
}
