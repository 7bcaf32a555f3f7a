//! Who a rider is: the one rule that turns a bearer token from the
//! operator's identity provider into a verified rider, or a refusal.
//!
//! A rider's token is a JWT (RFC 7519) signed with ES256 or RS256 by a key
//! in the provider's published JWKS, or with HS256 by a secret shared with
//! the operator. It is accepted only when its signature verifies with a
//! configured key of the token's own algorithm, its `iss` is the configured
//! issuer, its `aud` holds the configured audience, it carries `sub` and
//! `exp`, `exp` has not passed and `nbf` (when present) has, each with a
//! small leeway for clock skew. The verified `sub` is the rider.
//!
//! What a client says about itself counts for nothing else: a `user_id` in
//! a request body keys nothing, and a rider without a verified token is
//! anonymous (outside every user-split experiment, without a per-user
//! limit, counted as demand per client).
//!
//! The verification is [`jsonwebtoken`] 12 with its RustCrypto backend (no
//! C or assembly, so it builds for `wasm32-unknown-unknown`; maintained,
//! and the most used JWT crate). Its own clock checks are off: time comes
//! in as an argument, like everywhere in this crate.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::time::Timestamp;

/// Longest token accepted, bytes (a provider's tokens are well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `sub` accepted, bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Clock skew allowed on `exp` and `nbf` unless configured.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Most skew an operator may allow.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Most keys used from a JWKS.
pub const MAX_KEYS: usize = 32;
/// Shortest HS256 secret accepted, bytes (RFC 7518 §3.2: at least the
/// hash's size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted, bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Why a token is refused. Every case is a `401 invalid_token` at the edge;
/// [`Self::code`] says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Not `Bearer <JWT>`, not three base64url parts, or not JSON.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    /// Signed with an algorithm this edge has no key for (`none` included).
    #[error("tokens signed with {0} are not accepted here")]
    Algorithm(String),
    /// No configured key has the token's `kid` (or, without one, exactly
    /// one key of its algorithm).
    #[error("no configured key matches the token's key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Another issuer.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// Not for this audience.
    #[error("the token is for another audience")]
    Audience,
    /// `sub`, `exp`, `iss` or `aud` is missing or of the wrong type.
    #[error("the token lacks a required claim ({0})")]
    MissingClaim(String),
    /// `sub` is empty or longer than [`MAX_SUBJECT_BYTES`].
    #[error("the token's subject must be 1-{MAX_SUBJECT_BYTES} bytes")]
    Subject,
}

impl TokenRefusal {
    /// A stable, snake_case reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::Algorithm(_) => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::Subject => "subject",
        }
    }
}

/// A rider whose token verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRider {
    /// The token's `sub`.
    pub id: String,
    /// When the token expires (the leeway included): a cached verification
    /// is good until then.
    pub until: Timestamp,
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750): the
/// scheme's case ignored, the token trimmed, `None` for another scheme or
/// an empty token. The one reading of a bearer credential: riders' tokens,
/// the admin's and dispatch's at the edge, the origin's roles.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A rider's token from an `Authorization` header: `None` without one,
/// the bearer token ([`bearer_token`]), or [`TokenRefusal::Malformed`].
pub fn bearer(header: Option<&str>) -> Result<Option<&str>, TokenRefusal> {
    match header {
        None => Ok(None),
        Some(h) => bearer_token(h).map(Some).ok_or(TokenRefusal::Malformed),
    }
}

