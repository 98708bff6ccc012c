//! What differs with a Redis Cluster (`--redis-cluster`, `conn.rs`): the publisher sends each
//! item as its own pipeline (one slot each, see the hash tags in `keys.rs`), and the
//! subscriber receives over RESP3 pushes, with sharded subscriptions for rooms, users,
//! documents and connections.
//!
//! Connections: the publishing `ClusterConnection` and the subscribing one each hold one
//! multiplexed connection per master, whatever the number of rooms.
//!
//! Re-subscribing: the `redis` crate (1.2) tracks subscriptions and sends them again after it
//! reconnects, but as one `SSUBSCRIBE` naming every sharded channel, which a cluster refuses
//! once they span slots (`CROSSSLOT`). So the subscriber does not rely on it: when a master's
//! connection closes (a `Disconnection` push) it drops the whole cluster connection and
//! subscribes everything wanted on a fresh one, one command per channel, as the single-Redis
//! subscriber does after a reconnect. The same when Redis ends a sharded subscription by
//! itself (its slot moved to another master: an `sunsubscribe` push for a channel the node
//! still wants): a fresh connection has a fresh slot map and none of the crate's stale
//! re-subscriptions (after a slot move those could subscribe a classic channel on a second
//! master, and deliver its messages twice). Publications made while a slot moves are lost
//! (at most once, as across an outage); the hub then reads its streams from the store, as
//! after a reconnect, so room and channel history fills the gap.
//!
//! Order: a node's items for one topic (one hash tag) reach Redis in the order it queued
//! them; items for different topics (a room's message and the membership announcement of its
//! sender) may overtake each other.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::collections::HashMap;

use futures_util::future::{join_all, try_join_all};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Seed};
use super::tasks::{self, Backoff, CONNECT_TIMEOUT, Filling, publishing_connection};
use super::{Outgoing, Shared, SubscriptionChange, Write, keys::Keys, liveness, streams};

/// Most pushes (publications, subscription notices) waiting for the subscriber task; beyond,
/// a publication is dropped and counted, like one lost in an outage.
const PUSH_CAPACITY: usize = 65_536;

/// Sends a batch to a Redis Cluster: one pipeline per hash tag holding that tag's items in
/// the batch's order, the pipelines sent at once; returns how that went and the senders of
/// the departures in it. (The cluster connection runs concurrent requests in no set order, so
/// only items in one pipeline keep theirs: those of one topic, and the membership changes.)
pub(super) async fn send_each(
    shared: &Shared,
    connection: &mut Conn,
    fresh: bool,
    batch: &mut Vec<Outgoing>,
) -> (redis::RedisResult<()>, Vec<oneshot::Sender<()>>) {
    let mut leaving = Vec::new();
    if fresh {
        // Nothing this node announces may reach the others before it is registered.
        let mut pipe = redis::pipe();
        tasks::register(shared, &mut pipe);
        let ready = match pipe.query_async::<()>(connection).await {
            Ok(()) => shared.scripts.load(connection).await,
            Err(error) => Err(error),
        };
        if let Err(error) = ready {
            batch.drain(..).for_each(Outgoing::fail);
            return (Err(error), leaving);
        }
    }
    let mut groups: Vec<Filling> = Vec::new();
    let mut by_tag: HashMap<String, usize> = HashMap::new();
    for item in batch.drain(..) {
        let name = slot_name(shared, &item);
        let index = *by_tag
            .entry(Keys::hash_tag(&name).to_owned())
            .or_insert_with(|| {
                groups.push(Filling::new(redis::pipe()));
                groups.len() - 1
            });
        groups[index].add(shared, item, &mut leaving);
    }
    // A departure waits for a liveness refresh under way, and keeps later ones out.
    let _registration = if leaving.is_empty() {
        None
    } else {
        Some(shared.registration.lock().await)
    };
    let replies = join_all(groups.into_iter().map(|filling| {
        let (pipe, appends) = filling.finish(shared);
        let mut connection = connection.clone();
        async move {
            if appends.is_empty() {
                pipe.query_async::<()>(&mut connection).await
            } else {
                streams::finish_appends(shared, &mut connection, pipe, appends).await
            }
        }
    }))
    .await;
    let result = replies.into_iter().collect::<redis::RedisResult<Vec<()>>>();
    (result.map(drop), leaving)
}

