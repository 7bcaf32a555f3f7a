//! Configuration: a TOML file, then `EQ_*` environment overrides, then
//! defaults. `origin serve` runs with no file at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use shared::geo::{BoundingBox, LatLng, Level};
use shared::policies::{PolicyParams, PolicySpec};
use shared::quote::Ident;
use shared::regions::Registry;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// The setting.
        name: String,
        /// Why.
        reason: String,
    },
}

pub use shared::api::admin::insecure_host;

/// A URL with its password, if it has one, replaced by `<set>`
/// (`nats://user:pass@host` → `nats://user:<set>@host`), and a user part
/// alone too (it may be a token: `https://<token>@host`): what logs and
/// `origin config` show.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((user_info, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<set>@{host}"),
        None => format!("{scheme}://<set>@{host}"),
    }
}

/// A [`ConfigError::Invalid`] for `name`.
pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// One priced region: its id, where it is, its cell level, caps and
/// policy. With a `registry`, where it is, its level and its calendar come
/// from there (the one home of geography, shared with the edge), and
/// `bounds` is refused.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region id (as in the edge's `region`).
    pub id: String,
    /// `[south, west, north, east]` in degrees (without a registry only).
    #[serde(default)]
    pub bounds: Option<[f64; 4]>,
    /// S2 level of its cells (default: the registry's, else 13; with a
    /// registry it must agree).
    #[serde(default)]
    pub level: Option<u8>,
    /// The lowest multiplier any cell of the region publishes (every cell
    /// of a region shares its caps; the edge can narrow them per region
    /// with `caps:<region>` in KV).
    #[serde(default = "one")]
    pub min_multiplier: f64,
    /// The highest multiplier any cell of the region publishes.
    #[serde(default = "five")]
    pub max_multiplier: f64,
    /// The region's pricing policy (default: the default curve).
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// The region's local standard time, minutes ahead of UTC (−480 for
    /// San Francisco; default: the registry's, else 0): where its
    /// forecasts' days and weekends begin.
    #[serde(default)]
    pub utc_offset_minutes: Option<i64>,
}

/// `[regions.policy]`: which policy prices the region, and its parameters
/// (`shared::policies`; any left out take the policy's defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `none`, `default`, `forecast` or `controller`.
    pub name: String,
    /// How far the ratio leans toward the forecast, 0..=1 (forecast,
    /// controller).
    pub lead: Option<f64>,
    /// Controller: the unfulfilled share to hold, in (0, 1).
    pub target_unfulfilled: Option<f64>,
    /// Controller: the p90 pickup wait to hold, minutes.
    pub target_p90_wait_minutes: Option<f64>,
    /// Controller: the largest relative step of its threshold per
    /// feedback, in (0, 0.5].
    pub step: Option<f64>,
    /// Controller: the threshold's lowest value (most surge).
    pub min_threshold: Option<f64>,
    /// Controller: the threshold's highest value (least surge).
    pub max_threshold: Option<f64>,
}

impl PolicyConfig {
    /// The core's policy, validated (`shared::policies::PolicySpec::configure`).
    pub fn spec(&self) -> Result<PolicySpec, String> {
        let params = PolicyParams {
            lead: self.lead,
            target_unfulfilled: self.target_unfulfilled,
            target_p90_wait_minutes: self.target_p90_wait_minutes,
            step: self.step,
            min_threshold: self.min_threshold,
            max_threshold: self.max_threshold,
        };
        PolicySpec::configure(&self.name, &params).map_err(|e| e.to_string())
    }
}

fn one() -> f64 {
    1.0
}
fn five() -> f64 {
    5.0
}

/// Where a region is: a box (a configuration without a registry), or the
/// registry's boundary.
#[derive(Debug, Clone)]
pub enum Area {
    /// `bounds` in the configuration.
    Bounds(BoundingBox),
    /// The region of this id in the registry (all regions share it).
    Registry(Arc<Registry>),
}

