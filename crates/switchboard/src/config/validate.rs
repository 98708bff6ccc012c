//! Validation of raw settings into each subsystem's configuration, with the defaults of
//! [`super::defaults`] where a setting is unset. Every error names the setting. The
//! authentication and TLS settings have their own modules (`auth`, `tls`).

use std::time::Duration;

use super::defaults;
use super::units::{ByteSize, DurationArg};
use super::{
    ApiConfig, CompressionConfig, ConfigError, DocumentConfig, Heartbeat, HistoryConfig, HubConfig,
    Limits, LogConfig, PubSubConfig, RawSettings, ServerConfig, tls,
};
use crate::broker::BrokerUrl;
use crate::cluster::RedisConfig;
use crate::forwarded::TrustedProxies;
use crate::ids::{MAX_NAME_CHARS, NodeId};
use crate::limits::{RateLimit, ViolationLimit, Violations};

/// The listener and the process lifecycle.
pub(super) fn server(raw: &RawSettings) -> Result<ServerConfig, ConfigError> {
    let host = raw
        .host
        .clone()
        .unwrap_or_else(|| defaults::HOST.to_owned());
    if host.trim().is_empty() {
        return Err(ConfigError::invalid("host", "must not be empty"));
    }
    let max_per_ip = raw
        .max_connections_per_ip
        .unwrap_or(defaults::MAX_CONNECTIONS_PER_IP);
    let port = raw.port.unwrap_or(defaults::PORT);
    let admin_port = raw.admin_port;
    if admin_port.is_some_and(|admin| admin != 0 && admin == port) {
        return Err(ConfigError::invalid(
            "admin_port",
            format!(
                "must differ from port ({port}): the admin routes need a listener of their own"
            ),
        ));
    }
    let trusted_proxies = TrustedProxies::parse(raw.trusted_proxies.as_deref().unwrap_or_default())
        .map_err(|e| ConfigError::invalid("trusted_proxies", e.to_string()))?;
    let proxy_protocol = raw.proxy_protocol.unwrap_or(defaults::PROXY_PROTOCOL);
    if proxy_protocol && trusted_proxies.is_empty() {
        return Err(ConfigError::invalid(
            "proxy_protocol",
            "needs trusted_proxies: only the proxies listed there may send the header",
        ));
    }
    Ok(ServerConfig {
        host,
        port,
        admin_port,
        tls: tls::from_settings(raw.tls_cert.clone(), raw.tls_key.clone())?,
        handshake_timeout: positive(
            "handshake_timeout",
            duration(raw.handshake_timeout, defaults::HANDSHAKE_TIMEOUT),
        )?,
        max_connections_per_ip: Some(max_per_ip).filter(|&max| max > 0),
        trusted_proxies,
        proxy_protocol,
        shutdown_timeout: positive(
            "shutdown_timeout",
            duration(raw.shutdown_timeout, defaults::SHUTDOWN_TIMEOUT),
        )?,
        data_dir: raw.data_dir.clone(),
    })
}

/// The hub and every connection.
pub(super) fn hub(raw: &RawSettings) -> Result<HubConfig, ConfigError> {
    let node_id = match &raw.node_id {
        Some(id) => {
            NodeId::parse(id, 64).map_err(|e| ConfigError::invalid("node_id", e.to_string()))?
        }
        None => NodeId::random(),
    };
    let heartbeat = heartbeat(raw)?;
    let limits = limits(raw)?;
    let (away_timeout, idle_timeout) = inactivity(raw)?;
    let documents = documents(raw, &limits)?;
    Ok(HubConfig {
        node_id,
        limits,
        heartbeat,
        pubsub: PubSubConfig {
            client_patterns: raw
                .allow_client_patterns
                .unwrap_or(defaults::ALLOW_CLIENT_PATTERNS),
            deliver_to_publisher: raw
                .deliver_to_publisher
                .unwrap_or(defaults::DELIVER_TO_PUBLISHER),
        },
        away_timeout,
        idle_timeout,
        cleanup_interval: positive(
            "cleanup_interval",
            duration(raw.cleanup_interval, defaults::CLEANUP_INTERVAL),
        )?,
        dedup_window: duration(raw.dedup_window, defaults::DEDUP_WINDOW),
        history: history(raw)?,
        documents,
        echo_endpoint: raw.echo_endpoint.unwrap_or(defaults::ECHO_ENDPOINT),
        io_uring: raw.io_uring.unwrap_or(defaults::IO_URING),
        compression: CompressionConfig {
            enabled: raw.compression.unwrap_or(defaults::COMPRESSION),
            threshold: byte_size(
                "compression_threshold",
                raw.compression_threshold,
                defaults::COMPRESSION_THRESHOLD,
                0..=u64::MAX,
            )?,
        },
    })
}

