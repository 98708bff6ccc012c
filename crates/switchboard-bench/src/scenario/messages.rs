//! The message phase `fanout` and `broadcast` share: receivers in worker processes, publishers
//! in this process on an absolute schedule, a warm-up, a measured interval, a drain, and the
//! figures of all of it.
//!
//! Timeline: publishers start at `t0`; the measured interval is `[t0 + warmup, t0 + warmup +
//! duration)`, which is also the window of send stamps whose latency is recorded; publishing
//! stops at its end; the drain waits until every expected delivery arrived (or `--drain`
//! passed); then everything is closed and counted.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::rss_series::{self, RssSample};
use super::{Run, RunError, round};
use crate::cli::Load;
use crate::conn::{Conn, Dial, PublishStats, Publisher};
use crate::histogram::{Histogram, Summary};
use crate::measure::{ClientCpu, Reading};
use crate::payload::{self, Kind, Stamped};
use crate::pool::{Closed, PoolSpec};
use crate::shared::{Shared, Tally};
use crate::target::Target;
use crate::worker::Workers;

/// How long after setup the publishers start.
const START_DELAY: Duration = Duration::from_millis(200);

/// How often the drain polls the counters.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// One publishing connection.
#[derive(Debug, Clone)]
pub(super) struct PublisherSpec {
    /// Its `userId`.
    pub(super) user: String,
    /// The room it joins and publishes to; `None` publishes broadcasts.
    pub(super) room: Option<String>,
}

/// A message phase to run.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) kind: Kind,
    pub(super) receivers: Vec<PoolSpec>,
    pub(super) publishers: Vec<PublisherSpec>,
    /// Connections that join like publishers but never read (slow consumers).
    pub(super) stalled: Vec<PublisherSpec>,
    /// Connections that receive each message.
    pub(super) recipients: u64,
}

/// A server's figures over the measured interval.
#[derive(Debug, Serialize)]
pub(super) struct ServerFigures {
    pid: u32,
    cpu_s: Option<f64>,
    cpu_pct: Option<f64>,
    /// Server CPU time per delivery in the interval, in microseconds.
    cpu_us_per_delivery: Option<f64>,
    rss_bytes: Option<u64>,
}

/// The figures of a message phase.
#[derive(Debug, Serialize)]
pub(super) struct Figures {
    connections: u64,
    sent: u64,
    expected: u64,
    delivered: u64,
    loss: i64,
    loss_pct: f64,
    interval_s: f64,
    sends_per_sec: f64,
    deliveries_per_sec: f64,
    latency_us: Summary,
    send_lag_us: Summary,
    drain_s: f64,
    servers: Vec<ServerFigures>,
    client: ClientCpu,
    other_frames: u64,
    /// Bytes the receiving connections read over the whole run (frame headers included) per
    /// delivery: the size of a delivered frame on the wire, plus a small share for the
    /// `connect`, `room_joined` and `user_joined` frames of the setup.
    wire_bytes_per_delivery: Option<f64>,
    pings: u64,
    errors: u64,
    server_closes: std::collections::BTreeMap<u16, u64>,
    server_stats: Vec<Option<serde_json::Value>>,
    /// `--rss-every`: the servers' RSS through the measurement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rss_series: Vec<RssSample>,
}

impl Figures {
    /// Human summary lines.
    pub(super) fn summary(&self) -> Vec<String> {
        let l = &self.latency_us;
        let mut lines = vec![
            format!(
                "  delivered {} of {} expected (loss {}), {:.0} deliveries/s, {:.1} sends/s over {:.1} s",
                self.delivered,
                self.expected,
                self.loss,
                self.deliveries_per_sec,
                self.sends_per_sec,
                self.interval_s
            ),
            format!(
                "  latency us: p50 {} p99 {} p99.9 {} max {} ({} samples)",
                l.p50, l.p99, l.p999, l.max, l.samples
            ),
        ];
        for s in &self.servers {
            lines.push(format!(
                "  server {}: cpu {:?} s ({:?} %), {:?} us/delivery",
                s.pid, s.cpu_s, s.cpu_pct, s.cpu_us_per_delivery
            ));
        }
        let pids: Vec<u32> = self.servers.iter().map(|s| s.pid).collect();
        lines.extend(rss_series::summary(&self.rss_series, &pids));
        lines.push(format!(
            "  client: cpu {} s ({} %) in {} processes",
            self.client.cpu_s, self.client.cpu_pct, self.client.processes
        ));
        if self.errors > 0 || !self.server_closes.is_empty() {
            lines.push(format!(
                "  connections lost: {} errors, server closes by code {:?}",
                self.errors, self.server_closes
            ));
        }
        lines
    }
}

/// Counters read at one instant.
struct Mark {
    cpu: Reading,
    delivered: u64,
    sent: u64,
}

