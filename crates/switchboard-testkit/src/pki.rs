//! [`TestPki`]: a self-signed certificate generated per test, written to a temporary directory
//! that is removed on drop, and the rustls client configuration that trusts only it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A self-signed certificate for `localhost` and `127.0.0.1`, as PEM files.
pub struct TestPki {
    /// The directory holding both files.
    pub dir: PathBuf,
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    der: CertificateDer<'static>,
}

impl TestPki {
    /// Generates a certificate and its key and writes them to a fresh directory.
    pub fn generate() -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("generate a certificate");
        let dir = std::env::temp_dir().join(format!(
            "switchboard-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
        Self {
            dir,
            cert,
            key,
            der: certified.cert.der().clone(),
        }
    }

    /// A client configuration that trusts only this certificate.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.der.clone())
            .expect("the certificate is a valid root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