/// Most messages per stream (0: off) and their age limit.
fn history(raw: &RawSettings) -> Result<HistoryConfig, ConfigError> {
    let size = raw.history_size.unwrap_or(defaults::HISTORY_SIZE);
    if size > MAX_HISTORY_SIZE {
        return Err(ConfigError::invalid(
            "history_size",
            format!("must be at most {MAX_HISTORY_SIZE} (0 turns history off)"),
        ));
    }
    let ttl = positive(
        "history_ttl",
        duration(raw.history_ttl, defaults::HISTORY_TTL),
    )?;
    if ttl < Duration::from_secs(1) {
        return Err(ConfigError::invalid("history_ttl", "must be at least 1s"));
    }
    Ok(HistoryConfig { size, ttl })
}

/// Document limits. A document's whole state goes to each client that opens it, in one
/// message that must fit the client's queue next to what else is queued: at most half of
/// `max_queued_bytes`, which also caps the default.
fn documents(raw: &RawSettings, limits: &Limits) -> Result<DocumentConfig, ConfigError> {
    let half_queue = limits.max_queued_bytes / 2;
    let max_size = match raw.max_document_size {
        None => (defaults::MAX_DOCUMENT_SIZE as usize).min(half_queue),
        given => byte_size(
            "max_document_size",
            given,
            defaults::MAX_DOCUMENT_SIZE,
            1 << 10..=u64::MAX,
        )?,
    };
    if max_size > half_queue {
        return Err(ConfigError::invalid(
            "max_document_size",
            format!(
                "must be at most half of max_queued_bytes ({}), so that a document's state fits a client's queue",
                defaults::size(limits.max_queued_bytes as u64)
            ),
        ));
    }
    let per_second = raw
        .document_rate_limit
        .unwrap_or(defaults::DOCUMENT_RATE_LIMIT);
    let rate = (per_second > 0).then(|| RateLimit {
        per_second,
        burst: per_second.saturating_mul(2),
    });
    Ok(DocumentConfig { max_size, rate })
}

/// Most messages a stream may keep: a replay of this many must fit a connection's queue.
const MAX_HISTORY_SIZE: usize = 10_000;

fn heartbeat(raw: &RawSettings) -> Result<Heartbeat, ConfigError> {
    let interval = positive(
        "heartbeat_interval",
        duration(raw.heartbeat_interval, defaults::HEARTBEAT_INTERVAL),
    )?;
    let timeout = duration(raw.heartbeat_timeout, defaults::HEARTBEAT_TIMEOUT);
    if timeout <= interval {
        return Err(ConfigError::invalid(
            "heartbeat_timeout",
            format!(
                "must be greater than heartbeat_interval ({})",
                humantime::format_duration(interval)
            ),
        ));
    }
    Ok(Heartbeat {
        interval,
        timeout,
        app_ping: raw.app_heartbeat.unwrap_or(defaults::APP_HEARTBEAT),
    })
}

/// The away timeout and the idle timeout (`None`: off), which must come after it.
fn inactivity(raw: &RawSettings) -> Result<(Duration, Option<Duration>), ConfigError> {
    let idle = Some(duration(raw.idle_timeout, defaults::IDLE_TIMEOUT)).filter(|d| !d.is_zero());
    let away = positive(
        "away_timeout",
        duration(raw.away_timeout, defaults::AWAY_TIMEOUT),
    )?;
    if idle.is_some_and(|idle| away >= idle) {
        return Err(ConfigError::invalid(
            "away_timeout",
            "must be shorter than idle_timeout, or users would be closed before going away",
        ));
    }
    Ok((away, idle))
}

