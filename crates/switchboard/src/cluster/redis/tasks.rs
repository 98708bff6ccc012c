//! The three tasks of a Redis-backed node: the publisher (one connection, pipelined writes), the
//! subscriber (one pub/sub connection) and liveness (heartbeat, reaping dead nodes, refreshing
//! the replica). Each ends when the cancellation token fires.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::{self, Keys};
use super::{Announcement, Event, Outgoing, Shared, SubscriptionChange, Write, streams};
use crate::broker::Envelope;
use crate::ids::NodeId;
use crate::presence::Status;

/// Most queued items written in one pipeline.
const BATCH: usize = 512;
/// Bounds of the reconnect backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Connecting and answering time limits, so an unreachable Redis fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Exponential backoff with jitter.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    pub(super) async fn wait(&mut self, cancel: &CancellationToken) {
        let jitter = self.0.mul_f64(fastrand::f64() * 0.5);
        let delay = self.0 + jitter;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// A connection's health, logged once per change rather than once per failure.
pub(super) struct Link {
    state: AtomicU8,
    what: &'static str,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Link {
    pub(super) const fn new(what: &'static str) -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
            what,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    /// Whether the last attempt failed (not merely: no attempt yet).
    pub(super) fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) == DOWN
    }

    /// Marks the link up; returns whether that was news worth a log line.
    fn up(&self) -> bool {
        let recovered = self.state.swap(UP, Ordering::AcqRel) == DOWN;
        if recovered {
            tracing::info!(connection = self.what, "Redis reachable again");
        }
        recovered
    }

    /// Marks the link down; logs (and returns true) only on the first failure of an outage.
    fn down(&self, error: &dyn std::fmt::Display) -> bool {
        let news = self.state.swap(DOWN, Ordering::AcqRel) != DOWN;
        if news {
            tracing::warn!(
                connection = self.what,
                %error,
                "Redis unreachable: serving local traffic only, retrying with backoff"
            );
        }
        news
    }
}

/// Writes publications, announcements and state rewrites, in order, pipelined.
pub(super) async fn publisher(
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Outgoing>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut backoff = Backoff::new();
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => return,
            n = receiver.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let fresh = shared.connection().is_none();
        let Some(mut connection) = publishing_connection(&shared).await else {
            // At-most-once across outages: what was queued while Redis is away is dropped.
            shared
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.drain(..).for_each(Outgoing::fail);
            backoff.wait(&cancel).await;
            continue;
        };
        let mut pipe = redis::pipe();
        if fresh {
            // Nothing this node announces may reach the others before it is registered, or
            // they would take it for a dead node.
            register(&shared, &mut pipe);
        }
        // Appends keep their place among the other items: their replies (the offsets) are the
        // pipeline's only ones.
        let mut appends = Vec::new();
        for item in batch.drain(..) {
            match item {
                Outgoing::Append(append) => {
                    streams::add_append(&shared, &mut pipe, &append);
                    appends.push(append);
                }
                Outgoing::Write(write) => add_to_pipeline(&shared, &mut pipe, write),
            }
        }
        let sent = if fresh {
            shared.scripts.load(&mut connection).await
        } else {
            Ok(())
        };
        let sent = match sent {
            Ok(()) if appends.is_empty() => pipe.query_async::<()>(&mut connection).await,
            Ok(()) => streams::finish_appends(&shared, &mut connection, pipe, appends).await,
            Err(error) => {
                appends
                    .into_iter()
                    .map(Outgoing::Append)
                    .for_each(Outgoing::fail);
                Err(error)
            }
        };
        match sent {
            Ok(()) => {
                shared.publisher.up();
                backoff.reset();
            }
            Err(error) => {
                shared.publisher.down(&error);
                shared.dropped.fetch_add(received as u64, Ordering::Relaxed);
                backoff.wait(&cancel).await;
            }
        }
    }
}

