//! The market simulator: drivers who move, go on and off line and reposition
//! toward surge; riders who arrive at a time-varying rate (with spikes, such
//! as a concert letting out), see a price, accept or decline, wait for a
//! match and cancel when it takes too long.
//!
//! [`Simulation`] is deterministic for a seed: its own generator, fixed
//! iteration orders, time as simulated seconds. It prices with the real
//! pricing core (`shared::pricer::RegionPricer`, the pipeline the origin
//! runs), with any configured policy (`shared::policies`), so policies can be compared on the same
//! scenario ([`compare`]). The `live` module drives the real origin and edge instead.
//!
//! A simulation can also run an experiment ([`Simulation::with_experiment`]):
//! one pricer per arm, all fed the same market, each rider quoted by the
//! arm the core's assignment gives them; `experiments` compares what a
//! user split and a switchback estimate with the truth.

pub mod backtest;
pub mod city;
pub mod experiments;
pub mod frontier;
pub mod identity;
pub mod live;
pub mod report;

use std::collections::{BTreeMap, VecDeque};

use shared::experiment::{Experiment, Split};
use shared::fare::{price, RouteModel, Tariff, VehicleClass};
use shared::geo::{Cell, LatLng, Level};
use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen, MarketConfig};
use shared::policies::{AnyPolicy, ControllerParams, ForecastAware, PolicySpec};
use shared::pricer::RegionPricer;
use shared::quote::Ident;
use shared::surge::{Caps, Feedback, Multiplier, SurgeConfig};
use shared::time::{Millis, Timestamp};

/// A small deterministic generator (splitmix64): the same numbers on every
/// platform and crate version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A Poisson count with mean `lambda` (Knuth; lambda is small per tick).
    pub fn poisson(&mut self, lambda: f64) -> u32 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            // Normal approximation for large means.
            let u1 = self.unit().max(1e-12);
            let u2 = self.unit();
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            return (lambda + z * lambda.sqrt()).round().max(0.0) as u32;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u32, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// A burst of extra demand at a place, e.g. a concert letting out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// Where.
    pub at: (f64, f64),
    /// Radius of the crowd, metres.
    pub radius_m: f64,
    /// Start, seconds into the scenario.
    pub start_s: f64,
    /// Length in seconds.
    pub duration_s: f64,
    /// Extra riders per minute at its peak.
    pub riders_per_min: f64,
}

/// A scenario: the city, the fleet, the riders.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Random seed.
    pub seed: u64,
    /// `[south, west, north, east]`.
    pub bounds: [f64; 4],
    /// Simulated length, seconds.
    pub duration_s: f64,
    /// Step, seconds.
    pub tick_s: f64,
    /// How often prices are recomputed, seconds.
    pub reprice_s: f64,
    /// Drivers online at the start.
    pub drivers_online: u32,
    /// Drivers who could come online (the pool).
    pub drivers_offline: u32,
    /// Base riders per minute over the city.
    pub riders_per_min: f64,
    /// Spikes.
    pub spikes: Vec<Spike>,
    /// Price elasticity: a rider accepts with probability exp(−e·(m − 1)).
    pub elasticity: f64,
    /// A rider cancels after waiting this long for a match, seconds.
    pub patience_s: f64,
    /// A rider cancels if the matched driver is further than this, seconds.
    pub max_eta_s: f64,
    /// Average speed, km/h.
    pub speed_kmh: f64,
    /// Drivers are matched within this radius, metres.
    pub match_radius_m: f64,
    /// Cell level.
    pub level: u8,
    /// A multi-day city's season, downtown and weather (`None`: the
    /// evening curve over uniformly spread riders).
    pub city: Option<city::City>,
}

impl Scenario {
    /// The spike scenario: an evening in San Francisco with a concert
    /// letting out for 26 minutes (the length of the outage in Hall,
    /// Kendrick & Nosko 2015).
    pub fn concert(seed: u64) -> Self {
        Self {
            seed,
            bounds: [37.70, -122.52, 37.81, -122.38],
            duration_s: 3.0 * 3_600.0,
            tick_s: 10.0,
            reprice_s: 30.0,
            drivers_online: 220,
            drivers_offline: 120,
            riders_per_min: 7.0,
            spikes: vec![Spike {
                at: (37.7786, -122.3893), // a waterfront arena
                radius_m: 600.0,
                start_s: 80.0 * 60.0,
                duration_s: 26.0 * 60.0,
                riders_per_min: 40.0,
            }],
            elasticity: 0.9,
            patience_s: 300.0,
            max_eta_s: 900.0,
            speed_kmh: 24.0,
            match_radius_m: 6_000.0,
            // Level 12 (~3 km²): at level 13 most cells of this fleet have
            // no idle driver, and zero supply means the zone maximum.
            level: 12,
            city: None,
        }
    }

    /// The concert evening played over `minutes` instead of three hours:
    /// the same fleet and riders per minute, the concert at the same point
    /// of the evening for the same share of it. The live demo plays this.
    pub fn evening(seed: u64, minutes: f64) -> Self {
        let mut s = Self::concert(seed);
        let scale = minutes * 60.0 / s.duration_s;
        s.duration_s = minutes * 60.0;
        for spike in &mut s.spikes {
            spike.start_s *= scale;
            spike.duration_s *= scale;
        }
        s
    }

