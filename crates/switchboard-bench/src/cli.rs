//! Command-line interface: one subcommand per scenario, options shared by all of them, and the
//! hidden `worker` subcommand the tool runs in its own child processes.

use clap::{Args, Parser, Subcommand};

use crate::payload::Format;

/// Load and benchmark tool for Switchboard (any server speaking its protocol v1).
///
/// Every scenario prints a short human summary, then one line of JSON with all figures (the only
/// line that starts with `{`). Exit status: 0 when the run completed, 1 when it completed but
/// some connections could not be opened, 2 when it could not run (bad options, unreachable
/// server, timeout).
#[derive(Debug, Parser)]
#[command(name = "switchboard-bench", version)]
pub(crate) struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub(crate) scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub(crate) enum Scenario {
    /// Rooms of subscribers and publishers: throughput, loss and end-to-end latency of room
    /// messages.
    Fanout(FanoutArgs),
    /// One publisher broadcasting to every connection: throughput, loss and latency.
    Broadcast(BroadcastArgs),
    /// Connection rate and handshake latency (TCP connect + upgrade + `connect` frame).
    Connect(ConnectArgs),
    /// Many idle connections in rooms: server memory per connection.
    Idle(IdleArgs),
    /// Internal: a worker process holding part of a run's connections.
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Options every scenario takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Server WebSocket URL; repeat it for a cluster (connections go round-robin).
    #[arg(long = "url", default_value = "ws://127.0.0.1:3000/")]
    pub(crate) urls: Vec<String>,
    /// Process id of a server to measure (CPU time, RSS); repeatable.
    #[arg(long = "server-pid")]
    pub(crate) server_pids: Vec<u32>,
    /// Connections being opened at once, over all worker processes.
    #[arg(long, default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Worker processes holding the receiving connections; 0 picks as few as the open-files
    /// limit allows.
    #[arg(long, default_value_t = 0)]
    pub(crate) workers: usize,
    /// Source addresses the workers bind before connecting, comma separated, given to workers
    /// in turn. `auto`: 127.0.0.2, 127.0.0.3, ... (one per worker) when every server is on
    /// loopback, else none; `none`: let the OS choose.
    #[arg(long, default_value = "auto")]
    pub(crate) source_ips: String,
    /// Longest time one connection may take to open (and join its room).
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub(crate) open_timeout: f64,
    /// Hard limit on the whole run [default: the run's planned time + 300 s].
    #[arg(long, value_parser = parse_secs)]
    pub(crate) timeout: Option<f64>,
    /// A label copied into the JSON record (to tell series apart in plots).
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// How every connection encodes frames: JSON text, or MessagePack binary frames
    /// (subprotocol `switchboard.v1.msgpack`).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub(crate) format: Format,
}

/// The message load of `fanout` and `broadcast`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Load {
    /// Messages per second per publisher.
    #[arg(long, default_value_t = 100.0)]
    pub(crate) rate: f64,
    /// Measured time, after the warm-up.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub(crate) duration: f64,
    /// Publishing before the measurement starts (counted for loss, not for rate or latency).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub(crate) warmup: f64,
    /// Bytes of `content` in each message (at least the stamp `t=<ns>;`, about 22 bytes).
    #[arg(long, default_value_t = 64)]
    pub(crate) size: usize,
    /// Longest wait for outstanding deliveries once publishing stops.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub(crate) drain: f64,
    /// Measure the latency of one delivery in N per connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) sample_every: u64,
    /// Measure the latency of every delivery.
    #[arg(long)]
    pub(crate) sample_all: bool,
    /// Samples the servers' resident memory (`--server-pid`) every this many seconds of the
    /// measurement, for soak runs: the record gets the series, the summary its growth.
    #[arg(long, value_parser = parse_secs)]
    pub(crate) rss_every: Option<f64>,
    /// Server URL the publishers (and stalled connections) use instead of the `--url` list,
    /// e.g. one node of a cluster while the receivers are on the others.
    #[arg(long)]
    pub(crate) publisher_url: Option<String>,
}

impl Load {
    /// One delivery in this many is sampled.
    pub(crate) fn sample_every(&self) -> u64 {
        if self.sample_all {
            1
        } else {
            self.sample_every.max(1)
        }
    }

    /// Messages each publisher sends over warm-up and measurement.
    pub(crate) fn messages_per_publisher(&self) -> u64 {
        ((self.warmup + self.duration) * self.rate).floor() as u64
    }

    /// The planned time of the run's message phase.
    pub(crate) fn planned_secs(&self) -> f64 {
        self.warmup + self.duration + self.drain
    }
}

/// `fanout` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct FanoutArgs {
    /// Rooms.
    #[arg(long, default_value_t = 10)]
    pub(crate) rooms: u64,
    /// Subscribers per room.
    #[arg(long, default_value_t = 100)]
    pub(crate) subscribers: u64,
    /// Publishers per room (members of the room too; they receive each other's messages).
    #[arg(long, default_value_t = 1)]
    pub(crate) publishers: u64,
    /// Slow consumers: extra connections (connection `k` joins room `k mod R`) that stop
    /// reading once joined. They are not counted as recipients; the server should drop them
    /// without the others noticing.
    #[arg(long, default_value_t = 0)]
    pub(crate) stalled: u64,
    /// Message load.
    #[command(flatten)]
    pub(crate) load: Load,
    /// Common options.
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `broadcast` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct BroadcastArgs {
    /// Connections, the publisher included.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: u64,
    /// Message load (one publisher).
    #[command(flatten)]
    pub(crate) load: Load,
    /// Common options.
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `connect` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    pub(crate) connections: u64,
    /// Common options.
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `idle` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct IdleArgs {
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) connections: u64,
    /// Rooms the connections are spread over (connection i joins room i mod ROOMS; 0: none)
    /// [default: connections / 100, at least 1].
    #[arg(long)]
    pub(crate) rooms: Option<u64>,
    /// Wait after the last connection joined before measuring memory (lets join notices
    /// settle).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub(crate) settle: f64,
    /// How long to hold the connections once measured.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub(crate) hold: f64,
    /// Common options.
    #[command(flatten)]
    pub(crate) common: Common,
}

/// `worker` options (set by the parent process).
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// The pool to hold, as JSON.
    #[arg(long)]
    pub(crate) json_config: String,
    /// Exit after this many seconds whatever happens.
    #[arg(long, value_parser = parse_secs)]
    pub(crate) deadline: f64,
}

/// Seconds: a number (`10`, `0.5`) with an optional unit `ms`, `s` or `m`.
pub(crate) fn parse_secs(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 10, 2.5, 500ms, 1m)"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value * scale)
    } else {
        Err(format!(
            "{text:?} is not a duration (e.g. 10, 2.5, 500ms, 1m)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_secs("10"), Ok(10.0));
        assert_eq!(parse_secs("2.5s"), Ok(2.5));
        assert_eq!(parse_secs("500ms"), Ok(0.5));
        assert_eq!(parse_secs("2m"), Ok(120.0));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn loads_count_messages_over_warmup_and_duration() {
        let cli = Cli::parse_from([
            "switchboard-bench",
            "fanout",
            "--rate",
            "20",
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--sample-all",
            "--url",
            "ws://a:1/",
            "--url",
            "ws://b:2/",
        ]);
        let Scenario::Fanout(args) = cli.scenario else {
            panic!("fanout expected");
        };
        assert_eq!(args.load.messages_per_publisher(), 30);
        assert_eq!(args.load.sample_every(), 1);
        assert_eq!(args.common.urls, ["ws://a:1/", "ws://b:2/"]);
    }
}