/// A validated region.
#[derive(Debug, Clone)]
pub struct Region {
    /// Id.
    pub id: Ident,
    /// Where it is.
    pub area: Area,
    /// Cell level.
    pub level: Level,
    /// Default caps.
    pub caps: shared::surge::Caps,
    /// The pricing policy.
    pub policy: PolicySpec,
    /// Its days, for the forecasts' weekday and weekend profiles.
    pub calendar: shared::forecast::Calendar,
}

impl Region {
    /// The registry's view of this region (named zones), if there is one.
    pub fn geo(&self) -> Option<&shared::regions::Region> {
        match &self.area {
            Area::Registry(r) => r.get(self.id.as_str()),
            Area::Bounds(_) => None,
        }
    }

    /// The name of a pricing cell: its named zone's, else region and token
    /// (`shared::desk::zone_name`).
    pub fn zone_name(&self, cell: shared::geo::Cell) -> String {
        let geo = self.geo();
        shared::desk::zone_name(&self.id, geo.and_then(|g| g.zone_of_cell(cell)), cell)
    }
}

/// Who may call what (see [`crate::auth`]).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Tokens that may post everything a producer posts: locations,
    /// demand, outcomes and the edge's events (prefer `EQ_PRODUCER_TOKENS`,
    /// comma-separated, to keep them out of files).
    pub producer_tokens: Vec<String>,
    /// Tokens that may post locations and demand only, and move a demo's
    /// clock (`EQ_MARKET_TOKENS`): a driver gateway's.
    pub market_tokens: Vec<String>,
    /// Tokens that may post ride outcomes only (`EQ_OUTCOME_TOKENS`).
    pub outcome_tokens: Vec<String>,
    /// Tokens that may post the edge's event batches only
    /// (`EQ_EDGE_EVENT_TOKENS`): the worker's `ORIGIN_TOKEN`.
    pub edge_event_tokens: Vec<String>,
    /// Tokens that may read grids and analytics (`EQ_READER_TOKENS`).
    pub reader_tokens: Vec<String>,
    /// `/metrics` without a token (the default, for a scraper on a private
    /// network), or only with a reader token (`EQ_METRICS_OPEN=false`).
    #[serde(default = "yes")]
    pub metrics_open: bool,
}

fn yes() -> bool {
    true
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("producer_tokens", &self.producer_tokens.len())
            .field("market_tokens", &self.market_tokens.len())
            .field("outcome_tokens", &self.outcome_tokens.len())
            .field("edge_event_tokens", &self.edge_event_tokens.len())
            .field("reader_tokens", &self.reader_tokens.len())
            .field("metrics_open", &self.metrics_open)
            .finish()
    }
}

/// Cluster mode: several origins sharing the regions through NATS
/// JetStream (see `crate::cluster`). Off while `nats_urls` is empty.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (`EQ_NODE_ID`; default: a
    /// random one per start, so a restarted node is a new member).
    pub node_id: String,
    /// NATS servers (`EQ_NATS_URLS`, comma-separated). Empty: single node.
    pub nats_urls: Vec<String>,
    /// Replicas of the event stream and the key-value buckets
    /// (`EQ_STREAM_REPLICAS`; 3 in a 3-node NATS cluster, 1 on one server).
    pub replicas: usize,
    /// A region's lease lapses this long after its owner's last renewal
    /// (`EQ_LEASE_TTL_SECONDS`); members heartbeat and owners renew three
    /// times per lease.
    pub lease_ttl_seconds: u64,
    /// An `Idempotency-Key` on an ingest request makes its batch count
    /// once when posted again within this window, to any origin
    /// (`EQ_IDEMPOTENCY_WINDOW_SECONDS`; JetStream's duplicate window).
    pub idempotency_window_seconds: u64,
    /// The shared history (`EQ_POSTGRES_URL`, e.g.
    /// `postgres://user@host:5432/db`). Empty: each member keeps its own
    /// SQLite history (`database`).
    pub postgres_url: String,
    /// Ticks held in memory while the history database is unreachable
    /// (`EQ_HISTORY_BACKLOG_TICKS`); beyond it the oldest are dropped,
    /// logged and counted.
    pub history_backlog_ticks: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            nats_urls: Vec::new(),
            replicas: 1,
            lease_ttl_seconds: 6,
            idempotency_window_seconds: 120,
            postgres_url: String::new(),
            history_backlog_ticks: 720,
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.nats_urls.is_empty()
    }
}

