//! Measuring the processes of a run: the servers given with `--server-pid` and the load tool
//! itself (this process and its workers), so a report shows both sides' CPU.
//!
//! Owns [`Probe`] (which processes, which clock), [`Reading`] (CPU times at one instant) and the
//! report fragments built from two readings. Reads `/proc` through `procfs`.

use serde::Serialize;
use tokio::time::Instant;

use crate::procfs::{self, Clock, CpuTimes};

/// The processes a run measures.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    clock: Clock,
    servers: Vec<u32>,
    /// This process first, then the workers.
    clients: Vec<u32>,
}

/// CPU times at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    at: Instant,
    /// Per server, `None` when its stat could not be read.
    servers: Vec<Option<CpuTimes>>,
    /// Per client process.
    clients: Vec<Option<f64>>,
}

/// CPU use of one server over an interval.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ServerCpu {
    /// Its process id.
    pub(crate) pid: u32,
    /// CPU seconds (user + system) used in the interval.
    pub(crate) cpu_s: Option<f64>,
    /// `cpu_s` over the interval, in percent of one core.
    pub(crate) cpu_pct: Option<f64>,
    /// Of `cpu_s`, the seconds spent in the kernel (system time).
    pub(crate) system_s: Option<f64>,
}

/// CPU use of the load tool over an interval.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClientCpu {
    /// CPU seconds of this process and its workers.
    pub(crate) cpu_s: f64,
    /// `cpu_s` over the interval, in percent of one core.
    pub(crate) cpu_pct: f64,
    /// Processes counted (this one and its workers).
    pub(crate) processes: usize,
}

/// CPU use of everything measured over an interval.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Usage {
    /// The interval, in seconds.
    pub(crate) interval_s: f64,
    /// Per server.
    pub(crate) servers: Vec<ServerCpu>,
    /// The load tool.
    pub(crate) client: ClientCpu,
}

/// The tick length used, for the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClockInfo {
    /// Clock ticks per second of `/proc/PID/stat` times.
    pub(crate) clk_tck: u64,
    /// `getconf` when asked, `assumed` when 100 was assumed.
    pub(crate) clk_tck_source: &'static str,
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

impl Probe {
    /// Measures `servers` and this process.
    pub(crate) fn new(servers: &[u32]) -> Self {
        Self {
            clock: Clock::detect(),
            servers: servers.to_vec(),
            clients: vec![std::process::id()],
        }
    }

    /// Also counts these worker processes as the load tool.
    pub(crate) fn add_clients(&mut self, pids: &[u32]) {
        self.clients.extend_from_slice(pids);
    }

    /// The servers measured.
    pub(crate) fn servers(&self) -> &[u32] {
        &self.servers
    }

    /// The clock, for the report.
    pub(crate) fn clock_info(&self) -> ClockInfo {
        ClockInfo {
            clk_tck: self.clock.ticks_per_sec,
            clk_tck_source: if self.clock.from_getconf {
                "getconf"
            } else {
                "assumed"
            },
        }
    }

    /// CPU times now.
    pub(crate) fn read(&self) -> Reading {
        let cpu = |pid: &u32| self.clock.cpu_times(*pid).ok();
        Reading {
            at: Instant::now(),
            servers: self.servers.iter().map(cpu).collect(),
            clients: self
                .clients
                .iter()
                .map(|pid| cpu(pid).map(CpuTimes::total))
                .collect(),
        }
    }

    /// Resident memory of each server now (`None` when unreadable).
    pub(crate) fn server_rss(&self) -> Vec<Option<u64>> {
        self.servers
            .iter()
            .map(|&pid| procfs::rss_bytes(pid).ok())
            .collect()
    }

    /// CPU use between two readings. A client process read in `from` but gone in `to` (or the
    /// reverse) is left out.
    pub(crate) fn usage(&self, from: &Reading, to: &Reading) -> Usage {
        let secs = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
        let servers = self
            .servers
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let (used, system) = match (from.servers.get(i), to.servers.get(i)) {
                    (Some(Some(a)), Some(Some(b))) => {
                        (Some(b.total() - a.total()), Some(b.system - a.system))
                    }
                    _ => (None, None),
                };
                ServerCpu {
                    pid,
                    cpu_s: used.map(|u| round(u, 3)),
                    cpu_pct: used.map(|u| round(100.0 * u / secs, 1)),
                    system_s: system.map(|s| round(s, 3)),
                }
            })
            .collect();
        let client: f64 = from
            .clients
            .iter()
            .zip(&to.clients)
            .filter_map(|pair| match pair {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            })
            .sum();
        Usage {
            interval_s: round(secs, 3),
            servers,
            client: ClientCpu {
                cpu_s: round(client, 3),
                cpu_pct: round(100.0 * client / secs, 1),
                processes: self.clients.len(),
            },
        }
    }
}
