use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"a-test-secret-of-32-bytes-length";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn verify(config: &JwtConfig, token: &str) -> Result<Identity, TokenError> {
    config.verify(token, 128)
}

fn hs256() -> JwtConfig {
    JwtConfig::secret(SECRET, None).unwrap()
}

#[test]
fn a_valid_token_gives_the_subject() {
    let token = sign(&json!({"sub": "alice", "exp": now() + 60}));
    let identity = verify(&hs256(), &token).unwrap();
    assert_eq!(identity.user.as_str(), "alice");
    assert_eq!(identity.expires_at, (now() + 60) * 1000);
}

#[test]
fn the_warning_comes_before_exp_or_at_half_a_short_lifetime() {
    let expiry = TokenExpiry {
        warning: Duration::from_secs(60),
        grace: Duration::from_secs(10),
    };
    let now = 1_000_000;
    assert_eq!(expiry.warn_at(now + 3_600_000, now), now + 3_540_000);
    assert_eq!(expiry.warn_at(now + 120_000, now), now + 60_000);
    assert_eq!(expiry.warn_at(now + 4_000, now), now + 2_000);
    assert_eq!(expiry.warn_at(now - 5_000, now), now);
}

#[test]
fn time_claims_are_checked_with_the_leeway() {
    let config = hs256();
    let expired = sign(&json!({"sub": "a", "exp": now() - LEEWAY_SECONDS - 5}));
    assert!(matches!(
        verify(&config, &expired),
        Err(TokenError::Expired)
    ));
    let within_leeway = sign(&json!({"sub": "a", "exp": now() - LEEWAY_SECONDS + 5}));
    assert!(verify(&config, &within_leeway).is_ok());
    let early = sign(&json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}));
    assert!(matches!(
        verify(&config, &early),
        Err(TokenError::NotYetValid)
    ));
    let no_exp = sign(&json!({"sub": "a"}));
    assert!(matches!(
        verify(&config, &no_exp),
        Err(TokenError::MissingClaim(_))
    ));
}

