//! `connect`: opens N connections at concurrency C (TCP connect, upgrade, `connect` frame) and
//! reports the rate and the handshake latency; then closes them.

use serde::Serialize;

use super::{Header, Outcome, Run, RunError, round};
use crate::cli::ConnectArgs;
use crate::histogram::Summary;
use crate::measure::Usage;
use crate::worker::Workers;

#[derive(Debug, Serialize)]
struct Record {
    #[serde(flatten)]
    header: Header,
    connections: u64,
    concurrency: usize,
    connected: u64,
    failed: u64,
    first_error: Option<String>,
    elapsed_s: f64,
    connections_per_sec: f64,
    handshake_us: Summary,
    #[serde(flatten)]
    usage: Usage,
}

/// Runs the scenario.
pub(crate) async fn run(args: &ConnectArgs) -> Result<Outcome, RunError> {
    let n = args.connections;
    let mut run = Run::new(&args.common).await?;
    let specs = run.plan(n, "conn-", 0, None, 1)?;
    let deadline = run.common.timeout.unwrap_or(300.0) + 30.0;
    let mut workers = Workers::spawn(&specs, deadline).await?;
    run.probe.add_clients(&workers.pids());
    let before = run.probe.read();
    let opened = workers.open().await?;
    let after = run.probe.read();
    workers.close().await?;
    let usage = run.probe.usage(&before, &after);
    let rate = opened.connected as f64 / opened.secs.max(1e-9);
    let handshake = opened.handshake.summary_us();
    let mut summary = vec![
        format!(
            "connect: {} of {n} connections in {:.3} s at concurrency {}: {rate:.0} connections/s",
            opened.connected, opened.secs, run.common.concurrency
        ),
        format!(
            "  handshake us: p50 {} p99 {} max {}",
            handshake.p50, handshake.p99, handshake.max
        ),
    ];
    if let Some(error) = &opened.first_error {
        summary.push(format!("  {} failed; first error: {error}", opened.failed));
    }
    let record = Record {
        header: run.header("connect", specs.len()),
        connections: n,
        concurrency: run.common.concurrency,
        connected: opened.connected,
        failed: opened.failed,
        first_error: opened.first_error,
        elapsed_s: round(opened.secs, 4),
        connections_per_sec: round(rate, 1),
        handshake_us: handshake,
        usage,
    };
    Ok(Outcome {
        summary,
        record: serde_json::to_string(&record)?,
        complete: opened.failed == 0,
    })
}
