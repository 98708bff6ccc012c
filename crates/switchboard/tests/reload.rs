//! SIGHUP reloads the TLS certificate and the JWT public key of a running binary: new
//! connections see the new ones, connections already open stay.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Running, wait_for_log};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use serde_json::json;
use switchboard_testkit::{Client, TestPki, WAIT};
use tokio_tungstenite::Connector;

/// Proves `client` is still connected: a `ping` gets its `pong`.
async fn still_open(client: &mut Client) {
    client.send_type("ping", json!({"n": 1})).await;
    assert_eq!(client.expect("pong").await["payload"]["n"], 1);
}

/// A `wss://` connection to `server` that trusts only `pki`'s certificate.
async fn wss(server: &Running, pki: &TestPki, user: &str) -> Result<Client, String> {
    let url = format!("wss://localhost:{}/?userId={user}", server.addr.port());
    let connector = Some(Connector::Rustls(pki.client_config()));
    let connecting = tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(Client::from_stream(ws).await),
        Err(error) => Err(error.to_string()),
    }
}

fn replace(from: &Path, to: &Path) {
    std::fs::write(to, std::fs::read(from).unwrap()).unwrap();
}

#[tokio::test]
async fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_the_old_ones() {
    let old_pki = TestPki::generate();
    let new_pki = TestPki::generate();
    let (cert, key) = (
        old_pki.cert.to_str().unwrap(),
        old_pki.key.to_str().unwrap(),
    );
    let mut server = Running::start(&["--tls-cert", cert, "--tls-key", key], &[]).await;
    let mut before = wss(&server, &old_pki, "before").await.unwrap();
    // The operator renews the files in place, then signals.
    replace(&new_pki.cert, &old_pki.cert);
    replace(&new_pki.key, &old_pki.key);
    server.hangup().await;
    let line = wait_for_log(&mut server.logs, "reloaded the TLS certificate").await;
    assert_eq!(line["fields"]["cert"], cert);
    let mut after = wss(&server, &new_pki, "after").await.unwrap();
    let refused = wss(&server, &old_pki, "stale").await.err().unwrap();
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    still_open(&mut before).await;
    still_open(&mut after).await;
    // A broken file is refused and the certificate in force stays.
    std::fs::write(&old_pki.key, "not a key").unwrap();
    server.hangup().await;
    let line = wait_for_log(
        &mut server.logs,
        "TLS certificate not reloaded: the one in force stays",
    )
    .await;
    assert_eq!(line["level"], "WARN");
    let mut again = wss(&server, &new_pki, "again").await.unwrap();
    still_open(&mut again).await;
    still_open(&mut before).await;
}

/// A P-256 key pair: the public key as PEM, the private key to sign with.
fn es256_pair() -> (String, EncodingKey) {
    let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let public = key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    (
        public,
        EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
    )
}

fn token(key: &EncodingKey, sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 60});
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap()
}

/// The status that refuses a WebSocket upgrade with `token`; panics if it is accepted.
async fn refused_status(server: &Running, token: &str) -> u16 {
    let url = format!("ws://{}/?token={token}", server.addr);
    let connecting = tokio_tungstenite::connect_async(url);
    match tokio::time::timeout(WAIT, connecting)
        .await
        .expect("connect timed out")
    {
        Ok(_) => panic!("the token was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

#[tokio::test]
async fn sighup_reloads_the_jwt_public_key_and_keeps_authenticated_connections() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("switchboard-reload-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwt.pem");
    let (old_public, old_private) = es256_pair();
    let (new_public, new_private) = es256_pair();
    std::fs::write(&path, old_public).unwrap();
    let mut server = Running::start(&["--jwt-public-key", path.to_str().unwrap()], &[]).await;
    let url = |token: &str| format!("ws://{}/?token={token}", server.addr);
    let mut before = Client::connect(&url(&token(&old_private, "before"))).await;
    assert_eq!(before.user_id(), "before");
    assert_eq!(
        refused_status(&server, &token(&new_private, "early")).await,
        401
    );

    std::fs::write(&path, new_public).unwrap();
    server.hangup().await;
    wait_for_log(&mut server.logs, "reloaded the JWT public key").await;
    let after = Client::connect(&url(&token(&new_private, "after"))).await;
    assert_eq!(after.user_id(), "after");
    assert_eq!(
        refused_status(&server, &token(&old_private, "stale")).await,
        401
    );
    still_open(&mut before).await;

    // A file that is not a key leaves the new key in force.
    std::fs::write(&path, "garbage").unwrap();
    server.hangup().await;
    wait_for_log(
        &mut server.logs,
        "JWT public key not reloaded: the one in force stays",
    )
    .await;
    let again = Client::connect(&url(&token(&new_private, "again"))).await;
    assert_eq!(again.user_id(), "again");
    std::fs::remove_dir_all(dir).unwrap();
}
