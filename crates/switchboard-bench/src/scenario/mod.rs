//! The scenarios, and what they share: resolving the servers, planning how connections spread
//! over worker processes and source addresses, the report header, and the run's errors.
//!
//! Every scenario returns an [`Outcome`]: human lines, one JSON record and whether every
//! connection opened. Printing is `main`'s.

pub(crate) mod broadcast;
pub(crate) mod connect;
pub(crate) mod fanout;
pub(crate) mod idle;
mod messages;
mod rss_series;

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::cli::Common;
use crate::conn::ConnError;
use crate::measure::{ClockInfo, Probe};
use crate::payload::Kind;
use crate::pool::PoolSpec;
use crate::procfs;
use crate::target::{Target, UrlError};
use crate::worker::WorkerError;

/// File descriptors a worker keeps for itself (stdio, epoll, the runtime's).
const RESERVED_FDS: u64 = 100;

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// Options that cannot work together.
    #[error("{0}")]
    Invalid(String),
    /// A bad or unresolvable URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A worker process failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A connection the scenario cannot do without failed.
    #[error("connection {index} could not be opened")]
    Conn {
        /// Which one.
        index: u64,
        /// Why.
        #[source]
        source: ConnError,
    },
    /// The record could not be serialized (a bug).
    #[error("cannot write the JSON record")]
    Record(#[from] serde_json::Error),
    /// Some receiving connections failed to open, so the expected counts mean nothing.
    #[error("{failed} of {total} connections could not be opened (first error: {first})")]
    Receivers {
        /// How many failed.
        failed: u64,
        /// How many were tried.
        total: u64,
        /// The first error.
        first: String,
    },
}

/// What a scenario hands back to `main`.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Human summary lines.
    pub(crate) summary: Vec<String>,
    /// The JSON record, on one line.
    pub(crate) record: String,
    /// Every connection opened.
    pub(crate) complete: bool,
}

/// Fields every record starts with.
#[derive(Debug, Serialize)]
pub(crate) struct Header {
    /// The scenario's name.
    pub(crate) scenario: &'static str,
    /// `--label`.
    pub(crate) label: Option<String>,
    /// The server URLs.
    pub(crate) urls: Vec<String>,
    /// Worker processes used.
    pub(crate) workers: usize,
    /// The clock of the CPU figures.
    #[serde(flatten)]
    pub(crate) clock: ClockInfo,
}

/// What every scenario starts from: resolved servers and the processes to measure.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) common: Common,
    pub(crate) targets: Vec<Target>,
    pub(crate) probe: Probe,
}

impl Run {
    /// Resolves the servers.
    pub(crate) async fn new(common: &Common) -> Result<Self, RunError> {
        if common.urls.is_empty() {
            return Err(RunError::Invalid("at least one --url is needed".into()));
        }
        let mut targets = Vec::with_capacity(common.urls.len());
        for url in &common.urls {
            targets.push(Target::resolve(url).await?);
        }
        Ok(Self {
            common: common.clone(),
            targets,
            probe: Probe::new(&common.server_pids),
        })
    }

    /// The record header.
    pub(crate) fn header(&self, scenario: &'static str, workers: usize) -> Header {
        Header {
            scenario,
            label: self.common.label.clone(),
            urls: self.common.urls.clone(),
            workers,
            clock: self.probe.clock_info(),
        }
    }

    /// Splits connections `0..total` over worker processes and source addresses.
    pub(crate) fn plan(
        &self,
        total: u64,
        user_prefix: &str,
        rooms: u64,
        kind: Option<Kind>,
        sample_every: u64,
    ) -> Result<Vec<PoolSpec>, RunError> {
        let limit = procfs::open_files_limit().unwrap_or(20_000);
        let per_worker = limit.saturating_sub(RESERVED_FDS).max(1);
        let workers = match self.common.workers {
            0 => total.div_ceil(per_worker).max(1),
            n => n as u64,
        };
        if total.div_ceil(workers) > per_worker {
            return Err(RunError::Invalid(format!(
                "{total} connections over {workers} workers exceed the open-files limit \
                 ({limit} per process); use --workers {} or more",
                total.div_ceil(per_worker)
            )));
        }
        let sources = self.sources(workers)?;
        if let (Some(ports), Some(Some(_))) = (procfs::ephemeral_ports(), sources.first()) {
            let per_source = total.div_ceil(sources.len() as u64);
            if per_source > ports {
                return Err(RunError::Invalid(format!(
                    "about {per_source} connections per source address, more than the {ports} \
                     ephemeral ports; give more --source-ips or workers"
                )));
            }
        }
        let concurrency = (self.common.concurrency as u64 / workers).max(1) as usize;
        Ok((0..workers)
            .map(|w| {
                let first = w * total / workers;
                PoolSpec {
                    urls: self.common.urls.clone(),
                    source_ip: sources[w as usize % sources.len()],
                    first,
                    count: (w + 1) * total / workers - first,
                    user_prefix: user_prefix.to_owned(),
                    rooms,
                    concurrency,
                    kind,
                    sample_every,
                    open_timeout_s: self.common.open_timeout,
                    format: self.common.format,
                }
            })
            .collect())
    }

    /// Source addresses, one per worker in turn (a single `None`: the OS chooses).
    fn sources(&self, workers: u64) -> Result<Vec<Option<IpAddr>>, RunError> {
        match self.common.source_ips.trim() {
            "none" => Ok(vec![None]),
            "auto" => {
                let loopback = self
                    .targets
                    .iter()
                    .all(|t| t.addr().ip().is_loopback() && t.addr().is_ipv4());
                if !loopback {
                    return Ok(vec![None]);
                }
                if workers > 250 {
                    return Err(RunError::Invalid(
                        "more than 250 workers: give --source-ips".into(),
                    ));
                }
                Ok((0..workers)
                    .map(|w| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + w as u8))))
                    .collect())
            }
            list => list
                .split(',')
                .map(|ip| {
                    ip.trim().parse().map(Some).map_err(|_| {
                        RunError::Invalid(format!("--source-ips: {ip:?} is not an IP address"))
                    })
                })
                .collect(),
        }
    }

    /// The `/stats` of every server, in URL order.
    pub(crate) async fn server_stats(&self) -> Vec<Option<serde_json::Value>> {
        let mut all = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            all.push(crate::stats::fetch(target).await);
        }
        all
    }
}

/// Rounds for reports.
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}
