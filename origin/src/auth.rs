//! Bearer tokens: producers write, readers read (grids, analytics, and
//! `/metrics` when configured so). A producer token has the scopes it is
//! given: the market (locations, demand), outcomes, the edge's events —
//! all three for `producer_tokens`, one for `market_tokens`,
//! `outcome_tokens` and `edge_event_tokens` — so a driver gateway's token
//! cannot post outcomes and the worker's cannot post locations. Several
//! tokens per role at once, so a token is rotated by adding the new one,
//! moving clients, then removing the old one.
//!
//! Tokens are kept only as SHA-256 digests, and a presented token is
//! compared against every digest of both roles with no early exit, so the
//! time a check takes says nothing about how close a guess was. Tokens are
//! never logged; refusals are logged with their reason only.

use sha2::{Digest, Sha256};

use crate::config::{invalid, AuthConfig, ConfigError};

/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a producer may post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Driver locations and demand (and a demo's clock).
    Market,
    /// Ride outcomes.
    Outcomes,
    /// The edge's event batches.
    EdgeEvents,
}

impl Scope {
    fn bit(self) -> u8 {
        match self {
            Scope::Market => 1,
            Scope::Outcomes => 2,
            Scope::EdgeEvents => 4,
        }
    }

    /// What the scope covers, for refusals.
    pub fn what(self) -> &'static str {
        match self {
            Scope::Market => "locations and demand",
            Scope::Outcomes => "ride outcomes",
            Scope::EdgeEvents => "the edge's events",
        }
    }
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A producer token with this scope.
    Producer(Scope),
    /// May read grids, analytics (and metrics when they are not open).
    Reader,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header (401 `missing_token`).
    Missing,
    /// A token that is not (or no longer) configured (401 `invalid_token`).
    Invalid,
    /// A valid token of the other role (403 `forbidden`).
    WrongRole,
}

type Digest32 = [u8; 32];

/// The configured tokens, as digests (producers with their scopes' bits).
#[derive(Clone)]
pub struct Tokens {
    producers: Vec<(Digest32, u8)>,
    readers: Vec<Digest32>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("producers", &self.producers.len())
            .field("readers", &self.readers.len())
            .finish()
    }
}

fn digest(token: &[u8]) -> Digest32 {
    Sha256::digest(token).into()
}

/// Equality of two digests in time independent of where they differ.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks one list: long enough, no whitespace.
fn check_list(name: &str, tokens: &[String]) -> Result<Vec<Digest32>, ConfigError> {
    tokens
        .iter()
        .map(|t| {
            if t.len() < MIN_TOKEN_LEN {
                Err(invalid(
                    name,
                    format!("a token is shorter than {MIN_TOKEN_LEN} characters"),
                ))
            } else if t.bytes().any(|b| !b.is_ascii_graphic()) {
                Err(invalid(
                    name,
                    "a token holds whitespace or non-ASCII characters",
                ))
            } else {
                Ok(digest(t.as_bytes()))
            }
        })
        .collect()
}

impl Tokens {
    /// Validates the configured tokens: each role has at least one, each is
    /// at least [`MIN_TOKEN_LEN`] printable ASCII characters, and no token
    /// serves both roles.
    pub fn new(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        let all = Scope::Market.bit() | Scope::Outcomes.bit() | Scope::EdgeEvents.bit();
        let mut producers: Vec<(Digest32, u8)> = Vec::new();
        for (name, list, bits) in [
            ("auth.producer_tokens", &cfg.producer_tokens, all),
            (
                "auth.market_tokens",
                &cfg.market_tokens,
                Scope::Market.bit(),
            ),
            (
                "auth.outcome_tokens",
                &cfg.outcome_tokens,
                Scope::Outcomes.bit(),
            ),
            (
                "auth.edge_event_tokens",
                &cfg.edge_event_tokens,
                Scope::EdgeEvents.bit(),
            ),
        ] {
            for d in check_list(name, list)? {
                // A token in two lists has both lists' scopes.
                match producers.iter_mut().find(|(p, _)| same(p, &d)) {
                    Some((_, b)) => *b |= bits,
                    None => producers.push((d, bits)),
                }
            }
        }
        let readers = check_list("auth.reader_tokens", &cfg.reader_tokens)?;
        if producers.is_empty() || readers.is_empty() {
            return Err(invalid(
                "auth",
                "no tokens configured for a role; set at least one producer token (EQ_PRODUCER_TOKENS, or a scoped list) and one reader token (EQ_READER_TOKENS), comma-separated",
            ));
        }
        if producers
            .iter()
            .any(|(p, _)| readers.iter().any(|r| same(p, r)))
        {
            return Err(invalid(
                "auth",
                "a token is both a producer and a reader token; give each role its own",
            ));
        }
        Ok(Self { producers, readers })
    }

    /// Checks an `Authorization` header value for `need`.
    pub fn check(&self, authorization: Option<&[u8]>, need: Role) -> Result<(), Refusal> {
        let token = authorization
            .and_then(bearer)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Missing)?;
        let d = digest(token);
        // Every digest is compared, whatever matched earlier.
        let scopes = self
            .producers
            .iter()
            .fold(0u8, |m, (p, bits)| m | if same(p, &d) { *bits } else { 0 });
        let reader = self.readers.iter().fold(false, |m, r| m | same(r, &d));
        match need {
            Role::Producer(scope) if scopes & scope.bit() != 0 => Ok(()),
            Role::Reader if reader => Ok(()),
            _ if scopes == 0 && !reader => Err(Refusal::Invalid),
            _ => Err(Refusal::WrongRole),
        }
    }
}

