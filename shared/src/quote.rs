//! Signed quotes: a price promise any edge can verify with no shared state.
//!
//! A quote token is `base64url(canonical) "." base64url(hmac)`, where
//! `canonical` is a `|`-separated line of every field that matters to the
//! price, in a fixed order, prefixed by a format tag and the signing key's
//! id. The HMAC-SHA256 covers exactly those bytes, so changing any field
//! (or the key id) breaks the signature; expiry is a signed field too.
//!
//! Keys rotate through a [`Keyring`]: new quotes are signed with the active
//! key, and older keys still verify until their quotes have expired.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::desk::Source;
use crate::experiment::ArmStamp;
use crate::fare::{Currency, Tariff, Terms, VehicleClass};
use crate::geo::Cell;
use crate::surge::Multiplier;
use crate::time::{Millis, Timestamp};

type HmacSha256 = Hmac<Sha256>;

/// The canonical format tag; bump it when the field list changes.
/// `eq2` appends the multiplier's source. Claims without a source are
/// signed as `eq1`, exactly as before the source existed, so tokens issued
/// by an older worker still verify (with no source).
const FORMAT: &str = "eq2";
/// `eq3` appends an experiment's arm to `eq2`: the experiment, the arm,
/// its policy's version and the quote's unit of analysis. Claims outside an experiment are signed as `eq2`
/// (or `eq1`), exactly as before.
const FORMAT_ARM: &str = "eq3";
/// The format of claims without a source.
const FORMAT_V1: &str = "eq1";
/// `eq4` appends, after the source, the terms the quote was priced on
/// (the tariff's five amounts, the cancellation fee, the grace in ms and
/// the repricing tolerance; the currency is the quote's), then an
/// experiment's arm when there is one: a quote carries its own terms, so
/// its booking is charged on them whatever the admin's key says later.
const FORMAT_TERMS: &str = "eq4";

/// Longest token accepted for verification (bytes): real ones are ~300.
pub const MAX_TOKEN_LEN: usize = 1_024;

/// An identifier safe to embed in the canonical line: 1–64 characters of
/// `[A-Za-z0-9_-]`. Used for quote ids, key ids and region ids.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

/// Not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not 1-64 characters of A-Z, a-z, 0-9, '_' or '-'")]
pub struct InvalidIdent(pub String);

impl Ident {
    /// Validates an identifier.
    pub fn new(s: &str) -> Result<Self, InvalidIdent> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidIdent(s.chars().take(70).collect()))
        }
    }

    /// The identifier text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a quote promises. Signed as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteClaims {
    /// Unique id (chosen by the edge).
    pub quote_id: Ident,
    /// Region whose grid priced it.
    pub region: Ident,
    /// Pickup cell.
    pub cell: Cell,
    /// Class priced.
    pub class: VehicleClass,
    /// Multiplier applied.
    pub surge: Multiplier,
    /// Fare before surge and fees, minor units.
    pub base_fare: i64,
    /// The price promised, minor units.
    pub final_fare: i64,
    /// Currency of both amounts.
    pub currency: Currency,
    /// Estimated road distance.
    pub distance_m: u32,
    /// Estimated duration.
    pub duration_s: u32,
    /// Grid generation the multiplier came from (0: none).
    pub grid_generation: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// It may not be confirmed at or after this instant.
    pub expires_at: Timestamp,
    /// Where the multiplier came from (`None` for tokens of format `eq1`).
    pub source: Option<Source>,
    /// The experiment arm that priced it, if any: signed, so a quote cannot
    /// be moved to another arm.
    pub arm: Option<ArmStamp>,
    /// The terms it was priced on, in its currency (`None` for tokens of
    /// formats before `eq4`): what its booking is charged on.
    pub terms: Option<Terms>,
}

/// Why a quote token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// Not of the token's shape, or a field does not parse.
    #[error("malformed quote token")]
    Malformed,
    /// Signed with a key id this keyring does not hold (retired or forged).
    #[error("quote signed with an unknown key")]
    UnknownKey,
    /// The signature does not match the fields: tampered or forged.
    #[error("quote signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("quote expired at {0}")]
    Expired(Timestamp),
}

