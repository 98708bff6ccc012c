//! The origin allowlist: the exact origins (`scheme://host[:port]`) browsers may open
//! WebSocket connections from. Only upgrades that carry an `Origin` header are checked;
//! clients that send none are not browsers and are judged by their token alone.

use std::sync::Arc;

/// Origins allowed to connect, compared without regard to ASCII case.
#[derive(Debug, Clone)]
pub struct OriginAllowlist(Arc<[String]>);

/// An allowlist entry that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The list is empty.
    #[error("must list at least one origin (leave it unset to accept every origin)")]
    Empty,
    /// `*` was given: leaving the setting unset already accepts every origin.
    #[error("`*` is not an origin: leave the setting unset to accept every origin")]
    Wildcard,
    /// An entry is not `scheme://host[:port]`.
    #[error("{0:?} is not an origin: write scheme://host[:port], without path or trailing /")]
    NotAnOrigin(String),
}

impl OriginAllowlist {
    /// Parses a comma-separated list of origins, such as
    /// `https://app.example.com,http://localhost:5173`.
    pub fn parse(list: &str) -> Result<Self, OriginError> {
        let mut origins = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return Err(OriginError::Wildcard);
            }
            if !is_origin(entry) {
                return Err(OriginError::NotAnOrigin(entry.to_owned()));
            }
            origins.push(entry.to_ascii_lowercase());
        }
        if origins.is_empty() {
            return Err(OriginError::Empty);
        }
        Ok(Self(origins.into()))
    }

    /// Whether `origin` (an `Origin` header's value) is on the list.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin))
    }
}

fn is_origin(entry: &str) -> bool {
    let Some((scheme, host)) = entry.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    scheme_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_match_without_case() {
        let list =
            OriginAllowlist::parse(" https://App.example.com , http://localhost:5173").unwrap();
        assert!(list.allows(b"https://app.example.com"));
        assert!(list.allows(b"HTTPS://APP.EXAMPLE.COM"));
        assert!(list.allows(b"http://localhost:5173"));
        assert!(!list.allows(b"http://localhost:5174"));
        assert!(!list.allows(b"https://app.example.com.evil.com"));
        assert!(!list.allows(b"null"));
    }

    #[test]
    fn entries_must_be_origins() {
        assert_eq!(
            OriginAllowlist::parse("*").unwrap_err(),
            OriginError::Wildcard
        );
        assert_eq!(
            OriginAllowlist::parse(" , ").unwrap_err(),
            OriginError::Empty
        );
        for bad in [
            "example.com",
            "https://example.com/",
            "https://a.com/path",
            "://x",
            "https://",
        ] {
            assert_eq!(
                OriginAllowlist::parse(bad).unwrap_err(),
                OriginError::NotAnOrigin(bad.to_owned()),
                "{bad}"
            );
        }
        assert!(OriginAllowlist::parse("http://[::1]:3000").is_ok());
    }
}
