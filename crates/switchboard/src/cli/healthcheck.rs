//! `switchboard healthcheck`: one `GET /health` over plain TCP with HTTP/1.1, for container
//! health checks in images that have no curl. Healthy means status 200 within the timeout.
//!
//! By default it asks this node, at the configured port: on the loopback address when the
//! host is a wildcard (`0.0.0.0`, `::`), since a wildcard is not an address to connect to.
//! A node that serves TLS only is not checked (no TLS client here); `--url` names another
//! plain-HTTP address.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::{ConfigError, HealthcheckArgs, Invocation, ServerConfig};

/// Longest status line read.
const MAX_STATUS_LINE: u64 = 1024;

/// Why the node is not healthy, or could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The URL cannot be used.
    #[error("cannot use --url {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// There is no fixed address to ask.
    #[error("the configured port is 0 (any free port): give --url")]
    AnyPort,
    /// The listener serves TLS only.
    #[error("this node serves TLS only (tls_cert) and the health check speaks plain HTTP")]
    Tls,
    /// Connecting, writing or reading failed.
    #[error("{url}: {source}")]
    Io {
        /// The URL asked.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// No answer within the timeout.
    #[error("{url}: no answer within {}", humantime::format_duration(*timeout))]
    Timeout {
        /// The URL asked.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer is not an HTTP/1.x status line.
    #[error("{url}: not an HTTP answer: {line:?}")]
    NotHttp {
        /// The URL asked.
        url: String,
        /// What came back.
        line: String,
    },
    /// The node answered with another status than 200.
    #[error("{url}: unhealthy: {line}")]
    Unhealthy {
        /// The URL asked.
        url: String,
        /// The status line.
        line: String,
    },
}

/// Where to send the request.
struct Target {
    /// `host:port`, to connect to and for the `Host` header.
    authority: String,
    /// The path and query.
    path: String,
}

impl Target {
    /// This node's `/health`.
    fn local(server: &ServerConfig) -> Result<Self, HealthError> {
        if server.tls.is_some() {
            return Err(HealthError::Tls);
        }
        if server.port == 0 {
            return Err(HealthError::AnyPort);
        }
        let host = match server.host.trim_matches(['[', ']']) {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" => "::1",
            host => host,
        };
        let authority = if host.contains(':') {
            format!("[{host}]:{}", server.port)
        } else {
            format!("{host}:{}", server.port)
        };
        Ok(Self {
            authority,
            path: "/health".to_owned(),
        })
    }

    /// An `http://host[:port][/path]` URL.
    fn parse(url: &str) -> Result<Self, HealthError> {
        let invalid = |reason| HealthError::Url {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("only http:// URLs are supported"))?;
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid("expected http://host[:port]/path"));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'));
        Ok(Self {
            authority: if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            },
            path: match path {
                "" => "/".to_owned(),
                path if path.starts_with('?') => format!("/{path}"),
                path => path.to_owned(),
            },
        })
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.path)
    }
}

/// Asks the node; returns its status line when it is 200.
pub(super) async fn check(
    args: &HealthcheckArgs,
    invocation: &Invocation,
) -> Result<String, HealthError> {
    let target = match &args.url {
        Some(url) => Target::parse(url)?,
        None => Target::local(&invocation.config()?.server)?,
    };
    let url = target.url();
    let line = tokio::time::timeout(args.timeout.0, status_line(&target))
        .await
        .map_err(|_| HealthError::Timeout {
            url: url.clone(),
            timeout: args.timeout.0,
        })?
        .map_err(|source| HealthError::Io {
            url: url.clone(),
            source,
        })?;
    let mut parts = line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => status,
        _ => return Err(HealthError::NotHttp { url, line }),
    };
    if status != "200" {
        return Err(HealthError::Unhealthy { url, line });
    }
    Ok(format!("{url}: {line}"))
}

/// Sends the request and reads the answer's status line.
async fn status_line(target: &Target) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(&target.authority).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchboard-healthcheck\r\n\
         Connection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream.take(MAX_STATUS_LINE))
        .read_line(&mut line)
        .await?;
    Ok(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_an_authority_with_a_port_and_a_path() {
        let cases = [
            ("http://127.0.0.1:3000/health", "127.0.0.1:3000", "/health"),
            ("http://node-1:3000", "node-1:3000", "/"),
            (
                "http://example.com/ready?x=1",
                "example.com:80",
                "/ready?x=1",
            ),
            ("http://[::1]:3000/health", "[::1]:3000", "/health"),
            ("http://[::1]/health", "[::1]:80", "/health"),
        ];
        for (url, authority, path) in cases {
            let target = Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (target.authority.as_str(), target.path.as_str()),
                (authority, path)
            );
        }
        for url in [
            "https://a/health",
            "http:///health",
            "http://u:p@a/",
            "a:3000",
        ] {
            assert!(Target::parse(url).is_err(), "{url}");
        }
    }
}