/// Why a keyring was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKeyring {
    /// No keys at all.
    #[error("the keyring is empty")]
    Empty,
    /// An entry is not `id:secret`.
    #[error("keyring entry {0} is not of the form id:secret")]
    Entry(usize),
    /// A key id is not an identifier.
    #[error("key id: {0}")]
    KeyId(#[from] InvalidIdent),
    /// A secret shorter than 16 bytes.
    #[error("secret of key {0} is shorter than 16 bytes")]
    ShortSecret(String),
    /// The same id twice.
    #[error("key id {0} appears twice")]
    Duplicate(String),
}

/// Signing keys by id; the first one given signs, all of them verify.
///
/// Each key is held as an HMAC already keyed with it (its inner and outer
/// pads hashed once), so signing or verifying a quote clones that state
/// instead of re-deriving it: two SHA-256 blocks saved per quote.
#[derive(Clone)]
pub struct Keyring {
    active: Ident,
    keys: BTreeMap<Ident, HmacSha256>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring from `(id, secret)` pairs; the first signs.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, InvalidKeyring> {
        let mut map = BTreeMap::new();
        let mut active = None;
        for (id, secret) in keys {
            let id = Ident::new(id)?;
            if secret.len() < 16 {
                return Err(InvalidKeyring::ShortSecret(id.0));
            }
            if map.contains_key(&id) {
                return Err(InvalidKeyring::Duplicate(id.0));
            }
            active.get_or_insert_with(|| id.clone());
            // HMAC takes keys of any length: this cannot fail.
            let mac = HmacSha256::new_from_slice(secret)
                .map_err(|_| InvalidKeyring::ShortSecret(id.0.clone()))?;
            map.insert(id, mac);
        }
        let active = active.ok_or(InvalidKeyring::Empty)?;
        Ok(Self { active, keys: map })
    }

    /// Parses `id:secret,id:secret,...` (how the secret is stored in
    /// `wrangler secret` and the origin's config); the first entry signs.
    pub fn parse(spec: &str) -> Result<Self, InvalidKeyring> {
        let mut pairs = Vec::new();
        for (i, entry) in spec.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (id, secret) = entry.split_once(':').ok_or(InvalidKeyring::Entry(i))?;
            pairs.push((id.trim(), secret.trim().as_bytes()));
        }
        Self::new(pairs)
    }

    /// The id of the signing key.
    pub fn active_key_id(&self) -> &Ident {
        &self.active
    }

    fn mac(&self, kid: &Ident) -> Option<HmacSha256> {
        self.keys.get(kid).cloned()
    }

    /// A keyed digest of `input` under the active key, separated from
    /// every other use of the key by `label`: for keys that must not be
    /// computable from what they are derived from (a client's demand key,
    /// [`crate::events::client_key`]). The first 8 bytes of
    /// HMAC-SHA256(key, label 0x00 input).
    pub fn digest(&self, label: &str, input: &str) -> u64 {
        let Some(mut mac) = self.mac(&self.active) else {
            // The active key is in the map by construction.
            return 0;
        };
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(input.as_bytes());
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first)
    }

    /// Signs claims with the active key and returns the token.
    pub fn sign(&self, claims: &QuoteClaims) -> String {
        self.seal(&canonical(&self.active, claims))
    }

    /// The token of a canonical line (`tag|kid|...`, built with the active
    /// key's id): the line and its HMAC, each base64url.
    pub(crate) fn seal(&self, canonical: &str) -> String {
        let mut out = URL_SAFE_NO_PAD.encode(canonical.as_bytes());
        if let Some(mut mac) = self.mac(&self.active) {
            mac.update(canonical.as_bytes());
            out.push('.');
            out.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        }
        out
    }

    /// Checks a token's shape, format tag (one of `tags`) and signature (in
    /// constant time); returns the tag and the fields after the key id.
    pub(crate) fn open(
        &self,
        token: &str,
        tags: &[&'static str],
    ) -> Result<(&'static str, String), QuoteError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(QuoteError::Malformed);
        }
        let (body, sig) = token.split_once('.').ok_or(QuoteError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| QuoteError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| QuoteError::Malformed)?;
        let text = std::str::from_utf8(&body).map_err(|_| QuoteError::Malformed)?;
        let mut fields = text.splitn(3, '|');
        let found = fields.next().ok_or(QuoteError::Malformed)?;
        let tag = *tags
            .iter()
            .find(|t| **t == found)
            .ok_or(QuoteError::Malformed)?;
        let kid = fields
            .next()
            .and_then(|k| Ident::new(k).ok())
            .ok_or(QuoteError::Malformed)?;
        let mut mac = self.mac(&kid).ok_or(QuoteError::UnknownKey)?;
        mac.update(&body);
        mac.verify_slice(&sig)
            .map_err(|_| QuoteError::BadSignature)?;
        Ok((tag, fields.next().unwrap_or("").to_owned()))
    }

    /// Verifies a token's signature (in constant time) and expiry.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<QuoteClaims, QuoteError> {
        let (tag, rest) = self.open(token, &[FORMAT_TERMS, FORMAT_ARM, FORMAT, FORMAT_V1])?;
        // Signed by us: parse failures below mean a format bug, still refused.
        let claims = parse_claims(&mut rest.split('|'), tag).ok_or(QuoteError::Malformed)?;
        if now >= claims.expires_at {
            return Err(QuoteError::Expired(claims.expires_at));
        }
        Ok(claims)
    }
}