fn limits(raw: &RawSettings) -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_connections: positive_count(
            "max_connections",
            raw.max_connections,
            defaults::MAX_CONNECTIONS,
        )?,
        max_connections_per_user: positive_count(
            "max_connections_per_user",
            raw.max_connections_per_user,
            defaults::MAX_CONNECTIONS_PER_USER,
        )?,
        max_rooms_per_connection: positive_count(
            "max_rooms_per_connection",
            raw.max_rooms_per_connection,
            defaults::MAX_ROOMS_PER_CONNECTION,
        )?,
        max_channels_per_connection: positive_count(
            "max_channels_per_connection",
            raw.max_channels_per_connection,
            defaults::MAX_CHANNELS_PER_CONNECTION,
        )?,
        max_presence_metadata: byte_size(
            "max_presence_metadata",
            raw.max_presence_metadata,
            defaults::MAX_PRESENCE_METADATA,
            2..=64 << 10,
        )?,
        max_frame_size: byte_size(
            "max_frame_size",
            raw.max_frame_size,
            defaults::MAX_FRAME_SIZE,
            125..=1 << 30,
        )?,
        max_content_length: positive_count(
            "max_content_length",
            raw.max_content_length,
            defaults::MAX_CONTENT_LENGTH,
        )?,
        max_name_length: name_length(raw)?,
        max_queued_bytes: byte_size(
            "max_queued_bytes",
            raw.max_queued_bytes,
            defaults::MAX_QUEUED_BYTES,
            64 << 10..=u64::MAX,
        )?,
        max_memory: max_memory(raw)?,
        rate: rate(raw)?,
        violations: violations(raw)?,
    })
}

/// The longest room or channel name: at least one character, at most what any name may be.
fn name_length(raw: &RawSettings) -> Result<usize, ConfigError> {
    let max = positive_count(
        "max_name_length",
        raw.max_name_length,
        defaults::MAX_NAME_LENGTH,
    )?;
    if max > MAX_NAME_CHARS {
        return Err(ConfigError::invalid(
            "max_name_length",
            format!("must be at most {MAX_NAME_CHARS}"),
        ));
    }
    Ok(max)
}

/// The smallest `max_memory`: below it the server's own start-up footprint (runtime, buffers,
/// allocator arenas) would already be most of the limit.
pub(super) const MIN_MAX_MEMORY: u64 = 16 << 20;

/// The memory limit (`None`: off). Resident memory is read from `/proc`, so Linux only.
fn max_memory(raw: &RawSettings) -> Result<Option<u64>, ConfigError> {
    let bytes = raw.max_memory.map_or(0, |size| size.0);
    if bytes == 0 {
        return Ok(None);
    }
    if !cfg!(target_os = "linux") {
        return Err(ConfigError::invalid(
            "max_memory",
            "is supported on Linux only (resident memory is read from /proc)",
        ));
    }
    if bytes < MIN_MAX_MEMORY {
        let min = defaults::size(MIN_MAX_MEMORY);
        return Err(ConfigError::invalid(
            "max_memory",
            format!("must be 0 (off) or at least {min}"),
        ));
    }
    Ok(Some(bytes))
}

/// The per-user rate limit (`None`: off).
fn rate(raw: &RawSettings) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = raw.rate_limit.unwrap_or(defaults::RATE_LIMIT);
    if per_second == 0 {
        return Ok(None);
    }
    let burst = raw
        .rate_limit_burst
        .unwrap_or(per_second.saturating_mul(defaults::RATE_LIMIT_BURST_SECONDS));
    if burst == 0 {
        return Err(ConfigError::invalid(
            "rate_limit_burst",
            "must be at least 1",
        ));
    }
    Ok(Some(RateLimit { per_second, burst }))
}

/// The repeated-violation limit (`None`: off).
fn violations(raw: &RawSettings) -> Result<Option<ViolationLimit>, ConfigError> {
    let max = raw.max_violations.unwrap_or(defaults::MAX_VIOLATIONS);
    if max == 0 {
        return Ok(None);
    }
    if max > Violations::MAX_LIMIT {
        return Err(ConfigError::invalid(
            "max_violations",
            format!(
                "must be at most {} (0 turns the limit off)",
                Violations::MAX_LIMIT
            ),
        ));
    }
    let window = duration(raw.violation_window, defaults::VIOLATION_WINDOW);
    Ok(Some(ViolationLimit {
        max,
        window: positive("violation_window", window)?,
    }))
}

/// The server HTTP API: a key, or `api_insecure` to serve it without one, not both (an
/// operator who set both cannot tell which one wins).
pub(super) fn api(raw: &RawSettings) -> Result<ApiConfig, ConfigError> {
    let key = raw.api_key.clone().filter(|key| !key.is_empty());
    let insecure = raw.api_insecure.unwrap_or(defaults::API_INSECURE);
    if insecure && key.is_some() {
        return Err(ConfigError::invalid(
            "api_insecure",
            "cannot be set together with api_key: the API requires the key; unset one of them",
        ));
    }
    Ok(ApiConfig { key, insecure })
}

