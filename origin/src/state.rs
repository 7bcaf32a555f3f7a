//! The server's shared state, and what a start restores from the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use shared::grid::SurgeGrid;

use crate::aggregate::{market_config, Aggregator, Settings};
use crate::auth::Tokens;
use crate::backlog::Backlog;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::{Config, Region};
use crate::metrics::Metrics;
use crate::push::Pusher;
use crate::store::{History, Store};

/// What a start restored.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Regions whose last grid was restored (generation, multipliers).
    pub grids: usize,
    /// Regions whose market windows and engine smoothing were restored as
    /// of the last tick.
    pub windows: usize,
    /// Regions whose forecast history was restored.
    pub forecasts: usize,
    /// Last persisted tick before the restart.
    pub last_tick_at: Option<u64>,
    /// Seconds between the last persisted tick and this start: events
    /// accepted in that time were lost.
    pub lost_seconds: f64,
}

/// What a single node's store held at start.
#[derive(Debug, Default)]
struct Saved {
    last_tick_at: Option<u64>,
    grids: Vec<crate::store::StoredGrid>,
    windows: Vec<crate::store::StoredState>,
    forecasts: Vec<(String, Vec<u8>)>,
    zones: Vec<crate::store::Zone>,
    /// Experiments ended early, per region: (region, id, why).
    ended: Vec<(String, Vec<(String, String)>)>,
}

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Validated regions (same order as the aggregator's).
    pub regions: Vec<Region>,
    /// Who may call what.
    pub tokens: Tokens,
    /// Markets and engines. A std mutex: held for microseconds, never
    /// across an await; ingest applies whole batches under it, which is
    /// the backpressure (no queue can grow).
    pub agg: Mutex<Aggregator>,
    /// The history: the SQLite store, or PostgreSQL in cluster mode (used
    /// from blocking threads).
    pub store: Arc<Mutex<Box<dyn History>>>,
    /// The push queue.
    pub pusher: Arc<Pusher>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Last grid JSON per region, and when it was last offered to the pusher.
    pub(crate) last: Mutex<HashMap<String, (String, u64)>>,
    /// Cells already written to the zones table.
    pub(crate) known_zones: Mutex<HashSet<(String, String)>>,
    /// What the start restored.
    pub restored: Restored,
    /// Cluster mode: this node's view of the cluster (`None`: one node).
    pub cluster: Option<Arc<Cluster>>,
    /// Cluster mode: ticks' history waiting to be written.
    pub backlog: Backlog,
    /// Each region's lawful emergency cap, shipped with its grids.
    pub lawful: crate::lawful::LawfulCaps,
    /// Controllers' feedback from the stored ride outcomes.
    pub feedback: crate::feedback::Feedbacks,
    /// When each region's experiment guardrail was last looked up.
    pub guardrails: crate::guardrail::Guardrails,
    /// Demo mode: the simulator's clock (`config.simulated_clock`).
    pub simulated: Option<crate::simclock::SimulatedClock>,
}

