//! The subcommands of the binary and their arguments, as parsed; `crate::cli` runs them.
//! Without a subcommand the binary runs the server.

use std::path::PathBuf;

use super::units::DurationArg;

/// What the binary does instead of running the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print the effective configuration (every setting, its value and its source; secrets
    /// masked) and exit 0, or print why it is invalid and exit 2.
    CheckConfig,
    /// Mint a JWT that this configuration accepts, for testing; print it.
    Token(TokenArgs),
    /// GET /health on this node (plain HTTP/1.1 over TCP); exit 0 when it answers 200, else 1.
    /// For container health checks in images without curl.
    Healthcheck(HealthcheckArgs),
}

/// Arguments of `switchboard token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long, value_name = "USER")]
    pub sub: String,
    /// Room patterns the token grants (`rooms` claim; comma-separated or repeated), e.g.
    /// `general,team-*`; without it every room is granted.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub rooms: Option<Vec<String>>,
    /// Channel patterns the token grants for subscribe and publish (`channels` claim), e.g.
    /// `user:alice,news:*`; without it no channel is granted.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub channels: Option<Vec<String>>,
    /// Yjs document patterns the token grants for reading and writing (`docs` claim), e.g.
    /// `notes-*`; without it every document is granted.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub docs: Option<Vec<String>>,
    /// Grant `broadcast` to every connection.
    #[arg(long)]
    pub broadcast: bool,
    /// How long the token is valid.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub ttl: DurationArg,
    /// PEM private key to sign with, when the configuration has only the public key
    /// (`jwt_public_key`); it must belong to that public key.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
}

/// Arguments of `switchboard healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET (`http://` only); by default `/health` on the configured port, on the
    /// loopback address when the host is a wildcard (`0.0.0.0`, `::`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub timeout: DurationArg,
}
