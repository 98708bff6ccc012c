//! Configuration: raw settings from flags, env vars and a TOML file ([`RawSettings`]) are merged and
//! validated into a [`Config`], one sub-struct per subsystem. Every error names the setting.
//!
//! `raw` declares the settings, `env` names their environment variables and reads the older
//! ones, `sources` keeps each source apart until it merges them ([`Invocation`]), `defaults`
//! holds the default of each setting (which `--help` shows), `validate` turns raw settings into
//! each subsystem's configuration, as `auth` and `tls` do for theirs, `units` parses durations
//! and sizes, `effective` writes the merged settings back out for `check-config`, and `command`
//! declares the subcommands of the binary (`crate::cli` runs them).

mod auth;
mod command;
mod defaults;
mod effective;
mod env;
mod proxy;
mod raw;
mod sources;
mod tls;
mod units;
mod validate;
mod webhooks;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::NodeId;
pub use crate::limits::{RateLimit, ViolationLimit};
pub use command::{Command, HealthcheckArgs, TokenArgs};
pub use env::{Deprecated, PREFIX as ENV_PREFIX};
pub use proxy::ProxyConfig;
pub use raw::{Cli, LogFormat, RawSettings};
pub use sources::{Invocation, Origin, Sources};
pub use tls::TlsConfig;
pub use units::{ByteSize, DurationArg};
pub use validate::check_log_filter;
pub use webhooks::{EventName, UnknownEvent, WebhookConfig};

/// The validated configuration of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener and process lifecycle.
    pub server: ServerConfig,
    /// Everything the hub and connections enforce.
    pub hub: HubConfig,
    /// The server HTTP API.
    pub api: ApiConfig,
    /// Authentication, origins and the admin key.
    pub auth: crate::auth::AuthConfig,
    /// Cluster mode (`None`: a lone node).
    pub cluster: Option<crate::cluster::RedisConfig>,
    /// Webhooks (`None`: none are sent).
    pub webhooks: Option<WebhookConfig>,
    /// Backend proxies (`None`: the backend is never asked).
    pub proxy: Option<ProxyConfig>,
    /// Logging.
    pub log: LogConfig,
}

/// Listener and process lifecycle settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// Port of the admin listener (`None`: the admin routes are on `port`); 0 picks a free one.
    pub admin_port: Option<u16>,
    /// TLS on the listener (`None`: plain TCP).
    pub tls: Option<TlsConfig>,
    /// Time a client has to complete the TLS handshake (with TLS), and again to send its
    /// upgrade request.
    pub handshake_timeout: Duration,
    /// Most TCP connections from one client address (`None`: no cap).
    pub max_connections_per_ip: Option<usize>,
    /// Proxies whose forwarding headers give the client address (empty: none).
    pub trusted_proxies: crate::forwarded::TrustedProxies,
    /// Whether connections from the trusted proxies start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
    /// Where Yjs documents are saved (`None`: in memory).
    pub data_dir: Option<PathBuf>,
}

/// Settings of the server HTTP API (`/api/...`). The default refuses every request: the API
/// is served with a key, or without one only when `insecure` says so.
#[derive(Clone, Default)]
pub struct ApiConfig {
    /// The key callers must present.
    pub key: Option<String>,
    /// Serve the API without a key (`--api-insecure`); ignored when `key` is set.
    pub insecure: bool,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// Pub/sub channel settings.
#[derive(Debug, Clone, Copy)]
pub struct PubSubConfig {
    /// Whether clients may subscribe to patterns such as `room:*`.
    pub client_patterns: bool,
    /// Whether a publisher subscribed to the channel receives its own publication.
    pub deliver_to_publisher: bool,
}

/// Settings of the hub and of every connection.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This node's id.
    pub node_id: NodeId,
    /// Resource limits.
    pub limits: Limits,
    /// Heartbeat.
    pub heartbeat: Heartbeat,
    /// Pub/sub channels.
    pub pubsub: PubSubConfig,
    /// Inactivity after which a user is `away`.
    pub away_timeout: Duration,
    /// Close connections without messages in either direction for this long (heartbeats do
    /// not count; `None`: never).
    pub idle_timeout: Option<Duration>,
    /// Period of the cleanup sweep.
    pub cleanup_interval: Duration,
    /// How long client ids are remembered for duplicate suppression.
    pub dedup_window: Duration,
    /// Message history for recovery and `history`.
    pub history: HistoryConfig,
    /// Yjs documents (`/yjs`).
    pub documents: DocumentConfig,
    /// Whether `/echo` echoes messages back (conformance testing only).
    pub echo_endpoint: bool,
    /// Whether plain TCP connections write through the worker thread's io_uring (the runtime
    /// must run [`crate::uring::on_thread_park`]; the binary's does).
    pub io_uring: bool,
    /// permessage-deflate.
    pub compression: CompressionConfig,
}

