//! SSE connections (DESIGN.md §9): a protocol v1 connection whose server frames go out as a
//! `text/event-stream` response and whose client frames come in as POSTs.
//!
//! The stream ([`SseStream`]) is the response body: hyper polls it on the HTTP connection's
//! task, so an SSE connection has no task of its own. Each poll hands hyper what the
//! connection's outbox holds (already in SSE form: the hub queues events, not WebSocket
//! frames, for a `Wire::Sse` connection); a close request becomes a final `close` event and
//! the end of the body. When hyper drops the body (the client went away, the server is
//! stopping, the response ended) the session finishes: the connection leaves its rooms and
//! the hub. Liveness: an SSE client cannot answer WebSocket pings, so each time hyper takes
//! more of the stream (it has written what it had) counts as a sign of life, and so does each
//! POST; a client that vanished without closing its TCP connection is found by TCP (writes
//! fail once retransmissions give up) or by the outbox limit.
//!
//! The session lives behind a lock shared by the stream and [`SseLinks`], the map that POSTs
//! find it in: a POST handles its frames itself, in order, under the lock (never across an
//! await), exactly as the WebSocket driver handles text frames, and answers once they are
//! handled. So there is no queue between the POST and the session and no overflow policy to
//! name: a POST's frames are handled before it is answered, and the rate limiter and the
//! violation counter apply to them as to WebSocket frames.
//!
//! A frame may wait for the backend (a join, subscribe or RPC that a proxy decides,
//! `session_calls.rs`). The WebSocket driver then reads no further frame until the answer;
//! here the POST polls the call (taking the session's lock for each poll only) and handles its
//! next frame after the answer. POSTs to one connection take turns (a fair async lock held
//! while a POST's frames are handled), so a second POST waits for the first one's calls
//! instead of handling frames while one is out; one abandoned by its client leaves its call
//! for the next POST to wait for. POSTs relayed from other nodes arrive in order on the
//! broker's delivery path, which cannot wait: they queue on the connection ([`RelayQueue`],
//! at most [`MAX_RELAYED`]; beyond that a relayed POST is dropped and logged, its sender
//! having had its 202) and one task handles them in that order.
//!
//! In a cluster a POST may reach another node than the stream's: that node relays it through
//! the broker (`hub::relay`, [`relay`]) to the holder, which checks the session and handles the
//! frames as if the POST had come to it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::session::Session;
use super::{Endpoint, Peer};
use crate::hub::{ConnHandle, Counters, Hub, Initiator, Refusal, Taken, Wire};
use crate::ids::ConnId;
use crate::protocol::{CloseCode, ServerFrame};
use crate::sse;

/// Bytes of randomness in a session secret (256 bits; the spec asks for at least 128).
const SECRET_BYTES: usize = 32;

/// Relayed POSTs that may wait for one connection. A client has one POST in flight at a time
/// (the JS client does); more than this is a flood.
const MAX_RELAYED: usize = 16;

/// The open SSE connections of one instance, by id: what a POST needs to reach a session.
#[derive(Default)]
pub(crate) struct SseLinks {
    /// Entries are added when a stream opens and removed when its body is dropped.
    links: RwLock<HashMap<ConnId, Arc<Link>>>,
}

/// One SSE connection as POSTs see it.
struct Link {
    /// The `session` secret of its `connect` event (URL-safe base64, no padding).
    secret: String,
    session: Mutex<Session>,
    /// Held by the POST whose frames are being handled, across the waits for the backend.
    turn: tokio::sync::Mutex<()>,
    relayed: Mutex<RelayQueue>,
}

/// POSTs relayed from other nodes that wait to be handled, oldest first.
#[derive(Default)]
struct RelayQueue {
    posts: VecDeque<Vec<String>>,
    /// A task is handling the queue; it clears this when it finds the queue empty.
    draining: bool,
}

/// Why a POST's frames were not handled.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostError {
    #[error("no SSE connection {0} on this node")]
    UnknownConnection(String),
    #[error("wrong or missing X-Switchboard-Session")]
    WrongSession,
}

impl SseLinks {
    /// Finds connection `id` for a POST that proved itself with `secret`.
    pub(crate) fn find(&self, id: &str, secret: Option<&[u8]>) -> Result<SseTarget, PostError> {
        let link = ConnId::parse(id)
            .and_then(|conn| self.links.read().get(&conn).cloned())
            .ok_or_else(|| PostError::UnknownConnection(id.to_owned()))?;
        if !secret.is_some_and(|secret| same_secret(secret, link.secret.as_bytes())) {
            return Err(PostError::WrongSession);
        }
        Ok(SseTarget(link))
    }

