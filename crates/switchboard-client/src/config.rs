//! What a client connects to and how it behaves when the connection is lost: the URL and
//! identity (a fixed token, or a [`TokenProvider`] asked for a fresh one), the reconnect policy
//! (exponential backoff with jitter), the heartbeat, the bounds of its queues, and the
//! [`Format`] of its frames on the wire.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;

/// What a token provider's future resolves to: a token, or why none could be had.
pub type TokenResult = Result<String, Box<dyn std::error::Error + Send + Sync>>;

/// Gives the client a current token: asked before every connection attempt (the token is sent
/// in an `auth` frame) and when the server sends `token_expiring` (the token is sent in a
/// `refresh` frame). Made with [`ClientConfig::with_token_provider`].
#[derive(Clone)]
pub struct TokenProvider(
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = TokenResult> + Send>> + Send + Sync>,
);

impl TokenProvider {
    /// Asks for a token.
    pub(crate) fn fetch(&self) -> Pin<Box<dyn Future<Output = TokenResult> + Send>> {
        (self.0)()
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProvider")
    }
}

/// How a [`Client`](crate::Client) connects. Built with [`ClientConfig::new`] and the
/// `with_*` methods; every field has a default but the URL.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub(crate) url: String,
    pub(crate) user_id: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) reconnect: Reconnect,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) connect_timeout: Duration,
    pub(crate) queue_capacity: usize,
    pub(crate) event_capacity: usize,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) format: Format,
}

/// How frames travel on the wire. The API is the same for both: payloads are
/// [`serde_json::Value`]s, and MessagePack bytes (`bin`) appear in them as
/// `{"$bytes": "<base64>"}`, the form the server gives JSON clients (docs/protocol.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON text frames (protocol v1 as in DESIGN.md §2).
    #[default]
    Json,
    /// MessagePack binary frames (subprotocol `switchboard.v1.msgpack`): smaller frames, and
    /// `{"$bytes": …}` values sent as real bytes.
    MsgPack,
}