    /// A short, thin scenario (a quarter of the fleet) for quick tests.
    pub fn short(seed: u64, minutes: f64) -> Self {
        let mut s = Self::concert(seed);
        s.duration_s = minutes * 60.0;
        s.drivers_online = 60;
        s.drivers_offline = 30;
        s.riders_per_min = 6.0;
        if let Some(spike) = s.spikes.first_mut() {
            spike.start_s = minutes * 60.0 / 3.0;
            spike.duration_s = minutes * 60.0 / 3.0;
            spike.riders_per_min = 12.0;
        }
        s
    }

    fn random_point(&self, rng: &mut Rng) -> (f64, f64) {
        let [s, w, n, e] = self.bounds;
        (s + rng.unit() * (n - s), w + rng.unit() * (e - w))
    }

    /// Demand relative to `riders_per_min` at `t`: the city's season and
    /// weather, else the evening curve.
    fn demand_factor(&self, t: f64) -> f64 {
        match &self.city {
            Some(c) => c.demand_factor(t),
            None => self.daily_curve(t),
        }
    }

    /// Traffic speed at `t`, m/s.
    fn speed_ms(&self, t: f64) -> f64 {
        let factor = self.city.as_ref().map_or(1.0, |c| c.speed_factor(t));
        self.speed_kmh * factor / 3.6
    }

    /// Where a rider starts: downtown or anywhere in a city, anywhere else.
    fn rider_point(&self, rng: &mut Rng) -> (f64, f64) {
        match &self.city {
            Some(c) if rng.chance(c.downtown_share) => c.downtown_point(rng),
            _ => self.random_point(rng),
        }
    }

    /// The riders expected to open the app in `[t, t + dt)` outside the
    /// spikes (the rate [`Self::riders_at`] draws from), and whether a
    /// spike adds riders then.
    pub(crate) fn expected_riders(&self, t: f64, dt: f64, scale: f64) -> (f64, bool) {
        let base = self.riders_per_min * self.demand_factor(t) * dt / 60.0 * scale;
        let spike = self
            .spikes
            .iter()
            .any(|s| (s.start_s..s.start_s + s.duration_s).contains(&t));
        (base, spike)
    }

    /// Where the riders who open the app in `[t, t + dt)` are, demand
    /// scaled by `scale` (1.0: the scenario's).
    pub(crate) fn riders_at(&self, rng: &mut Rng, t: f64, dt: f64, scale: f64) -> Vec<(f64, f64)> {
        let minutes = dt / 60.0;
        let base = self.riders_per_min * self.demand_factor(t) * minutes * scale;
        let mut spots: Vec<(f64, f64)> = (0..rng.poisson(base))
            .map(|_| self.rider_point(rng))
            .collect();
        for s in &self.spikes {
            if (s.start_s..s.start_s + s.duration_s).contains(&t) {
                for _ in 0..rng.poisson(s.riders_per_min * minutes * scale) {
                    let ang = rng.unit() * std::f64::consts::TAU;
                    let r = rng.unit().sqrt() * s.radius_m / 111_000.0;
                    spots.push((
                        s.at.0 + r * ang.sin(),
                        s.at.1 + r * ang.cos() / s.at.0.to_radians().cos(),
                    ));
                }
            }
        }
        spots
    }

    /// Base demand multiplier over the scenario: an evening curve.
    fn daily_curve(&self, t: f64) -> f64 {
        let phase = t / self.duration_s.max(1.0) * std::f64::consts::PI;
        0.8 + 0.4 * phase.sin()
    }
}

/// One of the policies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// No surge at all (as during an outage).
    None,
    /// The default curve and engine settings.
    Default,
    /// The default curve, smoothed harder, steps of 0.2, capped at 2.5x.
    Smoothed,
    /// Forecast-aware pricing (`shared::policies::ForecastAware`).
    Forecast,
    /// The controller on unfulfilled share and p90 wait
    /// (`shared::policies::Controller`).
    Controller,
}

impl PolicyKind {
    /// Every policy, in report order.
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::None,
        PolicyKind::Default,
        PolicyKind::Smoothed,
        PolicyKind::Forecast,
        PolicyKind::Controller,
    ];

    /// The family of a configured policy (how reports name a run whose
    /// policy came from elsewhere, e.g. an experiment's control arm).
    pub fn of(spec: &PolicySpec) -> Self {
        match spec {
            PolicySpec::None => PolicyKind::None,
            PolicySpec::Default => PolicyKind::Default,
            PolicySpec::Forecast(_) => PolicyKind::Forecast,
            PolicySpec::Controller(_) => PolicyKind::Controller,
        }
    }

    /// The report name.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::None => "no surge",
            PolicyKind::Default => "default curve",
            PolicyKind::Smoothed => "smoothed + capped",
            PolicyKind::Forecast => "forecast-aware",
            PolicyKind::Controller => "controller",
        }
    }

    /// The policy as a region would configure it, and the engine settings.
    pub fn spec(self) -> (PolicySpec, SurgeConfig) {
        match self {
            PolicyKind::None => (PolicySpec::None, SurgeConfig::default()),
            PolicyKind::Default => (PolicySpec::Default, SurgeConfig::default()),
            PolicyKind::Smoothed => (
                PolicySpec::Default,
                SurgeConfig {
                    neighbour_weight: 0.5,
                    ema_alpha: 0.3,
                    max_step_tenths: 2,
                    emergency_cap: Multiplier::from_tenths(25).ok(),
                },
            ),
            PolicyKind::Forecast => (
                PolicySpec::Forecast(ForecastAware::default()),
                SurgeConfig::default(),
            ),
            PolicyKind::Controller => (
                PolicySpec::Controller(ControllerParams::default()),
                SurgeConfig::default(),
            ),
        }
    }
}

