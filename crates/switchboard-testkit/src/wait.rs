//! Waiting, always bounded by [`WAIT`]: for the events of a `switchboard-client`, for state the
//! server reports, for a port to listen.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use switchboard_client::{Client, Event, Events};
use tokio::time::Instant;

use crate::WAIT;

/// How often a poll looks again.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, checking every 10 ms. For state the server changes without
/// telling any client (such as cleanup after a disconnect).
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait_until`] for a condition that needs to await (an HTTP call, say).
pub async fn wait_until_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until something accepts TCP connections on `addr` (a child process that has started),
/// polling: a process that starts listening tells nobody.
pub async fn wait_for_port(what: &str, addr: SocketAddr) {
    wait_until_async(what, || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// The next event of a Rust client that `wanted` accepts, skipping others.
pub async fn next_event(
    events: &mut Events,
    what: &str,
    mut wanted: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("client events ended");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The events a Rust client has received so far, proven complete by a `ping` round trip: the
/// server answers in order, so everything it sent before the `pong` is already there.
pub async fn received_events(client: &Client, events: &mut Events) -> Vec<Event> {
    client.request("ping", json!({}), WAIT).await.expect("ping");
    std::iter::from_fn(|| events.try_recv()).collect()
}
