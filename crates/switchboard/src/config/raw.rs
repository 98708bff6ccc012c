//! Raw settings as given: command-line flags, environment variables and a TOML file, each field
//! optional. One struct serves all three sources, so a setting has the same name everywhere:
//! field `heartbeat_interval` is flag `--heartbeat-interval`, env var
//! `SWITCHBOARD_HEARTBEAT_INTERVAL` and TOML key `heartbeat_interval` ([`setting_arg`] derives
//! the variable from the field; `env` reads the older unprefixed names). Precedence: flag >
//! env var > file > default (`sources`).
//!
//! A setting marked `hide_env_values` is a secret: `--help` does not show its variable's value
//! and `check-config` masks it.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;

use super::effective::TomlValue;
use super::units::{ByteSize, DurationArg};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `switchboard` command line: the settings, and a subcommand (without one, the server
/// runs). The settings are global, so they may follow the subcommand too.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "A scalable WebSocket server")]
pub struct Cli {
    /// TOML configuration file (keys as the flags, with `_` for `-`); flags and environment
    /// variables override it.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The settings.
    #[command(flatten)]
    pub settings: RawSettings,
    /// What to do instead of running the server.
    #[command(subcommand)]
    pub command: Option<super::Command>,
}

/// Completes the argument of every setting (and of `--config`, declared before them): its
/// variable `SWITCHBOARD_<SETTING>` (read by `sources` and `env`, shown here) and its default
/// in the help, under its own heading, and global, so that it may follow a subcommand.
fn setting_arg(arg: clap::Arg) -> clap::Arg {
    let variable = super::env::prefixed(arg.get_id().as_str());
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    super::defaults::in_help(arg.help(format!("{help} [env: {variable}]")))
        .help_heading("Settings")
        .global(true)
}

macro_rules! settings {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        /// Every setting, unvalidated; `None` where the source did not give it. The defaults
        /// are filled in by validation, and shown by `--help`, from one table
        /// (`config::defaults`).
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[command(mut_args = setting_arg)]
        #[serde(deny_unknown_fields)]
        pub struct RawSettings {
            $( $(#[$meta])* pub $name: Option<$ty>, )*
        }

        impl RawSettings {
            /// Takes each setting from `self`, or from `lower` where `self` lacks it.
            pub fn or(self, lower: RawSettings) -> RawSettings {
                RawSettings { $( $name: self.$name.or(lower.$name), )* }
            }

            /// Every setting by name, in declaration order, with its value as TOML (`None`
            /// where unset) and whether its default is written quoted.
            pub(super) fn as_toml(&self) -> Vec<(&'static str, Option<String>, bool)> {
                vec![$( (
                    stringify!($name),
                    self.$name.as_ref().map(TomlValue::toml),
                    <$ty as TomlValue>::QUOTED,
                ), )*]
            }
        }
    };
}

settings! {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    host: String,
    /// Port to listen on; 0 picks a free port.
    #[arg(long)]
    port: u16,
    /// Serve the admin routes (`/api`, `/metrics`, `/stats`, `/dashboard`) on this port, on
    /// the same host, instead of the public one (where they then answer 404); 0 picks a free
    /// port.
    #[arg(long)]
    admin_port: u16,
    /// This node's id, unique in a cluster.
    #[arg(long)]
    node_id: String,
    /// Most WebSocket connections this node accepts; more get close 1013.
    #[arg(long, value_name = "N")]
    max_connections: usize,
    /// Most connections one user may hold; more get close 1013.
    #[arg(long, value_name = "N")]
    max_connections_per_user: usize,
    /// Most rooms one connection may be in.
    #[arg(long, value_name = "N")]
    max_rooms_per_connection: usize,
    /// How often to send WebSocket pings.
    #[arg(long, value_name = "DURATION")]
    heartbeat_interval: DurationArg,
    /// Close a connection after this long without any frame from the client.
    #[arg(long, value_name = "DURATION")]
    heartbeat_timeout: DurationArg,
    /// Also send app-level `ping` frames (for clients that cannot see WebSocket pings).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    app_heartbeat: bool,
    /// How often the cleanup sweep runs.
    #[arg(long, value_name = "DURATION")]
    cleanup_interval: DurationArg,
    /// Close connections with no messages in either direction for this long (heartbeats do
    /// not count); 0 disables.
    #[arg(long, value_name = "DURATION")]
    idle_timeout: DurationArg,
    /// Messages per second per user; 0 disables rate limiting.
    #[arg(long, value_name = "N")]
    rate_limit: u32,
    /// Messages a user may send at once above the rate.
    #[arg(long, value_name = "N")]
    rate_limit_burst: u32,
    /// Largest WebSocket frame or message accepted from a client.
    #[arg(long, value_name = "SIZE")]
    max_frame_size: ByteSize,
    /// Compress messages with permessage-deflate (RFC 7692) for clients that offer it (every
    /// browser does).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    compression: bool,
    /// Messages smaller than this go uncompressed, where compressing gains little.
    #[arg(long, value_name = "SIZE")]
    compression_threshold: ByteSize,
    /// Longest message `content`, in characters.
    #[arg(long, value_name = "N")]
    max_content_length: usize,
    /// Longest room or channel name, in characters.
    #[arg(long, value_name = "N")]
    max_name_length: usize,
    /// Outbound bytes queued for one connection before it is dropped as a slow consumer.
    #[arg(long, value_name = "SIZE")]
    max_queued_bytes: ByteSize,
    /// Resident memory above which the node refuses new connections (1013) and closes the
    /// connections with the largest outbound queues (1013) until it is under 90 % of this;
    /// `0` turns it off (Linux only).
    #[arg(long, value_name = "SIZE")]
    max_memory: ByteSize,
    /// Most pub/sub channels one connection may subscribe to.
    #[arg(long, value_name = "N")]
    max_channels_per_connection: usize,
    /// Let clients subscribe to channel patterns such as `room:*`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    allow_client_patterns: bool,
    /// Deliver a client's publication back to it when it is subscribed to the channel.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    deliver_to_publisher: bool,
    /// A user none of whose connections sent a message for this long is `away`.
    #[arg(long, value_name = "DURATION")]
    away_timeout: DurationArg,
    /// Largest presence metadata, in bytes of JSON.
    #[arg(long, value_name = "SIZE")]
    max_presence_metadata: ByteSize,
    /// Key the server HTTP API (`/api/...`) requires as `Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`; without it (and without `--api-insecure`) the API refuses every
    /// request.
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    api_key: String,
    /// Serve the server HTTP API without a key: anyone who can reach the port can publish and
    /// disconnect users (a warning is logged). Not together with `--api-key`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    api_insecure: bool,
    /// Join the cluster sharing this Redis, e.g. `redis://127.0.0.1:6379`; without it the
    /// node runs alone and touches no network.
    #[arg(long, value_name = "URL")]
    redis_url: String,
    /// `--redis-url` is a seed node of a Redis Cluster: publications of rooms, users,
    /// documents and connections use sharded pub/sub, and each room's keys share a hash slot.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    redis_cluster: bool,
    /// PEM certificates of the authorities that sign the Redis server's certificate, trusted
    /// instead of the system's roots for a `rediss://` URL (a Redis with a private CA).
    #[arg(long, value_name = "FILE")]
    redis_tls_ca: PathBuf,
    /// Prefix of every Redis key and channel, so clusters can share one Redis.
    #[arg(long, value_name = "PREFIX")]
    redis_prefix: String,
    /// Route the cluster's publications through this broker instead of Redis pub/sub:
    /// `nats://host:4222` or `amqp://user:password@host:5672/vhost` (RabbitMQ; `amqps://` for
    /// TLS). Needs `--redis-url`: membership, history and documents stay in Redis.
    #[arg(long, value_name = "URL")]
    broker_url: String,
    /// A node that has not refreshed its liveness for this long is dead: its users go offline
    /// on the other nodes.
    #[arg(long, value_name = "DURATION")]
    node_ttl: DurationArg,
    /// Turn authentication on with this shared secret: every connection needs a JWT, signed
    /// with HS256 (or HS384/HS512 with `--jwt-algorithm`).
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Turn authentication on with this PEM public key (RSA, EC or Ed25519).
    #[arg(long, value_name = "FILE")]
    jwt_public_key: std::path::PathBuf,
    /// The one algorithm tokens may use: HS256/384/512 with a secret; RS256/384/512 or
    /// PS256/384/512 with an RSA key, ES256/ES384 with an EC key, EdDSA with an Ed25519 key.
    #[arg(long, value_name = "ALG")]
    jwt_algorithm: String,
    /// Require this `iss` claim.
    #[arg(long, value_name = "ISSUER")]
    jwt_issuer: String,
    /// Require this `aud` claim.
    #[arg(long, value_name = "AUDIENCE")]
    jwt_audience: String,
    /// How long a connection without a token at the upgrade has to send its `auth` frame.
    #[arg(long, value_name = "DURATION")]
    auth_timeout: DurationArg,
    /// How long before its token's `exp` a connection gets `token_expiring` (at half the
    /// token's remaining lifetime when that is sooner), so its client can send `refresh`.
    #[arg(long, value_name = "DURATION")]
    token_expiry_warning: DurationArg,
    /// How long after its token's `exp` a connection that did not refresh it is closed
    /// (1008, "token expired"); `0s` closes it at `exp`.
    #[arg(long, value_name = "DURATION")]
    token_expiry_grace: DurationArg,
    /// Comma-separated origins browsers may connect from, e.g.
    /// `https://app.example.com,http://localhost:5173`.
    #[arg(long, value_name = "ORIGINS")]
    allowed_origins: String,
    /// Key that `/stats` and `/metrics` require as `Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`; without it they are open. `/health` and `/ready` stay open.
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    admin_key: String,
    /// How long a client `id` is remembered for duplicate suppression.
    #[arg(long, value_name = "DURATION")]
    dedup_window: DurationArg,
    /// Most messages kept per room and channel for recovery and `history`; 0 turns history
    /// (and offsets) off.
    #[arg(long, value_name = "N")]
    history_size: usize,
    /// How long a message is kept for recovery and `history`.
    #[arg(long, value_name = "DURATION")]
    history_ttl: DurationArg,
    /// Directory where a lone node saves Yjs documents (`DIR/docs/`), so they survive a
    /// restart; without it they are kept in memory. In cluster mode Redis keeps them.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Largest encoded state of a Yjs document; an update that would make it larger closes
    /// its connection with 1009. At most half of `max_queued_bytes`.
    #[arg(long, value_name = "SIZE")]
    max_document_size: ByteSize,
    /// Messages per second each document connection may send (twice that in a burst); more
    /// close it with 1008 (the client reconnects and resyncs). 0 disables.
    #[arg(long, value_name = "N")]
    document_rate_limit: u32,
    /// Certificate chain (PEM) to serve TLS with: `wss://` and `https://` on the same port;
    /// requires `--tls-key`.
    #[arg(long, value_name = "FILE")]
    tls_cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of `--tls-cert`.
    #[arg(long, value_name = "FILE")]
    tls_key: PathBuf,
    /// Time a client has to complete the TLS handshake (with TLS), and then the HTTP upgrade
    /// request.
    #[arg(long, value_name = "DURATION")]
    handshake_timeout: DurationArg,
    /// Most TCP connections from one client address (IPv6: one /64); more get HTTP 429;
    /// 0 disables the cap.
    #[arg(long, value_name = "N")]
    max_connections_per_ip: usize,
    /// Comma-separated address blocks of reverse proxies, e.g. `10.0.0.0/8,127.0.0.1`: a
    /// connection from one of them is counted (per-IP cap) and logged under the client address
    /// its `Forwarded: for=` or `X-Forwarded-For` header gives (the rightmost one that is not
    /// a trusted proxy); from any other peer the headers are ignored.
    #[arg(long, value_name = "CIDRS")]
    trusted_proxies: String,
    /// Connections from `trusted_proxies` start with a PROXY protocol header (v1 or v2, as
    /// TCP load balancers write it): its source address is the client. Needs `trusted_proxies`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    proxy_protocol: bool,
    /// Bad frames (answered with an `error`) a connection may send within `violation_window`
    /// before it is closed with 1008; 0 disables.
    #[arg(long, value_name = "N")]
    max_violations: u32,
    /// The window `max_violations` is counted in.
    #[arg(long, value_name = "DURATION")]
    violation_window: DurationArg,
    /// On SIGTERM/Ctrl-C, how long to wait for connections to close before exiting.
    #[arg(long, value_name = "DURATION")]
    shutdown_timeout: DurationArg,
    /// Serve an echo endpoint on `/echo` that returns every message as sent, for conformance
    /// testing (Autobahn).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    echo_endpoint: bool,
    /// Write to plain TCP connections through one io_uring per worker thread, the sends of one
    /// wake-up submitted together (Linux; falls back to `writev` where the kernel refuses).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    io_uring: bool,
    /// Comma-separated backend URLs (`http://` or `https://`) lifecycle events are POSTed to, signed
    /// with `webhook_secret`; a lone node only (a cluster would send each event per node).
    #[arg(long, value_name = "URLS")]
    webhook_url: String,
    /// Key of the webhooks' HMAC-SHA256 signature (`X-Switchboard-Signature`); required with
    /// `webhook_url`.
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// Comma-separated events the webhooks send: room_occupied, room_vacated, member_added,
    /// member_removed, presence_changed, channel_occupied, channel_vacated, client_message.
    #[arg(long, value_name = "EVENTS")]
    webhook_events: String,
    /// Comma-separated client message types sent to the webhooks as `client_message` (and
    /// acked to the client instead of refused as unknown).
    #[arg(long, value_name = "TYPES")]
    webhook_client_types: String,
    /// Backend URL (`http://` or `https://`) asked who a connecting client is, before the
    /// upgrade (or after its `auth` frame); replaces JWT verification.
    #[arg(long, value_name = "URL")]
    proxy_connect_url: String,
    /// Backend URL asked to approve each join that passed the local checks.
    #[arg(long, value_name = "URL")]
    proxy_join_url: String,
    /// Backend URL asked to approve each subscribe that passed the local checks.
    #[arg(long, value_name = "URL")]
    proxy_subscribe_url: String,
    /// Backend URL that answers client frames of types neither the protocol nor the
    /// application handles.
    #[arg(long, value_name = "URL")]
    proxy_rpc_url: String,
    /// How long one proxy request may take, connecting included (at most 30s).
    #[arg(long, value_name = "DURATION")]
    proxy_timeout: DurationArg,
    /// Comma-separated request headers the connect proxy receives.
    #[arg(long, value_name = "NAMES")]
    proxy_headers: String,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `switchboard=debug`; RUST_LOG overrides it.
    #[arg(long, value_name = "FILTER")]
    log_level: String,
}
