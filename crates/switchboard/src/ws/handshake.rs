//! The server side of the opening handshake (RFC 6455 §4.2): checks an HTTP request for a valid
//! upgrade and computes the `Sec-WebSocket-Accept` value. HTTP itself is hyper's job.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// The subprotocol of protocol v1 in JSON text frames (also what a client that asks for none
/// gets).
pub(crate) const SUBPROTOCOL: &str = "switchboard.v1";

/// A subprotocol the server selects from a client's `Sec-WebSocket-Protocol` offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subprotocol {
    /// `switchboard.v1`: JSON text frames.
    Json,
    /// `switchboard.v1.msgpack`: MessagePack binary frames.
    MsgPack,
}

impl Subprotocol {
    /// The `Sec-WebSocket-Protocol` value that names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Json => SUBPROTOCOL,
            Self::MsgPack => switchboard_protocol::msgpack::SUBPROTOCOL,
        }
    }

    fn parse(offered: &str) -> Option<Self> {
        [Self::Json, Self::MsgPack]
            .into_iter()
            .find(|known| offered.eq_ignore_ascii_case(known.name()))
    }
}

/// Why a request is not an acceptable WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Not a `GET` with `Connection: upgrade` and `Upgrade: websocket`.
    #[error(
        "expected a WebSocket upgrade request (GET with Connection: Upgrade, Upgrade: websocket)"
    )]
    NotUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13.
    #[error("unsupported WebSocket version (only 13 is supported)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64.
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
}

/// What the 101 response needs from a valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upgrade {
    /// The `Sec-WebSocket-Accept` header value.
    pub(crate) accept: HeaderValue,
    /// The first of our subprotocols in the client's offer, in the client's order of
    /// preference (the response must select it); `None` when it offered none of them.
    pub(crate) subprotocol: Option<Subprotocol>,
}

/// Validates an upgrade request.
pub(crate) fn check(method: &Method, headers: &HeaderMap) -> Result<Upgrade, HandshakeError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if method != Method::GET
        || !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::UPGRADE, "websocket")
    {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::BadKey)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| HandshakeError::BadKey)?;
    if decoded.len() != 16 {
        return Err(HandshakeError::BadKey);
    }
    let accept =
        HeaderValue::from_str(&accept_key(key.as_bytes())).map_err(|_| HandshakeError::BadKey)?;
    Ok(Upgrade {
        accept,
        subprotocol: headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .find_map(|offered| Subprotocol::parse(offered.trim())),
    })
}

/// `base64(SHA-1(key ++ GUID))` (RFC 6455 §4.2.2).
fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(*k, HeaderValue::from_static(v));
        }
        headers
    }

    const VALID: &[(&str, &str)] = &[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn computes_the_rfc_example_accept_key() {
        let upgrade = check(&Method::GET, &request(VALID)).unwrap();
        assert_eq!(upgrade.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(upgrade.subprotocol, None);
    }

    #[test]
    fn selects_our_subprotocol_when_offered() {
        let selected = |offers: &[&'static str]| {
            let mut pairs = VALID.to_vec();
            pairs.extend(
                offers
                    .iter()
                    .map(|offer| ("sec-websocket-protocol", *offer)),
            );
            check(&Method::GET, &request(&pairs)).unwrap().subprotocol
        };
        assert_eq!(selected(&["chat, switchboard.v1"]), Some(Subprotocol::Json));
        assert_eq!(
            selected(&["chat, switchboard.v1.msgpack"]),
            Some(Subprotocol::MsgPack)
        );
        // The client's order of preference, across header lines too.
        assert_eq!(
            selected(&["switchboard.v1.msgpack, switchboard.v1"]),
            Some(Subprotocol::MsgPack)
        );
        assert_eq!(
            selected(&["chat", "switchboard.v1", "switchboard.v1.msgpack"]),
            Some(Subprotocol::Json)
        );
        assert_eq!(selected(&["chat, switchboard.v2, msgpack"]), None);
        assert_eq!(selected(&["switchboard.v1.msgpack.x"]), None);
    }

    #[test]
    fn refuses_bad_requests() {
        assert_eq!(
            check(&Method::POST, &request(VALID)),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            check(&Method::GET, &request(&VALID[1..])),
            Err(HandshakeError::NotUpgrade)
        );
        let mut v12 = VALID.to_vec();
        v12[2] = ("sec-websocket-version", "12");
        assert_eq!(
            check(&Method::GET, &request(&v12)),
            Err(HandshakeError::UnsupportedVersion)
        );
        let mut short_key = VALID.to_vec();
        short_key[3] = ("sec-websocket-key", "c2hvcnQ=");
        assert_eq!(
            check(&Method::GET, &request(&short_key)),
            Err(HandshakeError::BadKey)
        );
    }
}