fn canonical(kid: &Ident, c: &QuoteClaims) -> String {
    // Built by appending rather than `format!`: this runs for every quote,
    // and the formatting machinery is a measurable share of a quote in wasm.
    let mut ints = itoa::Buffer::new();
    let mut out = String::with_capacity(192);
    let field = |out: &mut String, text: &str| {
        out.push('|');
        out.push_str(text);
    };
    out.push_str(match (c.source, &c.arm, &c.terms) {
        (_, _, Some(_)) => FORMAT_TERMS,
        (_, Some(_), None) => FORMAT_ARM,
        (Some(_), None, None) => FORMAT,
        (None, None, None) => FORMAT_V1,
    });
    field(&mut out, kid.as_str());
    field(&mut out, c.quote_id.as_str());
    field(&mut out, c.region.as_str());
    field(&mut out, &c.cell.token());
    field(&mut out, c.class.as_str());
    field(&mut out, ints.format(c.surge.tenths()));
    field(&mut out, ints.format(c.base_fare));
    field(&mut out, ints.format(c.final_fare));
    field(&mut out, c.currency.as_str());
    field(&mut out, ints.format(c.distance_m));
    field(&mut out, ints.format(c.duration_s));
    field(&mut out, ints.format(c.grid_generation));
    field(&mut out, ints.format(c.issued_at.0));
    field(&mut out, ints.format(c.expires_at.0));
    if c.source.is_some() || c.arm.is_some() || c.terms.is_some() {
        // `eq3` and `eq4` always carry a source; claims with an arm or
        // terms and no source are a caller's slip, signed as priced from
        // the default.
        field(&mut out, c.source.unwrap_or(Source::Default).as_str());
    }
    if let Some(t) = &c.terms {
        for n in [
            t.tariff.base,
            t.tariff.per_km,
            t.tariff.per_minute,
            t.tariff.booking_fee,
            t.tariff.minimum_fare,
            t.cancellation_fee,
        ] {
            field(&mut out, ints.format(n));
        }
        field(&mut out, ints.format(t.cancellation_grace.0));
        field(&mut out, ints.format(t.reprice_tolerance_percent));
    }
    if let Some(a) = &c.arm {
        field(&mut out, a.experiment.as_str());
        field(&mut out, a.arm.as_str());
        field(&mut out, a.policy.as_str());
        field(&mut out, ints.format(a.unit));
    }
    out
}

