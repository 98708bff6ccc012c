//! `fanout`: R rooms, each with S subscribers and P publishers; every publisher sends M
//! messages/s to its room, and every other member of the room receives each one.
//!
//! Subscribers are connections `0..R×S` of the worker pools (connection `g` joins room
//! `g mod R`); publishers `j in 0..R×P` run in this process and join room `j mod R`.

use serde::Serialize;

use super::messages::{self, Figures, Plan, PublisherSpec};
use super::{Header, Outcome, Run, RunError};
use crate::cli::FanoutArgs;
use crate::payload::Kind;
use crate::pool::room_name;

#[derive(Debug, Serialize)]
struct Record {
    #[serde(flatten)]
    header: Header,
    rooms: u64,
    subscribers: u64,
    publishers: u64,
    stalled: u64,
    rate: f64,
    duration_s: f64,
    warmup_s: f64,
    size: usize,
    sample_every: u64,
    #[serde(flatten)]
    figures: Figures,
}

/// Runs the scenario.
pub(crate) async fn run(args: &FanoutArgs) -> Result<Outcome, RunError> {
    let (rooms, subs, pubs) = (args.rooms, args.subscribers, args.publishers);
    if rooms == 0 || pubs == 0 || args.load.rate <= 0.0 {
        return Err(RunError::Invalid(
            "fanout needs --rooms, --publishers and --rate above 0".into(),
        ));
    }
    let mut run = Run::new(&args.common).await?;
    let sample_every = args.load.sample_every();
    let receivers = run.plan(
        rooms * subs,
        "sub-",
        rooms,
        Some(Kind::Message),
        sample_every,
    )?;
    let publishers = (0..rooms * pubs)
        .map(|j| PublisherSpec {
            user: format!("pub-{j}"),
            room: Some(room_name(j % rooms)),
        })
        .collect();
    let stalled = (0..args.stalled)
        .map(|k| PublisherSpec {
            user: format!("stalled-{k}"),
            room: Some(room_name(k % rooms)),
        })
        .collect();
    let plan = Plan {
        kind: Kind::Message,
        receivers,
        publishers,
        stalled,
        recipients: subs + pubs - 1,
    };
    let (figures, workers) = messages::execute(&mut run, &args.load, plan).await?;
    let mut summary = vec![format!(
        "fanout: {rooms} rooms x {subs} subscribers x {pubs} publishers, {} msg/s each, {} B, {} s (+{} s warm-up)",
        args.load.rate, args.load.size, args.load.duration, args.load.warmup
    )];
    summary.extend(figures.summary());
    let record = Record {
        header: run.header("fanout", workers),
        rooms,
        subscribers: subs,
        publishers: pubs,
        stalled: args.stalled,
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