#[test]
fn forged_and_malformed_tokens_are_refused() {
    let config = hs256();
    let other = JwtConfig::secret(b"another secret", None).unwrap();
    let token = sign(&json!({"sub": "a", "exp": now() + 60}));
    assert!(matches!(
        verify(&other, &token),
        Err(TokenError::InvalidSignature)
    ));
    for bad in ["", "abc", "a.b.c", "e30.e30.", "\u{0}.\u{0}.\u{0}"] {
        assert!(
            matches!(verify(&config, bad), Err(TokenError::Malformed(_))),
            "{bad:?}"
        );
    }
    let hs512 = encode(
        &Header::new(Algorithm::HS512),
        &json!({"sub": "a", "exp": now() + 60}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert!(matches!(
        verify(&config, &hs512),
        Err(TokenError::WrongAlgorithm)
    ));
}

#[test]
fn the_length_limit_is_checked_first() {
    let config = hs256();
    assert!(matches!(
        verify(&config, &"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(TokenError::TooLong)
    ));
    assert!(matches!(
        verify(&config, &"a".repeat(MAX_TOKEN_BYTES)),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn issuer_and_audience_are_required_when_configured() {
    let config = hs256().with_issuer("auth.example").with_audience("chat");
    let good = sign(&json!({"sub": "a", "exp": now() + 60, "iss": "auth.example", "aud": "chat"}));
    assert!(verify(&config, &good).is_ok());
    let wrong_iss = sign(&json!({"sub": "a", "exp": now() + 60, "iss": "x", "aud": "chat"}));
    assert!(matches!(
        verify(&config, &wrong_iss),
        Err(TokenError::WrongIssuer)
    ));
    let wrong_aud =
        sign(&json!({"sub": "a", "exp": now() + 60, "iss": "auth.example", "aud": "x"}));
    assert!(matches!(
        verify(&config, &wrong_aud),
        Err(TokenError::WrongAudience)
    ));
    // Without a configured audience, a token's `aud` is not checked.
    assert!(verify(&hs256(), &wrong_aud).is_ok());
}

#[test]
fn bad_subjects_and_claims_are_refused() {
    let config = hs256();
    let spaced = sign(&json!({"sub": "has space", "exp": now() + 60}));
    assert!(matches!(
        verify(&config, &spaced),
        Err(TokenError::InvalidSubject(_))
    ));
    let long = sign(&json!({"sub": "a".repeat(129), "exp": now() + 60}));
    assert!(matches!(
        verify(&config, &long),
        Err(TokenError::InvalidSubject(_))
    ));
    let rooms = sign(&json!({"sub": "a", "exp": now() + 60, "rooms": "general"}));
    assert!(matches!(
        verify(&config, &rooms),
        Err(TokenError::InvalidClaims(_))
    ));
    let pattern = sign(&json!({"sub": "a", "exp": now() + 60, "rooms": ["a*b"]}));
    assert!(matches!(
        verify(&config, &pattern),
        Err(TokenError::InvalidGrant(_))
    ));
}

#[test]
fn keys_and_algorithms_must_fit() {
    assert!(matches!(
        JwtConfig::secret(b"", None),
        Err(KeyError::EmptySecret)
    ));
    assert!(matches!(
        JwtConfig::secret(SECRET, Some("RS256")),
        Err(KeyError::Mismatch { .. })
    ));
    assert!(matches!(
        JwtConfig::secret(SECRET, Some("none")),
        Err(KeyError::UnknownAlgorithm(_))
    ));
    assert_eq!(
        JwtConfig::secret(SECRET, Some("HS512"))
            .unwrap()
            .algorithm(),
        "HS512"
    );
    assert!(matches!(
        JwtConfig::public_key_pem(b"not a key", None),
        Err(KeyError::NotAPublicKey(_))
    ));
}

/// Test-only key pairs (generated with `openssl genpkey`; they protect nothing): private keys
/// sign, the public keys are what the server is given.
mod keys {
    pub(super) const RSA: (&str, &str) = (
        include_str!("test_keys/rsa.pem"),
        include_str!("test_keys/rsa.pub.pem"),
    );
    pub(super) const P256: (&str, &str) = (
        include_str!("test_keys/p256.pem"),
        include_str!("test_keys/p256.pub.pem"),
    );
    pub(super) const P384: (&str, &str) = (
        include_str!("test_keys/p384.pem"),
        include_str!("test_keys/p384.pub.pem"),
    );
    pub(super) const ED25519: (&str, &str) = (
        include_str!("test_keys/ed25519.pem"),
        include_str!("test_keys/ed25519.pub.pem"),
    );
}

/// Every algorithm docs/configuration.md and docs/security.md list: a token signed with it is
/// accepted by a server configured with it, and refused by one configured with another.
#[test]
fn a_token_signed_with_each_documented_algorithm_is_accepted() {
    let claims = json!({"sub": "alice", "exp": now() + 60});
    let secret = |algorithm: Algorithm, name: &str| {
        let token = encode(
            &Header::new(algorithm),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        (token, JwtConfig::secret(SECRET, Some(name)).unwrap())
    };
    let pem = |algorithm: Algorithm, name: Option<&str>, (private, public): (&str, &str)| {
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(private.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private.as_bytes()),
        }
        .unwrap();
        let token = encode(&Header::new(algorithm), &claims, &key).unwrap();
        (
            token,
            JwtConfig::public_key_pem(public.as_bytes(), name).unwrap(),
        )
    };
    let cases = [
        ("HS256", secret(Algorithm::HS256, "HS256")),
        ("HS384", secret(Algorithm::HS384, "HS384")),
        ("HS512", secret(Algorithm::HS512, "HS512")),
        ("RS256", pem(Algorithm::RS256, Some("RS256"), keys::RSA)),
        ("RS384", pem(Algorithm::RS384, Some("RS384"), keys::RSA)),
        ("RS512", pem(Algorithm::RS512, Some("RS512"), keys::RSA)),
        ("PS256", pem(Algorithm::PS256, Some("PS256"), keys::RSA)),
        ("PS384", pem(Algorithm::PS384, Some("PS384"), keys::RSA)),
        ("PS512", pem(Algorithm::PS512, Some("PS512"), keys::RSA)),
        ("ES256", pem(Algorithm::ES256, Some("ES256"), keys::P256)),
        ("ES384", pem(Algorithm::ES384, Some("ES384"), keys::P384)),
        ("EdDSA", pem(Algorithm::EdDSA, Some("EdDSA"), keys::ED25519)),
        // Without --jwt-algorithm the key's type decides.
        ("RS256 by default", pem(Algorithm::RS256, None, keys::RSA)),
        ("ES256 by default", pem(Algorithm::ES256, None, keys::P256)),
        (
            "EdDSA by default",
            pem(Algorithm::EdDSA, None, keys::ED25519),
        ),
    ];
    for (name, (token, config)) in &cases {
        let identity = verify(config, token).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(identity.user.as_str(), "alice", "{name}");
    }
    // The one configured algorithm only: RS256's token against the PS256 configuration.
    let (rs256, _) = &cases[3].1;
    let (_, ps256) = &cases[6].1;
    assert!(verify(ps256, rs256).is_err());
    let (hs384, _) = &cases[1].1;
    assert!(verify(&hs256(), hs384).is_err());
}

#[test]
fn only_a_key_from_a_file_reloads_and_a_bad_file_leaves_it() {
    use p256::pkcs8::{EncodePublicKey as _, LineEnding};

    let secret = JwtConfig::secret(b"s3cret", None).unwrap();
    assert!(matches!(secret.reload(), Ok(None)));
    let dir = std::env::temp_dir().join(format!("switchboard-jwt-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.pem");
    let pem = |key: &p256::SecretKey| key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let first = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    std::fs::write(&path, pem(&first)).unwrap();
    let jwt = JwtConfig::public_key_pem(pem(&first).as_bytes(), None)
        .unwrap()
        .with_key_file(&path);
    let second = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    std::fs::write(&path, pem(&second)).unwrap();
    assert_eq!(jwt.reload().unwrap(), Some(path.as_path()));
    std::fs::write(&path, "garbage").unwrap();
    assert!(matches!(
        jwt.reload(),
        Err(ReloadError::Key {
            source: KeyError::NotAPublicKey(_),
            ..
        })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(jwt.reload(), Err(ReloadError::Read { .. })));
    assert_eq!(jwt.algorithm(), "ES256");
}
