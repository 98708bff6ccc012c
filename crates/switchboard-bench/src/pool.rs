//! A pool: the receiving connections one process holds, opened with bounded concurrency and
//! kept until closed.
//!
//! Owns the description of a slice of a run's connections ([`PoolSpec`], sent to worker
//! processes as JSON), opening them, and their tasks. Every connection task is spawned into the
//! pool's `JoinSet` and ends when the pool's stop signal turns true (or the server closes it);
//! [`Pool::close`] waits for them, then aborts stragglers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::{Conn, ConnError, Dial};
use crate::histogram::{AtomicHistogram, Histogram};
use crate::payload::{Format, Kind};
use crate::shared::{Shared, Tally};
use crate::target::{Target, UrlError};

/// How long closing connections get before their tasks are aborted.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// The name of room `r`.
pub(crate) fn room_name(r: u64) -> String {
    format!("room-{r}")
}

/// The server connection `g` of a run with `rooms` rooms uses, out of `servers`: consecutive
/// blocks of `rooms` connections go to the servers in turn, so that the members of every room
/// (`g mod rooms`) are spread over all servers and each server holds an equal share.
pub(crate) fn server_index(g: u64, rooms: u64, servers: usize) -> usize {
    ((g / rooms.max(1)) % servers as u64) as usize
}

/// A slice of a run's connections. Connection `g` (for `g` in `first..first + count`) is user
/// `{user_prefix}{g}`, connects to `urls[server_index(g, rooms, urls.len())]` and, when `rooms > 0`, joins room
/// `g % rooms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PoolSpec {
    /// Server URLs, used round-robin.
    pub(crate) urls: Vec<String>,
    /// The local address to bind before connecting, if any.
    pub(crate) source_ip: Option<IpAddr>,
    /// Global index of the first connection.
    pub(crate) first: u64,
    /// Connections in this pool.
    pub(crate) count: u64,
    /// User ids are this prefix followed by the global index.
    pub(crate) user_prefix: String,
    /// Rooms of the run (0: connections join none).
    pub(crate) rooms: u64,
    /// Connections being opened at once.
    pub(crate) concurrency: usize,
    /// Frames counted as deliveries.
    pub(crate) kind: Option<Kind>,
    /// One delivery in this many has its latency measured.
    pub(crate) sample_every: u64,
    /// Longest time one connection may take to open and join.
    pub(crate) open_timeout_s: f64,
    /// How the connections encode frames.
    pub(crate) format: Format,
}

/// The outcome of opening a pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Opened {
    /// Connections open (and joined).
    pub(crate) connected: u64,
    /// Connections that failed to open or join.
    pub(crate) failed: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
    /// TCP connect + upgrade + `connect` frame, in ns, per open connection.
    pub(crate) handshake: Histogram,
    /// Seconds from the first connect to the last connection open.
    pub(crate) secs: f64,
}

impl Opened {
    /// Adds another pool's outcome (pools open in parallel: the longest time is kept).
    pub(crate) fn add(&mut self, other: &Opened) {
        self.connected += other.connected;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.handshake.merge(&other.handshake);
        self.secs = self.secs.max(other.secs);
    }
}

/// What a pool saw from opening to closing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Closed {
    /// The counters at the end.
    pub(crate) tally: Tally,
    /// End-to-end latency of the sampled deliveries, in ns.
    pub(crate) latency: Histogram,
}

impl Closed {
    /// Adds another pool's results.
    pub(crate) fn add(&mut self, other: &Closed) {
        self.tally.add(&other.tally);
        self.latency.merge(&other.latency);
    }
}