/// The token of `Bearer <token>` ([`shared::identity::bearer_token`], the
/// one reading of it).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    std::str::from_utf8(value)
        .ok()
        .and_then(shared::identity::bearer_token)
        .map(str::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&AuthConfig {
            producer_tokens: vec![
                "producer-new-0123456789".into(),
                "producer-old-0123456789".into(),
            ],
            reader_tokens: vec!["reader-token-0123456789".into()],
            ..AuthConfig::default()
        })
        .expect("valid")
    }

    #[test]
    fn roles_rotation_and_refusals() {
        let t = tokens();
        let h = |s: &str| Some(s.as_bytes().to_vec());
        let check = |v: Option<Vec<u8>>, r| t.check(v.as_deref(), r);
        assert_eq!(
            check(
                h("Bearer producer-new-0123456789"),
                Role::Producer(Scope::Market)
            ),
            Ok(())
        );
        assert_eq!(
            check(
                h("bearer producer-old-0123456789"),
                Role::Producer(Scope::Market)
            ),
            Ok(())
        );
        assert_eq!(
            check(h("Bearer reader-token-0123456789"), Role::Reader),
            Ok(())
        );
        assert_eq!(
            check(None, Role::Producer(Scope::Market)),
            Err(Refusal::Missing)
        );
        assert_eq!(
            check(h("Bearer "), Role::Producer(Scope::Market)),
            Err(Refusal::Missing)
        );
        assert_eq!(
            check(h("Basic abc"), Role::Producer(Scope::Market)),
            Err(Refusal::Missing)
        );
        assert_eq!(
            check(h("Bearer nope-nope-nope-nope"), Role::Reader),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            check(
                h("Bearer reader-token-0123456789"),
                Role::Producer(Scope::Market)
            ),
            Err(Refusal::WrongRole)
        );
        assert_eq!(
            check(h("Bearer producer-new-0123456789"), Role::Reader),
            Err(Refusal::WrongRole)
        );
    }

    #[test]
    fn a_token_has_the_scopes_it_is_given() {
        let t = Tokens::new(&AuthConfig {
            producer_tokens: vec!["producer-all-0123456789".into()],
            market_tokens: vec!["gateway-0123456789".into(), "both-lists-0123456789".into()],
            outcome_tokens: vec!["both-lists-0123456789".into()],
            edge_event_tokens: vec!["edge-worker-0123456789".into()],
            reader_tokens: vec!["reader-token-0123456789".into()],
            ..AuthConfig::default()
        })
        .expect("valid");
        let can = |token: &str, scope| {
            t.check(
                Some(format!("Bearer {token}").as_bytes()),
                Role::Producer(scope),
            )
        };
        use Scope::*;
        for s in [Market, Outcomes, EdgeEvents] {
            assert_eq!(can("producer-all-0123456789", s), Ok(()));
        }
        assert_eq!(can("gateway-0123456789", Market), Ok(()));
        assert_eq!(can("gateway-0123456789", Outcomes), Err(Refusal::WrongRole));
        assert_eq!(
            can("gateway-0123456789", EdgeEvents),
            Err(Refusal::WrongRole)
        );
        assert_eq!(can("edge-worker-0123456789", EdgeEvents), Ok(()));
        assert_eq!(
            can("edge-worker-0123456789", Market),
            Err(Refusal::WrongRole)
        );
        assert_eq!(can("both-lists-0123456789", Outcomes), Ok(()));
        assert_eq!(can("both-lists-0123456789", Market), Ok(()));
        assert_eq!(
            can("both-lists-0123456789", EdgeEvents),
            Err(Refusal::WrongRole)
        );
        // Scoped tokens alone are enough producers.
        assert!(Tokens::new(&AuthConfig {
            edge_event_tokens: vec!["edge-worker-0123456789".into()],
            reader_tokens: vec!["reader-token-0123456789".into()],
            ..AuthConfig::default()
        })
        .is_ok());
    }

    #[test]
    fn weak_missing_or_shared_tokens_are_refused() {
        let cfg = |p: &[&str], r: &[&str]| AuthConfig {
            producer_tokens: p.iter().map(|s| s.to_string()).collect(),
            reader_tokens: r.iter().map(|s| s.to_string()).collect(),
            ..AuthConfig::default()
        };
        let ok = "a-long-enough-token-1";
        assert!(Tokens::new(&cfg(&[], &[ok])).is_err());
        assert!(Tokens::new(&cfg(&[ok], &[])).is_err());
        assert!(Tokens::new(&cfg(&["short"], &["another-long-token-2"])).is_err());
        assert!(Tokens::new(&cfg(&["has a space in it 123"], &[ok])).is_err());
        assert!(Tokens::new(&cfg(&[ok], &[ok])).is_err());
        let dbg = format!(
            "{:?}",
            Tokens::new(&cfg(&[ok], &["another-long-token-2"])).expect("ok")
        );
        assert!(!dbg.contains(ok), "{dbg}");
    }
}
