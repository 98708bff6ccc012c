//! Authentication and access settings: JWT verification (who a connection is and what it may
//! do), the origin allowlist for browser upgrades, and the admin key of `/stats`.
//!
//! Authentication is on exactly when a JWT key is configured ([`AuthConfig::jwt`]). A token
//! is verified when the connection presents it (at the upgrade, in its `auth` frame, or in a
//! `refresh` frame that replaces it); the identity is the `sub` claim, the permissions come
//! from the other claims (`grants`: `rooms`, `channels`, `broadcast`), and `exp` says until
//! when they hold ([`TokenExpiry`]: the connection is warned before and closed after). This
//! module does no I/O: `http::ws` and `connection::authenticate` present the tokens, the
//! session enforces the grants and the hub's token sweep the expiry.

mod grants;
mod origin;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;

pub use grants::GrantError;
pub(crate) use grants::{GrantClaims, Grants};
pub use origin::{OriginAllowlist, OriginError};

use crate::ids::{NameError, UserId};

/// Longest token accepted, in bytes; longer ones are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

/// Who may connect, from where, and who may read the node's statistics.
#[derive(Clone)]
pub struct AuthConfig {
    /// Token verification; `None` leaves authentication off (`?userId=` is the identity).
    pub jwt: Option<Arc<JwtConfig>>,
    /// How long a connection that brought no token has to send its `auth` frame.
    pub timeout: Duration,
    /// Origins browsers may connect from; `None` accepts every origin.
    pub allowed_origins: Option<OriginAllowlist>,
    /// Key that `/stats` (and the other admin routes) require; `None` leaves them open.
    pub admin_key: Option<Arc<str>>,
    /// When a connection whose token expires is warned and closed.
    pub expiry: TokenExpiry,
}

/// What happens to a connection as its token's `exp` approaches: a `token_expiring` frame
/// `warning` before it (or at half the token's remaining lifetime, when that is shorter), and a
/// close with 1008 "token expired" `grace` after it, unless a `refresh` frame brought a newer
/// token first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpiry {
    /// How long before `exp` the client is warned (`--token-expiry-warning`).
    pub warning: Duration,
    /// How long after `exp` the connection is closed (`--token-expiry-grace`).
    pub grace: Duration,
}

impl Default for TokenExpiry {
    /// A warning 60 s before `exp`, the close 10 s after it.
    fn default() -> Self {
        Self {
            warning: Duration::from_secs(60),
            grace: Duration::from_secs(10),
        }
    }
}

impl TokenExpiry {
    /// When a connection holding a token that expires at `expires_at` is warned, if it got the
    /// token at `now` (both in ms since the epoch): `warning` before `exp`, or at half the
    /// remaining lifetime for a token that lives less than twice `warning`; at once for one
    /// already past its `exp` (accepted within the leeway).
    pub(crate) fn warn_at(&self, expires_at: u64, now: u64) -> u64 {
        let remaining = expires_at.saturating_sub(now);
        let warning = (self.warning.as_millis() as u64).min(remaining / 2);
        expires_at.saturating_sub(warning).max(now)
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt", &self.jwt)
            .field("timeout", &self.timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("expiry", &self.expiry)
            .finish()
    }
}

impl Default for AuthConfig {
    /// Authentication off, every origin, no admin key, a 5 s `auth` deadline, the default
    /// [`TokenExpiry`].
    fn default() -> Self {
        Self {
            jwt: None,
            timeout: Duration::from_secs(5),
            allowed_origins: None,
            admin_key: None,
            expiry: TokenExpiry::default(),
        }
    }
}

/// How tokens are verified: the key, the one algorithm accepted, and the expected issuer and
/// audience. A public key read from a file can be read again ([`JwtConfig::reload`], on
/// SIGHUP): tokens verified from then on use the new key; connections already authenticated
/// stay, as a token is verified only once.
pub struct JwtConfig {
    /// Read by every verification, replaced by a reload.
    key: RwLock<Arc<DecodingKey>>,
    validation: Validation,
    algorithm: Algorithm,
    /// The PEM file the public key came from, if it came from one.
    key_file: Option<PathBuf>,
}

/// Why a key file could not be reloaded.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable key for the algorithm in force.
    #[error("{}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyError,
    },
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.validation.iss)
            .field("audience", &self.validation.aud)
            .finish_non_exhaustive()
    }
}

/// A key or algorithm that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm name is not one of HS256/384/512, RS256/384/512, PS256/384/512,
    /// ES256/384 or EdDSA.
    #[error("unknown algorithm {0:?} (use e.g. HS256, RS256 or ES256)")]
    UnknownAlgorithm(String),
    /// The algorithm does not fit the key (an HMAC algorithm for a public key, say).
    #[error("algorithm {algorithm:?} does not fit a {key} key")]
    Mismatch {
        /// The algorithm.
        algorithm: Algorithm,
        /// The kind of key given.
        key: &'static str,
    },
    /// The secret is empty.
    #[error("the secret must not be empty")]
    EmptySecret,
    /// The PEM text is not an RSA, EC or Ed25519 public key.
    #[error("not a PEM-encoded RSA, EC or Ed25519 public key")]
    NotAPublicKey(#[source] jsonwebtoken::errors::Error),
}