/// Open connections and their tasks.
#[derive(Debug)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
    /// Read by every connection task; the pool sets it to stop them all.
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Pool {
    /// Opens the pool's connections; returns once each has opened or failed.
    pub(crate) async fn open(spec: &PoolSpec) -> Result<(Self, Opened), UrlError> {
        let mut targets = Vec::with_capacity(spec.urls.len());
        for url in &spec.urls {
            targets.push(Target::resolve(url).await?);
        }
        let targets = Arc::new(targets);
        let shared = Arc::new(Shared::new(spec.kind, spec.sample_every).with_format(spec.format));
        let (stop, stopped) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(spec.concurrency.max(1)));
        let handshakes = Arc::new(AtomicHistogram::default());
        // Each task reports its open outcome here once; the channel closes when all did.
        let (report, mut outcomes) = mpsc::channel::<Result<(), ConnError>>(1024);
        let timeout = Duration::from_secs_f64(spec.open_timeout_s);
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for g in spec.first..spec.first + spec.count {
            let (targets, shared, permits) = (targets.clone(), shared.clone(), permits.clone());
            let (handshakes, report, stopped) =
                (handshakes.clone(), report.clone(), stopped.clone());
            let (source, prefix, rooms) = (spec.source_ip, spec.user_prefix.clone(), spec.rooms);
            tasks.spawn(async move {
                let Ok(permit) = permits.acquire_owned().await else {
                    return;
                };
                let user = format!("{prefix}{g}");
                let target = &targets[server_index(g, rooms, targets.len())];
                let dial = Dial {
                    target,
                    source,
                    user: &user,
                    index: g,
                };
                // Boxed so the opening state is freed once open: the task keeps only `Conn`.
                let opened = Box::pin(tokio::time::timeout(
                    timeout,
                    open_one(dial, rooms, &shared, &handshakes),
                ))
                .await;
                drop(permit);
                match opened {
                    Ok(Ok(conn)) => {
                        let _ = report.send(Ok(())).await;
                        drop(report);
                        conn.run(shared, stopped, None).await;
                    }
                    Ok(Err(error)) => {
                        let _ = report.send(Err(error)).await;
                    }
                    Err(_elapsed) => {
                        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
                        let _ = report.send(Err(ConnError::Io(timed_out))).await;
                    }
                }
            });
        }
        drop(report);
        let mut opened = Opened::default();
        while let Some(outcome) = outcomes.recv().await {
            match outcome {
                Ok(()) => opened.connected += 1,
                Err(error) => {
                    opened.failed += 1;
                    if opened.first_error.is_none() {
                        opened.first_error = Some(crate::error_chain(&error));
                    }
                }
            }
        }
        opened.secs = started.elapsed().as_secs_f64();
        opened.handshake = handshakes.snapshot();
        Ok((
            Self {
                shared,
                stop,
                tasks,
            },
            opened,
        ))
    }

    /// Records only latencies of messages stamped in `[start_ns, end_ns)`.
    pub(crate) fn set_window(&self, start_ns: u64, end_ns: u64) {
        self.shared.set_window(start_ns, end_ns);
    }

    /// The counters so far.
    pub(crate) fn tally(&self) -> Tally {
        self.shared.tally()
    }

    /// Closes every connection (each waits for the server's side of the closing handshake).
    pub(crate) async fn close(mut self) -> Closed {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(CLOSE_DEADLINE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.shutdown().await;
        }
        Closed {
            tally: self.shared.tally(),
            latency: self.shared.latency.snapshot(),
        }
    }
}

/// Opens one connection and joins its room; records the handshake time (join excluded).
async fn open_one(
    dial: Dial<'_>,
    rooms: u64,
    shared: &Shared,
    handshakes: &AtomicHistogram,
) -> Result<Conn, ConnError> {
    let started = Instant::now();
    let mut conn = Conn::open(dial, shared).await?;
    handshakes.record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    if rooms > 0 {
        conn.join(&room_name(dial.index % rooms), shared).await?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::server_index;

    #[test]
    fn every_room_spans_every_server_in_equal_shares() {
        let (rooms, servers) = (10, 3);
        let mut per_room = [[0u32; 3]; 10];
        for g in 0..rooms * 30 {
            per_room[(g % rooms) as usize][server_index(g, rooms, servers)] += 1;
        }
        assert!(per_room.iter().all(|counts| counts == &[10, 10, 10]));
        assert_eq!(server_index(5, 0, 2), 1);
    }
}