/// One verification key of the provider's JWKS.
#[derive(Clone)]
struct PublicKey {
    id: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The identity settings (the admin's `identity` key, parsed by
/// [`crate::api::admin::parse_identity`]).
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    issuer: String,
    audience: String,
    leeway_secs: u64,
    keys: Vec<PublicKey>,
    /// Keys of the JWKS left out, with why (shown by `origin check`).
    skipped: Vec<String>,
}

impl IdentityConfig {
    /// Settings from their parts. `jwks` may be empty when riders' tokens
    /// are HS256 only; keys this edge cannot use (encryption keys, other
    /// curves and algorithms, short RSA moduli) are skipped and listed by
    /// [`Self::skipped`], but a JWKS with no usable key is refused.
    pub fn new(
        issuer: &str,
        audience: &str,
        leeway_secs: Option<u64>,
        jwks: Option<&JwkSet>,
    ) -> Result<Self, String> {
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err("issuer and audience must not be empty".into());
        }
        let leeway_secs = leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS);
        if leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!(
                "leeway_seconds is {leeway_secs}; the most is {MAX_LEEWAY_SECS}"
            ));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        if let Some(set) = jwks {
            if set.keys.len() > MAX_KEYS {
                return Err(format!(
                    "the JWKS has {} keys; the most is {MAX_KEYS}",
                    set.keys.len()
                ));
            }
            for (i, jwk) in set.keys.iter().enumerate() {
                let name = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
                match public_key(jwk) {
                    Ok(k) => keys.push(k),
                    Err(why) => skipped.push(format!("key {name}: {why}")),
                }
            }
            if keys.is_empty() {
                return Err(format!(
                    "the JWKS has no ES256 (P-256) or RS256 signing key: {}",
                    skipped.join("; ")
                ));
            }
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs,
            keys,
            skipped,
        })
    }

    /// Keys of the JWKS left out, with why.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// How many JWKS keys verify tokens.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// A JWK this edge can verify with, or why not.
fn public_key(jwk: &Jwk) -> Result<PublicKey, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key".into());
    }
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::EllipticCurve(p) => {
            return Err(format!("curve {:?} is not accepted (P-256 only)", p.curve))
        }
        AlgorithmParameters::RSA(p) => {
            let bits = base64_len(&p.n) * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "an RSA modulus of {bits} bits (at least {MIN_RSA_BITS})"
                ));
            }
            Algorithm::RS256
        }
        _ => return Err("only EC P-256 and RSA keys are accepted".into()),
    };
    match jwk.common.key_algorithm {
        None | Some(KeyAlgorithm::ES256) if algorithm == Algorithm::ES256 => {}
        None | Some(KeyAlgorithm::RS256) if algorithm == Algorithm::RS256 => {}
        Some(other) => return Err(format!("algorithm {other:?} is not accepted")),
        None => {}
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable: {e}"))?;
    Ok(PublicKey {
        id: jwk.common.key_id.clone(),
        algorithm,
        key,
    })
}

/// Bytes of a base64url text (padding and all).
fn base64_len(text: &str) -> usize {
    text.trim_end_matches('=').len() * 3 / 4
}

/// The claims read from a token (the rest are ignored).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Verifies riders' tokens with the configured keys and secret.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: IdentityConfig,
    secret: Option<SecretKey>,
    validations: BTreeMap<&'static str, Validation>,
}