async fn publishing_connection(shared: &Shared) -> Option<ConnectionManager> {
    if let Some(connection) = shared.connection() {
        return Some(connection);
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(1);
    match ConnectionManager::new_with_config(shared.client.clone(), config).await {
        Ok(connection) => {
            *shared.connection.lock() = Some(connection.clone());
            Some(connection)
        }
        Err(error) => {
            shared.publisher.down(&error);
            None
        }
    }
}

fn add_to_pipeline(shared: &Shared, pipe: &mut redis::Pipeline, item: Write) {
    let keys = &shared.keys;
    let state = keys.state(&shared.node);
    match item {
        Write::Publish { channel, payload } => {
            pipe.publish(channel, payload.as_ref()).ignore();
        }
        Write::Announce(event) => {
            match &event {
                Event::User { user, count } => {
                    set_or_delete(pipe, &state, keys::user_field(user), *count);
                }
                Event::Member { room, user, count } => {
                    set_or_delete(pipe, &state, keys::member_field(room, user), *count);
                }
                Event::Channel { channel, present } => {
                    set_or_delete(
                        pipe,
                        &state,
                        keys::channel_field(channel),
                        u32::from(*present),
                    );
                }
                Event::Presence(presence) => {
                    let field = keys::presence_field(&presence.user_id);
                    match serde_json::to_string(presence) {
                        Ok(json) if presence.status != Status::Offline => {
                            pipe.hset(&state, field, json).ignore();
                        }
                        _ => {
                            pipe.hdel(&state, field).ignore();
                        }
                    }
                }
                Event::Reload | Event::Dead { .. } => {}
            }
            announce(shared, pipe, event);
        }
        Write::Rewrite => {
            let Some(sink) = shared.membership_sink() else {
                return;
            };
            let fields = keys::snapshot_fields(&sink.snapshot());
            register(shared, pipe);
            pipe.del(&state).ignore();
            for chunk in fields.chunks(1000) {
                pipe.hset_multiple(&state, chunk).ignore();
            }
            pipe.pexpire(&state, state_ttl_ms(shared)).ignore();
            announce(shared, pipe, Event::Reload);
        }
    }
}

/// Sets this node's liveness key (its value: the node's stats) and adds it to the node set.
fn register(shared: &Shared, pipe: &mut redis::Pipeline) {
    let stats = shared
        .membership_sink()
        .map(|sink| sink.stats().to_string())
        .unwrap_or_default();
    let keys = &shared.keys;
    pipe.cmd("SET")
        .arg(keys.alive(&shared.node))
        .arg(stats)
        .arg("PX")
        .arg(shared.ttl.as_millis() as u64)
        .ignore()
        .sadd(keys.nodes(), shared.node.as_str())
        .ignore();
}

fn set_or_delete(pipe: &mut redis::Pipeline, key: &str, field: String, count: u32) {
    if count > 0 {
        pipe.hset(key, field, count).ignore();
    } else {
        pipe.hdel(key, field).ignore();
    }
}

fn announce(shared: &Shared, pipe: &mut redis::Pipeline, event: Event) {
    let announcement = Announcement {
        origin: shared.node.clone(),
        event,
    };
    if let Ok(json) = serde_json::to_vec(&announcement) {
        pipe.publish(shared.keys.events(), json).ignore();
    }
}

/// A node's state hash outlives its liveness key, so a reaper can still read it, but not
/// forever if nobody is left to reap.
fn state_ttl_ms(shared: &Shared) -> i64 {
    (shared.ttl.as_millis() * 4) as i64
}

/// Receives other nodes' publications and announcements; keeps the subscriptions equal to the
/// wanted set, resubscribing everything after a reconnect.
pub(super) async fn subscriber(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut backoff = Backoff::new();
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            result = tokio::time::timeout(CONNECT_TIMEOUT, shared.client.get_async_pubsub()) => result,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                shared.subscriber.down(&error);
                backoff.wait(&cancel).await;
                continue;
            }
            Err(elapsed) => {
                shared.subscriber.down(&elapsed);
                backoff.wait(&cancel).await;
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if shared.subscriber.is_down() {
            // Publications were lost while the subscriber was away, and Redis may have lost
            // the streams: the hub doubts its copies before this node counts as settled (so
            // no join is answered from a stale copy), then fills them from the store.
            if let Some(broker_sink) = shared.broker_sink() {
                broker_sink.reconnected();
            }
        }
        if let Err(error) = resubscribe_all(&shared, &mut sink).await {
            shared.subscriber.down(&error);
            backoff.wait(&cancel).await;
            continue;
        }
        shared.subscriber.up();
        backoff.reset();
        // Redis may have lost this node's state (a restart) and this node may have missed
        // announcements: rewrite ours, reload everyone else's.
        shared.queue(Outgoing::Write(Write::Rewrite));
        if let Some(mut connection) = publishing_connection(&shared).await {
            let _ = refresh_peers(&shared, &mut connection).await;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = shared.wanted_changed.notified() => {
                    if let Err(error) = apply_changes(&shared, &mut sink).await {
                        shared.subscriber.down(&error);
                        break;
                    }
                }
                message = stream.next() => match message {
                    Some(message) => handle_message(&shared, &message).await,
                    None => {
                        shared.subscriber.down(&"the subscription connection closed");
                        break;
                    }
                },
            }
        }
        shared.settled.store(false, Ordering::Release);
    }
}

/// Subscribes everything wanted on a fresh connection.
async fn resubscribe_all(shared: &Shared, sink: &mut PubSubSink) -> redis::RedisResult<()> {
    let (channels, patterns) = {
        let mut wanted = shared.wanted.lock();
        wanted.changes.clear();
        (
            wanted.channels.iter().cloned().collect::<Vec<_>>(),
            wanted.patterns.iter().cloned().collect::<Vec<_>>(),
        )
    };
    for chunk in channels.chunks(1000) {
        sink.subscribe(chunk).await?;
    }
    for chunk in patterns.chunks(1000) {
        sink.psubscribe(chunk).await?;
    }
    shared.settle();
    Ok(())
}