/// A pricer for the simulated city: the core's `RegionPricer`, the
/// pipeline the origin runs, with this policy.
pub(crate) fn pricer(
    spec: PolicySpec,
    surge: SurgeConfig,
    level: Level,
) -> Option<RegionPricer<AnyPolicy>> {
    let policy = spec.build().ok()?;
    let market = MarketConfig {
        supply_ttl: Millis::from_secs(60),
        demand_window: Millis::from_secs(300),
        bucket: Millis::from_secs(10),
        ..MarketConfig::default()
    };
    let region = Ident::new("sim").ok()?;
    RegionPricer::new(region, level, Caps::DEFAULT, market, policy, surge).ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DriverState {
    Offline,
    Idle,
    /// Driving to a pickup; arrives at `until`.
    EnRoute {
        until: f64,
        request: usize,
    },
    /// On a trip; free at `until`, at `to`.
    OnTrip {
        until: f64,
        to: (f64, f64),
    },
}

#[derive(Debug, Clone)]
struct Driver {
    pos: (f64, f64),
    state: DriverState,
    online_since: f64,
    online_s: f64,
    earnings: i64,
}

/// What became of a ride request (a rider who accepted the price).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// Still waiting for a driver.
    Waiting,
    /// A driver is on the way.
    Matched,
    /// Picked up after `wait_s`.
    PickedUp {
        /// Request to pickup, seconds.
        wait_s: f64,
    },
    /// Gave up: no driver in time, or the driver was too far.
    Cancelled,
}

/// A rider who accepted a price.
#[derive(Debug, Clone)]
pub struct Request {
    /// When, seconds.
    pub at: f64,
    /// Pickup.
    pub from: (f64, f64),
    /// Drop-off.
    pub to: (f64, f64),
    /// Multiplier accepted.
    pub multiplier: Multiplier,
    /// Fare accepted, minor units.
    pub fare: i64,
    /// What happened.
    pub fate: Fate,
}

/// A rider who saw a price while an experiment ran
/// ([`Simulation::with_experiment`]): the unit of a user split, counted in
/// its window for a switchback.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// When, seconds.
    pub at: f64,
    /// The arm's index in the experiment (0: the control); `None` when the
    /// assignment left the rider outside it (priced by the control).
    pub arm: Option<usize>,
    /// Switchback: the window's index since the start; user split: 0.
    pub window: u64,
    /// The multiplier quoted: the arm's, the one the rider accepted or
    /// declined.
    pub multiplier: Multiplier,
    /// The request, when the rider accepted (an index into
    /// [`Simulation::requests`]).
    pub request: Option<usize>,
    /// Picked up by the end of the run (set by
    /// [`Simulation::run_experiment`]).
    pub completed: bool,
}

/// An arm of an experiment whose pricer could not be built (its policy
/// or the engine settings were refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("arm {arm}: its pricer could not be built (policy or engine settings refused)")]
pub struct UnbuildableArm {
    /// The arm's index.
    pub arm: usize,
}

/// Counters of one reporting bucket (10 simulated minutes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// Start, seconds.
    pub start_s: f64,
    /// Requests (accepted prices) made in the bucket.
    pub requests: u32,
    /// Of which completed (picked up).
    pub completed: u32,
    /// Riders who declined the price.
    pub declined: u32,
    /// Pickup waits of the completed, seconds.
    pub waits: Vec<f64>,
    /// Mean multiplier quoted.
    pub mean_multiplier: f64,
    quotes: u32,
    multiplier_sum: f64,
}

/// The results of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The policy.
    pub policy: PolicyKind,
    /// Riders who saw a price.
    pub riders: u32,
    /// Riders who declined it.
    pub declined: u32,
    /// Requests (riders who accepted).
    pub requests: u32,
    /// Requests picked up.
    pub completed: u32,
    /// Pickup waits of completed requests, seconds, sorted.
    pub waits: Vec<f64>,
    /// Mean multiplier quoted to riders.
    pub mean_multiplier: f64,
    /// Mean absolute change of a cell's multiplier between repricings.
    pub volatility: f64,
    /// Mean fare paid per completed ride, minor units.
    pub mean_fare: f64,
    /// Drivers' gross earnings per online hour, minor units.
    pub earnings_per_hour: f64,
    /// Per 10-minute bucket, for charts.
    pub buckets: Vec<Bucket>,
    /// Where surge was: shares of priced cell-repricings at ≥ 1.5x.
    pub surge: SurgeShares,
}

/// Counts of priced cells over repricings: (all, at ≥ 1.5x) before and
/// during the first spike, and the surging ones near its venue. The
/// in-process run counts its own grids; live mode counts the origin's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SurgeCounter {
    before: (u32, u32),
    during: (u32, u32),
    near_venue: u32,
}

/// Where surge was over a run, from every repricing's cells (a cell priced
/// at one repricing is one cell-repricing; they are 30 s apart, so these
/// are shares of cell-minutes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SurgeShares {
    /// Before the first spike: the share of cell-minutes at ≥ 1.5x (the
    /// goal is at most 0.20).
    pub before_spike: f64,
    /// During the spike: the same share.
    pub during_spike: f64,
    /// During the spike: the share of the surging cell-minutes within 2 km
    /// of the venue (surge concentrating where the crowd is).
    pub near_venue: f64,
}

