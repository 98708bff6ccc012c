//! The task of a WebSocket upgraded through hyper (TLS, the library's router, and requests
//! the standalone server's accept path leaves to hyper): it waits for hyper to hand the
//! connection over, then runs it.
//!
//! A named future, not an `async` block: a block awaiting hyper's `OnUpgrade` and then the
//! connection kept what it had captured (the `OnUpgrade`, the admission's [`Upgraded`])
//! beside the connection's future for the connection's whole life, a larger size class for
//! every idle connection (BENCHMARKS.md, "Where the RSS–heap gap went"). Here the waiting
//! state is boxed and freed once the connection starts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::upgrade::OnUpgrade;

use super::{ServeUpgraded, Upgraded, serve_upgraded};
use crate::per_ip::IpSlot;

/// A connection's task on hyper's upgrade path.
pub(super) struct Upgrading {
    state: State,
    /// The per-IP count of this connection (standalone server) lasts as long as the WebSocket:
    /// it is dropped after `state`.
    _ip_slot: Option<IpSlot>,
}

/// The size difference between the variants is the point: the open connection stays inline
/// (boxing it would cost every connection an allocation), the short-lived rest is boxed.
#[allow(clippy::large_enum_variant)]
enum State {
    /// Until hyper has written the 101 and hands the connection over.
    Waiting(Box<(OnUpgrade, Upgraded)>),
    /// The connection.
    Open(ServeUpgraded),
    /// The upgrade failed.
    Failed,
}

impl Upgrading {
    pub(super) fn new(on_upgrade: OnUpgrade, upgraded: Upgraded, ip_slot: Option<IpSlot>) -> Self {
        Self {
            state: State::Waiting(Box::new((on_upgrade, upgraded))),
            _ip_slot: ip_slot,
        }
    }
}

impl Future for Upgrading {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Waiting(waiting) => {
                    let io = ready!(Pin::new(&mut waiting.0).poll(cx));
                    let State::Waiting(waiting) = std::mem::replace(&mut this.state, State::Failed)
                    else {
                        return Poll::Ready(());
                    };
                    match io {
                        Ok(io) => this.state = State::Open(serve_upgraded(io, waiting.1)),
                        Err(error) => {
                            tracing::debug!(%error, "upgrade failed");
                            return Poll::Ready(());
                        }
                    }
                }
                State::Open(connection) => return Pin::new(connection).poll(cx),
                State::Failed => return Poll::Ready(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::{IpSlot, ServeUpgraded, Upgrading};

    /// An open connection's task holds the connection and its per-IP slot, and at most a word
    /// for the state's tag: the waiting state is boxed.
    #[test]
    fn the_task_is_the_connection_and_its_slot() {
        let parts = size_of::<ServeUpgraded>() + size_of::<Option<IpSlot>>();
        let task = size_of::<Upgrading>();
        assert!(task <= parts + 8, "{task} bytes for {parts} of parts");
    }
}
