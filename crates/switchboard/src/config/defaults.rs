//! The default of every setting, written once. Validation (`validate`) fills these values in
//! where no source gave a setting, and `--help` shows each as `[default: …]` ([`in_help`],
//! which clap calls for every argument of [`super::RawSettings`]), so the two cannot drift.
//!
//! The flags cannot carry clap defaults: every setting stays an `Option` so that a flag, an
//! environment variable and the file can each leave it unset for the next source.

use std::time::Duration;

use clap::ValueEnum;

use super::LogFormat;
use crate::auth::AuthConfig;

pub(super) const HOST: &str = "0.0.0.0";
pub(super) const PORT: u16 = 3000;
pub(super) const MAX_CONNECTIONS: usize = 10_000;
pub(super) const MAX_CONNECTIONS_PER_USER: usize = 5;
pub(super) const MAX_ROOMS_PER_CONNECTION: usize = 100;
pub(super) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const APP_HEARTBEAT: bool = false;
pub(super) const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Zero turns the idle timeout off.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Zero turns rate limiting off.
pub(super) const RATE_LIMIT: u32 = 10;
/// Without `rate_limit_burst`, the burst is this many seconds' worth of the rate.
pub(super) const RATE_LIMIT_BURST_SECONDS: u32 = 2;
pub(super) const MAX_FRAME_SIZE: u64 = 1 << 20;
pub(super) const COMPRESSION: bool = true;
pub(super) const COMPRESSION_THRESHOLD: u64 = 1 << 10;
pub(super) const MAX_CONTENT_LENGTH: usize = 10_000;
pub(super) const MAX_NAME_LENGTH: usize = 128;
pub(super) const MAX_QUEUED_BYTES: u64 = 4 << 20;
pub(super) const MAX_CHANNELS_PER_CONNECTION: usize = 100;
pub(super) const ALLOW_CLIENT_PATTERNS: bool = false;
pub(super) const DELIVER_TO_PUBLISHER: bool = true;
pub(super) const AWAY_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const MAX_PRESENCE_METADATA: u64 = 1 << 10;
pub(super) const API_INSECURE: bool = false;
pub(super) const PROXY_PROTOCOL: bool = false;
pub(super) const REDIS_PREFIX: &str = "switchboard:";
pub(super) const REDIS_CLUSTER: bool = false;
pub(super) const NODE_TTL: Duration = Duration::from_secs(15);
pub(super) const DEDUP_WINDOW: Duration = Duration::from_secs(60);
/// Zero turns history off.
pub(super) const HISTORY_SIZE: usize = 100;
pub(super) const HISTORY_TTL: Duration = Duration::from_secs(600);
pub(super) const MAX_DOCUMENT_SIZE: u64 = 2 << 20;
/// Zero turns the document rate limit off.
pub(super) const DOCUMENT_RATE_LIMIT: u32 = 100;
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Zero turns the per-IP cap off.
pub(super) const MAX_CONNECTIONS_PER_IP: usize = 0;
/// Zero turns the repeated-violation limit off.
pub(super) const MAX_VIOLATIONS: u32 = 50;
pub(super) const VIOLATION_WINDOW: Duration = Duration::from_secs(10);
pub(super) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const ECHO_ENDPOINT: bool = false;
pub(super) const IO_URING: bool = false;
pub(super) const LOG_LEVEL: &str = "info";

/// What `--help` says a setting defaults to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shown {
    /// A value, written as the setting is (`30s`, `1MiB`): giving it changes nothing.
    Value(String),
    /// What happens without the setting, when that is not one value (`random`, `none`).
    Text(String),
}