impl SurgeCounter {
    /// Counts one repricing's cells (cell, multiplier) at simulated time
    /// `t` (seconds) against `spike`.
    pub fn count(
        &mut self,
        t: f64,
        spike: Option<&Spike>,
        cells: impl IntoIterator<Item = (Cell, f64)>,
    ) {
        let Some(spike) = spike else {
            return;
        };
        let before = t < spike.start_s;
        let during = !before && t < spike.start_s + spike.duration_s;
        let venue = LatLng::new(spike.at.0, spike.at.1).ok();
        for (cell, m) in cells {
            let surging = m >= 1.5;
            if before {
                self.before.0 += 1;
                self.before.1 += u32::from(surging);
            } else if during {
                self.during.0 += 1;
                self.during.1 += u32::from(surging);
                let near = venue.is_some_and(|v| cell.center().distance_m(v) <= 2_000.0);
                self.near_venue += u32::from(surging && near);
            }
        }
    }

    /// The shares counted so far.
    pub fn shares(&self) -> SurgeShares {
        let ratio = |n: u32, d: u32| {
            if d == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(d)
            }
        };
        SurgeShares {
            before_spike: ratio(self.before.1, self.before.0),
            during_spike: ratio(self.during.1, self.during.0),
            near_venue: ratio(self.near_venue, self.during.1),
        }
    }
}

impl Outcome {
    /// Completed requests / requests.
    pub fn completion_rate(&self) -> f64 {
        if self.requests == 0 {
            return 1.0;
        }
        f64::from(self.completed) / f64::from(self.requests)
    }

    /// Share of requests never picked up.
    pub fn unfulfilled_share(&self) -> f64 {
        1.0 - self.completion_rate()
    }

    /// A wait percentile, seconds.
    pub fn wait_percentile(&self, p: f64) -> f64 {
        percentile(&self.waits, p)
    }

    /// The same figures restricted to requests made in the buckets that
    /// overlap `[start_s, end_s)`: (requests, completed, sorted waits).
    pub fn window(&self, start_s: f64, end_s: f64) -> Window {
        let mut w = Window::default();
        for b in self
            .buckets
            .iter()
            .filter(|b| b.start_s < end_s && b.start_s + 600.0 > start_s)
        {
            w.requests += b.requests;
            w.completed += b.completed;
            w.waits.extend_from_slice(&b.waits);
        }
        w.waits.sort_by(f64::total_cmp);
        w
    }
}

/// Figures of a time window of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Requests made in the window.
    pub requests: u32,
    /// Of which picked up.
    pub completed: u32,
    /// Their pickup waits, seconds, sorted.
    pub waits: Vec<f64>,
}

impl Window {
    /// Share of the window's requests never picked up.
    pub fn unfulfilled_share(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        1.0 - f64::from(self.completed) / f64::from(self.requests)
    }

    /// Median pickup wait, seconds.
    pub fn median_wait(&self) -> f64 {
        percentile(&self.waits, 0.5)
    }
}

/// The `p` quantile (0..1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    match (LatLng::new(a.0, a.1), LatLng::new(b.0, b.1)) {
        (Ok(x), Ok(y)) => x.distance_m(y),
        _ => f64::INFINITY,
    }
}

fn step_toward(from: (f64, f64), to: (f64, f64), metres: f64) -> (f64, f64) {
    let d = distance_m(from, to);
    if d <= metres || d == 0.0 {
        return to;
    }
    let f = metres / d;
    (from.0 + (to.0 - from.0) * f, from.1 + (to.1 - from.1) * f)
}

/// A running simulation with one policy.
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    policy: PolicyKind,
    rng: Rng,
    t: f64,
    drivers: Vec<Driver>,
    /// Requests in arrival order; waiting ones also in `queue`.
    pub requests: Vec<Request>,
    queue: VecDeque<usize>,
    /// The pricers: one, or one per arm of `experiment` in its order. Every
    /// one sees every driver report and rider, so each arm keeps its own
    /// engine and policy state over the one market.
    pricers: Vec<RegionPricer<AnyPolicy>>,
    /// Each pricer's last published multipliers: what its riders are quoted.
    grids: Vec<BTreeMap<Cell, Multiplier>>,
    /// The experiment that picks a rider's pricer, if any.
    experiment: Option<Experiment>,
    /// With an experiment: every rider who saw a price, in order.
    exposures: Vec<Exposure>,
    /// Requests that ended, (time, completed, wait), over the last
    /// [`Feedback::WINDOW`]: what a controller steers by.
    ended: VecDeque<(f64, bool, Option<f64>)>,
    /// Demand and forecasts per cell and bucket, when backtesting.
    log: Option<backtest::ForecastLog>,
    /// What drivers see and reposition by (and what volatility and the
    /// surge shares measure): the one pricer's grid; with an experiment,
    /// the arm in force (switchback) or the arms' multipliers weighted by
    /// their shares (user split: the fare a driver can expect from the next
    /// rider in the cell).
    multipliers: BTreeMap<Cell, Multiplier>,
    next_reprice: f64,
    level: Level,
    tariff: Tariff,
    route: RouteModel,
    riders: u32,
    declined: u32,
    volatility_sum: f64,
    volatility_n: u32,
    /// Priced cells at each repricing, and those at ≥ 1.5x: before the
    /// first spike, during it, and during it within 2 km of its venue.
    surge_cells: SurgeCounter,
    buckets: Vec<Bucket>,
}

