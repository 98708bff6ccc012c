//! Configuration: raw settings from flags, env vars and a TOML file ([`RawSettings`]) are merged and
//! validated into a [`Config`], one sub-struct per subsystem. Every error names the setting.

mod auth;
mod raw;
mod tls;
mod units;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::ids::NodeId;
pub use crate::limits::{RateLimit, ViolationLimit};
pub use raw::{Cli, LogFormat, RawSettings};
pub use tls::TlsConfig;
pub use units::{ByteSize, DurationArg};

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
    /// TLS on the listener (`None`: plain TCP).
    pub tls: Option<TlsConfig>,
    /// Time a client has to complete the TLS handshake (with TLS), and again to send its
    /// upgrade request.
    pub handshake_timeout: Duration,
    /// Most TCP connections from one client address (`None`: no cap).
    pub max_connections_per_ip: Option<usize>,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
}

/// Settings of the server HTTP API (`/api/...`).
#[derive(Clone, Default)]
pub struct ApiConfig {
    /// The key callers must present; `None` leaves the API open.
    pub key: Option<String>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("key", &self.key.as_ref().map(|_| "<set>"))
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
    /// Whether `/echo` echoes messages back (conformance testing only).
    pub echo_endpoint: bool,
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
    /// A setting has a value that cannot work.
    #[error(
        "invalid setting `{setting}` (flag --{flag}, env {env}): {reason}",
        flag = setting.replace('_', "-"),
        env = setting.to_ascii_uppercase()
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
        let cli = Cli::try_parse_from(args)?;
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => RawSettings::default(),
        };
        Self::from_settings(cli.settings.or(file))
    }

    /// Validates raw settings, filling in defaults.
    pub fn from_settings(raw: RawSettings) -> Result<Self, ConfigError> {
        let duration = |value: Option<DurationArg>, default: u64| {
            value.map_or(Duration::from_secs(default), |d| d.0)
        };
        let positive = |setting: &'static str, value: Duration| {
            if value.is_zero() {
                Err(ConfigError::invalid(setting, "must be greater than zero"))
            } else {
                Ok(value)
            }
        };
        let at_least = |setting: &'static str, value: Option<usize>, default: usize, min: usize| {
            let value = value.unwrap_or(default);
            if value < min {
                Err(ConfigError::invalid(
                    setting,
                    format!("must be at least {min}"),
                ))
            } else {
                Ok(value)
            }
        };

        let auth = auth::from_raw(&raw)?;
        let host = raw.host.unwrap_or_else(|| "0.0.0.0".to_owned());
        if host.trim().is_empty() {
            return Err(ConfigError::invalid("host", "must not be empty"));
        }
        let node_id = match raw.node_id {
            Some(id) => NodeId::parse(&id, 64)
                .map_err(|e| ConfigError::invalid("node_id", e.to_string()))?,
            None => NodeId::random(),
        };

        let interval = positive("heartbeat_interval", duration(raw.heartbeat_interval, 30))?;
        let timeout = duration(raw.heartbeat_timeout, 60);
        if timeout <= interval {
            return Err(ConfigError::invalid(
                "heartbeat_timeout",
                format!(
                    "must be greater than heartbeat_interval ({})",
                    humantime::format_duration(interval)
                ),
            ));
        }

        let max_frame_size = byte_size("max_frame_size", raw.max_frame_size, 1 << 20, 125)?;
        let max_frame_size = usize::try_from(max_frame_size)
            .ok()
            .filter(|&size| size <= 1 << 30)
            .ok_or_else(|| ConfigError::invalid("max_frame_size", "must be at most 1GiB"))?;
        let max_queued_bytes = byte_size("max_queued_bytes", raw.max_queued_bytes, 4 << 20, 0)?;
        let max_queued_bytes = usize::try_from(max_queued_bytes)
            .ok()
            .filter(|&size| size >= 64 << 10)
            .ok_or_else(|| ConfigError::invalid("max_queued_bytes", "must be at least 64KiB"))?;

        let rate = match raw.rate_limit.unwrap_or(10) {
            0 => None,
            per_second => {
                let burst = raw.rate_limit_burst.unwrap_or(per_second.saturating_mul(2));
                if burst == 0 {
                    return Err(ConfigError::invalid(
                        "rate_limit_burst",
                        "must be at least 1",
                    ));
                }
                Some(RateLimit { per_second, burst })
            }
        };
        let max_name_length = at_least("max_name_length", raw.max_name_length, 128, 1)?;
        let idle_timeout = Some(duration(raw.idle_timeout, 300)).filter(|d| !d.is_zero());
        let away_timeout = positive("away_timeout", duration(raw.away_timeout, 120))?;
        if idle_timeout.is_some_and(|idle| away_timeout >= idle) {
            return Err(ConfigError::invalid(
                "away_timeout",
                "must be shorter than idle_timeout, or users would be closed before going away",
            ));
        }
        let max_presence_metadata =
            byte_size("max_presence_metadata", raw.max_presence_metadata, 1024, 2)?;
        let max_presence_metadata = usize::try_from(max_presence_metadata)
            .ok()
            .filter(|&size| size <= 64 << 10)
            .ok_or_else(|| {
                ConfigError::invalid("max_presence_metadata", "must be at most 64KiB")
            })?;
        let api_key = raw.api_key.filter(|key| !key.is_empty());
        let cluster = match raw.redis_url.filter(|url| !url.is_empty()) {
            None => None,
            Some(url) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(ConfigError::invalid(
                        "redis_url",
                        "must start with redis:// (or rediss://)",
                    ));
                }
                let prefix = raw
                    .redis_prefix
                    .unwrap_or_else(|| "switchboard:".to_owned());
                crate::cluster::check_prefix(&prefix)
                    .map_err(|reason| ConfigError::invalid("redis_prefix", reason))?;
                let node_ttl = duration(raw.node_ttl, 15);
                if node_ttl < Duration::from_secs(1) || node_ttl > Duration::from_secs(600) {
                    return Err(ConfigError::invalid(
                        "node_ttl",
                        "must be between 1s and 10m",
                    ));
                }
                Some(crate::cluster::RedisConfig {
                    url,
                    prefix,
                    node_ttl,
                })
            }
        };
        let violations = match raw.max_violations.unwrap_or(50) {
            0 => None,
            max if max > crate::limits::Violations::MAX_LIMIT => {
                return Err(ConfigError::invalid(
                    "max_violations",
                    format!(
                        "must be at most {} (0 turns the limit off)",
                        crate::limits::Violations::MAX_LIMIT
                    ),
                ));
            }
            max => Some(ViolationLimit {
                max,
                window: positive("violation_window", duration(raw.violation_window, 10))?,
            }),
        };
        let tls = tls::from_settings(raw.tls_cert, raw.tls_key)?;
        if max_name_length > crate::ids::MAX_NAME_CHARS {
            return Err(ConfigError::invalid(
                "max_name_length",
                format!("must be at most {}", crate::ids::MAX_NAME_CHARS),
            ));
        }

        Ok(Self {
            server: ServerConfig {
                host,
                port: raw.port.unwrap_or(3000),
                tls,
                handshake_timeout: positive(
                    "handshake_timeout",
                    duration(raw.handshake_timeout, 10),
                )?,
                shutdown_timeout: positive("shutdown_timeout", duration(raw.shutdown_timeout, 10))?,
                max_connections_per_ip: raw.max_connections_per_ip.filter(|&max| max > 0),
            },
            hub: HubConfig {
                node_id,
                limits: Limits {
                    max_connections: at_least("max_connections", raw.max_connections, 10_000, 1)?,
                    max_connections_per_user: at_least(
                        "max_connections_per_user",
                        raw.max_connections_per_user,
                        5,
                        1,
                    )?,
                    max_rooms_per_connection: at_least(
                        "max_rooms_per_connection",
                        raw.max_rooms_per_connection,
                        100,
                        1,
                    )?,
                    max_channels_per_connection: at_least(
                        "max_channels_per_connection",
                        raw.max_channels_per_connection,
                        100,
                        1,
                    )?,
                    max_presence_metadata,
                    max_frame_size,
                    max_content_length: at_least(
                        "max_content_length",
                        raw.max_content_length,
                        10_000,
                        1,
                    )?,
                    max_name_length,
                    max_queued_bytes,
                    rate,
                    violations,
                },
                heartbeat: Heartbeat {
                    interval,
                    timeout,
                    app_ping: raw.app_heartbeat.unwrap_or(false),
                },
                pubsub: PubSubConfig {
                    client_patterns: raw.allow_client_patterns.unwrap_or(false),
                    deliver_to_publisher: raw.deliver_to_publisher.unwrap_or(true),
                },
                away_timeout,
                idle_timeout,
                cleanup_interval: positive("cleanup_interval", duration(raw.cleanup_interval, 60))?,
                dedup_window: duration(raw.dedup_window, 60),
                echo_endpoint: raw.echo_endpoint.unwrap_or(false),
            },
            api: ApiConfig { key: api_key },
            auth,
            cluster,
            log: LogConfig {
                format: raw.log_format.unwrap_or_default(),
                filter: raw.log_level.unwrap_or_else(|| "info".to_owned()),
            },
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

fn byte_size(
    setting: &'static str,
    value: Option<ByteSize>,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let value = value.map_or(default, |size| size.0);
    if value < min {
        return Err(ConfigError::invalid(
            setting,
            format!("must be at least {min} bytes"),
        ));
    }
    Ok(value)
}

fn read_file(path: &PathBuf) -> Result<RawSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
