//! The publisher task of a Redis-backed node (one connection, pipelined writes, in order), and
//! what the node's three tasks share: the backoff and the health of a connection. The
//! subscriber is in `subscriber.rs`, liveness in `liveness.rs`. Each ends when the
//! cancellation token fires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::conn::{self, Conn};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::keys;
use super::{Event, Outgoing, Shared, Write, announcements, indexes, rewrite, streams};
use crate::store::Append;

/// Most queued items written in one pipeline.
const BATCH: usize = 512;
/// Bounds of the reconnect backoff. The cap is what delays delivery after Redis returns: a
/// node retries at least this often, so it resubscribes at most this long after Redis accepts
/// connections again (a refused connection costs nothing worth saving). With a 5 s cap,
/// cross-node delivery resumed seconds late (issue 15).
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Connecting and answering time limits, so an unreachable Redis fails fast.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Exponential backoff with jitter, never above [`BACKOFF_MAX`], cut short when another of
/// the node's connections finds Redis reachable again.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    pub(super) fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    pub(super) async fn wait(&mut self, shared: &Shared, cancel: &CancellationToken) {
        // Between half the step and the step: nodes cut at once do not all retry at once.
        let delay = self.0.mul_f64(0.5 + fastrand::f64() * 0.5);
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
            () = shared.reachable.notified() => {}
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
    pub(super) fn up(&self) -> bool {
        let recovered = self.state.swap(UP, Ordering::AcqRel) == DOWN;
        if recovered {
            tracing::info!(connection = self.what, "Redis reachable again");
        }
        recovered
    }

    /// Marks the link down; logs (and returns true) only on the first failure of an outage.
    pub(super) fn down(&self, error: &dyn std::fmt::Display) -> bool {
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
            backoff.wait(&shared, &cancel).await;
            retry(&shared, &receiver);
            continue;
        };
        let (sent, leaving) = send(&shared, &mut connection, fresh, &mut batch).await;
        match sent {
            Ok(()) => {
                if shared.publisher.up() {
                    shared.reachable.notify_waiters();
                }
                backoff.reset();
                for done in leaving {
                    let _ = done.send(());
                }
            }
            Err(error) => {
                if connection.is_cluster() {
                    // The cluster connection's slot map may be stale (a master turned replica
                    // answers READONLY, which the crate does not act on): connect afresh.
                    shared.connection.lock().take();
                }
                shared.publisher.down(&error);
                shared.dropped.fetch_add(received as u64, Ordering::Relaxed);
                backoff.wait(&shared, &cancel).await;
                retry(&shared, &receiver);
            }
        }
    }
}

/// Sends a batch in order. A rewrite is done on its own (`rewrite.rs`: it reads the store
/// before it writes), between what came before it and what comes after; consecutive rewrites
/// are one. Returns how that went and the senders of the departures sent.
async fn send(
    shared: &Shared,
    connection: &mut Conn,
    mut fresh: bool,
    batch: &mut Vec<Outgoing>,
) -> (redis::RedisResult<()>, Vec<oneshot::Sender<()>>) {
    let is_rewrite = |item: &Outgoing| matches!(item, Outgoing::Write(Write::Rewrite));
    let mut leaving = Vec::new();
    while !batch.is_empty() {
        let before = batch.iter().position(is_rewrite).unwrap_or(batch.len());
        let mut segment: Vec<Outgoing> = batch.drain(..before).collect();
        if !segment.is_empty() {
            let (sent, mut left) = if connection.is_cluster() {
                super::shards::send_each(shared, connection, fresh, &mut segment).await
            } else {
                send_pipelined(shared, connection, fresh, &mut segment).await
            };
            leaving.append(&mut left);
            if let Err(error) = sent {
                batch.drain(..).for_each(Outgoing::fail);
                return (Err(error), leaving);
            }
            fresh = false;
        }
        let rewrites = batch.iter().take_while(|item| is_rewrite(item)).count();
        if rewrites > 0 {
            batch.drain(..rewrites);
            if let Err(error) = rewrite::run(shared, connection, fresh).await {
                batch.drain(..).for_each(Outgoing::fail);
                return (Err(error), leaving);
            }
            fresh = false;
        }
    }
    (Ok(()), leaving)
}

/// Sends a batch to one Redis in one pipeline; returns how that went and the senders of the
/// departures in it, to tell once Redis took them.
async fn send_pipelined(
    shared: &Shared,
    connection: &mut Conn,
    fresh: bool,
    batch: &mut Vec<Outgoing>,
) -> (redis::RedisResult<()>, Vec<oneshot::Sender<()>>) {
    let mut pipe = redis::pipe();
    if fresh {
        // Nothing this node announces may reach the others before it is registered, or
        // they would take it for a dead node.
        register(shared, &mut pipe);
    }
    let mut filling = Filling::new(pipe);
    let mut leaving = Vec::new();
    for item in batch.drain(..) {
        filling.add(shared, item, &mut leaving);
    }
    let (pipe, appends) = filling.finish(shared);
    // A departure waits for a liveness refresh under way, and keeps later ones out.
    let _registration = if leaving.is_empty() {
        None
    } else {
        Some(shared.registration.lock().await)
    };
    let sent = if fresh {
        shared.scripts.load(connection).await
    } else {
        Ok(())
    };
    let sent = match sent {
        Ok(()) if appends.is_empty() => pipe.query_async::<()>(connection).await,
        Ok(()) => streams::finish_appends(shared, connection, pipe, appends).await,
        Err(error) => {
            appends
                .into_iter()
                .map(Outgoing::Append)
                .for_each(Outgoing::fail);
            Err(error)
        }
    };
    (sent, leaving)
}

