//! The admin's KV values (`wrangler kv key put`): their JSON, and the one
//! parser of each, used by the edge where it reads them and by the
//! origin's `check` command before an operator puts them.
//!
//! Every parser is strict: unknown fields are refused, objects must be
//! complete, and a value that is not exactly what the schema says is an
//! error with its reason — never "not set". Settings that protect riders
//! (caps, the emergency cap, an emergency) fail closed where they are read.
//!
//! | key | value |
//! | --- | --- |
//! | `regions` | the region registry ([`RegistryWire`]) |
//! | `tariff:<region>:<class>` | a tariff with its booking terms ([`TariffWire`]) |
//! | `caps:<region>` | `{"min":1.0,"max":4.0}` ([`CapsWire`]) |
//! | `emergency_cap` | `1.5` or `"1.5"`: a ceiling over every region |
//! | `emergency:<region>` | `true` or `false` (quoted or not) |
//! | `experiment:<region>` | [`super::ExperimentWire`], or an array of them |
//! | `identity` | riders' token issuer, audience and JWKS ([`IdentityWire`]) |

use serde::{Deserialize, Serialize};

use crate::booking::{
    Terms, DEFAULT_CANCELLATION_FEE, DEFAULT_CANCELLATION_GRACE, DEFAULT_REPRICE_TOLERANCE_PERCENT,
};
use crate::fare::{Currency, Tariff, VehicleClass};
use crate::geo::Level;
use crate::quote::Ident;
use crate::regions::{InvalidRegistry, RegionSpec, Registry, Shape, ZoneSpec};
use crate::surge::{Caps, Multiplier};
use crate::time::Millis;

/// The key of the region registry.
pub const REGISTRY_KEY: &str = "regions";
/// The key of the riders' identity settings.
pub const IDENTITY_KEY: &str = "identity";
/// The key of the global emergency cap.
pub const EMERGENCY_CAP_KEY: &str = "emergency_cap";

/// A GeoJSON geometry: a polygon or a multi-polygon of
/// `[longitude, latitude]` positions (RFC 7946).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "coordinates", deny_unknown_fields)]
pub enum GeometryWire {
    /// Rings: the outer one, then holes.
    Polygon(Vec<Vec<[f64; 2]>>),
    /// Polygons.
    MultiPolygon(Vec<Vec<Vec<[f64; 2]>>>),
}

impl GeometryWire {
    fn shape(&self) -> Result<Shape, String> {
        let rings = match self {
            Self::Polygon(rings) => rings.clone(),
            Self::MultiPolygon(parts) => parts.iter().flatten().cloned().collect(),
        };
        Shape::new(rings).map_err(|e| e.to_string())
    }
}

/// A named zone in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneWire {
    /// Unique in its region.
    pub id: String,
    /// What riders and drivers read.
    pub name: String,
    /// Where it is.
    pub boundary: GeometryWire,
    /// Its lowest multiplier (default: the region's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_multiplier: Option<f64>,
    /// Its highest multiplier (default: the region's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_multiplier: Option<f64>,
    /// `false`: the zone never surges (default `true`).
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

fn default_level() -> u8 {
    crate::geo::DEFAULT_LEVEL.get()
}

/// A region in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionWire {
    /// Its id (1-64 of `A-Za-z0-9_-`).
    pub id: String,
    /// ISO 4217 code its tariffs charge in.
    pub currency: String,
    /// Local standard time, minutes ahead of UTC (default 0).
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Its pricing cells' S2 level (default 13).
    #[serde(default = "default_level")]
    pub level: u8,
    /// Whose `tariff:<region>:<class>` keys it prices with (default: its
    /// own id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_region: Option<String>,
    /// Where it is.
    pub boundary: GeometryWire,
    /// Its named zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneWire>,
}

/// The `regions` value: every region the service prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryWire {
    /// The regions; where two overlap, the first listed holds the point.
    pub regions: Vec<RegionWire>,
}

/// The pricing cell levels a region may use: about 40 km² to 0.05 km².
pub const REGION_LEVELS: std::ops::RangeInclusive<u8> = 10..=15;

fn multiplier(value: Option<f64>, what: &str) -> Result<Option<Multiplier>, String> {
    value
        .map(|v| Multiplier::from_f64(v).map_err(|e| format!("{what}: {e}")))
        .transpose()
}

