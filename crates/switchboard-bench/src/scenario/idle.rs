//! `idle`: opens N connections spread over R rooms, holds them, and reports what they cost the
//! server: resident memory before and after (per server with several `--server-pid`), bytes per
//! connection, and CPU while opening and while holding (heartbeats only).

use serde::Serialize;

use super::{Header, Outcome, Run, RunError, round};
use crate::cli::IdleArgs;
use crate::histogram::Summary;
use crate::measure::Usage;
use crate::pool::Opened;
use crate::shared::Tally;
use crate::worker::Workers;

#[derive(Debug, Serialize)]
struct ServerMemory {
    pid: u32,
    rss_before: Option<u64>,
    rss_after_open: Option<u64>,
    rss_after_hold: Option<u64>,
    /// After every connection closed: what the server kept.
    rss_after_close: Option<u64>,
    /// `rss_after_open - rss_before`.
    rss_delta: Option<i64>,
    /// `rss_delta` over this server's share of the connections (connected / servers).
    bytes_per_connection: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Record {
    #[serde(flatten)]
    header: Header,
    connections: u64,
    rooms: u64,
    connected: u64,
    failed: u64,
    first_error: Option<String>,
    open_s: f64,
    connections_per_sec: f64,
    handshake_us: Summary,
    settle_s: f64,
    hold_s: f64,
    /// All servers' RSS growth over all connections.
    bytes_per_connection: Option<f64>,
    memory: Vec<ServerMemory>,
    open_usage: Usage,
    hold_usage: Usage,
    pings: u64,
    errors: u64,
    server_closes: std::collections::BTreeMap<u16, u64>,
    server_stats: Vec<Option<serde_json::Value>>,
}

/// What one run measured, phase by phase.
struct Held {
    opened: Opened,
    /// Resident memory of each server before opening, after settling, after holding and after
    /// closing.
    rss_before: Vec<Option<u64>>,
    rss_after_open: Vec<Option<u64>>,
    rss_after_hold: Vec<Option<u64>>,
    rss_after_close: Vec<Option<u64>>,
    /// CPU while opening, and while holding (heartbeats only).
    open_usage: Usage,
    hold_usage: Usage,
    tally: Tally,
    server_stats: Vec<Option<serde_json::Value>>,
}

/// Runs the scenario.
pub(crate) async fn run(args: &IdleArgs) -> Result<Outcome, RunError> {
    let n = args.connections;
    let rooms = args.rooms.unwrap_or((n / 100).max(1));
    let mut run = Run::new(&args.common).await?;
    let specs = run.plan(n, "idle-", rooms, None, 1)?;
    let planned = args.settle + args.hold + 300.0;
    let deadline = run.common.timeout.unwrap_or(planned) + 30.0;
    let workers = Workers::spawn(&specs, deadline).await?;
    run.probe.add_clients(&workers.pids());
    let held = hold(&run, workers, args).await?;

    let memory = memory(&run, &held);
    let total_delta: Option<i64> = if memory.is_empty() {
        None
    } else {
        memory.iter().map(|m| m.rss_delta).sum()
    };
    let opened = &held.opened;
    let bytes_per_connection = total_delta
        .filter(|_| opened.connected > 0)
        .map(|d| round(d as f64 / opened.connected as f64, 1));
    let rate = opened.connected as f64 / opened.secs.max(1e-9);
    let summary = summary(&held, &memory, args, specs.len(), rooms);
    let record = Record {
        header: run.header("idle", specs.len()),
        connections: n,
        rooms,
        connected: opened.connected,
        failed: opened.failed,
        first_error: opened.first_error.clone(),
        open_s: round(opened.secs, 3),
        connections_per_sec: round(rate, 1),
        handshake_us: opened.handshake.summary_us(),
        settle_s: args.settle,
        hold_s: args.hold,
        bytes_per_connection,
        memory,
        open_usage: held.open_usage,
        hold_usage: held.hold_usage,
        pings: held.tally.pings,
        errors: held.tally.errors,
        server_closes: held.tally.server_closes,
        server_stats: held.server_stats,
    };
    Ok(Outcome {
        summary,
        record: serde_json::to_string(&record)?,
        complete: held.opened.failed == 0,
    })
}

/// Opens every connection, lets them settle, holds them and closes them, reading memory and
/// CPU at each step.
async fn hold(run: &Run, mut workers: Workers, args: &IdleArgs) -> Result<Held, RunError> {
    let rss_before = run.probe.server_rss();
    let c0 = run.probe.read();
    let opened = workers.open().await?;
    let c1 = run.probe.read();
    tokio::time::sleep(std::time::Duration::from_secs_f64(args.settle)).await;
    let rss_after_open = run.probe.server_rss();
    let c2 = run.probe.read();
    tokio::time::sleep(std::time::Duration::from_secs_f64(args.hold)).await;
    let c3 = run.probe.read();
    let rss_after_hold = run.probe.server_rss();
    let tally = workers.tally().await?;
    let server_stats = run.server_stats().await;
    workers.close().await?;
    Ok(Held {
        opened,
        rss_before,
        rss_after_open,
        rss_after_hold,
        rss_after_close: run.probe.server_rss(),
        open_usage: run.probe.usage(&c0, &c1),
        hold_usage: run.probe.usage(&c2, &c3),
        tally,
        server_stats,
    })
}

/// Each server's memory, and what a connection cost it.
fn memory(run: &Run, held: &Held) -> Vec<ServerMemory> {
    let servers = run.probe.servers().len().max(1) as f64;
    let share = held.opened.connected as f64 / servers;
    run.probe
        .servers()
        .iter()
        .enumerate()
        .map(|(i, &pid)| {
            let delta = match (held.rss_before[i], held.rss_after_open[i]) {
                (Some(a), Some(b)) => Some(b as i64 - a as i64),
                _ => None,
            };
            ServerMemory {
                pid,
                rss_before: held.rss_before[i],
                rss_after_open: held.rss_after_open[i],
                rss_after_hold: held.rss_after_hold[i],
                rss_after_close: held.rss_after_close[i],
                rss_delta: delta,
                bytes_per_connection: delta
                    .filter(|_| share > 0.0)
                    .map(|d| round(d as f64 / share, 1)),
            }
        })
        .collect()
}

/// The human summary lines.
fn summary(
    held: &Held,
    memory: &[ServerMemory],
    args: &IdleArgs,
    workers: usize,
    rooms: u64,
) -> Vec<String> {
    let opened = &held.opened;
    let rate = opened.connected as f64 / opened.secs.max(1e-9);
    let mut summary = vec![format!(
        "idle: {} of {} connections in {rooms} rooms over {workers} workers, opened in {:.2} s ({rate:.0}/s), held {} s",
        opened.connected, args.connections, opened.secs, args.hold
    )];
    for m in memory {
        summary.push(format!(
            "  server {}: rss {:?} -> {:?} bytes, {:?} bytes/connection",
            m.pid, m.rss_before, m.rss_after_open, m.bytes_per_connection
        ));
    }
    if let Some(error) = &opened.first_error {
        summary.push(format!("  {} failed; first error: {error}", opened.failed));
    }
    summary.push(format!(
        "  client cpu while opening {} s, while holding {} s",
        held.open_usage.client.cpu_s, held.hold_usage.client.cpu_s
    ));
    summary
}
