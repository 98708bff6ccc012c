//! `switchboard-bench`: the load and benchmark tool of Switchboard.
//!
//! It speaks protocol v1 to any `ws://` server with a WebSocket client of its own, built to be a
//! cheap instrument: one 64 KiB read buffer per runtime thread, frame headers parsed and payloads
//! left alone except for a byte check of the `type` and, on sampled frames, a scan for the send
//! stamp. Connections that receive live in worker processes (the tool re-executes itself), so a
//! run can exceed one process's open-files limit; publishers live in the parent.
//!
//! Modules, from the wire up:
//! - `ws`: upgrade request, masked client frames, the server frame scanner;
//! - `payload`: the JSON the tool sends and the byte checks on what it receives;
//! - `target`: server URLs; `stats`: the server's `/stats`;
//! - `histogram`: lock-free, mergeable latency histograms;
//! - `shared`: counters of a group of connections; `conn`: one connection (and publishing);
//! - `pool`: the connections of one process; `worker`: worker processes and their control pipe;
//! - `procfs`, `measure`: CPU and memory of the servers and of the tool itself;
//! - `scenario`: `fanout`, `broadcast`, `connect`, `idle`; `cli`: the command line.

mod cli;
mod conn;
mod histogram;
mod measure;
mod payload;
mod pool;
mod procfs;
mod scenario;
mod shared;
mod stats;
mod target;
mod worker;
mod ws;

use std::error::Error;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use cli::{Cli, Scenario};
use scenario::{Outcome, RunError};

/// An error and its causes, one after the other.
pub(crate) fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-bench: cannot start the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(cli.scenario));
    // Stdin readers of a worker sit on blocking threads: do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn run(scenario: Scenario) -> ExitCode {
    if let Scenario::Worker(args) = scenario {
        return worker(args).await;
    }
    let (name, limit, outcome) = match scenario {
        Scenario::Fanout(a) => {
            let limit = a.common.timeout.unwrap_or(a.load.planned_secs() + 300.0);
            (
                "fanout",
                limit,
                within(limit, scenario::fanout::run(&a)).await,
            )
        }
        Scenario::Broadcast(a) => {
            let limit = a.common.timeout.unwrap_or(a.load.planned_secs() + 300.0);
            (
                "broadcast",
                limit,
                within(limit, scenario::broadcast::run(&a)).await,
            )
        }
        Scenario::Connect(a) => {
            let limit = a.common.timeout.unwrap_or(300.0);
            (
                "connect",
                limit,
                within(limit, scenario::connect::run(&a)).await,
            )
        }
        Scenario::Idle(a) => {
            let limit = a.common.timeout.unwrap_or(a.settle + a.hold + 300.0);
            ("idle", limit, within(limit, scenario::idle::run(&a)).await)
        }
        Scenario::Worker(_) => unreachable!("handled above"),
    };
    match outcome {
        Some(Ok(outcome)) => report(&outcome),
        Some(Err(error)) => {
            eprintln!("switchboard-bench {name}: {}", error_chain(&error));
            ExitCode::from(2)
        }
        None => {
            eprintln!("switchboard-bench {name}: gave up after the {limit} s timeout");
            ExitCode::from(2)
        }
    }
}

/// Runs a scenario under the hard timeout; `None` when it ran out (the scenario is dropped,
/// which kills its workers).
async fn within(
    limit: f64,
    scenario: impl Future<Output = Result<Outcome, RunError>>,
) -> Option<Result<Outcome, RunError>> {
    tokio::time::timeout(Duration::from_secs_f64(limit), scenario)
        .await
        .ok()
}

fn report(outcome: &Outcome) -> ExitCode {
    for line in &outcome.summary {
        println!("{line}");
    }
    println!("{}", outcome.record);
    if outcome.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn worker(args: cli::WorkerArgs) -> ExitCode {
    let spec = match serde_json::from_str(&args.json_config) {
        Ok(spec) => spec,
        Err(error) => {
            eprintln!("switchboard-bench worker: bad --json-config: {error}");
            return ExitCode::from(2);
        }
    };
    let deadline = Duration::from_secs_f64(args.deadline);
    match tokio::time::timeout(deadline, worker::serve(spec)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("switchboard-bench worker: {error}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!(
                "switchboard-bench worker: deadline of {} s passed",
                args.deadline
            );
            ExitCode::from(2)
        }
    }
}