impl RegionWire {
    fn spec(&self) -> Result<RegionSpec, String> {
        let id = Ident::new(&self.id).map_err(|e| format!("id: {e}"))?;
        let at = |what: &str, e: String| format!("region {id}: {what}: {e}");
        let currency = Currency::new(&self.currency).map_err(|e| at("currency", e.to_string()))?;
        if !REGION_LEVELS.contains(&self.level) {
            return Err(at(
                "level",
                format!(
                    "{} is outside {}..={}",
                    self.level,
                    REGION_LEVELS.start(),
                    REGION_LEVELS.end()
                ),
            ));
        }
        let level = Level::new(self.level).map_err(|e| at("level", e.to_string()))?;
        let tariff_region = match &self.tariff_region {
            None => id.clone(),
            Some(t) => Ident::new(t).map_err(|e| at("tariff_region", e.to_string()))?,
        };
        let boundary = self.boundary.shape().map_err(|e| at("boundary", e))?;
        let zones = self
            .zones
            .iter()
            .map(|z| {
                let zat = |what: &str, e: String| at(&format!("zone {}: {what}", z.id), e);
                Ok(ZoneSpec {
                    id: Ident::new(&z.id).map_err(|e| zat("id", e.to_string()))?,
                    name: z.name.clone(),
                    boundary: z.boundary.shape().map_err(|e| zat("boundary", e))?,
                    min: multiplier(z.min_multiplier, "min_multiplier")
                        .map_err(|e| zat("caps", e))?,
                    max: multiplier(z.max_multiplier, "max_multiplier")
                        .map_err(|e| zat("caps", e))?,
                    active: z.active,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RegionSpec {
            id,
            boundary,
            currency,
            utc_offset_minutes: self.utc_offset_minutes,
            level,
            tariff_region,
            zones,
        })
    }
}

/// Parses and validates the `regions` value: every field checked, every
/// boundary covered. The error says where and why.
pub fn parse_registry(text: &str) -> Result<Registry, String> {
    let wire: RegistryWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let specs = wire
        .regions
        .iter()
        .map(RegionWire::spec)
        .collect::<Result<Vec<_>, String>>()?;
    Registry::new(specs).map_err(|e: InvalidRegistry| e.to_string())
}

/// `caps:<region>`: both bounds, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapsWire {
    /// The lowest multiplier.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

/// Parses a region's caps, strictly.
pub fn parse_caps(text: &str) -> Result<Caps, String> {
    let w: CapsWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let min = Multiplier::from_f64(w.min).map_err(|e| format!("min: {e}"))?;
    let max = Multiplier::from_f64(w.max).map_err(|e| format!("max: {e}"))?;
    Caps::new(min, max).map_err(|e| e.to_string())
}

/// Parses the emergency cap: a number (bare or as a JSON string) that is
/// a valid multiplier. `"1.5x"`, `""` and `null` are errors.
pub fn parse_emergency_cap(text: &str) -> Result<Multiplier, String> {
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("not a number or a quoted number: {e}"))?;
    let n = match &v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{v} is not a number or a quoted number"))?;
    Multiplier::from_f64(n).map_err(|e| e.to_string())
}

/// Parses an emergency declaration: `true` or `false`, quoted or not.
pub fn parse_emergency_flag(text: &str) -> Result<bool, String> {
    match text.trim().trim_matches('"') {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!(
            "{:?} is neither true nor false",
            other.chars().take(32).collect::<String>()
        )),
    }
}

/// `tariff:<region>:<class>`: amounts in minor units of `currency`, and
/// optionally the booking terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffWire {
    /// ISO 4217 code.
    pub currency: String,
    /// Flat start amount.
    pub base: i64,
    /// Per kilometre.
    pub per_km: i64,
    /// Per minute.
    pub per_minute: i64,
    /// Flat booking fee (never surged).
    pub booking_fee: i64,
    /// The least a trip costs.
    pub minimum_fare: i64,
    /// Charged for a rider's late cancellation (default 500 minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_fee: Option<i64>,
    /// Free cancellation for this long after confirming (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_grace_seconds: Option<u64>,
    /// How far a trip may differ from its estimate before it is repriced
    /// (default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprice_tolerance_percent: Option<u32>,
}