fn parse_claims<'a>(f: &mut impl Iterator<Item = &'a str>, tag: &str) -> Option<QuoteClaims> {
    let mut f = f.peekable();
    let mut claims = QuoteClaims {
        quote_id: Ident::new(f.next()?).ok()?,
        region: Ident::new(f.next()?).ok()?,
        cell: Cell::from_token(f.next()?).ok()?,
        class: VehicleClass::parse(f.next()?).ok()?,
        surge: Multiplier::from_tenths(f.next()?.parse().ok()?).ok()?,
        base_fare: f.next()?.parse().ok()?,
        final_fare: f.next()?.parse().ok()?,
        currency: Currency::new(f.next()?).ok()?,
        distance_m: f.next()?.parse().ok()?,
        duration_s: f.next()?.parse().ok()?,
        grid_generation: f.next()?.parse().ok()?,
        issued_at: Timestamp(f.next()?.parse().ok()?),
        expires_at: Timestamp(f.next()?.parse().ok()?),
        source: match tag {
            FORMAT_V1 => None,
            _ => Some(Source::parse(f.next()?).ok()?),
        },
        arm: None,
        terms: None,
    };
    if tag == FORMAT_TERMS {
        let mut n = || f.next()?.parse::<i64>().ok();
        let tariff = Tariff {
            currency: claims.currency,
            base: n()?,
            per_km: n()?,
            per_minute: n()?,
            booking_fee: n()?,
            minimum_fare: n()?,
        };
        claims.terms = Some(Terms {
            tariff,
            cancellation_fee: n()?,
            cancellation_grace: Millis(f.next()?.parse().ok()?),
            reprice_tolerance_percent: f.next()?.parse().ok()?,
        });
    }
    // `eq3` always has an arm; `eq4` has one when fields remain.
    if tag == FORMAT_ARM || (tag == FORMAT_TERMS && f.peek().is_some()) {
        claims.arm = Some(ArmStamp {
            experiment: Ident::new(f.next()?).ok()?,
            arm: Ident::new(f.next()?).ok()?,
            policy: Ident::new(f.next()?).ok()?,
            unit: f.next()?.parse().ok()?,
        });
    }
    if f.next().is_some() {
        return None;
    }
    Some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{LatLng, DEFAULT_LEVEL};

    pub(crate) fn claims() -> QuoteClaims {
        QuoteClaims {
            quote_id: Ident::new("q_0123456789abcdef").expect("id"),
            region: Ident::new("sf").expect("region"),
            cell: Cell::at(LatLng::new(37.7749, -122.4194).expect("ll"), DEFAULT_LEVEL),
            class: VehicleClass::Standard,
            surge: Multiplier::from_tenths(13).expect("m"),
            base_fare: 850,
            final_fare: 1_105,
            currency: Currency::USD,
            distance_m: 2_100,
            duration_s: 720,
            grid_generation: 42,
            issued_at: Timestamp(1_000_000),
            expires_at: Timestamp(1_300_000),
            source: Some(Source::Fresh),
            arm: None,
            terms: None,
        }
    }

    fn ring() -> Keyring {
        Keyring::parse("k2:second-secret-0123456789,k1:first-secret-0123456789").expect("ring")
    }

    #[test]
    fn sign_then_verify() {
        let r = ring();
        let t = r.sign(&claims());
        assert_eq!(r.verify(&t, Timestamp(1_000_000)), Ok(claims()));
        assert_eq!(
            r.verify(&t, Timestamp(1_300_000)),
            Err(QuoteError::Expired(Timestamp(1_300_000)))
        );
    }

    #[test]
    fn rotation_keeps_old_quotes_valid_and_drops_retired_keys() {
        let old = Keyring::parse("k1:first-secret-0123456789").expect("old");
        let token = old.sign(&claims());
        // k2 now signs; k1 still verifies.
        assert_eq!(ring().verify(&token, Timestamp(1_000_001)), Ok(claims()));
        // k1 retired.
        let retired = Keyring::parse("k2:second-secret-0123456789").expect("new");
        assert_eq!(
            retired.verify(&token, Timestamp(1_000_001)),
            Err(QuoteError::UnknownKey)
        );
    }

    #[test]
    fn forged_key_with_same_id_fails() {
        let forger = Keyring::parse("k2:not-the-real-secret-000").expect("forger");
        let token = forger.sign(&claims());
        assert_eq!(
            ring().verify(&token, Timestamp(1_000_000)),
            Err(QuoteError::BadSignature)
        );
    }

    #[test]
    fn an_arm_is_signed_and_cannot_be_moved() {
        let r = ring();
        let id = |s: &str| Ident::new(s).expect("id");
        let mut c = claims();
        c.arm = Some(ArmStamp {
            experiment: id("e1"),
            arm: id("treatment"),
            policy: id("forecast-0123abcd"),
            unit: 7,
        });
        let token = r.sign(&c);
        assert_eq!(r.verify(&token, Timestamp(1_000_000)), Ok(c.clone()));
        // Moving the quote to the control arm breaks the signature.
        let (body, sig) = token.split_once('.').expect("two parts");
        let line = String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("utf8");
        assert!(line.starts_with("eq3|"), "{line}");
        let moved = line.replace("|treatment|", "|control|");
        assert_ne!(moved, line);
        let forged = [URL_SAFE_NO_PAD.encode(moved), sig.to_owned()].join(".");
        assert_eq!(
            r.verify(&forged, Timestamp(1_000_000)),
            Err(QuoteError::BadSignature)
        );
        // So does moving it to another unit (window or rider).
        let other_unit = format!("{}8", line.strip_suffix('7').expect("unit 7 last"));
        let forged = [URL_SAFE_NO_PAD.encode(other_unit), sig.to_owned()].join(".");
        assert_eq!(
            r.verify(&forged, Timestamp(1_000_000)),
            Err(QuoteError::BadSignature)
        );
        // Dropping the arm (signing as eq2 under the old signature) fails too.
        let dropped = line.replacen("eq3|", "eq2|", 1);
        let dropped = dropped.rsplitn(5, '|').last().expect("prefix").to_owned();
        let forged = [URL_SAFE_NO_PAD.encode(dropped), sig.to_owned()].join(".");
        assert_eq!(
            r.verify(&forged, Timestamp(1_000_000)),
            Err(QuoteError::BadSignature)
        );
        // Without an arm the token is eq2, as before experiments.
        let plain = r.sign(&claims());
        let line = URL_SAFE_NO_PAD
            .decode(plain.split_once('.').expect("two").0)
            .expect("b64");
        assert!(line.starts_with(b"eq2|"));
    }

    #[test]
    fn garbage_is_malformed() {
        let r = ring();
        for t in ["", ".", "abc", "abc.def", "!!!.???", &"a".repeat(2_000)] {
            assert_eq!(
                r.verify(t, Timestamp(0)),
                Err(QuoteError::Malformed),
                "{t:?}"
            );
        }
    }

    #[test]
    fn keyring_validation_and_debug_hides_secrets() {
        assert!(matches!(Keyring::parse(""), Err(InvalidKeyring::Empty)));
        assert!(matches!(
            Keyring::parse("k1:short"),
            Err(InvalidKeyring::ShortSecret(_))
        ));
        assert!(matches!(
            Keyring::parse("nocolon"),
            Err(InvalidKeyring::Entry(0))
        ));
        assert!(matches!(
            Keyring::parse("k1:aaaaaaaaaaaaaaaaaaaa,k1:bbbbbbbbbbbbbbbbbbbbbb"),
            Err(InvalidKeyring::Duplicate(_))
        ));
        let dbg = format!("{:?}", ring());
        assert!(!dbg.contains("secret-0123"), "{dbg}");
    }
}