/// After a failed write: unless more is queued (which retries by itself), queues a rewrite of
/// the node's state. What failed may have been the registration or state changes, and the
/// publisher counts as up only after a write succeeds: without this a quiet node would stay
/// degraded, and its state wrong in Redis, until its next liveness refresh.
fn retry(shared: &Shared, receiver: &mpsc::Receiver<Outgoing>) {
    if receiver.is_empty() {
        shared.queue(Outgoing::Write(Write::Rewrite));
    }
}

pub(super) async fn publishing_connection(shared: &Shared) -> Option<Conn> {
    if let Some(connection) = shared.connection() {
        return Some(connection);
    }
    let connected = match &shared.client {
        conn::Client::Single(client) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(CONNECT_TIMEOUT))
                .set_min_delay(BACKOFF_MIN)
                .set_max_delay(BACKOFF_MAX)
                .set_number_of_retries(1);
            ConnectionManager::new_with_config((**client).clone(), config)
                .await
                .map(Conn::Single)
        }
        conn::Client::Cluster(seed) => match seed.builder().build() {
            Ok(client) => client.get_async_connection().await.map(Conn::Cluster),
            Err(error) => Err(error),
        },
    };
    match connected {
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

/// A pipeline being filled with a batch's items in their order. Announcements queued one
/// after another are held back and written as one transaction (`announcements.rs`) when
/// anything else comes, or at the end: nothing overtakes them, and they overtake nothing.
pub(super) struct Filling {
    pipe: redis::Pipeline,
    /// The announcements of the run under way.
    run: announcements::Run,
    /// The appends, whose replies (the offsets) are the pipeline's only ones.
    appends: Vec<Append>,
}

impl Filling {
    /// Starts filling `pipe` (which may already hold commands).
    pub(super) fn new(pipe: redis::Pipeline) -> Self {
        Self {
            pipe,
            run: announcements::Run::default(),
            appends: Vec::new(),
        }
    }

    /// Adds `item`; a departure's sender goes to `leaving`, to tell once Redis took it.
    pub(super) fn add(
        &mut self,
        shared: &Shared,
        item: Outgoing,
        leaving: &mut Vec<oneshot::Sender<()>>,
    ) {
        if let Outgoing::Write(Write::Announce(event)) = item {
            if let Some(full) = self.run.push(event) {
                announcements::add_run(shared, &mut self.pipe, full);
            }
            return;
        }
        self.end_run(shared);
        match item {
            Outgoing::Append(append) => {
                streams::add_append(shared, &mut self.pipe, &append);
                self.appends.push(append);
            }
            Outgoing::Write(Write::Leave(done)) => {
                add_departure(shared, &mut self.pipe);
                leaving.push(done);
            }
            Outgoing::Write(write) => add_to_pipeline(shared, &mut self.pipe, write),
        }
    }

    /// The pipeline with everything added, and the appends in it.
    pub(super) fn finish(mut self, shared: &Shared) -> (redis::Pipeline, Vec<Append>) {
        self.end_run(shared);
        (self.pipe, self.appends)
    }

    fn end_run(&mut self, shared: &Shared) {
        announcements::add_run(shared, &mut self.pipe, self.run.take());
    }
}

pub(super) fn add_to_pipeline(shared: &Shared, pipe: &mut redis::Pipeline, item: Write) {
    let keys = &shared.keys;
    match item {
        Write::Publish { channel, payload } => publish_on(keys, pipe, &channel, &payload),
        Write::DocAppend {
            log,
            update,
            publish,
        } => {
            pipe.rpush(log, update.as_ref()).ignore();
            if let Some((channel, envelope)) = publish {
                publish_on(keys, pipe, &channel, &envelope);
            }
        }
        // `Filling` takes announcements out first, to write a run of them as one transaction;
        // this arm is for completeness.
        Write::Announce(event) => announcements::add_run(shared, pipe, vec![event]),
        // The publisher takes departures out first, to keep their senders; this arm is for
        // completeness.
        Write::Leave(_) => add_departure(shared, pipe),
        Write::Rewrite => unreachable!("a rewrite is sent on its own (`send`)"),
    }
}

/// Publishes on `channel`: sharded (`SPUBLISH`) where `keys.rs` says so.
fn publish_on(keys: &keys::Keys, pipe: &mut redis::Pipeline, channel: &str, payload: &[u8]) {
    let command = if keys.is_sharded(channel) {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    pipe.cmd(command).arg(channel).arg(payload).ignore();
}

/// Deletes this node's state and liveness, removes it from the node set and announces it gone:
/// the others drop it from their replicas as they drop a reaped node.
pub(super) fn add_departure(shared: &Shared, pipe: &mut redis::Pipeline) {
    let keys = &shared.keys;
    indexes::add_drop(keys, pipe, &shared.node);
    pipe.del(keys.alive(&shared.node))
        .ignore()
        .srem(keys.nodes(), shared.node.as_str())
        .ignore();
    let node = shared.node.clone();
    let version = shared.next_version();
    announcements::publish(shared, pipe, vec![Event::Dead { node }], Some(version));
}

/// Sets this node's liveness key (its value: the node's stats) and adds it to the node set.
pub(super) fn register(shared: &Shared, pipe: &mut redis::Pipeline) {
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