/// Locks a std mutex, ignoring poisoning: the guarded data stays
/// consistent across a panic in these short critical sections (no
/// multi-step invariants).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Bad market or engine settings.
    #[error(transparent)]
    Aggregator(#[from] crate::aggregate::AggregatorError),
    /// The edge client could not be built (e.g. an unreadable CA file).
    #[error(transparent)]
    Push(#[from] crate::push::PushSetupError),
}

impl AppState {
    /// Builds the aggregator and restores every region from the store: its
    /// last grid (generation, published multipliers, re-pushed to the edge)
    /// and its market windows and engine smoothing as of the last tick.
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StartError> {
        let mut ended = Vec::new();
        for r in config.regions()? {
            let id = r.id.as_str().to_owned();
            ended.push((id.clone(), store.experiment_ends(&id)?));
        }
        let saved = Saved {
            last_tick_at: store.last_tick_at()?,
            grids: store.last_grids()?,
            windows: store.market_states()?,
            forecasts: store.forecast_histories()?,
            zones: store.all_zones()?,
            ended,
        };
        Self::build(config, Box::new(store), saved, clock, None)
    }

    /// A cluster member's state, writing its history to `history` (the
    /// shared PostgreSQL, or a local SQLite file). Nothing is restored at
    /// start: a region's owner restores it from the cluster when it
    /// acquires the region (`crate::cluster::lease`).
    pub fn in_cluster(
        config: Config,
        history: Box<dyn History>,
        clock: Arc<dyn Clock>,
        cluster: Arc<Cluster>,
    ) -> Result<Arc<Self>, StartError> {
        Self::build(config, history, Saved::default(), clock, Some(cluster))
    }

    fn build(
        config: Config,
        store: Box<dyn History>,
        saved: Saved,
        clock: Arc<dyn Clock>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Arc<Self>, StartError> {
        let regions = config.regions()?;
        let tokens = Tokens::new(&config.auth)?;
        // Demo mode: the simulator's clock, starting at the given one's now.
        let simulated = config
            .simulated_clock
            .then(|| crate::simclock::SimulatedClock::new(clock.now()));
        let clock = simulated.as_ref().map_or(clock, |s| s.clock());
        let config_backlog = config.cluster.history_backlog_ticks;
        let settings = Settings {
            market: market_config(config.supply_ttl_seconds, config.demand_window_seconds),
            ..Settings::default()
        };
        let mut agg = Aggregator::new(regions.clone(), settings)?;
        let metrics = Arc::new(Metrics::default());
        let pusher = Arc::new(Pusher::new(
            &config.edge_url,
            &config.edge_token,
            config.edge_ca_file.as_deref(),
            metrics.clone(),
        )?);
        let mut last = HashMap::new();
        let mut restored = Restored {
            last_tick_at: saved.last_tick_at,
            ..Restored::default()
        };
        let mut generations = HashMap::new();
        for g in saved.grids {
            let grid = serde_json::from_str::<shared::api::GridPush>(&g.grid_json)
                .ok()
                .and_then(|p| SurgeGrid::try_from(p).ok());
            match grid {
                Some(grid) if agg.restore(&grid) => {
                    restored.grids += 1;
                    generations.insert(g.region.clone(), g.generation);
                    pusher.offer(&g.region, g.generation, g.grid_json.clone());
                    last.insert(g.region.clone(), (g.grid_json, 0));
                }
                _ => {
                    tracing::warn!(region = %g.region, "stored grid not restored (unknown region or unreadable)")
                }
            }
        }
        for (region, ended) in saved.ended {
            agg.restore_ended(&region, ended);
        }
        // The forecasts' history first: the windows' open buckets go over it.
        for (region, bytes) in saved.forecasts {
            match agg.restore_forecast_history(&region, &bytes) {
                Ok(true) => restored.forecasts += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "stored forecast history unreadable; forecasts start empty")
                }
            }
        }
        for s in saved.windows {
            // Written in the same transaction as the grid: a different
            // generation means the file was edited; the grid alone is safer.
            if generations.get(&s.region) != Some(&s.generation) {
                tracing::warn!(region = %s.region, "stored windows do not match the stored grid; windows start empty");
                continue;
            }
            match agg.restore_state(&s.region, &s.state) {
                Ok(true) => restored.windows += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(region = %s.region, error = %e, "stored windows unreadable; windows start empty")
                }
            }
        }
        if let Some(at) = restored.last_tick_at {
            let since = clock.now().0.saturating_sub(at);
            restored.lost_seconds = since as f64 / 1_000.0;
            metrics.restored_lost_ms.store(since, Relaxed);
        }
        let known: HashSet<(String, String)> = saved
            .zones
            .into_iter()
            .map(|z| (z.region, z.cell))
            .collect();
        Ok(Arc::new(Self {
            config,
            regions,
            tokens,
            agg: Mutex::new(agg),
            store: Arc::new(Mutex::new(store)),
            pusher,
            metrics,
            clock,
            last: Mutex::new(last),
            known_zones: Mutex::new(known),
            restored,
            backlog: Backlog::new(config_backlog),
            cluster,
            lawful: crate::lawful::LawfulCaps::default(),
            feedback: crate::feedback::Feedbacks::default(),
            guardrails: crate::guardrail::Guardrails::default(),
            simulated,
        }))
    }

    /// The latest grid JSON of a region.
    pub fn grid(&self, region: &str) -> Option<String> {
        lock(&self.last).get(region).map(|(g, _)| g.clone())
    }
}