/// The default `--help` shows for `setting` (its TOML name, the argument's id).
pub(super) fn shown(setting: &str) -> Option<Shown> {
    let value = match setting {
        "host" => HOST.to_owned(),
        "port" => PORT.to_string(),
        "max_connections" => MAX_CONNECTIONS.to_string(),
        "max_connections_per_user" => MAX_CONNECTIONS_PER_USER.to_string(),
        "max_rooms_per_connection" => MAX_ROOMS_PER_CONNECTION.to_string(),
        "heartbeat_interval" => duration(HEARTBEAT_INTERVAL),
        "heartbeat_timeout" => duration(HEARTBEAT_TIMEOUT),
        "app_heartbeat" => APP_HEARTBEAT.to_string(),
        "cleanup_interval" => duration(CLEANUP_INTERVAL),
        "idle_timeout" => duration(IDLE_TIMEOUT),
        "rate_limit" => RATE_LIMIT.to_string(),
        "max_frame_size" => size(MAX_FRAME_SIZE),
        "compression" => COMPRESSION.to_string(),
        "compression_threshold" => size(COMPRESSION_THRESHOLD),
        "max_content_length" => MAX_CONTENT_LENGTH.to_string(),
        "max_name_length" => MAX_NAME_LENGTH.to_string(),
        "max_queued_bytes" => size(MAX_QUEUED_BYTES),
        "max_channels_per_connection" => MAX_CHANNELS_PER_CONNECTION.to_string(),
        "allow_client_patterns" => ALLOW_CLIENT_PATTERNS.to_string(),
        "deliver_to_publisher" => DELIVER_TO_PUBLISHER.to_string(),
        "away_timeout" => duration(AWAY_TIMEOUT),
        "max_presence_metadata" => size(MAX_PRESENCE_METADATA),
        "api_insecure" => API_INSECURE.to_string(),
        "proxy_protocol" => PROXY_PROTOCOL.to_string(),
        "redis_prefix" => REDIS_PREFIX.to_owned(),
        "redis_cluster" => REDIS_CLUSTER.to_string(),
        "node_ttl" => duration(NODE_TTL),
        "auth_timeout" => duration(AuthConfig::default().timeout),
        "token_expiry_warning" => duration(AuthConfig::default().expiry.warning),
        "token_expiry_grace" => duration(AuthConfig::default().expiry.grace),
        "dedup_window" => duration(DEDUP_WINDOW),
        "history_size" => HISTORY_SIZE.to_string(),
        "history_ttl" => duration(HISTORY_TTL),
        "max_document_size" => size(MAX_DOCUMENT_SIZE),
        "document_rate_limit" => DOCUMENT_RATE_LIMIT.to_string(),
        "handshake_timeout" => duration(HANDSHAKE_TIMEOUT),
        "max_connections_per_ip" => MAX_CONNECTIONS_PER_IP.to_string(),
        "max_violations" => MAX_VIOLATIONS.to_string(),
        "violation_window" => duration(VIOLATION_WINDOW),
        "shutdown_timeout" => duration(SHUTDOWN_TIMEOUT),
        "echo_endpoint" => ECHO_ENDPOINT.to_string(),
        "io_uring" => IO_URING.to_string(),
        "proxy_timeout" => duration(super::proxy::PROXY_TIMEOUT),
        "proxy_headers" => super::proxy::PROXY_HEADERS.to_owned(),
        "log_format" => LogFormat::default()
            .to_possible_value()?
            .get_name()
            .to_owned(),
        "log_level" => LOG_LEVEL.to_owned(),
        other => return text(other).map(Shown::Text),
    };
    Some(Shown::Value(value))
}

/// The defaults that are not one value.
fn text(setting: &str) -> Option<String> {
    let text = match setting {
        "rate_limit_burst" => {
            let burst = RATE_LIMIT * RATE_LIMIT_BURST_SECONDS;
            return Some(format!("{burst}: rate_limit × {RATE_LIMIT_BURST_SECONDS}"));
        }
        "node_id" => "random",
        "api_key" => "none, the API refuses requests unless api_insecure",
        "redis_url" | "jwt_secret" | "jwt_public_key" | "tls_key" => "none",
        "redis_tls_ca" => "none, the system's roots",
        "broker_url" => "none, Redis pub/sub",
        "jwt_algorithm" => "HS256 with a secret, else from the key's type",
        "jwt_issuer" | "jwt_audience" => "not checked",
        "allowed_origins" => "any",
        "admin_key" => "none, open",
        "admin_port" => "none, on the public port",
        "trusted_proxies" => "none, forwarding headers ignored",
        "tls_cert" => "none, plain TCP",
        "data_dir" => "none, documents in memory",
        "webhook_url" => "none, no webhooks",
        "webhook_secret" => "none",
        "webhook_events" => "all",
        "webhook_client_types" => "none",
        "proxy_connect_url" => "none, identity from JWT or userId",
        "proxy_join_url" | "proxy_subscribe_url" => "none, local checks only",
        "proxy_rpc_url" => "none, UNKNOWN_TYPE",
        "max_memory" => "0, off",
        _ => return None,
    };
    Some(text.to_owned())
}

/// Appends `[default: …]` to the help of an argument that is a setting.
pub(super) fn in_help(arg: clap::Arg) -> clap::Arg {
    let (Some(Shown::Value(shown)) | Some(Shown::Text(shown))) = shown(arg.get_id().as_str())
    else {
        return arg;
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {shown}]"))
}

/// A duration as settings are written: `30s`, `5m`.
fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// A size in the largest binary unit that divides it: `1MiB`, `64KiB`, `125 bytes`.
pub(super) fn size(bytes: u64) -> String {
    match [(30, "GiB"), (20, "MiB"), (10, "KiB")]
        .into_iter()
        .find(|&(shift, _)| bytes != 0 && bytes.is_multiple_of(1 << shift))
    {
        Some((shift, unit)) => format!("{}{unit}", bytes >> shift),
        None => format!("{bytes} bytes"),
    }
}
