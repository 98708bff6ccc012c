//! The request head of a fresh plain-TCP connection, read by the standalone server's accept
//! path before hyper sees the connection: a WebSocket upgrade to `/` or `/ws` is answered by
//! [`super::ws::answer`] without hyper (one write for the 101 and the `connect` frame, none of
//! hyper's connection state, header maps or routing); everything else goes to hyper with the
//! bytes read here put back in front.
//!
//! Only what one read brings in is looked at: a head that is incomplete after the first read,
//! larger than the read buffer, or anything but a bodiless HTTP/1.1 `GET` upgrade to
//! `websocket` on `/` or `/ws` goes to hyper, which applies its own limits and answers its own
//! errors (400, 431) exactly as it did before this path existed. What the request carries is
//! copied out of the worker thread's buffer into the request; the buffer is not held across an
//! await.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// Size of each worker thread's buffer for a request head: the server's limit on a request
/// head (`server::MAX_REQUEST_HEAD`). A head that fills it is left to hyper, which refuses
/// it with 431.
pub(crate) const HEAD_BUFFER_SIZE: usize = 16 * 1024;
/// Most header lines parsed here; a request with more goes to hyper (which takes up to 100).
const MAX_HEADERS: usize = 48;

thread_local! {
    static HEAD_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; HEAD_BUFFER_SIZE].into_boxed_slice());
}

/// What the first read of a connection brought. (It only passes from the read to the
/// server's accept path, on the stack: boxing the request would cost every handshake an
/// allocation.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Head {
    /// A complete WebSocket upgrade request to `/` or `/ws`.
    Upgrade {
        request: Request<()>,
        /// What the client sent after the head (its first frames, pipelined).
        read_ahead: Option<Bytes>,
    },
    /// Anything else: hyper serves the connection, these bytes first.
    Other(Bytes),
    /// The client closed the connection, or it failed.
    Gone,
}

/// Waits for the first bytes of a connection and reads them (one read).
///
/// The read is tokio's `poll_read`, not `readable` and `try_read`: a read that leaves room in
/// the buffer tells tokio the socket is drained, so the connection's first read after the 101
/// waits for readiness instead of trying the socket in vain (one `recvfrom` returning `EAGAIN`
/// less per handshake).
pub(crate) async fn read(stream: &mut TcpStream) -> Head {
    std::future::poll_fn(|cx| {
        HEAD_BUFFER.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffer) => poll_read_into(stream, cx, &mut buffer),
            // Unreachable (no await while it is borrowed); a fresh buffer is correct anyway.
            Err(_) => poll_read_into(stream, cx, &mut vec![0; HEAD_BUFFER_SIZE]),
        })
    })
    .await
}

/// One read into `buffer`, parsed.
fn poll_read_into(stream: &mut TcpStream, cx: &mut Context<'_>, buffer: &mut [u8]) -> Poll<Head> {
    let mut read = ReadBuf::new(buffer);
    match std::task::ready!(Pin::new(stream).poll_read(cx, &mut read)) {
        Ok(()) if read.filled().is_empty() => Poll::Ready(Head::Gone),
        Ok(()) => Poll::Ready(parse(read.filled())),
        Err(_) => Poll::Ready(Head::Gone),
    }
}

/// Parses what was read: an upgrade this path answers, or hyper's business.
pub(crate) fn parse(read: &[u8]) -> Head {
    match upgrade(read) {
        Some((request, length)) => Head::Upgrade {
            request,
            read_ahead: (length < read.len()).then(|| Bytes::copy_from_slice(&read[length..])),
        },
        None => Head::Other(Bytes::copy_from_slice(read)),
    }
}

/// The request, and the length of its head, when `read` starts with a complete request this
/// path answers.
fn upgrade(read: &[u8]) -> Option<(Request<()>, usize)> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let httparse::Status::Complete(length) = parsed.parse(read).ok()? else {
        return None;
    };
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let target = parsed.path?;
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != "/" && path != "/ws" {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(line.value).ok()?;
        headers.append(name, value);
    }
    // A request with a body (or an upgrade to anything else, or a plain visit to the landing
    // page) is hyper's.
    let upgrades = headers.get_all(header::UPGRADE).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("websocket"))
        })
    });
    if !upgrades
        || headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
    {
        return None;
    }
    let uri = Uri::try_from(target).ok()?;
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some((request, length))
}

/// Whether a request's `Connection` header asks to close the connection after the response.
pub(crate) fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("close"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /ws?userId=alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn upgrade_of(read: &[u8]) -> Option<(Request<()>, Option<Bytes>)> {
        match parse(read) {
            Head::Upgrade {
                request,
                read_ahead,
            } => Some((request, read_ahead)),
            Head::Other(bytes) => {
                assert_eq!(&bytes[..], read, "hyper gets every byte read");
                None
            }
            Head::Gone => unreachable!("parse never says gone"),
        }
    }

    #[test]
    fn an_upgrade_to_the_endpoint_is_answered_here() {
        let (request, read_ahead) = upgrade_of(UPGRADE.as_bytes()).expect("an upgrade");
        assert_eq!(request.uri().path(), "/ws");
        assert_eq!(request.uri().query(), Some("userId=alice"));
        assert_eq!(request.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert!(read_ahead.is_none());
        let root = UPGRADE.replace("/ws?userId=alice", "/");
        assert!(upgrade_of(root.as_bytes()).is_some());
    }

    #[test]
    fn bytes_after_the_head_are_kept() {
        let mut read = UPGRADE.as_bytes().to_vec();
        read.extend_from_slice(b"\x81\x80abcd");
        let (_, read_ahead) = upgrade_of(&read).expect("an upgrade");
        assert_eq!(read_ahead.as_deref(), Some(&b"\x81\x80abcd"[..]));
    }

    #[test]
    fn anything_else_is_hyper_s() {
        let cases = [
            // Incomplete.
            UPGRADE[..40].to_owned(),
            // Other paths, methods, versions.
            UPGRADE.replace("/ws?userId=alice", "/echo"),
            UPGRADE.replace("/ws?userId=alice", "/wss"),
            UPGRADE.replace("GET", "POST"),
            UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
            // Not an upgrade: the landing page.
            UPGRADE.replace("Upgrade: websocket\r\n", ""),
            UPGRADE.replace("websocket", "h2c"),
            // A body.
            UPGRADE.replace("Host: x\r\n", "Host: x\r\nContent-Length: 3\r\n"),
            UPGRADE.replace("Host: x\r\n", "Host: x\r\nTransfer-Encoding: chunked\r\n"),
            // Not HTTP.
            "\x16\x03\x01\x02\x00\x01\x00\x01\x03\x03".to_owned(),
        ];
        for case in cases {
            assert!(upgrade_of(case.as_bytes()).is_none(), "{case:?}");
        }
        let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let crowded = UPGRADE.replace("Host: x\r\n", &many);
        assert!(upgrade_of(crowded.as_bytes()).is_none());
    }
}
