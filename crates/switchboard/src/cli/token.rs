//! `switchboard token`: mints a JWT for testing with the configured key: the HMAC secret
//! (`jwt_secret`), or, when only the public key is configured, the private key given with
//! `--private-key`. The token carries `sub`, `iat`, `exp`, the configured issuer and audience,
//! and the permission claims asked for; before it is printed it is verified with the
//! configuration the server would use, so a token this prints is one the server accepts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use crate::auth::TokenError;
use crate::config::{ConfigError, Invocation, TokenArgs};

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenMintError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No JWT key is configured, so the server needs no token.
    #[error(
        "authentication is off (no jwt_secret or jwt_public_key): clients connect with \
         ?userId= and need no token"
    )]
    AuthOff,
    /// Only the public key is configured, and no private key was given.
    #[error(
        "only a public key is configured (jwt_public_key), which cannot sign: give the \
         private key with --private-key FILE"
    )]
    PublicKeyOnly,
    /// A private key was given while the configured key is a shared secret.
    #[error("--private-key is for jwt_public_key; with jwt_secret the secret signs")]
    NotWithSecret,
    /// `--ttl` is zero.
    #[error("--ttl must be at least 1s")]
    ZeroTtl,
    /// The private key file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The private key file is not a PEM private key of the configured algorithm's type.
    #[error("{}: not a PEM private key for {algorithm:?}: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The configured algorithm.
        algorithm: Algorithm,
        /// Why.
        source: jsonwebtoken::errors::Error,
    },
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    /// The server would refuse the token: a bad `--sub` or pattern, or a private key that
    /// does not belong to the configured public key.
    #[error("the server would refuse this token: {0}")]
    Refused(#[source] TokenError),
}

/// Mints a token as `args` ask, signed with the configured key.
pub(super) fn mint(args: &TokenArgs, invocation: &Invocation) -> Result<String, TokenMintError> {
    let config = invocation.config()?;
    let jwt = config.auth.jwt.as_ref().ok_or(TokenMintError::AuthOff)?;
    let raw = invocation.sources.merged();
    let algorithm = jwt.key_algorithm();
    let key = match (&raw.jwt_secret, &args.private_key) {
        (Some(_), Some(_)) => return Err(TokenMintError::NotWithSecret),
        (Some(secret), None) => EncodingKey::from_secret(secret.as_bytes()),
        (None, Some(path)) => private_key(path, algorithm)?,
        (None, None) => return Err(TokenMintError::PublicKeyOnly),
    };
    if args.ttl.0 < Duration::from_secs(1) {
        return Err(TokenMintError::ZeroTtl);
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(args.sub));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.ttl.0.as_secs()));
    let nonempty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    if let Some(issuer) = nonempty(&raw.jwt_issuer) {
        claims.insert("iss".into(), json!(issuer));
    }
    if let Some(audience) = nonempty(&raw.jwt_audience) {
        claims.insert("aud".into(), json!(audience));
    }
    if let Some(rooms) = &args.rooms {
        claims.insert("rooms".into(), json!(rooms));
    }
    if let Some(channels) = &args.channels {
        claims.insert("channels".into(), json!(channels));
    }
    if let Some(docs) = &args.docs {
        claims.insert("docs".into(), json!(docs));
    }
    if args.broadcast {
        claims.insert("broadcast".into(), json!(true));
    }
    let token = jsonwebtoken::encode(&Header::new(algorithm), &Value::Object(claims), &key)
        .map_err(TokenMintError::Sign)?;
    jwt.verify(&token, config.hub.limits.max_name_length)
        .map_err(TokenMintError::Refused)?;
    Ok(token)
}

/// Reads a PEM private key of the type `algorithm` needs.
fn private_key(path: &Path, algorithm: Algorithm) -> Result<EncodingKey, TokenMintError> {
    let pem = std::fs::read(path).map_err(|source| TokenMintError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    };
    key.map_err(|source| TokenMintError::BadKey {
        path: path.to_owned(),
        algorithm,
        source,
    })
}
