//! Keys presented to HTTP routes (`Authorization: Bearer KEY` or `X-API-Key: KEY`) and their
//! constant-time comparison, shared by the server API and the admin routes.

use axum::http::{HeaderMap, header};

/// Whether `headers` present `expected`; with no key expected, every request passes.
pub(super) fn authorized(headers: &HeaderMap, expected: Option<&str>) -> bool {
    match expected {
        None => true,
        Some(expected) => presented_key(headers).is_some_and(|key| keys_match(key, expected)),
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get("x-api-key") {
        return Some(value.as_bytes());
    }
    bearer(headers)
}

/// The credentials of an `Authorization: Bearer …` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let authorization = headers.get(header::AUTHORIZATION)?.as_bytes();
    authorization.strip_prefix(b"Bearer ")
}

/// Compares in time that depends only on the lengths, so the key cannot be guessed byte by
/// byte from response times.
fn keys_match(given: &[u8], expected: &str) -> bool {
    let expected = expected.as_bytes();
    let diff = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0 && given.len() == expected.len()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn keys_match_only_exactly() {
        assert!(keys_match(b"secret", "secret"));
        assert!(!keys_match(b"secreT", "secret"));
        assert!(!keys_match(b"secret1", "secret"));
        assert!(!keys_match(b"secre", "secret"));
        assert!(!keys_match(b"", "secret"));
    }

    #[test]
    fn either_header_form_is_accepted() {
        let mut headers = HeaderMap::new();
        assert!(authorized(&headers, None));
        assert!(!authorized(&headers, Some("k")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert!(authorized(&headers, Some("k")));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k"));
        assert!(!authorized(&headers, Some("k")));
        headers.insert("x-api-key", HeaderValue::from_static("k"));
        assert!(authorized(&headers, Some("k")));
    }
}
