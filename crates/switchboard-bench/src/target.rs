//! Server URLs: `ws://host[:port][/path][?query]`, parsed and resolved once per run.
//!
//! Owns turning a URL into a socket address, the `Host` header and the request target with the
//! `userId` of a connection appended. `wss://` is refused: a TLS stack would be part of what we
//! measure, and the servers we load listen on plain TCP.

use std::fmt;
use std::net::SocketAddr;

/// Why a URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UrlError {
    /// Not `ws://`.
    #[error("{0}: only ws:// URLs are supported")]
    Scheme(String),
    /// No host, or a port that is not a number.
    #[error("{0}: expected ws://HOST[:PORT][/PATH]")]
    Malformed(String),
    /// The host name did not resolve.
    #[error("{url}: cannot resolve {authority}")]
    Resolve {
        /// The URL.
        url: String,
        /// What was looked up.
        authority: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
}

/// A resolved server endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    addr: SocketAddr,
    host: String,
    path: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// The parts of a URL before resolution: authority with port, path and query.
fn split(url: &str) -> Result<(String, String), UrlError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| UrlError::Scheme(url.to_owned()))?;
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    if authority.is_empty() || authority.contains('@') {
        return Err(UrlError::Malformed(url.to_owned()));
    }
    let has_port = match authority.rfind(':') {
        Some(colon) if !authority.ends_with(']') => {
            let port = &authority[colon + 1..];
            if port.parse::<u16>().is_err() {
                return Err(UrlError::Malformed(url.to_owned()));
            }
            true
        }
        _ => false,
    };
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    Ok((authority, path))
}

impl Target {
    /// Parses and resolves `url` (IPv4 addresses preferred when a name has both).
    pub(crate) async fn resolve(url: &str) -> Result<Self, UrlError> {
        let (authority, path) = split(url)?;
        let resolve_error = |source| UrlError::Resolve {
            url: url.to_owned(),
            authority: authority.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(authority.as_str())
            .await
            .map_err(resolve_error)?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| resolve_error(std::io::ErrorKind::NotFound.into()))?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            host: authority,
            path,
        })
    }

    /// The server's socket address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `Host` header value.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The request target for a connection of `user` (user ids made by the tool need no
    /// escaping).
    pub(crate) fn path_for(&self, user: &str) -> String {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        format!("{}{sep}userId={user}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        let cases = [
            ("ws://127.0.0.1:3000", "127.0.0.1:3000", "/"),
            ("ws://127.0.0.1:3000/", "127.0.0.1:3000", "/"),
            ("ws://localhost/ws", "localhost:80", "/ws"),
            ("ws://h:1?token=x", "h:1", "/?token=x"),
            ("ws://[::1]:9/a?b=c", "[::1]:9", "/a?b=c"),
            ("ws://[::1]", "[::1]:80", "/"),
        ];
        for (url, authority, path) in cases {
            assert_eq!(
                split(url).unwrap(),
                (authority.to_owned(), path.to_owned()),
                "{url}"
            );
        }
        for bad in [
            "http://h:1/",
            "wss://h/",
            "ws://",
            "ws://h:port/",
            "ws://u@h/",
        ] {
            assert!(split(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn user_ids_are_appended_to_the_query() {
        let t = Target::resolve("ws://127.0.0.1:3000/?token=x")
            .await
            .unwrap();
        assert_eq!(t.addr(), "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.path_for("u1"), "/?token=x&userId=u1");
        let t = Target::resolve("ws://127.0.0.1:3000/ws").await.unwrap();
        assert_eq!(t.path_for("u1"), "/ws?userId=u1");
        assert_eq!(t.host(), "127.0.0.1:3000");
    }
}
