//! Validation of the authentication settings into an [`AuthConfig`]: the JWT key (read and
//! parsed at start, so a bad key file fails fast), the `auth` deadline, the token expiry's
//! warning and grace, the origin allowlist and the admin key.

use std::sync::Arc;
use std::time::Duration;

use super::{ConfigError, RawSettings};
use crate::auth::{AuthConfig, JwtConfig, KeyError, TokenExpiry};

/// Longest `auth_timeout` accepted.
const MAX_AUTH_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest `token_expiry_warning` and `token_expiry_grace` accepted: a day, beyond which a
/// typo (`60m` for `60s`) is likelier than intent.
const MAX_TOKEN_EXPIRY_SETTING: Duration = Duration::from_secs(24 * 3600);

pub(super) fn from_raw(raw: &RawSettings) -> Result<AuthConfig, ConfigError> {
    let timeout = raw
        .auth_timeout
        .map_or(AuthConfig::default().timeout, |d| d.0);
    if timeout.is_zero() || timeout > MAX_AUTH_TIMEOUT {
        return Err(ConfigError::invalid(
            "auth_timeout",
            "must be greater than zero and at most 5m",
        ));
    }
    let expiry = token_expiry(raw)?;
    let allowed_origins = raw
        .allowed_origins
        .as_deref()
        .map(crate::auth::OriginAllowlist::parse)
        .transpose()
        .map_err(|e| ConfigError::invalid("allowed_origins", e.to_string()))?;
    Ok(AuthConfig {
        jwt: jwt(raw)?.map(Arc::new),
        timeout,
        allowed_origins,
        admin_key: raw
            .admin_key
            .as_deref()
            .filter(|key| !key.is_empty())
            .map(Arc::from),
        expiry,
    })
}

fn token_expiry(raw: &RawSettings) -> Result<TokenExpiry, ConfigError> {
    let default = TokenExpiry::default();
    let warning = raw.token_expiry_warning.map_or(default.warning, |d| d.0);
    let grace = raw.token_expiry_grace.map_or(default.grace, |d| d.0);
    for (setting, value) in [
        ("token_expiry_warning", warning),
        ("token_expiry_grace", grace),
    ] {
        if value > MAX_TOKEN_EXPIRY_SETTING {
            return Err(ConfigError::invalid(setting, "must be at most 24h"));
        }
    }
    Ok(TokenExpiry { warning, grace })
}

fn jwt(raw: &RawSettings) -> Result<Option<JwtConfig>, ConfigError> {
    let algorithm = raw.jwt_algorithm.as_deref();
    let config = match (&raw.jwt_secret, &raw.jwt_public_key) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "jwt_public_key",
                "set either jwt_secret or jwt_public_key, not both",
            ));
        }
        (Some(secret), None) => JwtConfig::secret(secret.as_bytes(), algorithm)
            .map_err(|e| ConfigError::invalid(blame(&e, "jwt_secret"), e.to_string()))?,
        (None, Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    "jwt_public_key",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            JwtConfig::public_key_pem(&pem, algorithm)
                .map_err(|e| {
                    ConfigError::invalid(
                        blame(&e, "jwt_public_key"),
                        format!("{}: {e}", path.display()),
                    )
                })?
                .with_key_file(path)
        }
        (None, None) => {
            let orphan = [
                ("jwt_algorithm", raw.jwt_algorithm.is_some()),
                ("jwt_issuer", raw.jwt_issuer.is_some()),
                ("jwt_audience", raw.jwt_audience.is_some()),
            ];
            if let Some((setting, _)) = orphan.into_iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    setting,
                    "needs jwt_secret or jwt_public_key (authentication is off without a key)",
                ));
            }
            return Ok(None);
        }
    };
    let config = match raw.jwt_issuer.as_deref().filter(|s| !s.is_empty()) {
        Some(issuer) => config.with_issuer(issuer),
        None => config,
    };
    Ok(Some(
        match raw.jwt_audience.as_deref().filter(|s| !s.is_empty()) {
            Some(audience) => config.with_audience(audience),
            None => config,
        },
    ))
}

/// The setting a key error is about: the algorithm, or the key itself.
fn blame(error: &KeyError, key: &'static str) -> &'static str {
    match error {
        KeyError::UnknownAlgorithm(_) | KeyError::Mismatch { .. } => "jwt_algorithm",
        KeyError::EmptySecret | KeyError::NotAPublicKey(_) => key,
    }
}