/// Cluster mode: `None` without a Redis URL.
pub(super) fn cluster(raw: &RawSettings) -> Result<Option<RedisConfig>, ConfigError> {
    let broker = raw.broker_url.clone().filter(|url| !url.is_empty());
    let Some(url) = raw.redis_url.clone().filter(|url| !url.is_empty()) else {
        if broker.is_some() {
            return Err(ConfigError::invalid(
                "broker_url",
                "needs redis_url: Redis stays the cluster's state store",
            ));
        }
        return Ok(None);
    };
    let broker = broker
        .map(|url| BrokerUrl::parse(&url))
        .transpose()
        .map_err(|error| ConfigError::invalid("broker_url", error.to_string()))?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::invalid(
            "redis_url",
            "must start with redis:// (or rediss://)",
        ));
    }
    let prefix = raw
        .redis_prefix
        .clone()
        .unwrap_or_else(|| defaults::REDIS_PREFIX.to_owned());
    crate::cluster::check_prefix(&prefix)
        .map_err(|reason| ConfigError::invalid("redis_prefix", reason))?;
    let cluster = raw.redis_cluster.unwrap_or(defaults::REDIS_CLUSTER);
    if cluster {
        check_cluster(&prefix)?;
    }
    let node_ttl = duration(raw.node_ttl, defaults::NODE_TTL);
    if node_ttl < Duration::from_secs(1) || node_ttl > Duration::from_secs(600) {
        return Err(ConfigError::invalid(
            "node_ttl",
            "must be between 1s and 10m",
        ));
    }
    let tls_ca = match &raw.redis_tls_ca {
        None => None,
        Some(_) if !url.starts_with("rediss://") => {
            return Err(ConfigError::invalid(
                "redis_tls_ca",
                "needs a rediss:// redis_url (TLS)",
            ));
        }
        Some(path) => {
            super::tls::read_chain(path, "redis_tls_ca")?;
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    "redis_tls_ca",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some(pem)
        }
    };
    Ok(Some(RedisConfig {
        url,
        prefix,
        node_ttl,
        tls_ca,
        broker,
        cluster,
    }))
}

/// What `redis_cluster` does not support: braces in the prefix (a hash tag of its own would
/// put every key in one slot).
fn check_cluster(prefix: &str) -> Result<(), ConfigError> {
    if prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            "redis_prefix",
            "may not contain { or } with redis_cluster: keys carry their own hash tags",
        ));
    }
    Ok(())
}

/// Logging: the filter must parse, and a directive without `=` must be a level, so that a
/// misspelt level (`warning`, `verbose`) is an error rather than a filter for a target of
/// that name, which would silence the log.
pub(super) fn log(raw: &RawSettings) -> Result<LogConfig, ConfigError> {
    let filter = raw
        .log_level
        .clone()
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_owned());
    check_log_filter(&filter).map_err(|reason| ConfigError::invalid("log_level", reason))?;
    Ok(LogConfig {
        format: raw.log_format.unwrap_or_default(),
        filter,
    })
}

/// Why `filter` is not a usable `tracing` filter, if it is not.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in filter.split(',').map(str::trim) {
        if !directive.is_empty()
            && !directive.contains(['=', '['])
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "{directive:?} is not a level ({}); filter a target with target=level",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map(drop)
        .map_err(|e| format!("{filter:?} is not a valid filter: {e}"))
}

fn duration(value: Option<DurationArg>, default: Duration) -> Duration {
    value.map_or(default, |d| d.0)
}

fn positive(setting: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(setting, "must be greater than zero"));
    }
    Ok(value)
}

/// A count of at least one.
fn positive_count(
    setting: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    let value = value.unwrap_or(default);
    if value == 0 {
        return Err(ConfigError::invalid(setting, "must be at least 1"));
    }
    Ok(value)
}

/// A size within `range`, in bytes that fit in memory.
fn byte_size(
    setting: &'static str,
    value: Option<ByteSize>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<usize, ConfigError> {
    let value = value.map_or(default, |size| size.0);
    if value < *range.start() {
        let min = defaults::size(*range.start());
        return Err(ConfigError::invalid(
            setting,
            format!("must be at least {min}"),
        ));
    }
    if value > *range.end() {
        let max = defaults::size(*range.end());
        return Err(ConfigError::invalid(
            setting,
            format!("must be at most {max}"),
        ));
    }
    usize::try_from(value).map_err(|_| ConfigError::invalid(setting, "is larger than memory"))
}
