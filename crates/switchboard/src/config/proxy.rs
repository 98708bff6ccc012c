//! Proxy settings: the backend URLs asked before a connect, a join, a subscribe and for custom
//! message types, how long a request may take, and which request headers a connect forwards
//! (`crate::proxy` makes the requests).

use std::time::Duration;

use axum::http::{HeaderName, Uri};

use super::{ConfigError, RawSettings};

/// The default `proxy_timeout`.
pub(super) const PROXY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `proxy_timeout` accepted: a connection reads nothing while its request is out, so
/// the wait must stay well below the heartbeat timeout.
const MAX_PROXY_TIMEOUT: Duration = Duration::from_secs(30);
/// The headers a connect forwards by default: what a backend needs to recognise a browser's
/// session (its cookie, an `Authorization` header) and where it comes from.
pub(super) const PROXY_HEADERS: &str = "cookie,authorization,origin,user-agent,accept-language";

/// The proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Asked who a connecting client is (`None`: nobody is asked).
    pub connect: Option<Uri>,
    /// Asked before a join that passed the local checks.
    pub join: Option<Uri>,
    /// Asked before a subscribe that passed the local checks.
    pub subscribe: Option<Uri>,
    /// Answers client frames of types neither the protocol nor the application handles.
    pub rpc: Option<Uri>,
    /// How long one request may take, connecting included.
    pub timeout: Duration,
    /// The upgrade request's headers a connect request carries (lowercase names).
    pub headers: Vec<HeaderName>,
}

/// The proxy settings: `None` without any proxy URL. URLs must be `http(s)://` with a host;
/// the timeout is above zero, at most 30 s and below the heartbeat timeout; the connect proxy replaces JWT verification,
/// so it cannot be combined with a JWT key.
pub(super) fn from_raw(raw: &RawSettings) -> Result<Option<ProxyConfig>, ConfigError> {
    let url = |setting: &'static str, value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                super::webhooks::parse_url(url).map_err(|e| ConfigError::invalid(setting, e))
            })
            .transpose()
    };
    let connect = url("proxy_connect_url", &raw.proxy_connect_url)?;
    let join = url("proxy_join_url", &raw.proxy_join_url)?;
    let subscribe = url("proxy_subscribe_url", &raw.proxy_subscribe_url)?;
    let rpc = url("proxy_rpc_url", &raw.proxy_rpc_url)?;
    let timeout = raw.proxy_timeout.map_or(PROXY_TIMEOUT, |d| d.0);
    if timeout.is_zero() || timeout > MAX_PROXY_TIMEOUT {
        return Err(ConfigError::invalid(
            "proxy_timeout",
            "must be greater than zero and at most 30s",
        ));
    }
    let headers = raw
        .proxy_headers
        .as_deref()
        .unwrap_or(PROXY_HEADERS)
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
                ConfigError::invalid("proxy_headers", format!("{name:?} is not a header name"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if connect.is_none() && join.is_none() && subscribe.is_none() && rpc.is_none() {
        return Ok(None);
    }
    // A connection reads nothing, its pongs included, while it waits for the backend.
    let heartbeat_timeout = raw
        .heartbeat_timeout
        .map_or(super::defaults::HEARTBEAT_TIMEOUT, |d| d.0);
    if timeout >= heartbeat_timeout {
        return Err(ConfigError::invalid(
            "proxy_timeout",
            "must be shorter than heartbeat_timeout (a connection waiting for the backend reads no pong)",
        ));
    }
    let jwt = raw.jwt_secret.as_deref().is_some_and(|key| !key.is_empty())
        || raw
            .jwt_public_key
            .as_deref()
            .is_some_and(|path| !path.as_os_str().is_empty());
    if connect.is_some() && jwt {
        return Err(ConfigError::invalid(
            "proxy_connect_url",
            "the connect proxy replaces JWT verification: set it or a JWT key, not both",
        ));
    }
    Ok(Some(ProxyConfig {
        connect,
        join,
        subscribe,
        rpc,
        timeout,
        headers,
    }))
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