impl ClientConfig {
    /// A configuration for the server at `url` (`ws://host:port/` or `wss://…`), with the
    /// defaults: reconnect forever with [`Reconnect::default`], heartbeat
    /// [`Heartbeat::default`], 10 s connect timeout, 1000 queued frames, 1024 undelivered
    /// events.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user_id: None,
            token: None,
            token_provider: None,
            reconnect: Reconnect::default(),
            heartbeat: Some(Heartbeat::default()),
            connect_timeout: Duration::from_secs(10),
            queue_capacity: 1000,
            event_capacity: 1024,
            tls: None,
            format: Format::Json,
        }
    }

    /// Connects as `user` (`?userId=`; the server honours it only when authentication is off).
    pub fn with_user_id(mut self, user: impl Into<String>) -> Self {
        self.user_id = Some(user.into());
        self
    }

    /// Authenticates with `token` (`?token=`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with tokens from `provider`, an async function called before every
    /// connection attempt (its token goes in the `auth` frame, not the URL) and whenever the
    /// server warns that the token expires (`token_expiring`: its token goes in a `refresh`
    /// frame, which keeps the connection open past the old token's `exp`). A provider that
    /// fails makes the attempt fail (it is retried with backoff); a failed refresh leaves
    /// the connection to be closed at the old token's expiry, and the next attempt asks again.
    pub fn with_token_provider<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TokenResult> + Send + 'static,
    {
        self.token_provider = Some(TokenProvider(Arc::new(move || Box::pin(provider()))));
        self
    }

    /// The reconnect policy.
    pub fn with_reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// The heartbeat; `None` sends no pings (a hung connection is then noticed only by TCP).
    pub fn with_heartbeat(mut self, heartbeat: Option<Heartbeat>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Longest time for one connection attempt: TCP, TLS, the upgrade and the server's
    /// `connect` frame.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Most frames waiting to be sent (while disconnected, or while the socket is slower than
    /// the sender). A send past it fails with [`Error::QueueFull`]; nothing queued is
    /// dropped. At least 1.
    pub fn with_queue_capacity(mut self, frames: usize) -> Self {
        self.queue_capacity = frames.max(1);
        self
    }

    /// Most events received but not yet taken from [`Events`](crate::Events). When it is
    /// full the client stops reading the socket until the application catches up (the
    /// server then buffers, up to its own limit). At least 1.
    pub fn with_event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// TLS settings for `wss://` (e.g. a private root certificate); by default the Mozilla
    /// root certificates (`webpki-roots`) are trusted.
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Speaks `format` on the wire (JSON by default). [`Format::MsgPack`] needs a server that
    /// selects subprotocol `switchboard.v1.msgpack`; against one that does not, every
    /// connection attempt fails its handshake.
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// The URL to connect to: the configured one with `userId` and `token` added.
    pub(crate) fn connect_url(&self) -> Result<String, Error> {
        let invalid = |reason| Error::InvalidUrl {
            url: self.url.clone(),
            reason,
        };
        let rest = self
            .url
            .strip_prefix("ws://")
            .or_else(|| self.url.strip_prefix("wss://"))
            .ok_or_else(|| invalid("must start with ws:// or wss://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("has no host"));
        }
        if self.url.contains('#') {
            return Err(invalid("must not have a fragment"));
        }
        let mut url = self.url.clone();
        if !rest.contains('/') {
            url.push('/');
        }
        let params = [("userId", &self.user_id), ("token", &self.token)];
        for (name, value) in params {
            if let Some(value) = value {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(name);
                url.push('=');
                url.push_str(&percent_encode(value));
            }
        }
        Ok(url)
    }
}

/// Reconnection with exponential backoff and jitter. Attempt `n` (from 1) waits
/// `min(max, base * multiplier^(n-1))`, less a random part of up to `jitter` of it, so
/// clients that lost the same server do not come back in lockstep. The count restarts after
/// every successful connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reconnect {
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Growth factor per attempt (at least 1).
    pub multiplier: f64,
    /// Fraction of each delay that is random, 0 to 1.
    pub jitter: f64,
    /// Failed attempts in a row after which the client gives up (`None`: never). The first
    /// connection counts as an attempt.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    /// 500 ms doubling up to 30 s, half of it random, forever.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// No reconnection: the client is closed when its connection ends.
    pub fn never() -> Self {
        Self {
            max_attempts: Some(1),
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt` (2 is the first retry), with `random` in [0, 1)
    /// choosing the jitter.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = attempt.saturating_sub(2).min(64);
        let factor = self.multiplier.max(1.0).powi(exponent as i32);
        let full = self.base.as_secs_f64() * factor;
        let capped = full.min(self.max.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter))
    }

    /// Whether another attempt may follow `failed` failed attempts in a row.
    pub(crate) fn allows(&self, failed: u32) -> bool {
        self.max_attempts.is_none_or(|max| failed < max)
    }
}

/// The application-level heartbeat: a `ping` every `interval`; a `pong` must come back within
/// `timeout`, or the connection is taken for dead (even when TCP still looks open) and is
/// replaced. A write that cannot complete within `timeout` counts the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for the pong.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    /// A ping every 25 s (under the server's 30 s), 10 s for the pong.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(25),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_jitter_only_shortens() {
        let policy = Reconnect {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
        };
        let delays: Vec<_> = (2..=8).map(|n| policy.delay(n, 0.0)).collect();
        let ms: Vec<_> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(policy.delay(3, 0.999_999).as_millis(), 100);
        assert_eq!(policy.delay(u32::MAX, 0.0), Duration::from_secs(1));
        let silly = Reconnect {
            multiplier: -3.0,
            jitter: 7.0,
            ..policy
        };
        assert_eq!(silly.delay(5, 2.0), Duration::ZERO);
        assert_eq!(silly.delay(5, 0.0), Duration::from_millis(100));
    }

    #[test]
    fn attempts_are_bounded_when_asked() {
        assert!(Reconnect::default().allows(u32::MAX));
        assert!(!Reconnect::never().allows(1));
        let three = Reconnect {
            max_attempts: Some(3),
            ..Reconnect::default()
        };
        assert!(three.allows(2) && !three.allows(3));
    }

    #[test]
    fn the_url_gets_the_identity_encoded() {
        let config = ClientConfig::new("ws://localhost:3000")
            .with_user_id("ali ce&x")
            .with_token("a.b-c");
        assert_eq!(
            config.connect_url().ok().as_deref(),
            Some("ws://localhost:3000/?userId=ali%20ce%26x&token=a.b-c")
        );
        let config = ClientConfig::new("wss://h/ws?v=1").with_user_id("bob");
        assert_eq!(
            config.connect_url().ok().as_deref(),
            Some("wss://h/ws?v=1&userId=bob")
        );
        for bad in [
            "http://h/",
            "ws://",
            "ws:///x",
            "ws://h/#f",
            "localhost:3000",
        ] {
            assert!(
                matches!(
                    ClientConfig::new(bad).connect_url(),
                    Err(Error::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
