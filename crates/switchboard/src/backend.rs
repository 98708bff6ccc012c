//! The HTTP client the server calls the application's backend with: webhooks
//! (`crate::webhooks`) and proxies (`crate::proxy`). One builder, so both speak `http://` and
//! `https://` alike and pool their connections per host.
//!
//! The client runs each pooled connection on a task of hyper's own (its executor spawns it):
//! such a task ends when its connection closes or idles out of the pool, so it does not
//! outlive the requests by more than the pool's idle timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls;

/// A client to the backend (it pools connections per host).
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A new client that gives up connecting after `connect_timeout`: `http://`, and `https://`
/// verified against the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` override them, as
/// for OpenSSL).
pub(crate) fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let tls = HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider())
        .or_else(|error| {
            tracing::warn!(%error, "no system root certificates: https backends will fail");
            let config = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            Ok::<_, rustls::Error>(HttpsConnectorBuilder::new().with_tls_config(config))
        });
    let tls = match tls {
        Ok(tls) => tls,
        Err(error) => unreachable!("ring supports the default protocol versions: {error}"),
    };
    let https = tls.https_or_http().enable_http1().wrap_connector(connector);
    Client::builder(TokioExecutor::new()).build(https)
}
