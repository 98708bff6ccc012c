//! Minting HS256 tokens for tests: one helper for the server's and the clients' tests, so that
//! a test's tokens are exactly what its server was configured to accept.

use serde_json::{Value, json};

/// Seconds since the epoch, the unit of `exp`.
pub fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An HS256 token signed with `secret` for `sub`, expiring at `exp` (seconds since the epoch),
/// with `extra` claims (permissions, `iss`, …) merged in.
pub fn hs256_token(secret: &str, sub: &str, exp: u64, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": exp});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("an HS256 token signs")
}