/// Parses a tariff value with its booking terms (the defaults for those it
/// does not set), strictly.
pub fn parse_terms(text: &str) -> Result<Terms, String> {
    let w: TariffWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let tariff = Tariff {
        currency: Currency::new(&w.currency).map_err(|e| e.to_string())?,
        base: w.base,
        per_km: w.per_km,
        per_minute: w.per_minute,
        booking_fee: w.booking_fee,
        minimum_fare: w.minimum_fare,
    }
    .validate()
    .map_err(|e| e.to_string())?;
    let fee = w.cancellation_fee.unwrap_or(DEFAULT_CANCELLATION_FEE);
    let tolerance = w
        .reprice_tolerance_percent
        .unwrap_or(DEFAULT_REPRICE_TOLERANCE_PERCENT);
    let grace = w
        .cancellation_grace_seconds
        .map_or(DEFAULT_CANCELLATION_GRACE, Millis::from_secs);
    if !(0..=1_000_000).contains(&fee) {
        return Err("cancellation_fee must be 0..=1000000 minor units".into());
    }
    if tolerance > 1_000 {
        return Err("reprice_tolerance_percent must be at most 1000".into());
    }
    if grace > Millis::from_secs(86_400) {
        return Err("cancellation_grace_seconds must be at most 86400".into());
    }
    Ok(Terms {
        tariff,
        cancellation_fee: fee,
        cancellation_grace: grace,
        reprice_tolerance_percent: tolerance,
    })
}

/// What an admin key holds, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKey {
    /// `regions`.
    Registry,
    /// `tariff:<region>:<class>`.
    Tariff(Ident, VehicleClass),
    /// `caps:<region>`.
    Caps(Ident),
    /// `emergency_cap`.
    EmergencyCap,
    /// `emergency:<region>`.
    Emergency(Ident),
    /// `experiment:<region>`.
    Experiment(Ident),
    /// `identity`.
    Identity,
}

impl AdminKey {
    /// Reads a key's name; an error names the keys there are.
    pub fn parse(key: &str) -> Result<Self, String> {
        let region = |r: &str| Ident::new(r).map_err(|e| format!("{key}: {e}"));
        match key.split(':').collect::<Vec<_>>().as_slice() {
            [REGISTRY_KEY] => Ok(Self::Registry),
            [EMERGENCY_CAP_KEY] => Ok(Self::EmergencyCap),
            [IDENTITY_KEY] => Ok(Self::Identity),
            ["tariff", r, class] => Ok(Self::Tariff(
                region(r)?,
                VehicleClass::parse(class).map_err(|e| format!("{key}: {e}"))?,
            )),
            ["caps", r] => Ok(Self::Caps(region(r)?)),
            ["emergency", r] => Ok(Self::Emergency(region(r)?)),
            ["experiment", r] => Ok(Self::Experiment(region(r)?)),
            _ => Err(format!(
                "{key:?} is not an admin key: regions, tariff:<region>:<class>, caps:<region>, emergency_cap, emergency:<region>, experiment:<region>, identity"
            )),
        }
    }

    /// Checks a value for this key with the parser the edge uses, and says
    /// what it holds.
    pub fn check(&self, text: &str) -> Result<String, String> {
        match self {
            Self::Registry => parse_registry(text).map(|r| {
                let zones: usize = r.regions().iter().map(|x| x.zones().len()).sum();
                format!("{} regions, {zones} named zones", r.regions().len())
            }),
            Self::Tariff(..) => parse_terms(text).map(|t| {
                format!(
                    "a tariff in {} (minimum fare {} minor units)",
                    t.tariff.currency, t.tariff.minimum_fare
                )
            }),
            Self::Caps(_) => parse_caps(text).map(|c| format!("caps {} to {}", c.min(), c.max())),
            Self::EmergencyCap => {
                parse_emergency_cap(text).map(|m| format!("an emergency cap of {m}"))
            }
            Self::Emergency(_) => parse_emergency_flag(text).map(|d| {
                if d {
                    "an emergency declared".to_owned()
                } else {
                    "no emergency".to_owned()
                }
            }),
            Self::Experiment(region) => {
                let (valid, refused) = super::parse_experiments(region, text);
                if refused.is_empty() {
                    Ok(format!("{} experiments", valid.len()))
                } else {
                    Err(refused.join("; "))
                }
            }
            Self::Identity => parse_identity(text).map(|c| {
                let mut what = format!("{} JWKS keys", c.key_count());
                for s in c.skipped() {
                    what.push_str("; skipped ");
                    what.push_str(s);
                }
                what
            }),
        }
    }
}

