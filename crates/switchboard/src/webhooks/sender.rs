//! The sender of one webhook endpoint: takes the events its queue holds, POSTs them as one
//! signed batch, and retries a failed request (a connection error, a timeout, or a status
//! other than 2xx) with exponential backoff and jitter, [`ATTEMPTS`] times at most, before it
//! gives the batch up (counted). One request at a time per endpoint, so the backend gets the
//! events in the order they happened.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::{Request, Uri, header};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::queue::Queue;
use crate::backend::HttpClient;
use crate::hub::Hub;
use crate::protocol::now_ms;

/// How long the first event of a batch waits for others to join it.
pub(super) const BATCH_DELAY: Duration = Duration::from_millis(50);
/// Most events in one request.
const BATCH_MAX: usize = 100;
/// Requests per batch before it is given up.
const ATTEMPTS: u32 = 8;
/// The wait before the first retry; it doubles each time, up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a request may take, connecting included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The signature header's name.
pub(super) const SIGNATURE_HEADER: &str = "x-switchboard-signature";
/// The timestamp header's name.
pub(super) const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";

/// What one sender needs.
pub(super) struct Endpoint {
    pub(super) url: Uri,
    pub(super) queue: Arc<Queue>,
    pub(super) client: HttpClient,
    pub(super) secret: Arc<str>,
    pub(super) node: String,
    /// Its counters are the webhook metrics.
    pub(super) hub: Hub,
    /// Fired at shutdown: the sender tries once more to send what is queued, then ends.
    pub(super) cancel: CancellationToken,
}

/// Sends the endpoint's events until shutdown.
pub(super) async fn run(endpoint: Endpoint) {
    loop {
        tokio::select! {
            () = endpoint.cancel.cancelled() => break,
            () = endpoint.queue.non_empty() => {}
        }
        tokio::select! {
            () = endpoint.cancel.cancelled() => break,
            () = tokio::time::sleep(BATCH_DELAY) => {}
        }
        while endpoint.queue.len() > 0 && !endpoint.cancel.is_cancelled() {
            let batch = endpoint.queue.take(BATCH_MAX);
            endpoint.deliver(&batch).await;
        }
    }
    // Shutting down: what the last connections' departures queued gets one attempt each.
    while endpoint.queue.len() > 0 {
        let batch = endpoint.queue.take(BATCH_MAX);
        let sent = endpoint.post(&body(&endpoint.node, &batch)).await;
        endpoint.count(batch.len(), sent);
    }
}

impl Endpoint {
    /// Sends `batch`, retrying until it is taken, the attempts run out, or shutdown.
    async fn deliver(&self, batch: &[Bytes]) {
        let mut backoff = BACKOFF_MIN;
        for attempt in 1..=ATTEMPTS {
            // Each attempt is signed anew, with its own time.
            let sent = self.post(&body(&self.node, batch)).await;
            if sent.is_ok() || attempt == ATTEMPTS {
                self.count(batch.len(), sent);
                return;
            }
            self.failed_request(&sent);
            let jitter = backoff.mul_f64(fastrand::f64() * 0.5);
            tokio::select! {
                () = self.cancel.cancelled() => {
                    self.count(batch.len(), sent);
                    return;
                }
                () = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Counts a batch of `events` as sent, or as failed for good.
    fn count(&self, events: usize, sent: Result<(), Failure>) {
        let counters = self.hub.counters();
        match sent {
            Ok(()) => counters
                .webhook_events_sent
                .fetch_add(events as u64, Ordering::Relaxed),
            Err(failure) => {
                self.failed_request(&Err(failure));
                tracing::warn!(url = %self.url, events, "webhook events given up after retries");
                counters
                    .webhook_events_failed
                    .fetch_add(events as u64, Ordering::Relaxed)
            }
        };
    }

    fn failed_request(&self, sent: &Result<(), Failure>) {
        if let Err(failure) = sent {
            tracing::debug!(url = %self.url, %failure, "webhook request failed");
            self.hub
                .counters()
                .webhook_requests_failed
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One signed POST of `body`.
    async fn post(&self, (time, body): &(u64, Bytes)) -> Result<(), Failure> {
        let request = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("switchboard/", env!("CARGO_PKG_VERSION")),
            )
            .header(SIGNATURE_HEADER, signature(&self.secret, body))
            .header(TIMESTAMP_HEADER, time.to_string())
            .body(Full::new(body.clone()))
            .map_err(|_| Failure::Request)?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(Failure::Connection)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Status(status.as_u16()))
        }
    }
}

/// Why a request did not deliver its batch.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the request could not be built")]
    Request,
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(#[source] hyper_util::client::legacy::Error),
    #[error("the backend answered {0}")]
    Status(u16),
}

/// A batch's body, and its time: `{"time":…,"node":…,"events":[…]}`.
fn body(node: &str, events: &[Bytes]) -> (u64, Bytes) {
    let time = now_ms();
    let node = serde_json::to_string(node).unwrap_or_else(|_| "\"\"".to_owned());
    let mut body = format!("{{\"time\":{time},\"node\":{node},\"events\":[").into_bytes();
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(event);
    }
    body.extend_from_slice(b"]}");
    (time, Bytes::from(body))
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` with `secret`.
pub(super) fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + digest.len() * 2);
    hex.push_str("sha256=");
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_body_lists_the_events_as_given() {
        let events = [
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":2}"),
        ];
        let (time, body) = body("node-1", &events);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["time"], time);
        assert_eq!(value["node"], "node-1");
        assert_eq!(value["events"], serde_json::json!([{"a": 1}, {"b": 2}]));
    }
}