/// A tick's events, for live mode: what the drivers and riders did.
#[derive(Debug, Clone, Default)]
pub struct TickEvents {
    /// (driver index, position, available) of every online driver.
    pub drivers: Vec<(usize, (f64, f64), bool)>,
    /// Riders who opened the app this tick: (position, destination).
    pub riders: Vec<((f64, f64), (f64, f64))>,
}

impl Simulation {
    /// A fresh simulation.
    pub fn new(scenario: Scenario, policy: PolicyKind) -> Self {
        let (spec, surge) = policy.spec();
        Self::with_spec(scenario, policy, spec, surge)
    }

    /// A fresh simulation running `experiment`: one pricer per arm (its
    /// policy, the region's engine settings `surge`), all fed the same
    /// driver reports and riders. Rider `n` (counting from 0 in arrival
    /// order) is the user `rider-n`, so in a user split each rider who
    /// opens the app is a new user; [`Experiment::assign`] at the moment
    /// of the quote picks the arm, and the rider sees that arm's price.
    /// Simulated time is milliseconds since 0, so the experiment should
    /// start at 0 and end after the scenario. Controllers get the whole
    /// region's outcomes as feedback, not their arm's.
    pub fn with_experiment(
        scenario: Scenario,
        experiment: Experiment,
        surge: SurgeConfig,
    ) -> Result<Self, UnbuildableArm> {
        let control = experiment
            .arms()
            .first()
            .map_or(PolicyKind::Default, |a| PolicyKind::of(&a.policy));
        let mut sim = Self::with_spec(scenario, control, PolicySpec::None, surge);
        sim.pricers = experiment
            .arms()
            .iter()
            .enumerate()
            .map(|(arm, a)| pricer(a.policy, surge, sim.level).ok_or(UnbuildableArm { arm }))
            .collect::<Result<_, _>>()?;
        sim.grids = vec![BTreeMap::new(); sim.pricers.len()];
        sim.experiment = Some(experiment);
        Ok(sim)
    }

    /// A fresh simulation with a policy's parameters set by hand (a sweep);
    /// `policy` names it in reports.
    pub fn with_spec(
        scenario: Scenario,
        policy: PolicyKind,
        spec: PolicySpec,
        surge: SurgeConfig,
    ) -> Self {
        let mut rng = Rng::new(scenario.seed);
        let total = scenario.drivers_online + scenario.drivers_offline;
        let drivers = (0..total)
            .map(|i| Driver {
                pos: scenario.random_point(&mut rng),
                state: if i < scenario.drivers_online {
                    DriverState::Idle
                } else {
                    DriverState::Offline
                },
                online_since: 0.0,
                online_s: 0.0,
                earnings: 0,
            })
            .collect();
        let level = Level::new(scenario.level).unwrap_or_default();
        let route = RouteModel {
            speed_kmh: scenario.speed_kmh,
            ..RouteModel::default()
        };
        Self {
            policy,
            rng,
            t: 0.0,
            drivers,
            requests: Vec::new(),
            queue: VecDeque::new(),
            pricers: pricer(spec, surge, level).into_iter().collect(),
            grids: vec![BTreeMap::new()],
            experiment: None,
            exposures: Vec::new(),
            ended: VecDeque::new(),
            log: None,
            multipliers: BTreeMap::new(),
            next_reprice: 0.0,
            level,
            tariff: Tariff::default_for(VehicleClass::Standard),
            route,
            riders: 0,
            declined: 0,
            volatility_sum: 0.0,
            volatility_n: 0,
            surge_cells: SurgeCounter::default(),
            buckets: Vec::new(),
            scenario,
        }
    }

    /// Records demand and forecasts for [`backtest::evaluate`] (see
    /// [`Self::run_logged`]).
    pub fn with_forecast_log(mut self) -> Self {
        self.log = Some(backtest::ForecastLog::default());
        self
    }

    /// Simulated seconds elapsed.
    pub fn time(&self) -> f64 {
        self.t
    }