impl JwtConfig {
    /// Verifies with a shared secret and `algorithm` (`HS256` when `None`).
    pub fn secret(secret: &[u8], algorithm: Option<&str>) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let algorithm = parse_algorithm(algorithm)?.unwrap_or(Algorithm::HS256);
        if !matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(KeyError::Mismatch {
                algorithm,
                key: "shared secret",
            });
        }
        Ok(Self::new(DecodingKey::from_secret(secret), algorithm))
    }

    /// Verifies with a PEM public key (`-----BEGIN PUBLIC KEY-----`, or PKCS#1 RSA) and
    /// `algorithm`; when `None`, the key's type decides: RS256 for RSA, ES256 for EC, EdDSA
    /// for Ed25519.
    pub fn public_key_pem(pem: &[u8], algorithm: Option<&str>) -> Result<Self, KeyError> {
        let algorithm = parse_algorithm(algorithm)?;
        let (key, kind, default) = match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => (key, "RSA", Algorithm::RS256),
            Err(_) => match DecodingKey::from_ec_pem(pem) {
                Ok(key) => (key, "EC", Algorithm::ES256),
                Err(_) => match DecodingKey::from_ed_pem(pem) {
                    Ok(key) => (key, "Ed25519", Algorithm::EdDSA),
                    Err(error) => return Err(KeyError::NotAPublicKey(error)),
                },
            },
        };
        let algorithm = algorithm.unwrap_or(default);
        let fits = match kind {
            "RSA" => matches!(
                algorithm,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            "EC" => matches!(algorithm, Algorithm::ES256 | Algorithm::ES384),
            _ => algorithm == Algorithm::EdDSA,
        };
        if !fits {
            return Err(KeyError::Mismatch {
                algorithm,
                key: kind,
            });
        }
        Ok(Self::new(key, algorithm))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: RwLock::new(Arc::new(key)),
            validation,
            algorithm,
            key_file: None,
        }
    }

    /// Remembers that the public key came from `path`, so that [`JwtConfig::reload`] reads it
    /// again.
    pub fn with_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }

    /// Reads the public key file again and verifies with it from now on; it must fit the
    /// algorithm in force. Returns the file, or `None` when the key did not come from one (a
    /// shared secret, which only a restart changes). On an error the key in force stays.
    pub fn reload(&self) -> Result<Option<&Path>, ReloadError> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| ReloadError::Read {
            path: path.clone(),
            source,
        })?;
        let fresh = Self::public_key_pem(&pem, Some(self.algorithm())).map_err(|source| {
            ReloadError::Key {
                path: path.clone(),
                source,
            }
        })?;
        let key = fresh.key.read().clone();
        *self.key.write() = key;
        Ok(Some(path))
    }

    /// Requires the `iss` claim to be `issuer`.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self
    }

    /// Requires the `aud` claim to be (or contain) `audience`.
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm tokens must be signed with, as `jsonwebtoken` names it.
    pub(crate) fn key_algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies `token` and reads the identity and permissions from its claims.
    pub(crate) fn verify(
        &self,
        token: &str,
        max_name_chars: usize,
    ) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        // Decoded as JSON first, so that a claim of the wrong shape (after the signature
        // verified) is told apart from a token that is not JSON at all.
        let key = self.key.read().clone();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &self.validation)
            .map_err(TokenError::from_jwt)?;
        let claims: Claims =
            serde_json::from_value(data.claims).map_err(TokenError::InvalidClaims)?;
        let user =
            UserId::parse(&claims.sub, max_name_chars).map_err(TokenError::InvalidSubject)?;
        let grants = claims
            .grants
            .into_grants()
            .map_err(TokenError::InvalidGrant)?;
        Ok(Identity {
            user,
            grants,
            expires_at: claims.exp.saturating_mul(1000),
        })
    }
}

fn parse_algorithm(name: Option<&str>) -> Result<Option<Algorithm>, KeyError> {
    name.map(|name| {
        name.parse::<Algorithm>()
            .map_err(|_| KeyError::UnknownAlgorithm(name.to_owned()))
    })
    .transpose()
}

/// The claims Switchboard reads; `exp`, `nbf`, `iss` and `aud` are checked by the validation.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Seconds since the epoch; required and checked by the validation, read again here to
    /// schedule the connection's expiry.
    exp: u64,
    #[serde(flatten)]
    grants: grants::GrantClaims,
}

/// Who a verified token says the connection is, and what it may do.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) user: UserId,
    pub(crate) grants: Grants,
    /// The token's `exp`, in ms since the epoch.
    pub(crate) expires_at: u64,
}

/// Why a token was refused. The messages are short: they go into HTTP 401 bodies and close
/// reasons (at most 123 bytes).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No token was presented where one is required.
    #[error("missing token")]
    Missing,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token too long")]
    TooLong,
    /// Not a JWT, or its header or claims are not valid JSON.
    #[error("malformed token")]
    Malformed(#[source] jsonwebtoken::errors::Error),
    /// The signature does not verify with the configured key.
    #[error("invalid signature")]
    InvalidSignature,
    /// Signed with another algorithm than the configured one.
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// Before its `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
    /// The `iss` claim is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The `aud` claim does not name the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim (`exp`, `sub`) is absent or mistyped.
    #[error("missing or mistyped exp or sub")]
    MissingClaim(#[source] jsonwebtoken::errors::Error),
    /// A permission claim does not have the documented shape.
    #[error("invalid claims")]
    InvalidClaims(#[source] serde_json::Error),
    /// `sub` is not a valid user id.
    #[error("invalid sub: {0}")]
    InvalidSubject(#[source] NameError),
    /// A permission pattern cannot be used.
    #[error("invalid claims: {0}")]
    InvalidGrant(#[source] GrantError),
}

impl TokenError {
    fn from_jwt(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidSignature => Self::InvalidSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Self::WrongAlgorithm,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject => Self::MissingClaim(error),
            _ => Self::Malformed(error),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