    /// Takes a POST another node relayed to `conn` (see [`relay`]) and queues its frames
    /// behind those relayed before; returns the task that handles the queue, to be spawned,
    /// when none is running. Its sender has already been answered 202, so a relayed POST that
    /// fails the checks, or finds the queue full, is only logged and counted as refused.
    pub(crate) fn relayed(
        &self,
        hub: &Hub,
        conn: ConnId,
        post: &[u8],
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        let refused = |why: &dyn std::fmt::Display| {
            tracing::debug!(%conn, %why, "relayed POST refused");
            Counters::add(&hub.counters().sse_posts_refused, 1);
        };
        let relayed: Relayed<'_> = match serde_json::from_slice(post) {
            Ok(relayed) => relayed,
            Err(error) => {
                refused(&error);
                return None;
            }
        };
        let target = match self.find(&conn.to_string(), Some(relayed.session.as_bytes())) {
            Ok(target) => target,
            Err(error) => {
                refused(&error);
                return None;
            }
        };
        let frames = relayed.frames.iter().map(|f| f.get().to_owned()).collect();
        let mut queue = target.0.relayed.lock();
        if queue.posts.len() >= MAX_RELAYED {
            refused(&format_args!("{MAX_RELAYED} relayed POSTs already wait"));
            return None;
        }
        queue.posts.push_back(frames);
        if std::mem::replace(&mut queue.draining, true) {
            return None;
        }
        drop(queue);
        Some(async move { target.drain_relayed().await })
    }

    fn insert(&self, id: ConnId, link: Arc<Link>) {
        self.links.write().insert(id, link);
    }

    fn remove(&self, id: ConnId) {
        self.links.write().remove(&id);
    }
}

/// A POST as one node relays it to another: the session it claimed and its frames.
#[derive(Serialize, Deserialize)]
struct Relayed<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
    #[serde(borrow)]
    frames: Vec<&'a RawValue>,
}

/// Relays a POST for `conn`, another node's SSE connection, to that node (in a cluster): its
/// holder checks `session` and handles `frames` as if the POST had reached it.
pub(crate) fn relay(hub: &Hub, conn: ConnId, session: &str, frames: Vec<&RawValue>) {
    let relayed = Relayed {
        session: Cow::Borrowed(session),
        frames,
    };
    match serde_json::to_vec(&relayed) {
        Ok(post) => hub.relay_to(conn, Bytes::from(post)),
        Err(error) => tracing::warn!(%conn, %error, "a POST could not be relayed"),
    }
}

/// An SSE connection a POST may reach.
pub(crate) struct SseTarget(Arc<Link>);

impl SseTarget {
    /// Hands `frames` (each one client frame's JSON text) to the connection's session, in
    /// order, as WebSocket text frames of that connection; replies go out on its stream. A
    /// frame that waits for the backend is answered before the next is handled, and the last
    /// one's answer before this returns.
    pub(crate) async fn handle(&self, frames: &[impl AsRef<str> + Sync]) {
        let _turn = self.0.turn.lock().await;
        for frame in frames {
            self.answered().await;
            let mut session = self.0.session.lock();
            let now = session.hub().now_ms();
            session.handle().touch(now, true);
            session.on_text(frame.as_ref());
        }
        self.answered().await;
    }

    /// Handles the relayed POSTs in their order until none waits.
    async fn drain_relayed(&self) {
        loop {
            let frames = {
                let mut queue = self.0.relayed.lock();
                let Some(frames) = queue.posts.pop_front() else {
                    queue.draining = false;
                    return;
                };
                frames
            };
            self.handle(&frames).await;
        }
    }

    /// Waits until no call to the backend is out (at once when none is): the session's lock
    /// is taken for each poll, never held across the wait.
    async fn answered(&self) {
        // A POST reads whole frames: nothing is held back to decode after the answer.
        std::future::poll_fn(|cx| self.0.session.lock().poll_call(cx)).await;
    }
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Registers an SSE connection of `peer` and returns its stream, which holds `keep` (the
/// client's per-IP slot) as long as it lasts. A refusal by the hub is returned as a stream
/// holding only the `close` event, as a refused WebSocket gets only a close frame.
pub(crate) fn open<K: Send + 'static>(
    endpoint: Arc<Endpoint>,
    peer: Peer,
    keep: K,
) -> Result<SseStream<K>, getrandom::Error> {
    let mut random = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut random)?;
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, random);
    let handle = match endpoint.hub.register_as(peer.user.clone(), Wire::Sse) {
        Ok(handle) => handle,
        Err(refusal) => {
            tracing::debug!(user = %peer.user, %refusal, "SSE connection refused");
            return Ok(SseStream::refused(refusal, keep));
        }
    };
    Counters::add(&endpoint.hub.counters().sse_connections_opened, 1);
    if let Some(expires_at) = peer.expires_at {
        handle.set_token_deadline(endpoint.token_deadline(expires_at));
    }
    let session = Session::start_sse(endpoint.clone(), handle.clone(), peer.grants, &secret);
    let link = Arc::new(Link {
        secret,
        session: Mutex::new(session),
        turn: tokio::sync::Mutex::new(()),
        relayed: Mutex::default(),
    });
    endpoint.sse.insert(handle.id(), link.clone());
    endpoint.hub.relay_open(handle.id());
    Ok(SseStream {
        open: Some(Open {
            endpoint,
            handle,
            link,
        }),
        pending: VecDeque::from([Bytes::from_static(sse::PREAMBLE)]),
        ended: false,
        _keep: keep,
    })
}