#[derive(Clone)]
struct SecretKey(DecodingKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Verifier {
    /// A verifier of `config`'s keys and, when given, an HS256 `secret` of
    /// at least [`MIN_SECRET_BYTES`]. With neither a key nor a secret every
    /// token is refused.
    pub fn new(config: IdentityConfig, secret: Option<&[u8]>) -> Result<Self, String> {
        let secret = match secret {
            None => None,
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(format!(
                    "the HS256 secret has {} bytes; at least {MIN_SECRET_BYTES}",
                    s.len()
                ))
            }
            Some(s) => Some(SecretKey(
                DecodingKey::from_secret(s).map_err(|e| e.to_string())?,
            )),
        };
        let mut validations = BTreeMap::new();
        for (name, alg) in [
            ("HS256", Algorithm::HS256),
            ("ES256", Algorithm::ES256),
            ("RS256", Algorithm::RS256),
        ] {
            let mut v = Validation::new(alg);
            // Time is checked by `verify` against its `now`.
            v.validate_exp = false;
            v.validate_nbf = false;
            v.leeway = 0;
            v.set_issuer(&[&config.issuer]);
            v.set_audience(&[&config.audience]);
            v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            validations.insert(name, v);
        }
        Ok(Self {
            config,
            secret,
            validations,
        })
    }

    /// Whether any token could verify (a key or a secret is configured).
    pub fn accepts_any(&self) -> bool {
        self.secret.is_some() || !self.config.keys.is_empty()
    }

    /// The rider of `token` at `now`, or why it is refused.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<VerifiedRider, TokenRefusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRefusal::TooLong);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRefusal::Malformed)?;
        let (name, key) = match header.alg {
            Algorithm::HS256 => (
                "HS256",
                &self
                    .secret
                    .as_ref()
                    .ok_or_else(|| TokenRefusal::Algorithm("HS256".into()))?
                    .0,
            ),
            alg @ (Algorithm::ES256 | Algorithm::RS256) => {
                let mut of_alg = self.config.keys.iter().filter(|k| k.algorithm == alg);
                let key = match header.kid.as_deref() {
                    Some(kid) => of_alg.find(|k| k.id.as_deref() == Some(kid)),
                    None => match (of_alg.next(), of_alg.next()) {
                        (Some(only), None) => Some(only),
                        _ => None,
                    },
                };
                let key = key.ok_or(if self.config.keys.iter().any(|k| k.algorithm == alg) {
                    TokenRefusal::UnknownKey
                } else {
                    TokenRefusal::Algorithm(format!("{alg:?}"))
                })?;
                (
                    if alg == Algorithm::ES256 {
                        "ES256"
                    } else {
                        "RS256"
                    },
                    &key.key,
                )
            }
            other => return Err(TokenRefusal::Algorithm(format!("{other:?}"))),
        };
        let validation = &self.validations[name];
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => TokenRefusal::Signature,
                K::InvalidIssuer => TokenRefusal::Issuer,
                K::InvalidAudience => TokenRefusal::Audience,
                K::MissingRequiredClaim(c) => TokenRefusal::MissingClaim(c.clone()),
                K::Json(_) => {
                    TokenRefusal::MissingClaim("sub, exp or nbf of the wrong type".into())
                }
                _ => TokenRefusal::Malformed,
            }
        })?;
        let claims = data.claims;
        let now_secs = now.0 / 1000;
        let leeway = self.config.leeway_secs;
        if now_secs >= claims.exp.saturating_add(leeway) {
            return Err(TokenRefusal::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now_secs.saturating_add(leeway) < nbf)
        {
            return Err(TokenRefusal::NotYetValid);
        }
        if claims.sub.is_empty() || claims.sub.len() > MAX_SUBJECT_BYTES {
            return Err(TokenRefusal::Subject);
        }
        Ok(VerifiedRider {
            id: claims.sub,
            until: Timestamp(claims.exp.saturating_add(leeway).saturating_mul(1000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
    const NOW: u64 = 1_800_000_000;

    fn verifier() -> Verifier {
        let config =
            IdentityConfig::new("https://id.example", "equilibrium", None, None).expect("config");
        Verifier::new(config, Some(SECRET)).expect("verifier")
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET).expect("key"),
        )
        .expect("encode")
    }

    fn good() -> serde_json::Value {
        json!({"sub": "rider-1", "iss": "https://id.example", "aud": "equilibrium", "exp": NOW + 600})
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp(secs * 1000)
    }

    #[test]
    fn a_good_token_names_its_rider_until_it_expires() {
        let v = verifier();
        let r = v.verify(&token(good()), at(NOW)).expect("verified");
        assert_eq!(r.id, "rider-1");
        assert_eq!(r.until, at(NOW + 600 + DEFAULT_LEEWAY_SECS));
        assert_eq!(
            v.verify(&token(good()), at(NOW + 600 + DEFAULT_LEEWAY_SECS)),
            Err(TokenRefusal::Expired)
        );
    }

    #[test]
    fn each_wrong_claim_is_its_own_refusal() {
        let v = verifier();
        let with = |k: &str, val: serde_json::Value| {
            let mut c = good();
            c[k] = val;
            v.verify(&token(c), at(NOW))
        };
        assert_eq!(
            with("iss", json!("https://evil.example")),
            Err(TokenRefusal::Issuer)
        );
        assert_eq!(with("aud", json!("other-app")), Err(TokenRefusal::Audience));
        assert_eq!(
            with("aud", json!(["other", "equilibrium"])).map(|r| r.id),
            Ok("rider-1".into())
        );
        assert_eq!(with("exp", json!(NOW - 3600)), Err(TokenRefusal::Expired));
        assert_eq!(
            with("nbf", json!(NOW + 3600)),
            Err(TokenRefusal::NotYetValid)
        );
        assert_eq!(with("sub", json!("")), Err(TokenRefusal::Subject));
        let mut no_sub = good();
        no_sub.as_object_mut().expect("object").remove("sub");
        assert!(matches!(
            v.verify(&token(no_sub), at(NOW)),
            Err(TokenRefusal::MissingClaim(_))
        ));
    }

    #[test]
    fn forged_and_unsigned_tokens_are_refused() {
        let v = verifier();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!!").expect("key"),
        )
        .expect("encode");
        assert_eq!(v.verify(&forged, at(NOW)), Err(TokenRefusal::Signature));
        // `alg: none` with no signature.
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!("{}.{}.", b64(json!({"alg": "none"})), b64(good()));
        assert_eq!(v.verify(&none, at(NOW)), Err(TokenRefusal::Malformed));
        // An ES256 token where only a secret is configured.
        let es = format!("{}.{}.c2ln", b64(json!({"alg": "ES256"})), b64(good()));
        assert_eq!(
            v.verify(&es, at(NOW)),
            Err(TokenRefusal::Algorithm("ES256".into()))
        );
        assert_eq!(v.verify("not-a-jwt", at(NOW)), Err(TokenRefusal::Malformed));
        assert_eq!(
            v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1), at(NOW)),
            Err(TokenRefusal::TooLong)
        );
    }

    #[test]
    fn without_a_secret_hs256_is_not_accepted() {
        let config =
            IdentityConfig::new("https://id.example", "equilibrium", None, None).expect("config");
        let v = Verifier::new(config, None).expect("verifier");
        assert!(!v.accepts_any());
        assert_eq!(
            v.verify(&token(good()), at(NOW)),
            Err(TokenRefusal::Algorithm("HS256".into()))
        );
    }

    #[test]
    fn weak_settings_are_refused() {
        let config = IdentityConfig::new("i", "a", None, None).expect("config");
        assert!(Verifier::new(config, Some(b"short")).is_err());
        assert!(IdentityConfig::new("", "a", None, None).is_err());
        assert!(IdentityConfig::new("i", "a", Some(MAX_LEEWAY_SECS + 1), None).is_err());
        let small_rsa: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "RSA", "kid": "small", "n": "AQAB".repeat(40), "e": "AQAB"}
        ]}))
        .expect("jwks");
        let e = IdentityConfig::new("i", "a", None, Some(&small_rsa)).expect_err("refused");
        assert!(e.contains("small") && e.contains("bits"), "{e}");
    }

    #[test]
    fn bearer_headers_parse() {
        assert_eq!(bearer(None), Ok(None));
        assert_eq!(bearer(Some("Bearer abc")), Ok(Some("abc")));
        assert_eq!(bearer(Some("bearer  abc ")), Ok(Some("abc")));
        assert_eq!(bearer(Some("Basic abc")), Err(TokenRefusal::Malformed));
        assert_eq!(bearer(Some("Bearer ")), Err(TokenRefusal::Malformed));
    }
}