/// permessage-deflate (RFC 7692) settings.
#[derive(Debug, Clone, Copy)]
pub struct CompressionConfig {
    /// Whether the extension is negotiated with clients that offer it.
    pub enabled: bool,
    /// Frames whose payload is smaller than this many bytes go uncompressed.
    pub threshold: usize,
}

pub use crate::store::HistoryConfig;

/// Limits of Yjs documents and their connections.
#[derive(Debug, Clone, Copy)]
pub struct DocumentConfig {
    /// Largest encoded state of a document, in bytes.
    pub max_size: usize,
    /// Messages each document connection may send (`None`: unlimited).
    pub rate: Option<RateLimit>,
}

/// Resource limits, each enforced where the resource is taken.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections on this node.
    pub max_connections: usize,
    /// Most connections per user.
    pub max_connections_per_user: usize,
    /// Most rooms per connection.
    pub max_rooms_per_connection: usize,
    /// Most channel subscriptions per connection.
    pub max_channels_per_connection: usize,
    /// Largest presence metadata, in bytes of JSON.
    pub max_presence_metadata: usize,
    /// Largest client frame or message, in bytes.
    pub max_frame_size: usize,
    /// Longest `content`, in characters.
    pub max_content_length: usize,
    /// Longest room or channel name, in characters.
    pub max_name_length: usize,
    /// Outbound bytes queued per connection before it is dropped as a slow consumer.
    pub max_queued_bytes: usize,
    /// Resident memory above which new connections are refused and the largest outbound
    /// queues shed (`None`: off).
    pub max_memory: Option<u64>,
    /// Per-user rate limit (`None`: unlimited).
    pub rate: Option<RateLimit>,
    /// Repeated-violation disconnect (`None`: never).
    pub violations: Option<ViolationLimit>,
}

/// Heartbeat settings.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// Ping period.
    pub interval: Duration,
    /// Silence after which a connection is dead.
    pub timeout: Duration,
    /// Whether app-level `ping` frames are sent too.
    pub app_ping: bool,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directive.
    pub filter: String,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The command line is malformed (or asked for `--help`/`--version`).
    #[error(transparent)]
    Cli(#[from] clap::Error),
    /// The config file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown or mistyped key.
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, naming the key.
        source: toml::de::Error,
    },
    /// An environment variable's value does not parse as its setting's.
    #[error(
        "invalid env {variable}: {reason}{hint}",
        reason = env::clap_reason(source),
        hint = env::hint(variable, value)
    )]
    Env {
        /// The variable, e.g. `SWITCHBOARD_PORT`.
        variable: String,
        /// Its value.
        value: String,
        /// Why, naming the setting's flag.
        source: clap::Error,
    },
    /// A setting has a value that cannot work.
    #[error(
        "invalid setting `{setting}` (flag --{flag}, env {env}): {reason}",
        flag = setting.replace('_', "-"),
        env = env::prefixed(setting)
    )]
    Invalid {
        /// The setting's name (TOML key).
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Loads the configuration from the process's arguments, environment and config file.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// Loads the configuration from `args` (the first is the program name), the environment
    /// and the config file they name.
    pub fn load_from<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Invocation::from_args(args)?.config()
    }

    /// Validates raw settings, filling in the defaults where a setting is unset.
    pub fn from_settings(raw: RawSettings) -> Result<Self, ConfigError> {
        let auth = auth::from_raw(&raw)?;
        Ok(Self {
            server: validate::server(&raw)?,
            hub: validate::hub(&raw)?,
            api: validate::api(&raw)?,
            auth,
            cluster: validate::cluster(&raw)?,
            webhooks: webhooks::from_raw(&raw)?,
            proxy: proxy::from_raw(&raw)?,
            log: validate::log(&raw)?,
        })
    }
}

impl Default for Config {
    /// The documented defaults (with a random node id).
    fn default() -> Self {
        match Self::from_settings(RawSettings::default()) {
            Ok(config) => config,
            Err(e) => unreachable!("the defaults are valid: {e}"),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ops_tests.rs"]
mod ops_tests;
