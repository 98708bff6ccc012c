//! Reloading the key files a running node serves with, on the operator's signal (SIGHUP in the
//! binary): the TLS certificate and key (`tls_cert`, `tls_key`) and the JWT public key
//! (`jwt_public_key`). New TLS handshakes and new tokens use what was read; connections already
//! open keep their session and their identity, so nothing is dropped. A file that does not load
//! is logged and leaves what is in force. A JWT shared secret is a setting, not a file: only a
//! restart changes it.

use std::sync::Arc;

use crate::auth::JwtConfig;
use crate::config::TlsConfig;

/// What a node can reload; cheap to clone.
#[derive(Clone, Default)]
pub struct Reloader {
    tls: Option<TlsConfig>,
    jwt: Option<Arc<JwtConfig>>,
}

impl Reloader {
    /// Reloads the files of `tls` and `jwt` (either may be absent).
    pub fn new(tls: Option<TlsConfig>, jwt: Option<Arc<JwtConfig>>) -> Self {
        Self { tls, jwt }
    }

    /// Reads every key file again and logs each outcome; returns whether all of them loaded.
    pub fn reload(&self) -> bool {
        let mut loaded = true;
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.cert.display(), "reloaded the TLS certificate")
                }
                Err(error) => {
                    loaded = false;
                    tracing::warn!(%error, "TLS certificate not reloaded: the one in force stays");
                }
            }
        }
        if let Some(jwt) = &self.jwt {
            match jwt.reload() {
                Ok(Some(path)) => {
                    tracing::info!(file = %path.display(), "reloaded the JWT public key");
                }
                Ok(None) => {
                    tracing::info!("the JWT key is a shared secret: only a restart changes it");
                }
                Err(error) => {
                    loaded = false;
                    tracing::warn!(%error, "JWT public key not reloaded: the one in force stays");
                }
            }
        }
        loaded
    }
}
