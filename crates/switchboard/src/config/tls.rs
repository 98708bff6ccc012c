//! The `tls_cert` / `tls_key` settings: PEM files loaded into a rustls server configuration at
//! start, so a missing file, a file without a certificate or key, or a key that does not belong
//! to the certificate stops the server with a message naming the setting.
//!
//! The certificate is read again on [`TlsConfig::reload`] (the binary calls it on SIGHUP): new
//! handshakes get the new one, connections already open keep theirs, and files that do not
//! load leave the one in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

use super::ConfigError;

/// TLS settings of the listener: every connection is TLS (`wss://`, `https://`).
#[derive(Clone)]
pub struct TlsConfig {
    /// The certificate chain file, as configured.
    pub cert: PathBuf,
    /// The private key file, as configured.
    pub key: PathBuf,
    /// The certificate handshakes get; [`TlsConfig::reload`] replaces it.
    current: Arc<CurrentCert>,
    provider: Arc<CryptoProvider>,
    acceptor: TlsAcceptor,
}

/// The certificate in force, read by every handshake and replaced by a reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

impl TlsConfig {
    /// Reads and checks the certificate chain and private key (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = certified_key(cert, key, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::invalid("tls_cert", e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // Only HTTP/1.1 is served (the WebSocket upgrade needs it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current,
            provider,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the certificate chain and key files again and serves them to new handshakes;
    /// on an error the certificate in force stays.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let certified = certified_key(&self.cert, &self.key, &self.provider)?;
        *self.current.0.write() = Arc::new(certified);
        Ok(())
    }

    /// The acceptor that runs the server side of a TLS handshake.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

/// The chain and key in `cert` and `key`, checked to belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, ConfigError> {
    let chain = read_chain(cert, "tls_cert")?;
    let private_key = read_key(key)?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|e| {
        let reason = match e {
            rustls::Error::InconsistentKeys(_) => {
                "does not match the certificate in tls_cert".to_owned()
            }
            other => format!("cannot be used with the certificate: {other}"),
        };
        ConfigError::invalid("tls_key", reason)
    })
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Both settings or neither: `None` when neither is set.
pub(super) fn from_settings(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<TlsConfig>, ConfigError> {
    let nonempty = |path: Option<PathBuf>| path.filter(|p| !p.as_os_str().is_empty());
    match (nonempty(cert), nonempty(key)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::invalid(
            "tls_key",
            "must be set when tls_cert is set",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            "tls_cert",
            "must be set when tls_key is set",
        )),
        (Some(cert), Some(key)) => TlsConfig::load(&cert, &key).map(Some),
    }
}

/// The certificates in the PEM file at `path`, the value of `setting`; at least one.
pub(super) fn read_chain(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let invalid = |reason: String| ConfigError::invalid(setting, reason);
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(pem_error(path, &e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(pem_error(path, &e)))?;
    if chain.is_empty() {
        return Err(invalid(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let reason = match e {
            pem::Error::NoItemsFound => format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                path.display()
            ),
            other => pem_error(path, &other),
        };
        ConfigError::invalid("tls_key", reason)
    })
}

fn pem_error(path: &Path, error: &pem::Error) -> String {
    match error {
        pem::Error::Io(io) => format!("cannot read {}: {io}", path.display()),
        other => format!("{} is not valid PEM: {other}", path.display()),
    }
}
