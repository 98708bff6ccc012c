//! Negotiating permessage-deflate (RFC 7692 §5, §7.1) from a client's
//! `Sec-WebSocket-Extensions` offers. The answer always asks for no context takeover in both
//! directions, which RFC 7692 lets a server add to any offer: no connection then needs a zlib
//! window of its own (see `ws::deflate`).
//!
//! The first acceptable offer wins. An offer is unacceptable when it has a parameter we do not
//! know, a parameter twice, or a value that is not a window size (8 to 15); the next offer is
//! then tried, and without an acceptable one the connection runs uncompressed.

use axum::http::{HeaderMap, HeaderValue, header};

use super::deflate::{Deflate, MAX_WINDOW_BITS};

/// The extension's name in offers and answers.
const NAME: &str = "permessage-deflate";
/// The answer's parameters that are always there.
const NO_CONTEXT_TAKEOVER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// An accepted offer: what the connection uses and the header value that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// How frames to this client may be compressed.
    pub(crate) deflate: Deflate,
    /// The `Sec-WebSocket-Extensions` response header.
    pub(crate) answer: HeaderValue,
}

/// The first acceptable permessage-deflate offer among the request's, if any.
pub(crate) fn negotiate(headers: &HeaderMap) -> Option<Agreed> {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept)
}

/// Accepts one offer (`name; param; param=value`) when it is an acceptable permessage-deflate.
fn accept(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut server_window = None;
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
            None => (part, None),
        };
        let index = match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => 0,
            ("client_no_context_takeover", None) => 1,
            ("server_max_window_bits", Some(value)) => {
                server_window = Some(window_bits(value)?);
                2
            }
            ("client_max_window_bits", None) => 3,
            ("client_max_window_bits", Some(value)) => {
                // We inflate with the largest window, which reads any smaller one.
                window_bits(value)?;
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    let answer = match server_window {
        None => HeaderValue::from_static(NO_CONTEXT_TAKEOVER),
        Some(bits) => HeaderValue::from_str(&format!(
            "{NO_CONTEXT_TAKEOVER}; server_max_window_bits={bits}"
        ))
        .ok()?,
    };
    Some(Agreed {
        deflate: Deflate::new(server_window.unwrap_or(MAX_WINDOW_BITS)),
        answer,
    })
}

/// A value without the quotes a quoted-string form may put around it.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// A window size: 8 to 15, digits only, no leading zero (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value
        .parse()
        .ok()
        .filter(|bits| (8..=MAX_WINDOW_BITS).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(values: &[&'static str]) -> Option<Agreed> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(value),
            );
        }
        negotiate(&headers)
    }

    fn answer(values: &[&'static str]) -> Option<String> {
        offers(values).map(|agreed| agreed.answer.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn a_browser_offer_gets_no_context_takeover_both_ways() {
        let agreed = offers(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(agreed.answer, NO_CONTEXT_TAKEOVER);
        assert_eq!(agreed.deflate.window_bits(), 15);
        assert_eq!(
            answer(&["permessage-deflate"]).unwrap(),
            NO_CONTEXT_TAKEOVER
        );
    }

    #[test]
    fn server_max_window_bits_is_honoured() {
        let agreed = offers(&["permessage-deflate; server_max_window_bits=\"10\""]).unwrap();
        assert_eq!(agreed.deflate.window_bits(), 10);
        assert_eq!(
            agreed.answer,
            format!("{NO_CONTEXT_TAKEOVER}; server_max_window_bits=10")
        );
    }

    #[test]
    fn unacceptable_offers_are_skipped_for_the_next_one() {
        assert_eq!(answer(&["x-webkit-deflate-frame"]), None);
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ] {
            assert_eq!(offers(&[bad]), None, "{bad}");
        }
        let agreed = offers(&[
            "foo, permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate",
        ])
        .unwrap();
        assert_eq!(agreed.deflate.window_bits(), 12);
    }
}