/// Runs the phase; returns the figures and the number of worker processes used.
pub(super) async fn execute(
    run: &mut Run,
    load: &Load,
    plan: Plan,
) -> Result<(Figures, usize), RunError> {
    let mut workers = Workers::spawn(&plan.receivers, deadline(run, load)).await?;
    run.probe.add_clients(&workers.pids());
    let receivers = open_receivers(&mut workers).await?;
    let mut publishers = Publishers::open(run, load, &plan).await?;
    let connections = receivers + publishers.connections();

    let t0 = Instant::now() + START_DELAY;
    let measure_from = t0 + Duration::from_secs_f64(load.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(load.duration);
    let (from_ns, to_ns) = (epoch_ns(measure_from), epoch_ns(measure_to));
    workers.window(from_ns, to_ns).await?;
    publishers.local.set_window(from_ns, to_ns);
    let (stop, mut tasks) = publishers.start(&plan.publishers, load, t0);

    tokio::time::sleep_until(measure_from).await;
    let start = publishers.mark(run, &mut workers).await?;
    let rss_series = match load.rss_every {
        Some(every) if every > 0.0 => {
            let every = Duration::from_secs_f64(every);
            rss_series::sample(&run.probe, every, measure_from, measure_to).await
        }
        _ => {
            tokio::time::sleep_until(measure_to).await;
            Vec::new()
        }
    };
    let end = publishers.mark(run, &mut workers).await?;
    let drain_s = publishers
        .drain(&mut workers, plan.recipients, load.drain)
        .await?;
    let server_stats = run.server_stats().await;
    let rss = run.probe.server_rss();

    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    let mut closed = workers.close().await?;
    closed.add(&Closed {
        tally: publishers.local.tally(),
        latency: publishers.local.latency.snapshot(),
    });
    let sent = publishers.sent();
    let figures = figures(FigureInputs {
        run,
        start: &start,
        end: &end,
        connections,
        sent,
        expected: sent * plan.recipients,
        tally: closed.tally,
        latency: closed.latency,
        lag: publishers.stats.lag.snapshot(),
        drain_s,
        server_stats,
        rss,
        rss_series,
    });
    Ok((figures, plan.receivers.len()))
}

/// Opens every receiving connection; returns how many opened. Receivers that fail to open
/// make the expected counts meaningless, so any failure ends the run.
async fn open_receivers(workers: &mut Workers) -> Result<u64, RunError> {
    let opened = workers.open().await?;
    if opened.failed > 0 {
        return Err(RunError::Receivers {
            failed: opened.failed,
            total: opened.failed + opened.connected,
            first: opened.first_error.unwrap_or_default(),
        });
    }
    Ok(opened.connected)
}

/// The connections of this process: the publishers and the stalled ones.
struct Publishers {
    /// The counters of this process's connections.
    local: Arc<Shared>,
    stats: Arc<PublishStats>,
    /// Publishing connections not started yet; [`Publishers::start`] takes them.
    waiting: Vec<Conn>,
    /// Held open, never read, until the phase ends.
    stalled: Vec<Conn>,
    /// How many connections publish.
    count: usize,
    /// Messages each publisher sends.
    per_publisher: u64,
}

impl Publishers {
    /// Opens the publishing and the stalled connections (each joins its room).
    async fn open(run: &Run, load: &Load, plan: &Plan) -> Result<Self, RunError> {
        let local = Arc::new(
            Shared::new(Some(plan.kind), load.sample_every()).with_format(run.common.format),
        );
        let target = match &load.publisher_url {
            Some(url) => Some(Target::resolve(url).await?),
            None => None,
        };
        let target = target.as_ref();
        let mut waiting = Vec::with_capacity(plan.publishers.len());
        for (index, spec) in plan.publishers.iter().enumerate() {
            waiting.push(open_publisher(run, target, &local, spec, index as u64).await?);
        }
        let mut stalled = Vec::with_capacity(plan.stalled.len());
        for (index, spec) in plan.stalled.iter().enumerate() {
            let index = (plan.publishers.len() + index) as u64;
            stalled.push(open_publisher(run, target, &local, spec, index).await?);
        }
        Ok(Self {
            local,
            stats: Arc::new(PublishStats::default()),
            count: waiting.len(),
            waiting,
            stalled,
            per_publisher: load.messages_per_publisher(),
        })
    }

    /// Connections opened in this process.
    fn connections(&self) -> u64 {
        (self.waiting.len() + self.stalled.len()) as u64
    }

    /// Starts every publisher on its schedule from `t0`; returns the sender that stops them
    /// and their tasks.
    fn start(
        &mut self,
        specs: &[PublisherSpec],
        load: &Load,
        t0: Instant,
    ) -> (watch::Sender<bool>, JoinSet<()>) {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (j, (conn, spec)) in std::mem::take(&mut self.waiting)
            .into_iter()
            .zip(specs)
            .enumerate()
        {
            // Publishers are spread evenly over one send interval rather than all firing at once.
            let offset = Duration::from_secs_f64(j as f64 / self.count as f64 / load.rate);
            let stamped = Stamped::new(spec.room.as_deref(), load.size);
            let publisher = Publisher::new(
                stamped,
                t0 + offset,
                load.rate,
                self.per_publisher,
                self.stats.clone(),
            );
            tasks.spawn(conn.run(self.local.clone(), stopped.clone(), Some(publisher)));
        }
        (stop, tasks)
    }

    /// Messages sent so far.
    fn sent(&self) -> u64 {
        self.stats.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counters now.
    async fn mark(&self, run: &Run, workers: &mut Workers) -> Result<Mark, RunError> {
        let cpu = run.probe.read();
        let delivered = workers.tally().await?.delivered + self.local.delivered();
        Ok(Mark {
            cpu,
            delivered,
            sent: self.sent(),
        })
    }

    /// Waits until every planned message was sent and delivered to its `recipients`, at most
    /// `limit_s` seconds; returns how long it waited.
    async fn drain(
        &self,
        workers: &mut Workers,
        recipients: u64,
        limit_s: f64,
    ) -> Result<f64, RunError> {
        let planned = self.per_publisher * self.count as u64;
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(limit_s);
        loop {
            let sent = self.sent();
            let delivered = workers.tally().await?.delivered + self.local.delivered();
            let complete = sent == planned && delivered >= sent * recipients;
            if complete || Instant::now() >= deadline {
                return Ok(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// The run's hard limit for workers: they exit by themselves after it.
fn deadline(run: &Run, load: &Load) -> f64 {
    run.common.timeout.unwrap_or(load.planned_secs() + 300.0) + 30.0
}

async fn open_publisher(
    run: &Run,
    publisher_target: Option<&Target>,
    local: &Shared,
    spec: &PublisherSpec,
    index: u64,
) -> Result<Conn, RunError> {
    let target = match publisher_target {
        Some(target) => target,
        None => &run.targets[index as usize % run.targets.len()],
    };
    let dial = Dial {
        target,
        source: None,
        user: &spec.user,
        index,
    };
    let timeout = Duration::from_secs_f64(run.common.open_timeout);
    let opened = tokio::time::timeout(timeout, async {
        let mut conn = Conn::open(dial, local).await?;
        if let Some(room) = &spec.room {
            conn.join(room, local).await?;
        }
        Ok(conn)
    })
    .await
    .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
    opened.map_err(|source| RunError::Conn { index, source })
}

/// Epoch nanoseconds at a (near) instant.
fn epoch_ns(at: Instant) -> u64 {
    let now = Instant::now();
    let now_ns = payload::now_ns();
    if at >= now {
        now_ns + u64::try_from((at - now).as_nanos()).unwrap_or(0)
    } else {
        now_ns.saturating_sub(u64::try_from((now - at).as_nanos()).unwrap_or(0))
    }
}

struct FigureInputs<'a> {
    run: &'a Run,
    start: &'a Mark,
    end: &'a Mark,
    connections: u64,
    sent: u64,
    expected: u64,
    tally: Tally,
    latency: Histogram,
    lag: Histogram,
    drain_s: f64,
    server_stats: Vec<Option<serde_json::Value>>,
    rss: Vec<Option<u64>>,
    rss_series: Vec<RssSample>,
}

fn figures(i: FigureInputs<'_>) -> Figures {
    let usage = i.run.probe.usage(&i.start.cpu, &i.end.cpu);
    let secs = usage.interval_s.max(1e-9);
    let in_interval = i.end.delivered.saturating_sub(i.start.delivered);
    let servers = usage
        .servers
        .iter()
        .zip(&i.rss)
        .map(|(cpu, rss)| ServerFigures {
            pid: cpu.pid,
            cpu_s: cpu.cpu_s,
            cpu_pct: cpu.cpu_pct,
            cpu_us_per_delivery: cpu
                .cpu_s
                .filter(|_| in_interval > 0)
                .map(|s| round(s * 1e6 / in_interval as f64, 3)),
            rss_bytes: *rss,
        })
        .collect();
    let loss = i.expected as i64 - i.tally.delivered as i64;
    Figures {
        connections: i.connections,
        sent: i.sent,
        expected: i.expected,
        delivered: i.tally.delivered,
        loss,
        loss_pct: if i.expected == 0 {
            0.0
        } else {
            round(100.0 * loss as f64 / i.expected as f64, 4)
        },
        interval_s: usage.interval_s,
        sends_per_sec: round(i.end.sent.saturating_sub(i.start.sent) as f64 / secs, 1),
        deliveries_per_sec: round(in_interval as f64 / secs, 1),
        latency_us: i.latency.summary_us(),
        send_lag_us: i.lag.summary_us(),
        drain_s: round(i.drain_s, 3),
        servers,
        client: usage.client,
        other_frames: i.tally.other_frames,
        wire_bytes_per_delivery: (i.tally.delivered > 0)
            .then(|| round(i.tally.bytes as f64 / i.tally.delivered as f64, 1)),
        pings: i.tally.pings,
        errors: i.tally.errors,
        server_closes: i.tally.server_closes,
        server_stats: i.server_stats,
        rss_series: i.rss_series,
    }
}
