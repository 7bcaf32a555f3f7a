//! An identity provider for the demo and the tests: it makes an ES256 and
//! an RS256 key (fresh each run), publishes them as a JWKS, and signs
//! riders' tokens with them or with an HS256 secret, as an operator's
//! provider would. The edge verifies them with `shared::identity`.
//!
//! Never for production: an operator's riders get their tokens from the
//! operator's own provider.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};

/// The issuer the demo's tokens carry.
pub const ISSUER: &str = "https://id.equilibrium.test/";
/// The audience the demo's tokens carry.
pub const AUDIENCE: &str = "equilibrium-riders";

/// How a token is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256, key id `es-1`.
    Es256,
    /// RSA 2048, key id `rs-1`.
    Rs256,
    /// The shared secret.
    Hs256,
}

/// A provider: its keys and secret.
pub struct Provider {
    es256: EncodingKey,
    es256_public: (String, String),
    rs256: EncodingKey,
    rs256_public: (String, String),
    secret: String,
    hs256: EncodingKey,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the system's random source");
    b
}

impl Provider {
    /// A provider with fresh keys and secret.
    pub fn new() -> anyhow::Result<Self> {
        let ec = loop {
            // A random 32-byte string is a valid scalar but for ~2^-128.
            if let Ok(k) = p256::SecretKey::from_slice(&random::<32>()) {
                break k;
            }
        };
        let point = ec.public_key().to_sec1_bytes();
        let (x, y) = (&point[1..33], &point[33..65]);
        let es256 = EncodingKey::from_ec_der(ec.to_pkcs8_der()?.as_bytes());
        let rsa = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)?;
        let rs256 = EncodingKey::from_rsa_der(rsa.to_pkcs1_der()?.as_bytes());
        let secret = URL_SAFE_NO_PAD.encode(random::<32>());
        Ok(Self {
            es256,
            es256_public: (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
            rs256,
            rs256_public: (
                URL_SAFE_NO_PAD.encode(rsa.n_bytes()),
                URL_SAFE_NO_PAD.encode(rsa.e_bytes()),
            ),
            hs256: EncodingKey::from_secret(secret.as_bytes())?,
            secret,
        })
    }

    /// The public keys as a JWKS.
    pub fn jwks(&self) -> Value {
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "es-1", "alg": "ES256", "use": "sig",
             "x": self.es256_public.0, "y": self.es256_public.1},
            {"kty": "RSA", "kid": "rs-1", "alg": "RS256", "use": "sig",
             "n": self.rs256_public.0, "e": self.rs256_public.1},
        ]})
    }

    /// The edge's `identity` value for this provider.
    pub fn identity_json(&self) -> String {
        json!({"issuer": ISSUER, "audience": AUDIENCE, "jwks": self.jwks()}).to_string()
    }

    /// The HS256 secret (the edge's `RIDER_TOKEN_SECRET`).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A token for `rider` valid for an hour from `now_secs`.
    pub fn token(&self, alg: Alg, rider: &str, now_secs: u64) -> String {
        self.sign(
            alg,
            &json!({"sub": rider, "iss": ISSUER, "aud": AUDIENCE,
                    "iat": now_secs, "exp": now_secs + 3600}),
        )
    }

    /// A token with any claims (to test refusals).
    pub fn sign(&self, alg: Alg, claims: &Value) -> String {
        let (header, key) = match alg {
            Alg::Es256 => (with_kid(Algorithm::ES256, "es-1"), &self.es256),
            Alg::Rs256 => (with_kid(Algorithm::RS256, "rs-1"), &self.rs256),
            Alg::Hs256 => (Header::new(Algorithm::HS256), &self.hs256),
        };
        encode(&header, claims, key).expect("a JSON object signs")
    }
}

fn with_kid(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h
}

/// Seconds since the epoch, for tokens minted now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::identity::{TokenRefusal, Verifier};
    use shared::time::Timestamp;

    fn verifier(p: &Provider) -> Verifier {
        let config = shared::api::admin::parse_identity(&p.identity_json()).expect("identity");
        assert!(config.skipped().is_empty(), "{:?}", config.skipped());
        Verifier::new(config, Some(p.secret().as_bytes())).expect("verifier")
    }

    #[test]
    fn every_algorithm_verifies_and_another_providers_keys_do_not() {
        let (p, other) = (Provider::new().expect("p"), Provider::new().expect("other"));
        let v = verifier(&p);
        let now = 1_800_000_000;
        let at = Timestamp(now * 1000);
        for alg in [Alg::Es256, Alg::Rs256, Alg::Hs256] {
            let rider = v
                .verify(&p.token(alg, "rider-9", now), at)
                .expect("verified");
            assert_eq!(rider.id, "rider-9", "{alg:?}");
            assert_eq!(
                v.verify(&other.token(alg, "rider-9", now), at),
                Err(TokenRefusal::Signature),
                "{alg:?}"
            );
        }
        // A key id the JWKS does not hold.
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("es-2".into());
        let claims = json!({"sub": "r", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 60});
        let unknown = encode(&h, &claims, &p.es256).expect("sign");
        assert_eq!(v.verify(&unknown, at), Err(TokenRefusal::UnknownKey));
        // An RS256 header over an ES256 signature.
        let es = p.token(Alg::Es256, "r", now);
        let (_, rest) = es.split_once('.').expect("jwt");
        let swapped = format!(
            "{}.{rest}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rs-1"}"#)
        );
        assert_eq!(v.verify(&swapped, at), Err(TokenRefusal::Signature));
    }
}