/// Applies the subscription changes queued since the last call.
async fn apply_changes(shared: &Shared, sink: &mut PubSubSink) -> redis::RedisResult<()> {
    loop {
        let changes = std::mem::take(&mut shared.wanted.lock().changes);
        if changes.is_empty() {
            shared.settle();
            return Ok(());
        }
        for change in changes {
            match change {
                SubscriptionChange::Subscribe(name) => sink.subscribe(name).await?,
                SubscriptionChange::Unsubscribe(name) => sink.unsubscribe(name).await?,
                SubscriptionChange::PSubscribe(name) => sink.psubscribe(name).await?,
                SubscriptionChange::PUnsubscribe(name) => sink.punsubscribe(name).await?,
            }
        }
    }
}

async fn handle_message(shared: &Shared, message: &redis::Msg) {
    let channel = message.get_channel_name();
    if channel == shared.keys.events() {
        handle_announcement(shared, message.get_payload_bytes()).await;
        return;
    }
    let payload = message.get_payload_bytes();
    if let (Some(topic), Some(sink)) = (shared.keys.topic(channel), shared.broker_sink()) {
        if let Some(stream_message) = streams::decode(topic, payload) {
            // A stream message reaches every node, this one included, once (patterns never
            // carry them twice: see below).
            if !(message.from_pattern() && shared.wanted.lock().channels.contains(channel)) {
                sink.deliver_stream(stream_message);
            }
            return;
        }
    }
    let Some((origin, frame)) = keys::decode_envelope(payload) else {
        tracing::debug!(channel, "ignoring an undecodable publication");
        return;
    };
    if origin == shared.node.as_str() {
        // Our own publication: it was delivered locally before it was published.
        return;
    }
    if message.from_pattern() && shared.wanted.lock().channels.contains(channel) {
        // The exact subscription delivers it too; once is enough.
        return;
    }
    let (Some(topic), Some(sink)) = (shared.keys.topic(channel), shared.broker_sink()) else {
        return;
    };
    sink.deliver(&Envelope {
        origin: NodeId::from_trusted(origin),
        topic,
        frame: Bytes::copy_from_slice(frame),
    });
}

async fn handle_announcement(shared: &Shared, payload: &[u8]) {
    let Ok(Announcement { origin, event }) = serde_json::from_slice(payload) else {
        tracing::debug!("ignoring an undecodable announcement");
        return;
    };
    if origin == shared.node {
        return;
    }
    let changes = match event {
        Event::Reload => {
            let Some(mut connection) = shared.connection() else {
                return;
            };
            match load_snapshot(&shared.keys, &mut connection, &origin).await {
                Ok(snapshot) => shared.replica.write().replace(&origin, Some(snapshot)),
                Err(error) => {
                    tracing::debug!(%error, node = %origin, "cannot load a node's state");
                    return;
                }
            }
        }
        event => shared.replica.write().apply(&origin, event),
    };
    shared.announce_changes(changes);
}

async fn load_snapshot(
    keys: &Keys,
    connection: &mut ConnectionManager,
    node: &NodeId,
) -> redis::RedisResult<crate::cluster::Snapshot> {
    let fields: HashMap<String, String> = connection.hgetall(keys.state(node)).await?;
    Ok(keys::parse_snapshot(fields))
}

/// Refreshes this node's liveness, reaps dead nodes and reconciles the replica, every third of
/// the node TTL.
pub(super) async fn liveness(shared: Arc<Shared>, cancel: CancellationToken) {
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
        let mut pipe = redis::pipe();
        register(&shared, &mut pipe);
        pipe.pexpire(shared.keys.state(&shared.node), state_ttl_ms(&shared))
            .ignore();
        let heartbeat = pipe.query_async::<()>(&mut connection).await;
        if heartbeat.is_ok() {
            let _ = refresh_peers(&shared, &mut connection).await;
        }
    }
}

/// Reads which nodes are alive; reaps the dead; makes the replica hold exactly the live ones.
async fn refresh_peers(
    shared: &Shared,
    connection: &mut ConnectionManager,
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

/// Removes a node whose liveness key expired: one node (holding the reap lock) deletes its
/// state and tells the others; every node drops it from its replica.
async fn reap(
    shared: &Shared,
    connection: &mut ConnectionManager,
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
        let mut pipe = redis::pipe();
        pipe.del(keys.state(node))
            .ignore()
            .srem(keys.nodes(), node.as_str())
            .ignore();
        announce(shared, &mut pipe, Event::Dead { node: node.clone() });
        pipe.query_async::<()>(connection).await?;
    }
    let changes = shared.replica.write().replace(node, None);
    shared.announce_changes(changes);
    Ok(())
}

#[cfg(test)]
mod link_tests {
    use super::Link;

    #[test]
    fn an_outage_is_logged_once_and_its_end_once() {
        let link = Link::new("test");
        assert!(!link.is_up());
        assert!(link.down(&"refused"), "the first failure is news");
        for _ in 0..100 {
            assert!(!link.down(&"refused"), "repeated failures are not");
        }
        assert!(link.up(), "recovery is news");
        assert!(!link.up());
        assert!(link.is_up());
        assert!(link.down(&"reset"), "a new outage is news again");
    }
}