/// The whole configuration.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// SQLite file.
    pub database: PathBuf,
    /// The edge worker's base URL; grids are pushed to
    /// `{edge_url}/admin/v1/grids/{region}`. Empty: no pushing.
    pub edge_url: String,
    /// Send the edge token over plain `http://` to a host that is not
    /// loopback (`EQ_ALLOW_INSECURE_HTTP`): off by default, since it puts
    /// the admin token on the wire in clear; the start-up log says when on.
    pub allow_insecure_http: bool,
    /// The edge's admin bearer token (prefer `EQ_EDGE_TOKEN`).
    pub edge_token: String,
    /// A PEM file of extra CA certificates trusted for the edge, besides
    /// the platform's roots (a private deployment, a test proxy).
    pub edge_ca_file: Option<PathBuf>,
    /// Seconds between grid recomputes.
    pub tick_seconds: f64,
    /// Demo mode: `now` is the simulator's clock, set with
    /// `POST /v1/clock`, and the ticks follow it (every `tick_seconds` of
    /// simulated time) instead of the wall clock. One node only.
    #[serde(default)]
    pub simulated_clock: bool,
    /// A driver counts as supply this long after their last report.
    pub supply_ttl_seconds: u64,
    /// Demand is counted over this sliding window.
    pub demand_window_seconds: u64,
    /// Largest ingest body, bytes.
    pub max_body_bytes: usize,
    /// Snapshots, change-log rows and ride outcomes older than this are
    /// pruned.
    pub retention_days: u32,
    /// Seconds between retention runs.
    pub prune_interval_seconds: u64,
    /// Rows deleted per table per transaction while pruning; a tick waits
    /// for at most one such batch.
    pub prune_batch_rows: u32,
    /// Who may call what.
    pub auth: AuthConfig,
    /// The region registry (`EQ_REGISTRY`): the JSON the edge reads from
    /// its `regions` key (`config/regions.json` is the shipped one). With
    /// it, ingest places each report by the region's boundary, and named
    /// zones name cells; without it, by `bounds`.
    pub registry: Option<PathBuf>,
    /// Regions priced.
    pub regions: Vec<RegionConfig>,
    /// Cluster mode (off by default).
    pub cluster: ClusterConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("edge_url", &mask_password(&self.edge_url))
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field(
                "edge_token",
                &(!self.edge_token.is_empty()).then_some("<set>"),
            )
            .field("edge_ca_file", &self.edge_ca_file)
            .field("tick_seconds", &self.tick_seconds)
            .field("simulated_clock", &self.simulated_clock)
            .field("supply_ttl_seconds", &self.supply_ttl_seconds)
            .field("demand_window_seconds", &self.demand_window_seconds)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("retention_days", &self.retention_days)
            .field("prune_interval_seconds", &self.prune_interval_seconds)
            .field("prune_batch_rows", &self.prune_batch_rows)
            .field("auth", &self.auth)
            .field("registry", &self.registry)
            .field("regions", &self.regions)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8790)),
            database: PathBuf::from("equilibrium-origin.sqlite"),
            edge_url: String::new(),
            allow_insecure_http: false,
            edge_token: String::new(),
            edge_ca_file: None,
            tick_seconds: 5.0,
            simulated_clock: false,
            supply_ttl_seconds: 60,
            demand_window_seconds: 300,
            max_body_bytes: 16 * 1024 * 1024,
            retention_days: 35,
            prune_interval_seconds: 600,
            prune_batch_rows: 5_000,
            auth: AuthConfig {
                metrics_open: true,
                ..AuthConfig::default()
            },
            registry: None,
            regions: vec![RegionConfig {
                id: "sf".into(),
                bounds: Some([37.60, -122.55, 37.85, -122.35]),
                level: None,
                min_multiplier: 1.0,
                max_multiplier: 5.0,
                policy: None,
                utc_offset_minutes: None,
            }],
            cluster: ClusterConfig::default(),
        }
    }
}