/// The host of a plain `http://` URL that is not loopback (a token sent
/// there crosses the network in clear), if `url` is one: the one rule the
/// origin (its `edge_url`) and the edge (its `ORIGIN_URL`) refuse to send
/// a bearer token by unless the operator opts in.
pub fn insecure_host(url: &str) -> Option<String> {
    let rest = url.trim().strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str =
        r#"{"type":"Polygon","coordinates":[[[10,10],[11,10],[11,11],[10,11],[10,10]]]}"#;

    #[test]
    fn safety_values_are_strict() {
        assert!(parse_caps(r#"{"min":1.2,"max":3.0}"#).is_ok());
        assert!(parse_caps(r#"{"max":2.0}"#).is_err(), "min is required");
        assert!(parse_caps(r#"{"min":1.0,"max":2.0,"mx":3}"#).is_err());
        assert!(parse_caps(r#"{"min":3.0,"max":1.2}"#).is_err());
        assert_eq!(parse_emergency_cap("1.5").map(|m| m.tenths()), Ok(15));
        assert_eq!(parse_emergency_cap("\"2\"").map(|m| m.tenths()), Ok(20));
        for bad in ["\"1.5x\"", "1.5x", "", "null", "0.5", "[1.5]"] {
            assert!(parse_emergency_cap(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_emergency_flag("true"), Ok(true));
        assert_eq!(parse_emergency_flag("\"false\""), Ok(false));
        assert!(parse_emergency_flag("yes").is_err());
    }

    #[test]
    fn tariffs_are_strict_and_in_a_real_currency() {
        let ok = r#"{"currency":"JPY","base":300,"per_km":200,"per_minute":40,"booking_fee":100,"minimum_fare":700}"#;
        assert_eq!(parse_terms(ok).map(|t| t.tariff.currency.exponent()), Ok(0));
        assert!(parse_terms(&ok.replace("JPY", "XYZ")).is_err());
        assert!(parse_terms(&ok.replace("\"base\"", "\"bass\"")).is_err());
        assert!(parse_terms(&ok.replace(",\"minimum_fare\":700", "")).is_err());
    }

    #[test]
    fn registries_say_where_they_are_wrong() {
        let one = |extra: &str| {
            format!(r#"{{"regions":[{{"id":"a","currency":"EUR","boundary":{SQUARE}{extra}}}]}}"#)
        };
        let r = parse_registry(&one("")).expect("valid");
        assert_eq!(r.regions()[0].currency().as_str(), "EUR");
        let e = parse_registry(&one(r#","level":22"#)).expect_err("level");
        assert!(e.contains("region a: level"), "{e}");
        let e = parse_registry(&one(r#","colour":"red""#)).expect_err("unknown field");
        assert!(e.contains("colour"), "{e}");
        let e = parse_registry(&one(r#","zones":[{"id":"z","name":"Z","boundary":{"type":"Polygon","coordinates":[[[10,10],[11,10],[10,10]]]}}]"#))
            .expect_err("bad zone");
        assert!(e.contains("zone z: boundary"), "{e}");
        let e = parse_registry(&one("").replace("EUR", "EUX")).expect_err("currency");
        assert!(e.contains("currency"), "{e}");
    }

    #[test]
    fn keys_name_their_parser() {
        assert_eq!(AdminKey::parse("regions"), Ok(AdminKey::Registry));
        assert!(matches!(
            AdminKey::parse("tariff:sf:premium"),
            Ok(AdminKey::Tariff(..))
        ));
        assert!(AdminKey::parse("tariff:sf").is_err());
        assert!(AdminKey::parse("cap:sf").is_err());
        let caps = AdminKey::parse("caps:sf").expect("key");
        assert!(caps.check(r#"{"max":2.0}"#).is_err());
        assert_eq!(
            AdminKey::EmergencyCap.check("1.5"),
            Ok("an emergency cap of 1.5".into())
        );
    }
}

/// `identity`: how the edge verifies riders' tokens
/// ([`crate::identity`]). Absent: riders are anonymous.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityWire {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// A value the token's `aud` must hold.
    pub audience: String,
    /// The provider's public keys (ES256 on P-256, RS256), as it publishes
    /// them; omit for HS256 tokens only (the `RIDER_TOKEN_SECRET` secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<jsonwebtoken::jwk::JwkSet>,
    /// Clock skew allowed on `exp` and `nbf` (default 30, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_seconds: Option<u64>,
}

/// Parses the identity settings, strictly (a JWKS key the edge cannot use
/// is skipped and named by [`crate::identity::IdentityConfig::skipped`];
/// a JWKS with none it can use is refused).
pub fn parse_identity(text: &str) -> Result<crate::identity::IdentityConfig, String> {
    let w: IdentityWire = serde_json::from_str(text).map_err(|e| e.to_string())?;
    crate::identity::IdentityConfig::new(&w.issuer, &w.audience, w.leeway_seconds, w.jwks.as_ref())
}
