//! Backend proxies: the server asks the application's backend, over HTTP, who a connecting
//! client is (connect), whether a join or a subscribe may go ahead, and what to answer to a
//! client frame of a type nobody else handles (RPC). docs/proxy.md has every request and
//! answer.
//!
//! [`Proxy`] owns the pooled client (`crate::backend`), the URLs and the timeout, and counts
//! every request (`hub::ProxyCounters`). A request is a future the caller polls: the upgrade
//! awaits a connect, and a connection's task polls its pending join, subscribe or RPC itself
//! (`connection::session_calls`), so a slow backend holds up that connection only. Each answer
//! is read into memory up to [`MAX_ANSWER_BYTES`], parsed (`wire.rs`), and turned into a
//! verdict; a backend that is down, slow, answers non-2xx or answers nonsense gives a
//! [`ProxyError`] whose message the client may see.

mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{Request, StatusCode, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::backend::HttpClient;
use crate::config::ProxyConfig;
use crate::hub::{Hub, ProxyKind, ProxyOutcome};
pub(crate) use wire::{
    ConnectRequest, ConnectVerdict, RpcRequest, RpcVerdict, StreamRequest, StreamVerdict,
};

/// Largest answer body read from the backend; a longer one is refused as too large.
pub(crate) const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Longest message of a backend's refusal passed on to a client, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// Why a proxy request gave no usable answer. The messages are what clients see (an `error`
/// frame, an HTTP body, a close reason): short, and naming no internals.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The instance has no proxy of this kind.
    #[error("backend unavailable (no proxy set)")]
    NotSet,
    /// The request could not be sent, or the answer could not be read.
    #[error("backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend answered with a status other than 2xx.
    #[error("backend unavailable (HTTP {})", .0.as_u16())]
    Status(StatusCode),
    /// No answer within `--proxy-timeout`.
    #[error("backend timeout")]
    Timeout,
    /// The answer was longer than [`MAX_ANSWER_BYTES`].
    #[error("backend answer too large")]
    TooLarge,
    /// The answer is not JSON of the documented shape.
    #[error("backend answered invalid JSON")]
    Malformed(#[source] serde_json::Error),
    /// The answer is JSON, but not one the proxy accepts (said why).
    #[error("backend answer invalid: {0}")]
    Invalid(&'static str),
}

impl ProxyError {
    /// The metric outcome of a request that ended with this error.
    fn outcome(&self) -> ProxyOutcome {
        match self {
            Self::NotSet | Self::Unavailable(_) | Self::Status(_) => ProxyOutcome::Unavailable,
            Self::Timeout => ProxyOutcome::Timeout,
            Self::TooLarge | Self::Malformed(_) | Self::Invalid(_) => ProxyOutcome::Invalid,
        }
    }
}

/// A verdict parsed from a backend's answer, with the outcome it is counted as.
pub(crate) trait Verdict: Sized {
    /// Reads the verdict from an answer body; `max_name` bounds user ids.
    fn parse(body: &[u8], max_name: usize) -> Result<Self, ProxyError>;
    /// How the request is counted.
    fn outcome(&self) -> ProxyOutcome;
}

/// The proxies of one instance.
pub(crate) struct Proxy {
    client: HttpClient,
    config: ProxyConfig,
    /// Counts the requests; bounds user ids.
    hub: Hub,
}

impl Proxy {
    /// The proxies `config` sets, counted in `hub`'s counters.
    pub(crate) fn new(config: ProxyConfig, hub: Hub) -> Self {
        Self {
            client: crate::backend::client(config.timeout),
            config,
            hub,
        }
    }

    /// The settings.
    pub(crate) fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Asks the connect proxy who `request` is.
    pub(crate) fn connect(
        self: &Arc<Self>,
        request: &ConnectRequest,
    ) -> impl Future<Output = Result<ConnectVerdict, ProxyError>> + Send + 'static {
        self.clone().call(
            ProxyKind::Connect,
            self.config.connect.clone(),
            wire::body(request),
        )
    }

    /// Asks the join (`ProxyKind::Join`) or subscribe proxy whether `request` may go ahead.
    pub(crate) fn approve(
        self: &Arc<Self>,
        kind: ProxyKind,
        request: &StreamRequest<'_>,
    ) -> impl Future<Output = Result<StreamVerdict, ProxyError>> + Send + 'static {
        let url = match kind {
            ProxyKind::Join => self.config.join.clone(),
            ProxyKind::Subscribe => self.config.subscribe.clone(),
            ProxyKind::Connect | ProxyKind::Rpc => None,
        };
        self.clone().call(kind, url, wire::body(request))
    }

    /// Asks the RPC proxy to answer `request`.
    pub(crate) fn rpc(
        self: &Arc<Self>,
        request: &RpcRequest<'_>,
    ) -> impl Future<Output = Result<RpcVerdict, ProxyError>> + Send + 'static {
        self.clone()
            .call(ProxyKind::Rpc, self.config.rpc.clone(), wire::body(request))
    }

    /// POSTs `body` to `url` (an error when that proxy is not set) within the timeout, parses
    /// the answer and counts the request.
    async fn call<V: Verdict>(
        self: Arc<Self>,
        kind: ProxyKind,
        url: Option<Uri>,
        body: Bytes,
    ) -> Result<V, ProxyError> {
        // Not counted: no request is made.
        let url = url.ok_or(ProxyError::NotSet)?;
        let started = Instant::now();
        let max_name = self.hub.config().limits.max_name_length;
        let answered = tokio::time::timeout(self.config.timeout, self.post(url, body))
            .await
            .unwrap_or(Err(ProxyError::Timeout));
        let verdict = answered.and_then(|body| V::parse(&body, max_name));
        let outcome = match &verdict {
            Ok(verdict) => verdict.outcome(),
            Err(error) => {
                tracing::debug!(kind = kind.label(), ?error, "proxy request failed");
                error.outcome()
            }
        };
        self.hub
            .counters()
            .proxy
            .count(kind, outcome, started.elapsed());
        verdict
    }

    /// POSTs `body` as JSON and reads a 2xx answer's body, at most [`MAX_ANSWER_BYTES`].
    async fn post(&self, url: Uri, body: Bytes) -> Result<Bytes, ProxyError> {
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|error| ProxyError::Unavailable(error.into()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| ProxyError::Unavailable(error.into()))?;
        if !response.status().is_success() {
            return Err(ProxyError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<LengthLimitError>() {
                    ProxyError::TooLarge
                } else {
                    ProxyError::Unavailable(error)
                }
            })?;
        Ok(body.to_bytes())
    }
}

/// `message` cut to at most [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn bounded(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}