    /// Whether the scenario is over.
    pub fn done(&self) -> bool {
        self.t >= self.scenario.duration_s
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The multiplier drivers see at a point (1.0 where none); without an
    /// experiment, the one riders are quoted.
    pub fn multiplier_at(&self, p: (f64, f64)) -> Multiplier {
        LatLng::new(p.0, p.1)
            .ok()
            .and_then(|ll| self.multipliers.get(&Cell::at(ll, self.level)).copied())
            .unwrap_or(Multiplier::ONE)
    }

    /// The experiment's riders so far (empty without one).
    pub fn exposures(&self) -> &[Exposure] {
        &self.exposures
    }

    /// The experiment running, if any.
    pub fn experiment(&self) -> Option<&Experiment> {
        self.experiment.as_ref()
    }

    /// The quote of rider number `rider` (counting from 0) at `p` now: the
    /// assignment (arm, window) when an experiment placed the rider, and
    /// the multiplier of the pricer that quotes them (the arm's; the
    /// control's or the one pricer's otherwise).
    fn quote(&self, p: (f64, f64), rider: u32) -> (Option<(usize, u64)>, Multiplier) {
        let placed = self.experiment.as_ref().and_then(|e| {
            let a = e.assign(self.now_ts(), Some(&format!("rider-{rider}")))?;
            let arm = e.arms().iter().position(|x| x.name == a.arm.name)?;
            Some((arm, a.window))
        });
        let index = placed.map_or(0, |(arm, _)| arm);
        let m = self
            .cell(p)
            .and_then(|c| self.grids.get(index).and_then(|g| g.get(&c)).copied())
            .unwrap_or(Multiplier::ONE);
        (placed, m)
    }

    /// What drivers see now (see the `multipliers` field).
    fn drivers_view(&self) -> BTreeMap<Cell, Multiplier> {
        let Some(e) = &self.experiment else {
            return self.grids.first().cloned().unwrap_or_default();
        };
        match e.split() {
            Split::Switchback { .. } => {
                let arm = e
                    .assign(self.now_ts(), None)
                    .and_then(|a| e.arms().iter().position(|x| x.name == a.arm.name))
                    .unwrap_or(0);
                self.grids.get(arm).cloned().unwrap_or_default()
            }
            Split::User => {
                let cells: std::collections::BTreeSet<Cell> =
                    self.grids.iter().flat_map(|g| g.keys().copied()).collect();
                cells
                    .into_iter()
                    .map(|c| {
                        let mean: f64 = e
                            .arms()
                            .iter()
                            .zip(&self.grids)
                            .map(|(a, g)| {
                                let m = g.get(&c).copied().unwrap_or(Multiplier::ONE);
                                f64::from(a.share_percent) / 100.0 * m.as_f64()
                            })
                            .sum();
                        (c, Multiplier::from_f64(mean).unwrap_or(Multiplier::ONE))
                    })
                    .collect()
            }
        }
    }

    fn cell(&self, p: (f64, f64)) -> Option<Cell> {
        LatLng::new(p.0, p.1)
            .ok()
            .map(|ll| Cell::at(ll, self.level))
    }

    fn bucket(&mut self) -> &mut Bucket {
        let idx = (self.t / 600.0) as usize;
        while self.buckets.len() <= idx {
            let start_s = self.buckets.len() as f64 * 600.0;
            self.buckets.push(Bucket {
                start_s,
                ..Bucket::default()
            });
        }
        &mut self.buckets[idx]
    }

    fn now_ts(&self) -> Timestamp {
        Timestamp((self.t * 1_000.0) as u64)
    }

    /// The region's outcomes over the last [`Feedback::WINDOW`].
    fn feedback(&mut self) -> Feedback {
        let window = Feedback::WINDOW.0 as f64 / 1_000.0;
        while self
            .ended
            .front()
            .is_some_and(|(t, _, _)| self.t - t > window)
        {
            self.ended.pop_front();
        }
        Feedback::gather(self.ended.iter().map(|(_, done, wait)| (*done, *wait)))
    }

    fn reprice(&mut self) {
        let now = self.now_ts();
        let feedback = self.feedback();
        if self.pricers.is_empty() {
            return;
        }
        let mut priced = Vec::with_capacity(self.pricers.len());
        for (pricer, grid) in self.pricers.iter_mut().zip(&mut self.grids) {
            let ok = pricer.tick_with(now, Some(&feedback)).is_ok();
            if ok {
                grid.clone_from(pricer.published());
            }
            priced.push(ok);
        }
        if !priced.contains(&true) {
            return;
        }
        if let (Some(log), Some(pricer), Some(true)) =
            (self.log.as_mut(), self.pricers.first(), priced.first())
        {
            log.tick(now, pricer.forecasts(), None);
        }
        let next = self.drivers_view();
        for (cell, m) in &next {
            let before = self
                .multipliers
                .get(cell)
                .copied()
                .unwrap_or(Multiplier::ONE);
            self.volatility_sum += (m.as_f64() - before.as_f64()).abs();
            self.volatility_n += 1;
        }
        self.multipliers = next;
        self.count_surge_cells();
    }

    /// Counts this repricing's cells for [`Outcome::surge`].
    fn count_surge_cells(&mut self) {
        let cells = self.multipliers.iter().map(|(c, m)| (*c, m.as_f64()));
        self.surge_cells
            .count(self.t, self.scenario.spikes.first(), cells);
    }

    /// Advances one tick; returns what drivers and riders did (for live
    /// mode, which mirrors them to the real stack).
    pub fn step(&mut self) -> TickEvents {
        let dt = self.scenario.tick_s;
        let mut events = TickEvents::default();
        if self.t >= self.next_reprice {
            self.reprice();
            self.next_reprice += self.scenario.reprice_s;
        }
        let hot = self.hottest_cells();
        self.move_drivers(dt, &hot);
        self.arrivals(dt, &mut events);
        self.cancel_and_match();
        let now = self.now_ts();
        for (i, d) in self.drivers.iter().enumerate() {
            if d.state == DriverState::Offline {
                continue;
            }
            let available = d.state == DriverState::Idle;
            events.drivers.push((i, d.pos, available));
            if let Some(cell) = self.cell(d.pos) {
                for p in &mut self.pricers {
                    p.driver_seen(DriverSeen {
                        driver: DriverId(i as u64),
                        cell,
                        class: VehicleClass::Standard,
                        available,
                        at: now,
                    });
                }
            }
        }
        self.t += dt;
        events
    }

    fn hottest_cells(&self) -> Vec<(Cell, Multiplier)> {
        let mut hot: Vec<(Cell, Multiplier)> = self
            .multipliers
            .iter()
            .filter(|(_, m)| m.tenths() >= 13)
            .map(|(c, m)| (*c, *m))
            .collect();
        hot.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        hot.truncate(20);
        hot
    }

    fn move_drivers(&mut self, dt: f64, hot: &[(Cell, Multiplier)]) {
        let metres = self.scenario.speed_ms(self.t) * dt;
        let mean_surge = if self.multipliers.is_empty() {
            1.0
        } else {
            self.multipliers.values().map(|m| m.as_f64()).sum::<f64>()
                / self.multipliers.len() as f64
        };
        let t = self.t;
        for i in 0..self.drivers.len() {
            let state = self.drivers[i].state;
            match state {
                DriverState::Offline => {
                    // Surge draws drivers online (positive supply elasticity).
                    let p = 0.002 + 0.03 * (mean_surge - 1.0).max(0.0);
                    if self.rng.chance(p * dt / 10.0) {
                        let pos = self.scenario.random_point(&mut self.rng);
                        let d = &mut self.drivers[i];
                        d.state = DriverState::Idle;
                        d.pos = pos;
                        d.online_since = t;
                    }
                }
                DriverState::Idle => {
                    if self.rng.chance(0.0015 * dt / 10.0) {
                        let d = &mut self.drivers[i];
                        d.online_s += t - d.online_since;
                        d.state = DriverState::Offline;
                        continue;
                    }
                    // Reposition toward a nearby surging cell, else drift.
                    let here = self.multiplier_at(self.drivers[i].pos);
                    let pos = self.drivers[i].pos;
                    let target = hot
                        .iter()
                        .filter(|(_, m)| m.tenths() >= here.tenths() + 2)
                        .map(|(c, _)| (c.center().lat(), c.center().lng()))
                        .find(|c| distance_m(pos, *c) < 4_000.0);
                    let next = match target {
                        Some(c) if self.rng.chance(0.5) => step_toward(pos, c, metres),
                        _ => {
                            let drift = self.scenario.random_point(&mut self.rng);
                            step_toward(pos, drift, metres * 0.3)
                        }
                    };
                    self.drivers[i].pos = next;
                }
                DriverState::EnRoute { until, request } => {
                    let from = self.requests[request].from;
                    let d = &mut self.drivers[i];
                    d.pos = step_toward(d.pos, from, metres);
                    if t + dt >= until {
                        let wait_s = until - self.requests[request].at;
                        self.requests[request].fate = Fate::PickedUp { wait_s };
                        self.ended.push_back((t, true, Some(wait_s)));
                        let to = self.requests[request].to;
                        let trip = distance_m(from, to) * 1.3 / self.scenario.speed_ms(t);
                        d.state = DriverState::OnTrip {
                            until: until + trip,
                            to,
                        };
                        d.earnings += self.requests[request].fare;
                        let at = self.requests[request].at;
                        let idx = (at / 600.0) as usize;
                        if let Some(b) = self.buckets.get_mut(idx) {
                            b.completed += 1;
                            b.waits.push(wait_s);
                        }
                    }
                }
                DriverState::OnTrip { until, to } => {
                    let d = &mut self.drivers[i];
                    d.pos = step_toward(d.pos, to, metres);
                    if t + dt >= until {
                        d.pos = to;
                        d.state = DriverState::Idle;
                    }
                }
            }
        }
    }

    fn arrivals(&mut self, dt: f64, events: &mut TickEvents) {
        let spots = self.scenario.riders_at(&mut self.rng, self.t, dt, 1.0);
        let now = self.now_ts();
        for from in spots {
            let to = self.scenario.random_point(&mut self.rng);
            events.riders.push((from, to));
            let (placed, m) = self.quote(from, self.riders);
            self.riders += 1;
            if let Some(cell) = self.cell(from) {
                let seen = DemandSeen {
                    cell,
                    class: VehicleClass::Standard,
                    kind: DemandKind::Quote,
                    at: now,
                    once: None,
                };
                for (i, p) in self.pricers.iter_mut().enumerate() {
                    let counted = p.demand_seen(seen);
                    if let (0, true, Some(log)) = (i, counted, self.log.as_mut()) {
                        log.demand(cell, now, p.weight(DemandKind::Quote));
                    }
                }
            }
            if self.experiment.is_some() {
                self.exposures.push(Exposure {
                    at: self.t,
                    arm: placed.map(|(arm, _)| arm),
                    window: placed.map_or(0, |(_, w)| w),
                    multiplier: m,
                    request: None,
                    completed: false,
                });
            }
            let accept = (-self.scenario.elasticity * (m.as_f64() - 1.0)).exp();
            let b = self.bucket();
            b.quotes += 1;
            b.multiplier_sum += m.as_f64();
            if !self.rng.chance(accept) {
                self.declined += 1;
                self.bucket().declined += 1;
                continue;
            }
            let fare = match (LatLng::new(from.0, from.1), LatLng::new(to.0, to.1)) {
                (Ok(a), Ok(z)) => self
                    .route
                    .estimate(a, z)
                    .map(|trip| price(&self.tariff, trip, m).total)
                    .unwrap_or(0),
                _ => 0,
            };
            self.requests.push(Request {
                at: self.t,
                from,
                to,
                multiplier: m,
                fare,
                fate: Fate::Waiting,
            });
            let request = self.requests.len() - 1;
            self.queue.push_back(request);
            if let (true, Some(e)) = (self.experiment.is_some(), self.exposures.last_mut()) {
                e.request = Some(request);
            }
            self.bucket().requests += 1;
        }
    }

    fn cancel_and_match(&mut self) {
        let speed = self.scenario.speed_ms(self.t);
        let mut idle: Vec<usize> = (0..self.drivers.len())
            .filter(|i| self.drivers[*i].state == DriverState::Idle)
            .collect();
        let mut still = VecDeque::with_capacity(self.queue.len());
        while let Some(r) = self.queue.pop_front() {
            let req = &self.requests[r];
            if self.t - req.at > self.scenario.patience_s {
                self.requests[r].fate = Fate::Cancelled;
                self.ended.push_back((self.t, false, None));
                continue;
            }
            let from = req.from;
            let best = idle
                .iter()
                .enumerate()
                .map(|(k, i)| (k, *i, distance_m(self.drivers[*i].pos, from)))
                .filter(|(_, _, m)| *m <= self.scenario.match_radius_m)
                .min_by(|a, b| a.2.total_cmp(&b.2));
            match best {
                Some((k, i, dist)) => {
                    idle.swap_remove(k);
                    let eta = dist * 1.3 / speed;
                    if self.t - self.requests[r].at + eta > self.scenario.max_eta_s {
                        self.requests[r].fate = Fate::Cancelled;
                        self.ended.push_back((self.t, false, None));
                        continue;
                    }
                    self.drivers[i].state = DriverState::EnRoute {
                        until: self.t + eta,
                        request: r,
                    };
                    self.requests[r].fate = Fate::Matched;
                }
                None => still.push_back(r),
            }
        }
        self.queue = still;
    }

    /// [`Self::run`], returning the forecast log too (when
    /// [`Self::with_forecast_log`] asked for one).
    pub fn run_logged(
        mut self,
        progress: impl FnMut(f64),
    ) -> (Outcome, Option<backtest::ForecastLog>) {
        self.drive(progress);
        let log = self.log.take();
        (self.finish(), log)
    }

    /// [`Self::run`] for an experiment: the outcome and every rider who saw
    /// a price, with whether they were picked up by the end.
    pub fn run_experiment(mut self, progress: impl FnMut(f64)) -> (Outcome, Vec<Exposure>) {
        self.drive(progress);
        let mut exposures = std::mem::take(&mut self.exposures);
        for e in &mut exposures {
            e.completed = e.request.is_some_and(|r| {
                self.requests
                    .get(r)
                    .is_some_and(|q| matches!(q.fate, Fate::PickedUp { .. }))
            });
        }
        (self.finish(), exposures)
    }

    /// Runs to the end; `progress` is called every simulated 10 minutes.
    pub fn run(mut self, progress: impl FnMut(f64)) -> Outcome {
        self.drive(progress);
        self.finish()
    }

    fn drive(&mut self, mut progress: impl FnMut(f64)) {
        let mut next_report = 0.0;
        while !self.done() {
            if self.t >= next_report {
                progress(self.t / self.scenario.duration_s);
                next_report += 600.0;
            }
            self.step();
        }
        progress(1.0);
    }

    /// The results so far (requests still open count as not completed).
    pub fn finish(mut self) -> Outcome {
        let t = self.t;
        for d in &mut self.drivers {
            if d.state != DriverState::Offline {
                d.online_s += t - d.online_since;
            }
        }
        let mut waits: Vec<f64> = self
            .requests
            .iter()
            .filter_map(|r| match r.fate {
                Fate::PickedUp { wait_s } => Some(wait_s),
                _ => None,
            })
            .collect();
        waits.sort_by(f64::total_cmp);
        let completed = waits.len() as u32;
        let fares: Vec<i64> = self
            .requests
            .iter()
            .filter(|r| matches!(r.fate, Fate::PickedUp { .. }))
            .map(|r| r.fare)
            .collect();
        let quoted: (f64, u32) = self
            .buckets
            .iter()
            .fold((0.0, 0), |(s, n), b| (s + b.multiplier_sum, n + b.quotes));
        let online_h: f64 = self.drivers.iter().map(|d| d.online_s).sum::<f64>() / 3_600.0;
        let earned: i64 = self.drivers.iter().map(|d| d.earnings).sum();
        for b in &mut self.buckets {
            b.mean_multiplier = if b.quotes > 0 {
                b.multiplier_sum / f64::from(b.quotes)
            } else {
                1.0
            };
            b.waits.sort_by(f64::total_cmp);
        }
        Outcome {
            policy: self.policy,
            riders: self.riders,
            declined: self.declined,
            requests: self.requests.len() as u32,
            completed,
            waits,
            mean_multiplier: if quoted.1 > 0 {
                quoted.0 / f64::from(quoted.1)
            } else {
                1.0
            },
            volatility: if self.volatility_n > 0 {
                self.volatility_sum / f64::from(self.volatility_n)
            } else {
                0.0
            },
            mean_fare: if fares.is_empty() {
                0.0
            } else {
                fares.iter().sum::<i64>() as f64 / fares.len() as f64
            },
            earnings_per_hour: if online_h > 0.0 {
                earned as f64 / online_h
            } else {
                0.0
            },
            buckets: self.buckets,
            surge: self.surge_cells.shares(),
        }
    }
}

/// Runs every policy on the same scenario (same seed, same riders' random
/// draws up to their reactions to price).
pub fn compare(scenario: &Scenario, mut progress: impl FnMut(PolicyKind, f64)) -> Vec<Outcome> {
    PolicyKind::ALL
        .iter()
        .map(|p| Simulation::new(scenario.clone(), *p).run(|f| progress(*p, f)))
        .collect()
}