/// The name whose slot an item goes to.
fn slot_name(shared: &Shared, item: &Outgoing) -> String {
    match item {
        Outgoing::Append(append) => shared.keys.channel(&streams::topic(&append.stream)),
        Outgoing::Write(Write::Publish { channel, .. }) => channel.clone(),
        Outgoing::Write(Write::DocAppend { log, .. }) => log.clone(),
        Outgoing::Write(Write::Announce(_) | Write::Rewrite | Write::Leave(_)) => {
            shared.keys.events().to_owned()
        }
    }
}

/// The subscriber task with a Redis Cluster: receives the other nodes' publications and
/// announcements as pushes, keeps the subscriptions equal to the wanted set, and subscribes
/// everything again on a fresh connection after a master's connection closed.
pub(super) async fn subscriber(shared: Arc<Shared>, seed: Seed, cancel: CancellationToken) {
    let mut backoff = Backoff::new();
    loop {
        // A fresh client per connection: its pushes come on this connection's channel only.
        // The sender side lives in the cluster connection, and closes with it.
        let (pushes_in, mut pushes) = mpsc::channel::<PushInfo>(PUSH_CAPACITY);
        let counter = shared.clone();
        let push_sender = move |push: PushInfo| {
            pushes_in.try_send(push).map_err(|_| {
                counter.dropped.fetch_add(1, Ordering::Relaxed);
            })
        };
        let connect = async {
            seed.builder()
                .push_sender(push_sender)
                .build()?
                .get_async_connection()
                .await
        };
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
            result = tokio::time::timeout(CONNECT_TIMEOUT, connect) => result,
        };
        let mut connection = match connected {
            Ok(Ok(connection)) => connection,
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
        if shared.subscriber.is_down()
            && let Some(broker_sink) = shared.broker_sink()
        {
            // As in `subscriber.rs`: publications were lost while away.
            broker_sink.reconnected();
        }
        if let Err(error) = resubscribe_all(&shared, &connection).await {
            shared.subscriber.down(&error);
            backoff.wait(&shared, &cancel).await;
            continue;
        }
        if shared.subscriber.up() {
            shared.reachable.notify_waiters();
        }
        backoff.reset();
        shared.queue(Outgoing::Write(Write::Rewrite));
        if let Some(mut publishing) = publishing_connection(&shared).await {
            let _ = liveness::resync_peers(&shared, &mut publishing).await;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = shared.wanted_changed.notified() => {
                    if let Err(error) = apply_changes(&shared, &mut connection).await {
                        shared.subscriber.down(&error);
                        break;
                    }
                }
                push = pushes.recv() => match push {
                    Some(push) if push.kind == PushKind::Disconnection => {
                        shared.subscriber.down(&"a master's connection closed");
                        break;
                    }
                    Some(push) => {
                        if let Some(channel) = handle_push(&shared, push).await {
                            // Redis ended a subscription the node still wants: its slot moved.
                            // The crate's slot map, and its own re-subscriptions (which may
                            // now subscribe a classic channel twice), are stale: start afresh.
                            tracing::info!(channel, "a slot moved: subscribing again");
                            shared.settled.store(false, Ordering::Release);
                            if let Some(broker_sink) = shared.broker_sink() {
                                // Publications made during the move were lost.
                                broker_sink.reconnected();
                            }
                            break;
                        }
                    }
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

/// Subscribes everything wanted on a fresh connection, one command per channel (a sharded
/// subscription's channels must share a slot), all sent before any reply is awaited.
async fn resubscribe_all(
    shared: &Shared,
    connection: &ClusterConnection,
) -> redis::RedisResult<()> {
    let changes = shared.wanted.lock().resubscriptions(&shared.keys);
    try_join_all(
        changes
            .into_iter()
            .map(|change| apply(&shared.keys, connection.clone(), change)),
    )
    .await?;
    shared.settle();
    Ok(())
}

/// Applies the subscription changes queued since the last call: each name's last change, all
/// sent before any reply is awaited (a burst of joins to new rooms costs one round trip per
/// master, not one per room).
async fn apply_changes(
    shared: &Shared,
    connection: &mut ClusterConnection,
) -> redis::RedisResult<()> {
    loop {
        let changes = std::mem::take(&mut shared.wanted.lock().changes);
        if changes.is_empty() {
            shared.settle();
            return Ok(());
        }
        try_join_all(
            last_per_name(changes)
                .into_iter()
                .map(|change| apply(&shared.keys, connection.clone(), change)),
        )
        .await?;
    }
}

/// The last change of each name (channel or pattern) in `changes`, in the order of those last
/// changes. The cluster connection keeps no order between concurrent requests, so two changes
/// of one name must not be in flight together; and a name's last change is all that matters
/// (a channel subscribed twice, or unsubscribed while not subscribed, is left as asked).
fn last_per_name(changes: Vec<SubscriptionChange>) -> Vec<SubscriptionChange> {
    let name = |change: &SubscriptionChange| match change {
        SubscriptionChange::Subscribe(name) | SubscriptionChange::Unsubscribe(name) => {
            (false, name.clone())
        }
        SubscriptionChange::PSubscribe(pattern) | SubscriptionChange::PUnsubscribe(pattern) => {
            (true, pattern.clone())
        }
    };
    let last: HashMap<(bool, String), usize> = changes
        .iter()
        .enumerate()
        .map(|(index, change)| (name(change), index))
        .collect();
    changes
        .into_iter()
        .enumerate()
        .filter(|(index, change)| last[&name(change)] == *index)
        .map(|(_, change)| change)
        .collect()
}

/// Sends one (un)subscription: sharded for the channels `keys.rs` names so, classic for the
/// others (the crate routes both by the channel's slot; a classic one reaches every master's
/// publications).
async fn apply(
    keys: &Keys,
    mut connection: ClusterConnection,
    change: SubscriptionChange,
) -> redis::RedisResult<()> {
    match change {
        SubscriptionChange::Subscribe(name) if keys.is_sharded(&name) => {
            connection.ssubscribe(name).await
        }
        SubscriptionChange::Subscribe(name) => connection.subscribe(name).await,
        SubscriptionChange::Unsubscribe(name) if keys.is_sharded(&name) => {
            connection.sunsubscribe(name).await
        }
        SubscriptionChange::Unsubscribe(name) => connection.unsubscribe(name).await,
        SubscriptionChange::PSubscribe(pattern) => connection.psubscribe(pattern).await,
        SubscriptionChange::PUnsubscribe(pattern) => connection.punsubscribe(pattern).await,
    }
}

/// Handles one push: a publication is delivered as on one Redis. Returns the channel of a
/// sharded subscription that Redis ended while the node still wants it (its slot moved).
async fn handle_push(shared: &Shared, push: PushInfo) -> Option<String> {
    match push.kind {
        PushKind::Message | PushKind::SMessage | PushKind::PMessage => {
            if let Some(message) = redis::Msg::from_push_info(push) {
                super::subscriber::handle_message(shared, &message).await;
            }
            None
        }
        PushKind::SUnsubscribe => push
            .data
            .into_iter()
            .next()
            .and_then(|name| redis::from_redis_value::<String>(name).ok())
            .filter(|channel| shared.wanted.lock().has_channel(&shared.keys, channel)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::SubscriptionChange::{PSubscribe, PUnsubscribe, Subscribe, Unsubscribe};
    use super::last_per_name;

    #[test]
    fn a_burst_keeps_each_name_s_last_change_in_order() {
        let burst = vec![
            Subscribe("a".into()),
            Subscribe("b".into()),
            Unsubscribe("a".into()),
            PSubscribe("a".into()),
            Subscribe("c".into()),
            Unsubscribe("b".into()),
            Subscribe("b".into()),
            PUnsubscribe("p".into()),
        ];
        assert_eq!(
            last_per_name(burst),
            [
                Unsubscribe("a".into()),
                PSubscribe("a".into()),
                Subscribe("c".into()),
                Subscribe("b".into()),
                PUnsubscribe("p".into()),
            ]
        );
    }
}
