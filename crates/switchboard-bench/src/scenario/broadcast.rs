//! `broadcast`: N connections; the first one publishes `broadcast` frames at M msg/s, and every
//! connection (the publisher included) receives each one.
//!
//! Receivers are connections `1..N` of the worker pools; the publisher runs in this process.

use serde::Serialize;

use super::messages::{self, Figures, Plan, PublisherSpec};
use super::{Header, Outcome, Run, RunError};
use crate::cli::BroadcastArgs;
use crate::payload::Kind;

#[derive(Debug, Serialize)]
struct Record {
    #[serde(flatten)]
    header: Header,
    rate: f64,
    duration_s: f64,
    warmup_s: f64,
    size: usize,
    sample_every: u64,
    #[serde(flatten)]
    figures: Figures,
}

/// Runs the scenario.
pub(crate) async fn run(args: &BroadcastArgs) -> Result<Outcome, RunError> {
    let n = args.connections;
    if n == 0 || args.load.rate <= 0.0 {
        return Err(RunError::Invalid(
            "broadcast needs --connections and --rate above 0".into(),
        ));
    }
    let mut run = Run::new(&args.common).await?;
    let sample_every = args.load.sample_every();
    let mut receivers = run.plan(n - 1, "bc-", 0, Some(Kind::Broadcast), sample_every)?;
    for pool in &mut receivers {
        // Connection 0 is the publisher.
        pool.first += 1;
    }
    let plan = Plan {
        kind: Kind::Broadcast,
        receivers,
        publishers: vec![PublisherSpec {
            user: "bc-0".into(),
            room: None,
        }],
        stalled: Vec::new(),
        recipients: n,
    };
    let (figures, workers) = messages::execute(&mut run, &args.load, plan).await?;
    let mut summary = vec![format!(
        "broadcast: {n} connections, {} msg/s, {} B, {} s (+{} s warm-up)",
        args.load.rate, args.load.size, args.load.duration, args.load.warmup
    )];
    summary.extend(figures.summary());
    let record = Record {
        header: run.header("broadcast", workers),
        rate: args.load.rate,
        duration_s: args.load.duration,
        warmup_s: args.load.warmup,
        size: args.load.size,
        sample_every,
        figures,
    };
    Ok(Outcome {
        summary,
        record: serde_json::to_string(&record)?,
        complete: true,
    })
}
