//! The subscriber task of a Redis-backed node: one pub/sub connection receives the other nodes'
//! publications, the stream messages of the store and the membership announcements, and keeps
//! its subscriptions equal to what the hub wants, resubscribing everything after a reconnect.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use redis::AsyncCommands;
use redis::aio::PubSubSink;
use tokio_util::sync::CancellationToken;

use super::announcements::Announcement;
use super::conn;
use super::keys::{self, Keys};
use super::tasks::{Backoff, CONNECT_TIMEOUT, publishing_connection};
use super::{Event, Outgoing, Shared, SubscriptionChange, Write, liveness, streams};
use crate::broker::Envelope;
use crate::ids::NodeId;

/// Receives other nodes' publications and announcements; keeps the subscriptions equal to the
/// wanted set, resubscribing everything after a reconnect.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let client = match &shared.client {
        conn::Client::Single(client) => (**client).clone(),
        conn::Client::Cluster(seed) => {
            let seed = seed.clone();
            return super::shards::subscriber(shared, seed, cancel).await;
        }
    };
    let mut backoff = Backoff::new();
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            result = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()) => result,
        };
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(error)) => {
                shared.subscriber.down(&error);
                backoff.wait(&shared, &cancel).await;
                continue;
            }
            Err(elapsed) => {
                shared.subscriber.down(&elapsed);
                backoff.wait(&shared, &cancel).await;
                continue;
            }
        };
        let (sink, mut stream) = pubsub.split();
        if shared.subscriber.is_down() {
            // Publications were lost while the subscriber was away, and Redis may have lost
            // the streams: the hub doubts its copies before this node counts as settled (so
            // no join is answered from a stale copy), then fills them from the store.
            if let Some(broker_sink) = shared.broker_sink() {
                broker_sink.reconnected();
            }
        }
        if let Err(error) = resubscribe_all(&shared, &sink).await {
            shared.subscriber.down(&error);
            backoff.wait(&shared, &cancel).await;
            continue;
        }
        if shared.subscriber.up() {
            shared.reachable.notify_waiters();
        }
        backoff.reset();
        // Redis may have lost this node's state (a restart) and this node may have missed
        // announcements: rewrite ours, reload the others' that changed.
        shared.queue(Outgoing::Write(Write::Rewrite));
        if let Some(mut connection) = publishing_connection(&shared).await {
            let _ = liveness::resync_peers(&shared, &mut connection).await;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = shared.wanted_changed.notified() => {
                    if let Err(error) = apply_changes(&shared, &sink).await {
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
async fn resubscribe_all(shared: &Shared, sink: &PubSubSink) -> redis::RedisResult<()> {
    let changes = shared.wanted.lock().resubscriptions(&shared.keys);
    send_all(sink, changes).await?;
    shared.settle();
    Ok(())
}

/// Applies the subscription changes queued since the last call.
async fn apply_changes(shared: &Shared, sink: &PubSubSink) -> redis::RedisResult<()> {
    loop {
        let changes = std::mem::take(&mut shared.wanted.lock().changes);
        if changes.is_empty() {
            shared.settle();
            return Ok(());
        }
        send_all(sink, changes).await?;
    }
}

/// Sends `changes` in order, one name per command, all of them before any reply is awaited:
/// a burst of new users costs one round trip, not one per user, and the publications this
/// task reads are not held up behind them. One name per command, because the crate's pub/sub
/// connection takes each confirmation for the reply to one command, and a command of several
/// names gets one confirmation per name: the later ones would be taken for the replies of the
/// commands sent after it, which would then count as in effect before they are.
async fn send_all(sink: &PubSubSink, changes: Vec<SubscriptionChange>) -> redis::RedisResult<()> {
    // Each future sends its command when first polled, and `try_join_all` polls them in order.
    try_join_all(changes.into_iter().map(|change| {
        let mut sink = sink.clone();
        async move {
            match change {
                SubscriptionChange::Subscribe(name) => sink.subscribe(name).await,
                SubscriptionChange::Unsubscribe(name) => sink.unsubscribe(name).await,
                SubscriptionChange::PSubscribe(name) => sink.psubscribe(name).await,
                SubscriptionChange::PUnsubscribe(name) => sink.punsubscribe(name).await,
            }
        }
    }))
    .await
    .map(drop)
}

/// Hands one pub/sub message to the hub (a publication or a stream message) or to the
/// membership (an announcement). Runs once per message on every receiving node, so it names
/// the topic once and allocates nothing it does not hand over.
pub(super) async fn handle_message(shared: &Shared, message: &redis::Msg) {
    let channel = message.get_channel_name();
    let payload = message.get_payload_bytes();
    if channel == shared.keys.events() {
        handle_announcement(shared, payload).await;
        return;
    }
    let envelope = keys::decode_envelope(payload);
    if envelope.is_some_and(|(origin, _)| origin == shared.node.as_str()) {
        // Our own publication, delivered locally before it was published: dropped before its
        // channel is parsed, as a node with members in a room reads back all it publishes.
        return;
    }
    let (Some(topic), Some(sink)) = (shared.keys.topic(channel), shared.broker_sink()) else {
        return;
    };
    // A message on a channel that matches both an exact and a pattern subscription arrives
    // twice; the exact subscription's copy is the one kept.
    let duplicate = || message.from_pattern() && shared.wanted.lock().topics.contains(&topic);
    if let Some(stream_message) = streams::decode(&topic, payload) {
        // A stream message reaches every node, this one included, once.
        if !duplicate() {
            sink.deliver_stream(stream_message);
        }
        return;
    }
    let Some((origin, frame)) = envelope else {
        tracing::debug!(channel, "ignoring an undecodable publication");
        return;
    };
    if duplicate() {
        return;
    }
    sink.deliver(&Envelope {
        origin: NodeId::from_trusted(origin),
        topic,
        frame: Bytes::copy_from_slice(frame),
    });
}

/// Applies another node's announcement: its events in order, each with its own version.
async fn handle_announcement(shared: &Shared, payload: &[u8]) {
    let Some(announcement) = Announcement::decode(payload) else {
        tracing::debug!("ignoring an undecodable announcement");
        return;
    };
    if announcement.origin == shared.node {
        return;
    }
    let origin = announcement.origin.clone();
    let mut changes = Vec::new();
    for (event, version) in announcement.versioned() {
        match event {
            Event::Reload => {
                let Some(mut connection) = shared.connection() else {
                    continue;
                };
                match load_snapshot(&shared.keys, &mut connection, &origin).await {
                    Ok(snapshot) => {
                        changes.extend(shared.replica.write().replace(&origin, Some(snapshot)));
                    }
                    Err(error) => {
                        tracing::debug!(%error, node = %origin, "cannot load a node's state");
                    }
                }
            }
            event => changes.extend(shared.replica.write().apply(&origin, event, version)),
        }
    }
    shared.announce_changes(changes);
}

pub(super) async fn load_snapshot(
    keys: &Keys,
    connection: &mut super::conn::Conn,
    node: &NodeId,
) -> redis::RedisResult<crate::cluster::Snapshot> {
    let fields: HashMap<String, String> = connection.hgetall(keys.state(node)).await?;
    Ok(keys::parse_snapshot(fields))
}
