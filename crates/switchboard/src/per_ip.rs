//! The standalone server's per-IP connection cap: how many TCP connections each client address
//! holds, counted from accept to close, whether the connection stays HTTP or becomes a
//! WebSocket.
//!
//! The server takes an [`IpSlot`] when it accepts a connection and refuses the connection
//! (HTTP 429) when the address is at the cap. The slot is released when its last clone drops:
//! the HTTP connection holds one, and each request carries one in its extensions, so the
//! WebSocket upgrade keeps the slot for as long as the WebSocket lives. IPv6 clients are
//! counted per /64, the block one subscriber usually gets; an IPv4-mapped IPv6 address counts
//! as the IPv4 address. The map holds only addresses with open connections, so it is bounded
//! by the number of open connections.
//!
//! Behind trusted proxies (`--trusted-proxies`) the address is the client's as the proxy
//! forwards it ([`crate::forwarded`]), and the slot is taken per request rather than per TCP
//! connection: one proxy connection carries many clients.
//!
//! Embedders that serve [`Switchboard::router`](crate::Switchboard::router) themselves have
//! no slots in their requests and no cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The counts of open connections per client address, capped at `max`. A lock over one map:
/// it is taken once at accept and once at close, never on the message path.
#[derive(Clone)]
pub(crate) struct PerIpLimit(Arc<Counts>);

struct Counts {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection. Cloned into the requests it serves; the last clone to drop
/// releases the count.
#[derive(Clone)]
pub(crate) struct IpSlot {
    _held: Arc<Held>,
}

struct Held {
    counts: Arc<Counts>,
    key: IpAddr,
}

impl PerIpLimit {
    /// A cap of `max` connections per address.
    pub(crate) fn new(max: usize) -> Self {
        Self(Arc::new(Counts {
            max,
            open: Mutex::new(HashMap::new()),
        }))
    }

    /// Counts a connection from `ip`, or `None` when the address is at the cap.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        let key = key(ip);
        let mut open = self.0.open.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.0.max {
            return None;
        }
        *count += 1;
        drop(open);
        Some(IpSlot {
            _held: Arc::new(Held {
                counts: self.0.clone(),
                key,
            }),
        })
    }

    /// Open connections counted for `ip`'s address (or /64).
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        self.0.open.lock().get(&key(ip)).copied().unwrap_or(0)
    }

    /// Addresses with open connections.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.0.open.lock().len()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The address a connection is counted under: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = v6.to_bits() & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from_bits(prefix))
        }
    }
}

/// How long a refused connection may take to get its answer.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to a connection over the cap.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    content-length: 39\r\n\
    retry-after: 1\r\n\
    connection: close\r\n\r\n\
    too many connections from your address\n";

/// The answer to a request over the cap that came through a trusted proxy: the proxy's
/// connection stays open for its other clients.
pub(crate) fn too_many() -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;

    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        "too many connections from your address\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// Answers a connection over the cap with HTTP 429 and closes it. The request is read and
/// discarded (a little of it, for at most [`REFUSE_TIMEOUT`]) so that closing does not reset
/// the connection before the client reads the answer.
pub(crate) async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(TOO_MANY).await?;
        stream.shutdown().await?;
        let mut discard = [0u8; 512];
        let mut budget = 16 * 1024;
        while budget > 0 {
            let n = stream.read(&mut discard).await?;
            if n == 0 {
                break;
            }
            budget -= n.min(budget);
        }
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_cap_holds_per_address_and_releases_on_drop() {
        let limit = PerIpLimit::new(2);
        let a = limit.try_acquire(ip("10.0.0.1")).unwrap();
        let b = limit.try_acquire(ip("10.0.0.1")).unwrap();
        assert!(limit.try_acquire(ip("10.0.0.1")).is_none());
        let other = limit.try_acquire(ip("10.0.0.2")).unwrap();
        // A clone (a request's) keeps the slot until the last one drops.
        let request = a.clone();
        drop(a);
        assert!(limit.try_acquire(ip("10.0.0.1")).is_none());
        drop(request);
        let c = limit.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(limit.open(ip("10.0.0.1")), 2);
        drop((b, c, other));
        assert_eq!(limit.addresses(), 0, "no entry outlives its connections");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limit = PerIpLimit::new(1);
        let _first = limit.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limit.try_acquire(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(limit.try_acquire(ip("2001:db8:1:3::1")).is_some());
        let _v4 = limit.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(limit.try_acquire(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn the_refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