impl Config {
    /// How long the cluster's event stream keeps a message: the longest
    /// market window (supply TTL, demand window) plus a minute, so a
    /// take-over's replay sees every event that still counts.
    pub fn stream_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.supply_ttl_seconds.max(self.demand_window_seconds) + 60)
    }

    /// Reads the file (if given), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_path_buf(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.regions()?;
        crate::auth::Tokens::new(&cfg.auth)?;
        Ok(cfg)
    }

    /// Applies `EQ_LISTEN`, `EQ_DATABASE`, `EQ_EDGE_URL`, `EQ_EDGE_TOKEN`,
    /// `EQ_EDGE_CA_FILE`, `EQ_REGISTRY`, `EQ_TICK_SECONDS`, `EQ_SUPPLY_TTL_SECONDS`,
    /// `EQ_DEMAND_WINDOW_SECONDS`, `EQ_RETENTION_DAYS`,
    /// `EQ_PRODUCER_TOKENS` and `EQ_READER_TOKENS` (comma-separated; they
    /// replace the file's lists), `EQ_METRICS_OPEN` (`true`/`false`), and
    /// the cluster's `EQ_NODE_ID`, `EQ_NATS_URLS` (comma-separated),
    /// `EQ_STREAM_REPLICAS`, `EQ_LEASE_TTL_SECONDS`,
    /// `EQ_IDEMPOTENCY_WINDOW_SECONDS`, `EQ_POSTGRES_URL` and
    /// `EQ_HISTORY_BACKLOG_TICKS`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("EQ_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|_| invalid("EQ_LISTEN", "not host:port"))?;
        }
        if let Some(v) = get("EQ_DATABASE") {
            self.database = PathBuf::from(v);
        }
        if let Some(v) = get("EQ_EDGE_URL") {
            self.edge_url = v;
        }
        if let Some(v) = get("EQ_EDGE_TOKEN") {
            self.edge_token = v;
        }
        if let Some(v) = get("EQ_EDGE_CA_FILE") {
            self.edge_ca_file = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = get("EQ_REGISTRY") {
            self.registry = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        };
        if let Some(v) = get("EQ_PRODUCER_TOKENS") {
            self.auth.producer_tokens = list(v);
        }
        if let Some(v) = get("EQ_READER_TOKENS") {
            self.auth.reader_tokens = list(v);
        }
        if let Some(v) = get("EQ_MARKET_TOKENS") {
            self.auth.market_tokens = list(v);
        }
        if let Some(v) = get("EQ_OUTCOME_TOKENS") {
            self.auth.outcome_tokens = list(v);
        }
        if let Some(v) = get("EQ_EDGE_EVENT_TOKENS") {
            self.auth.edge_event_tokens = list(v);
        }
        if let Some(v) = get("EQ_METRICS_OPEN") {
            self.auth.metrics_open = v
                .parse()
                .map_err(|_| invalid("EQ_METRICS_OPEN", "not true or false"))?;
        }
        if let Some(v) = get("EQ_RETENTION_DAYS") {
            self.retention_days = v
                .parse()
                .map_err(|_| invalid("EQ_RETENTION_DAYS", "not a number"))?;
        }
        if let Some(v) = get("EQ_TICK_SECONDS") {
            self.tick_seconds = v
                .parse()
                .map_err(|_| invalid("EQ_TICK_SECONDS", "not a number"))?;
        }
        if let Some(v) = get("EQ_SIMULATED_CLOCK") {
            self.simulated_clock = v
                .parse()
                .map_err(|_| invalid("EQ_SIMULATED_CLOCK", "not true or false"))?;
        }
        if let Some(v) = get("EQ_SUPPLY_TTL_SECONDS") {
            self.supply_ttl_seconds = v
                .parse()
                .map_err(|_| invalid("EQ_SUPPLY_TTL_SECONDS", "not a number"))?;
        }
        if let Some(v) = get("EQ_NODE_ID") {
            self.cluster.node_id = v;
        }
        if let Some(v) = get("EQ_NATS_URLS") {
            self.cluster.nats_urls = list(v);
        }
        if let Some(v) = get("EQ_ALLOW_INSECURE_HTTP") {
            self.allow_insecure_http = match v.trim() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => return Err(invalid("EQ_ALLOW_INSECURE_HTTP", "true or false")),
            };
        }
        if let Some(v) = get("EQ_STREAM_REPLICAS") {
            self.cluster.replicas = v
                .parse()
                .map_err(|_| invalid("EQ_STREAM_REPLICAS", "not a number"))?;
        }
        if let Some(v) = get("EQ_LEASE_TTL_SECONDS") {
            self.cluster.lease_ttl_seconds = v
                .parse()
                .map_err(|_| invalid("EQ_LEASE_TTL_SECONDS", "not a number"))?;
        }
        if let Some(v) = get("EQ_POSTGRES_URL") {
            self.cluster.postgres_url = v;
        }
        if let Some(v) = get("EQ_HISTORY_BACKLOG_TICKS") {
            self.cluster.history_backlog_ticks = v
                .parse()
                .map_err(|_| invalid("EQ_HISTORY_BACKLOG_TICKS", "not a number"))?;
        }
        if let Some(v) = get("EQ_IDEMPOTENCY_WINDOW_SECONDS") {
            self.cluster.idempotency_window_seconds = v
                .parse()
                .map_err(|_| invalid("EQ_IDEMPOTENCY_WINDOW_SECONDS", "not a number"))?;
        }
        if let Some(v) = get("EQ_DEMAND_WINDOW_SECONDS") {
            self.demand_window_seconds = v
                .parse()
                .map_err(|_| invalid("EQ_DEMAND_WINDOW_SECONDS", "not a number"))?;
        }
        if !(1..=1_000_000).contains(&self.cluster.history_backlog_ticks) {
            return Err(invalid(
                "cluster.history_backlog_ticks",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=5).contains(&self.cluster.replicas) {
            return Err(invalid("cluster.replicas", "must be between 1 and 5"));
        }
        if !(2..=300).contains(&self.cluster.lease_ttl_seconds) {
            return Err(invalid(
                "cluster.lease_ttl_seconds",
                "must be between 2 and 300",
            ));
        }
        if !(1..=86_400).contains(&self.cluster.idempotency_window_seconds) {
            return Err(invalid(
                "cluster.idempotency_window_seconds",
                "must be between 1 and 86400",
            ));
        }
        if !self.cluster.node_id.is_empty() && Ident::new(&self.cluster.node_id).is_err() {
            return Err(invalid(
                "cluster.node_id",
                "1-64 characters of A-Z a-z 0-9 - _",
            ));
        }
        if insecure_host(&self.edge_url).is_some() && !self.allow_insecure_http {
            return Err(invalid(
                "edge_url",
                "http:// to a host that is not loopback would send the edge token in clear; use https://, or set allow_insecure_http (EQ_ALLOW_INSECURE_HTTP=true) to accept that",
            ));
        }
        if !(self.tick_seconds.is_finite() && (0.05..=3_600.0).contains(&self.tick_seconds)) {
            return Err(invalid("tick_seconds", "must be between 0.05 and 3600"));
        }
        if self.simulated_clock && self.cluster.enabled() {
            return Err(invalid(
                "simulated_clock",
                "the simulated clock is for one-node demos; turn it off in cluster mode",
            ));
        }
        if !(1..=36_500).contains(&self.retention_days) {
            return Err(invalid("retention_days", "must be between 1 and 36500"));
        }
        if self.prune_interval_seconds == 0 || self.prune_batch_rows == 0 {
            return Err(invalid(
                "prune_interval_seconds, prune_batch_rows",
                "must be positive",
            ));
        }
        Ok(())
    }

    /// The registry, read and validated (the edge's parser), if set.
    pub fn load_registry(&self) -> Result<Option<Arc<Registry>>, ConfigError> {
        let Some(path) = &self.registry else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        shared::api::admin::parse_registry(&text)
            .map(|r| Some(Arc::new(r)))
            .map_err(|e| invalid(&format!("registry {}", path.display()), e))
    }

    /// The validated regions.
    pub fn regions(&self) -> Result<Vec<Region>, ConfigError> {
        if self.regions.is_empty() {
            return Err(invalid("regions", "at least one region is needed"));
        }
        let registry = self.load_registry()?;
        let mut out: Vec<Region> = Vec::new();
        for r in &self.regions {
            let name = format!("regions.{}", r.id);
            let id = Ident::new(&r.id).map_err(|e| invalid(&name, e.to_string()))?;
            if out.iter().any(|o| o.id == id) {
                return Err(invalid(&name, "duplicate region id"));
            }
            let geo = match &registry {
                Some(reg) => Some(
                    reg.get(id.as_str())
                        .ok_or_else(|| invalid(&name, "the registry has no region of this id"))?,
                ),
                None => None,
            };
            // One home of geography: with a registry, where a region is,
            // its level and its calendar are the registry's.
            let agree = |what: &str, mine: Option<i64>, theirs: i64| match mine {
                Some(m) if m != theirs => Err(invalid(
                    &name,
                    format!("{what} {m} differs from the registry's {theirs}"),
                )),
                _ => Ok(theirs),
            };
            let (area, level, offset) = match (geo, &registry, r.bounds) {
                (Some(g), Some(reg), None) => (
                    Area::Registry(Arc::clone(reg)),
                    agree("level", r.level.map(i64::from), i64::from(g.level().get()))? as u8,
                    agree(
                        "utc_offset_minutes",
                        r.utc_offset_minutes,
                        i64::from(g.utc_offset_minutes()),
                    )?,
                ),
                (Some(_), _, Some(_)) => {
                    return Err(invalid(
                        &name,
                        "bounds: the registry says where the region is",
                    ))
                }
                (_, _, Some([s, w, n, e])) => {
                    let sw = LatLng::new(s, w).map_err(|e| invalid(&name, e.to_string()))?;
                    let ne = LatLng::new(n, e).map_err(|e| invalid(&name, e.to_string()))?;
                    let bounds =
                        BoundingBox::new(sw, ne).map_err(|e| invalid(&name, e.to_string()))?;
                    (
                        Area::Bounds(bounds),
                        r.level.unwrap_or(13),
                        r.utc_offset_minutes.unwrap_or(0),
                    )
                }
                _ => return Err(invalid(&name, "bounds are needed without a registry")),
            };
            let level = Level::new(level).map_err(|e| invalid(&name, e.to_string()))?;
            let m = |x: f64| {
                shared::surge::Multiplier::from_f64(x).map_err(|e| invalid(&name, e.to_string()))
            };
            let caps = shared::surge::Caps::new(m(r.min_multiplier)?, m(r.max_multiplier)?)
                .map_err(|e| invalid(&name, e.to_string()))?;
            let policy = match &r.policy {
                Some(p) => p
                    .spec()
                    .map_err(|e| invalid(&format!("{name}.policy"), e))?,
                None => PolicySpec::Default,
            };
            let calendar = shared::forecast::Calendar::from_utc_offset_minutes(offset)
                .map_err(|e| invalid(&name, e.to_string()))?;
            out.push(Region {
                id,
                area,
                level,
                caps,
                policy,
                calendar,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_env_overrides() {
        let mut c = Config::default();
        assert_eq!(c.regions().expect("regions").len(), 1);
        c.apply_env(|k| match k {
            "EQ_TICK_SECONDS" => Some("0.5".into()),
            "EQ_EDGE_URL" => Some("http://127.0.0.1:1".into()),
            _ => None,
        })
        .expect("env");
        assert_eq!(c.tick_seconds, 0.5);
        assert_eq!(c.edge_url, "http://127.0.0.1:1");
        assert!(c
            .apply_env(|k| (k == "EQ_TICK_SECONDS").then(|| "0".into()))
            .is_err());
    }

    #[test]
    fn tokens_never_go_in_clear_and_logs_hold_no_passwords() {
        assert_eq!(
            insecure_host("http://203.0.113.9:8787"),
            Some("203.0.113.9".into())
        );
        assert_eq!(
            insecure_host("http://edge.example.com/x"),
            Some("edge.example.com".into())
        );
        for fine in [
            "https://edge.example.com",
            "http://127.0.0.1:8787",
            "http://localhost:1",
            "http://[::1]:8787",
            "",
        ] {
            assert_eq!(insecure_host(fine), None, "{fine}");
        }
        let mut c = Config::default();
        let e = c
            .apply_env(|k| (k == "EQ_EDGE_URL").then(|| "http://edge.example.com".into()))
            .expect_err("an insecure edge URL");
        assert!(e.to_string().contains("in clear"), "{e}");
        c.apply_env(|k| match k {
            "EQ_EDGE_URL" => Some("http://edge.example.com".into()),
            "EQ_ALLOW_INSECURE_HTTP" => Some("true".into()),
            _ => None,
        })
        .expect("the operator opted in");
        assert_eq!(
            mask_password("nats://eq:s3cret@10.0.0.1:4222"),
            "nats://eq:<set>@10.0.0.1:4222"
        );
        assert_eq!(mask_password("https://tok@edge"), "https://<set>@edge");
        assert!(!format!(
            "{:?}",
            Config {
                edge_url: "https://u:pw-123@edge".into(),
                ..Config::default()
            }
        )
        .contains("pw-123"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let cfg: Config =
            toml::from_str(include_str!("../origin.example.toml")).expect("example parses");
        let regions = cfg.regions().expect("example regions are valid");
        assert_eq!(regions.len(), 2);
        assert_eq!(regions[1].caps.max().tenths(), 40);
        assert_eq!(regions[0].policy.name(), "forecast");
        assert_eq!(regions[1].policy.name(), "controller");
        assert_eq!(regions[0].calendar.utc_offset_minutes(), -480);
        assert_eq!(regions[1].calendar.utc_offset_minutes(), -300);
    }

    #[test]
    fn a_utc_offset_no_clock_uses_is_refused() {
        let cfg: Config = toml::from_str(
            "[[regions]]\nid = \"x\"\nbounds = [40, 0, 41, 1]\nutc_offset_minutes = 7\n",
        )
        .expect("toml");
        let e = cfg.regions().expect_err("7 minutes").to_string();
        assert!(
            e.contains("regions.x") && e.contains("multiple of 15"),
            "{e}"
        );
    }

    #[test]
    fn file_is_parsed_and_validated() {
        let cfg: Config = toml::from_str(
            r#"
            tick_seconds = 2
            [[regions]]
            id = "nyc"
            bounds = [40.5, -74.3, 40.95, -73.7]
            level = 12
            "#,
        )
        .expect("toml");
        assert_eq!(cfg.regions().expect("regions")[0].level.get(), 12);
        let bad: Config =
            toml::from_str("[[regions]]\nid = \"x\"\nbounds = [50, 0, 40, 1]\n").expect("toml");
        assert!(bad.regions().is_err());
        assert!(toml::from_str::<Config>("no_such_setting = 1").is_err());
    }
}