/// The response body of `GET /sse`: the connection's events until it closes.
pub(crate) struct SseStream<K> {
    /// The registered connection; `None` for a refused one.
    open: Option<Open>,
    /// Events taken from the outbox, handed to hyper one per poll.
    pending: VecDeque<Bytes>,
    /// The `close` event is in `pending`: the body ends once it is handed out.
    ended: bool,
    /// Held for the stream's life (the per-IP slot).
    _keep: K,
}

/// A registered SSE connection, as its stream holds it.
struct Open {
    endpoint: Arc<Endpoint>,
    handle: ConnHandle,
    link: Arc<Link>,
}

/// Payload of the final `close` event.
#[derive(Serialize)]
struct ClosePayload<'a> {
    code: u16,
    reason: &'a str,
}

fn close_event(code: CloseCode, reason: &str) -> Bytes {
    let frame = ServerFrame::custom(
        "close",
        ClosePayload {
            code: code.as_u16(),
            reason,
        },
    )
    .stamped()
    .encode();
    sse::event_of_frame(&frame).unwrap_or_else(|| sse::data_event(b"{\"type\":\"close\"}"))
}

impl<K> SseStream<K> {
    fn refused(refusal: Refusal, keep: K) -> Self {
        let close = close_event(refusal.close_code(), &refusal.to_string());
        Self {
            open: None,
            pending: VecDeque::from([Bytes::from_static(sse::PREAMBLE), close]),
            ended: true,
            _keep: keep,
        }
    }
}

/// Whether an event is traffic that keeps its connection from being idle: any data event but
/// the app-level heartbeat `ping` (`--app-heartbeat`); comments are not.
fn is_traffic(event: &[u8]) -> bool {
    event.starts_with(b"data: ") && !event.starts_with(br#"data: {"type":"ping","#)
}

impl<K: Unpin> Body for SseStream<K> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(event))));
            }
            let Some(open) = this.open.as_ref().filter(|_| !this.ended) else {
                return Poll::Ready(None);
            };
            let mut frames = Vec::new();
            let taken = open.handle.outbox().poll_take(cx, &mut frames);
            this.pending.extend(frames);
            let Poll::Ready(Taken { close }) = taken else {
                return Poll::Pending;
            };
            // hyper asks for more only once it has written what it had: the stream is alive.
            let now = open.endpoint.hub.now_ms();
            open.handle.touch(now, false);
            if this.pending.iter().any(|event| is_traffic(event)) {
                open.handle.sent_traffic(now);
            }
            if let Some(request) = close {
                if !request.graceful {
                    this.pending.clear();
                }
                let counters = open.endpoint.hub.counters();
                counters.count_close(Initiator::Server, request.code.as_u16());
                this.pending
                    .push_back(close_event(request.code, &request.reason));
                this.ended = true;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.pending.is_empty()
    }
}

/// The end of the stream, however it came: the connection leaves the hub.
impl Drop for Open {
    fn drop(&mut self) {
        self.endpoint.sse.remove(self.handle.id());
        self.endpoint.hub.relay_close(self.handle.id());
        let mut session = self.link.session.lock();
        // A POST waiting for the backend's answer returns at once: it applies to nothing now.
        session.abandon_call();
        session.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_and_length() {
        assert!(same_secret(b"abcdef", b"abcdef"));
        assert!(!same_secret(b"abcdeg", b"abcdef"));
        assert!(!same_secret(b"abcde", b"abcdef"));
        assert!(!same_secret(b"", b"abcdef"));
    }

    #[test]
    fn heartbeats_and_app_pings_are_not_traffic() {
        assert!(is_traffic(b"data: {\"type\":\"message\"}\n\n"));
        assert!(!is_traffic(b"data: {\"type\":\"ping\",\"payload\":{}}\n\n"));
        assert!(!is_traffic(sse::HEARTBEAT));
        assert!(!is_traffic(sse::PREAMBLE));
    }
}
