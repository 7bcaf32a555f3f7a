//! Windowed supply and demand per cell and vehicle class.
//!
//! * **Supply** is the number of distinct drivers whose latest report says
//!   they are available and was seen within `supply_ttl`. A driver counts
//!   once, in the cell of their latest position.
//! * **Demand** is the weighted count of demand events (ride requests,
//!   quotes, app opens) in the sliding `demand_window`, kept in fixed-width
//!   buckets so memory per cell is bounded whatever the event rate.
//!
//! The [`Market`] is a state machine: events and `now` in, counts out.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::fare::VehicleClass;
use crate::geo::Cell;
use crate::state::{Reader, StateError, Writer};
use crate::time::{Millis, Timestamp};

/// A driver, identified by a 64-bit key (see [`DriverId::from_external`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DriverId(pub u64);

/// Longest external id (a driver's, a ride's, an event's), bytes.
pub const MAX_EXTERNAL_ID: usize = 128;

/// The one rule of an external id: 1 to [`MAX_EXTERNAL_ID`] bytes. `Err`
/// is the reason, naming `what`.
pub fn external_id<'a>(what: &str, id: &'a str) -> Result<&'a str, String> {
    if id.is_empty() || id.len() > MAX_EXTERNAL_ID {
        Err(format!("{what} must be 1-{MAX_EXTERNAL_ID} characters"))
    } else {
        Ok(id)
    }
}

impl DriverId {
    /// A stable key from an external id string (64-bit FNV-1a). The core
    /// keeps no raw ids, which keeps memory flat and ids out of state dumps.
    pub fn from_external(id: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(h)
    }
}

/// What kind of demand signal an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DemandKind {
    /// A rider asked for a ride.
    RideRequest,
    /// A rider asked for a price.
    Quote,
    /// A rider opened the app (weak intent).
    AppOpen,
}

impl DemandKind {
    /// Parses the wire name (`ride_request`, `quote`, `app_open`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ride_request" => Some(Self::RideRequest),
            "quote" => Some(Self::Quote),
            "app_open" => Some(Self::AppOpen),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RideRequest => "ride_request",
            Self::Quote => "quote",
            Self::AppOpen => "app_open",
        }
    }
}

/// Windows and weights of a market.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketConfig {
    /// A driver not heard from for this long no longer counts as supply.
    pub supply_ttl: Millis,
    /// Demand is counted over this sliding window.
    pub demand_window: Millis,
    /// Width of a demand bucket; the window slides in these steps.
    pub bucket: Millis,
    /// Demand units per ride request.
    pub weight_ride_request: u32,
    /// Demand units per quote.
    pub weight_quote: u32,
    /// Demand units per app open.
    pub weight_app_open: u32,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            supply_ttl: Millis::from_secs(60),
            demand_window: Millis::from_secs(300),
            bucket: Millis::from_secs(5),
            weight_ride_request: 2,
            weight_quote: 1,
            weight_app_open: 0,
        }
    }
}

/// A market configuration whose windows are empty or inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMarketConfig {
    /// A window or the bucket width is zero.
    #[error("supply_ttl, demand_window and bucket must be positive")]
    ZeroSpan,
    /// The bucket is wider than the window.
    #[error("bucket ({bucket} ms) is wider than demand_window ({window} ms)")]
    BucketTooWide {
        /// Bucket width.
        bucket: u64,
        /// Window width.
        window: u64,
    },
}

impl MarketConfig {
    /// Checks the invariants documented on the fields.
    pub fn validate(self) -> Result<Self, InvalidMarketConfig> {
        if self.supply_ttl.0 == 0 || self.demand_window.0 == 0 || self.bucket.0 == 0 {
            return Err(InvalidMarketConfig::ZeroSpan);
        }
        if self.bucket > self.demand_window {
            return Err(InvalidMarketConfig::BucketTooWide {
                bucket: self.bucket.0,
                window: self.demand_window.0,
            });
        }
        Ok(self)
    }

    /// Demand units of a signal of `kind`.
    pub fn weight(&self, kind: DemandKind) -> u32 {
        match kind {
            DemandKind::RideRequest => self.weight_ride_request,
            DemandKind::Quote => self.weight_quote,
            DemandKind::AppOpen => self.weight_app_open,
        }
    }
}

/// A driver position report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSeen {
    /// Who.
    pub driver: DriverId,
    /// Where, already resolved to the region's level.
    pub cell: Cell,
    /// Which class they drive.
    pub class: VehicleClass,
    /// Whether they can take a ride now.
    pub available: bool,
    /// When the device saw it.
    pub at: Timestamp,
}

/// A demand signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandSeen {
    /// Where the rider is.
    pub cell: Cell,
    /// The class asked for.
    pub class: VehicleClass,
    /// What happened.
    pub kind: DemandKind,
    /// When.
    pub at: Timestamp,
    /// Count at most once per this key and cell within the demand window
    /// (a rider checking a price again, an event delivered twice); `None`
    /// counts every signal.
    pub once: Option<u64>,
}

/// Most cells one key (a client, a rider) counts demand in within a demand
/// window. A keyed signal counts once per key and cell; a key that keeps
/// asking in more cells than this adds nothing more: someone scanning the
/// map is not a rider in every cell. (A rider checks a few destinations
/// from one pickup, and moves through a cell or two in five minutes.)
pub const MAX_CELLS_PER_KEY: u16 = 5;

/// Most keys counted in one cell within a demand window: a bound on the
/// dedup state a flood of distinct keys can grow in a cell (and on the
/// keyed demand it can add there, far above what saturates any curve).
pub const MAX_KEYS_PER_CELL: u32 = 20_000;

/// Supply and demand of one cell and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Distinct available drivers within the TTL.
    pub supply: u32,
    /// Weighted demand in the window.
    pub demand: u32,
}

#[derive(Debug, Clone, Copy)]
struct DriverState {
    cell: Cell,
    class: VehicleClass,
    available: bool,
    seen: Timestamp,
}

/// Per-(cell, class) demand buckets: (bucket index, units), oldest first.
#[derive(Debug, Default)]
struct DemandBuckets(VecDeque<(u64, u32)>);

/// Supply and demand state of one region.
#[derive(Debug)]
pub struct Market {
    config: MarketConfig,
    drivers: HashMap<DriverId, DriverState>,
    demand: HashMap<(Cell, VehicleClass), DemandBuckets>,
    /// (key, cell) of keyed signals counted within the window → when.
    once: HashMap<(u64, Cell), Timestamp>,
    /// Per key, its entries in `once` (for [`MAX_CELLS_PER_KEY`]); derived
    /// from `once`, so snapshots need not carry it.
    cells_of_key: HashMap<u64, u16>,
    /// Per cell, its entries in `once` (for [`MAX_KEYS_PER_CELL`]).
    keys_of_cell: HashMap<Cell, u32>,
}

impl Market {
    /// An empty market.
    pub fn new(config: MarketConfig) -> Result<Self, InvalidMarketConfig> {
        Ok(Self {
            config: config.validate()?,
            drivers: HashMap::new(),
            demand: HashMap::new(),
            once: HashMap::new(),
            cells_of_key: HashMap::new(),
            keys_of_cell: HashMap::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> MarketConfig {
        self.config
    }

    /// Records a driver report. A report older than the one already held
    /// for that driver is ignored (devices resend and reorder).
    pub fn driver_seen(&mut self, e: DriverSeen) {
        let state = DriverState {
            cell: e.cell,
            class: e.class,
            available: e.available,
            seen: e.at,
        };
        self.drivers
            .entry(e.driver)
            .and_modify(|s| {
                if e.at >= s.seen {
                    *s = state;
                }
            })
            .or_insert(state);
    }

    /// Records a demand signal in its time bucket; returns whether it was
    /// counted. The rule for keyed signals (what counts as demand): once
    /// per key and cell less than a demand window apart, in at most
    /// [`MAX_CELLS_PER_KEY`] cells per key and for at most
    /// [`MAX_KEYS_PER_CELL`] keys per cell within the window.
    pub fn demand_seen(&mut self, e: DemandSeen) -> bool {
        if let Some(key) = e.once {
            let window = self.config.demand_window;
            match self.once.entry((key, e.cell)) {
                std::collections::hash_map::Entry::Occupied(seen) => {
                    let t = *seen.get();
                    if e.at.since(t) < window && t.since(e.at) < window {
                        return false;
                    }
                    *seen.into_mut() = e.at.max(t);
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    let cells = self.cells_of_key.get(&key).copied().unwrap_or(0);
                    let keys = self.keys_of_cell.get(&e.cell).copied().unwrap_or(0);
                    if cells >= MAX_CELLS_PER_KEY || keys >= MAX_KEYS_PER_CELL {
                        return false;
                    }
                    v.insert(e.at);
                    *self.cells_of_key.entry(key).or_default() += 1;
                    *self.keys_of_cell.entry(e.cell).or_default() += 1;
                }
            }
        }
        let units = self.config.weight(e.kind);
        if units == 0 {
            return true;
        }
        let idx = e.at.0 / self.config.bucket.0;
        let buckets = &mut self.demand.entry((e.cell, e.class)).or_default().0;
        match buckets.back_mut() {
            Some((last, n)) if *last == idx => *n = n.saturating_add(units),
            Some((last, _)) if *last < idx => buckets.push_back((idx, units)),
            // A late event: find its bucket (rare; the deque is short).
            _ => match buckets.binary_search_by_key(&idx, |(i, _)| *i) {
                Ok(pos) => buckets[pos].1 = buckets[pos].1.saturating_add(units),
                Err(pos) => buckets.insert(pos, (idx, units)),
            },
        }
        true
    }

    /// Number of drivers with state (expired ones are dropped by
    /// [`Market::snapshot`]).
    pub fn tracked_drivers(&self) -> usize {
        self.drivers.len()
    }

    /// Counts per (cell, class) at `now`, and forgets what fell out of the
    /// windows. Cells with neither supply nor demand are not listed.
    pub fn snapshot(&mut self, now: Timestamp) -> BTreeMap<(Cell, VehicleClass), Counts> {
        let ttl = self.config.supply_ttl;
        let mut out: BTreeMap<(Cell, VehicleClass), Counts> = BTreeMap::new();
        self.drivers.retain(|_, d| now.since(d.seen) <= ttl);
        let window = self.config.demand_window;
        let (cells_of_key, keys_of_cell) = (&mut self.cells_of_key, &mut self.keys_of_cell);
        self.once.retain(|(key, cell), at| {
            let keep = now.since(*at) < window;
            if !keep {
                forget(cells_of_key, key);
                forget(keys_of_cell, cell);
            }
            keep
        });
        for d in self.drivers.values().filter(|d| d.available) {
            out.entry((d.cell, d.class)).or_default().supply += 1;
        }
        // Buckets whose start is within the window count; the window thus
        // slides in bucket steps.
        let bucket = self.config.bucket.0;
        let oldest = now.0.saturating_sub(self.config.demand_window.0) / bucket;
        let newest = now.0 / bucket;
        self.demand.retain(|key, b| {
            while b.0.front().is_some_and(|(i, _)| *i < oldest) {
                b.0.pop_front();
            }
            let units: u32 =
                b.0.iter()
                    .filter(|(i, _)| *i <= newest)
                    .fold(0u32, |acc, (_, n)| acc.saturating_add(*n));
            if units > 0 {
                out.entry(*key).or_default().demand = units;
            }
            !b.0.is_empty()
        });
        out
    }
}

/// A market's windows as decoded from a snapshot (`crate::state`).
#[derive(Debug)]
pub(crate) struct MarketData {
    drivers: HashMap<DriverId, DriverState>,
    demand: HashMap<(Cell, VehicleClass), DemandBuckets>,
    once: HashMap<(u64, Cell), Timestamp>,
}

/// A vehicle class as one byte in snapshots.
pub(crate) fn class_code(c: VehicleClass) -> u8 {
    match c {
        VehicleClass::Economy => 0,
        VehicleClass::Standard => 1,
        VehicleClass::Premium => 2,
        VehicleClass::Xl => 3,
    }
}

/// The class of a snapshot's byte.
pub(crate) fn class_of(code: u8) -> Result<VehicleClass, StateError> {
    match code {
        0 => Ok(VehicleClass::Economy),
        1 => Ok(VehicleClass::Standard),
        2 => Ok(VehicleClass::Premium),
        3 => Ok(VehicleClass::Xl),
        _ => Err(StateError::Invalid("unknown vehicle class")),
    }
}

fn cell_of(id: u64) -> Result<Cell, StateError> {
    Cell::from_id(id).map_err(|_| StateError::Invalid("invalid cell id"))
}

/// Bit 7 of a driver's class byte: available.
const AVAILABLE: u8 = 0x80;

impl Market {
    /// Appends the drivers and demand buckets, sorted by key.
    pub(crate) fn write_state(&self, w: &mut Writer) {
        let mut drivers: Vec<_> = self.drivers.iter().collect();
        drivers.sort_unstable_by_key(|(id, _)| **id);
        let newest = drivers.iter().map(|(_, d)| d.seen.0).max().unwrap_or(0);
        w.varint(drivers.len() as u64);
        w.varint(newest);
        for (id, d) in drivers {
            w.fixed64(id.0);
            w.fixed64(d.cell.id());
            w.u8(class_code(d.class) | if d.available { AVAILABLE } else { 0 });
            w.varint(newest - d.seen.0);
        }
        let mut demand: Vec<_> = self
            .demand
            .iter()
            .filter(|(_, b)| !b.0.is_empty())
            .collect();
        demand.sort_unstable_by_key(|(k, _)| **k);
        w.varint(demand.len() as u64);
        for ((cell, class), b) in demand {
            w.fixed64(cell.id());
            w.u8(class_code(*class));
            w.varint(b.0.len() as u64);
            let mut prev = 0;
            for (idx, units) in &b.0 {
                w.varint(idx - prev);
                w.varint(u64::from(*units));
                prev = *idx;
            }
        }
        // Version 2: the keys of keyed demand counted within the window.
        let mut once: Vec<_> = self.once.iter().collect();
        once.sort_unstable_by_key(|(k, _)| **k);
        let newest = once.iter().map(|(_, at)| at.0).max().unwrap_or(0);
        w.varint(once.len() as u64);
        w.varint(newest);
        for ((key, cell), at) in once {
            w.fixed64(*key);
            w.fixed64(cell.id());
            w.varint(newest - at.0);
        }
    }

    /// Reads what [`Market::write_state`] wrote (or, for `version` 1, a
    /// build before keyed demand), validating every value.
    pub(crate) fn read_state(r: &mut Reader<'_>, version: u8) -> Result<MarketData, StateError> {
        let n = r.count(18)?;
        let newest = r.varint()?;
        let mut drivers = HashMap::with_capacity(n);
        let mut last: Option<u64> = None;
        for _ in 0..n {
            let id = r.fixed64()?;
            if last.is_some_and(|l| l >= id) {
                return Err(StateError::Invalid("drivers not in ascending order"));
            }
            last = Some(id);
            let cell = cell_of(r.fixed64()?)?;
            let byte = r.u8()?;
            let class = class_of(byte & !AVAILABLE)?;
            let below = r.varint()?;
            let seen = newest
                .checked_sub(below)
                .ok_or(StateError::Invalid("driver seen before the epoch"))?;
            drivers.insert(
                DriverId(id),
                DriverState {
                    cell,
                    class,
                    available: byte & AVAILABLE != 0,
                    seen: Timestamp(seen),
                },
            );
        }
        let n = r.count(10)?;
        let mut demand = HashMap::with_capacity(n);
        let mut last_key = None;
        for _ in 0..n {
            let key = (cell_of(r.fixed64()?)?, class_of(r.u8()?)?);
            if last_key.is_some_and(|l| l >= key) {
                return Err(StateError::Invalid("demand keys not in ascending order"));
            }
            last_key = Some(key);
            let len = r.count(2)?;
            if len == 0 {
                return Err(StateError::Invalid("demand key without buckets"));
            }
            let mut buckets = VecDeque::with_capacity(len);
            let mut idx: u64 = 0;
            for i in 0..len {
                let delta = r.varint()?;
                if i > 0 && delta == 0 {
                    return Err(StateError::Invalid("demand buckets not ascending"));
                }
                idx = idx
                    .checked_add(delta)
                    .ok_or(StateError::Invalid("demand bucket index overflows"))?;
                let units = r.u32()?;
                if units == 0 {
                    return Err(StateError::Invalid("empty demand bucket"));
                }
                buckets.push_back((idx, units));
            }
            demand.insert(key, DemandBuckets(buckets));
        }
        let mut once = HashMap::new();
        if version >= 2 {
            let n = r.count(17)?;
            let newest = r.varint()?;
            let mut last = None;
            for _ in 0..n {
                let key = (r.fixed64()?, cell_of(r.fixed64()?)?);
                if last.is_some_and(|l| l >= key) {
                    return Err(StateError::Invalid(
                        "demand keys seen not in ascending order",
                    ));
                }
                last = Some(key);
                let at = newest
                    .checked_sub(r.varint()?)
                    .ok_or(StateError::Invalid("demand key seen before the epoch"))?;
                once.insert(key, Timestamp(at));
            }
        }
        Ok(MarketData {
            drivers,
            demand,
            once,
        })
    }

    /// Replaces the windows with decoded ones; the configuration stays.
    pub(crate) fn replace_state(&mut self, data: MarketData) {
        self.drivers = data.drivers;
        self.demand = data.demand;
        self.once = data.once;
        self.cells_of_key.clear();
        self.keys_of_cell.clear();
        for (key, cell) in self.once.keys() {
            *self.cells_of_key.entry(*key).or_default() += 1;
            *self.keys_of_cell.entry(*cell).or_default() += 1;
        }
    }

    /// How many (key, cell) pairs the dedup state holds.
    pub fn keyed_entries(&self) -> usize {
        self.once.len()
    }
}

/// One entry fewer for `k` in a count map (dropped at zero).
fn forget<K: std::hash::Hash + Eq, N: Copy + PartialEq + std::ops::SubAssign + From<u8>>(
    counts: &mut HashMap<K, N>,
    k: &K,
) {
    if let Some(n) = counts.get_mut(k) {
        *n -= N::from(1);
        if *n == N::from(0) {
            counts.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{LatLng, DEFAULT_LEVEL};

    fn cell(lat: f64, lng: f64) -> Cell {
        Cell::at(LatLng::new(lat, lng).expect("coordinate"), DEFAULT_LEVEL)
    }

    fn seen(driver: u64, c: Cell, available: bool, at: u64) -> DriverSeen {
        DriverSeen {
            driver: DriverId(driver),
            cell: c,
            class: VehicleClass::Standard,
            available,
            at: Timestamp(at),
        }
    }

    fn demand(c: Cell, kind: DemandKind, at: u64) -> DemandSeen {
        DemandSeen {
            cell: c,
            class: VehicleClass::Standard,
            kind,
            at: Timestamp(at),
            once: None,
        }
    }

    fn counts(m: &mut Market, c: Cell, now: u64) -> Counts {
        m.snapshot(Timestamp(now))
            .get(&(c, VehicleClass::Standard))
            .copied()
            .unwrap_or_default()
    }

    #[test]
    fn a_key_counts_in_a_few_cells_and_a_cell_holds_a_bounded_number_of_keys() {
        let mut m = Market::new(MarketConfig::default()).expect("market");
        let quote = |c: Cell, key: u64, at: u64| DemandSeen {
            cell: c,
            class: VehicleClass::Standard,
            kind: DemandKind::Quote,
            at: Timestamp(at),
            once: Some(key),
        };
        let cells: Vec<Cell> = (0..10)
            .map(|i| cell(37.70 + 0.01 * f64::from(i), -122.42))
            .collect();
        // One client asking everywhere, again and again: five cells, once each.
        let counted = (0..100)
            .filter(|i| m.demand_seen(quote(cells[i % 10], 7, 1_000 + *i as u64)))
            .count();
        assert_eq!(counted, usize::from(MAX_CELLS_PER_KEY));
        // Ten other clients in one cell: ten.
        let others = (100..110)
            .filter(|k| m.demand_seen(quote(cells[9], *k, 2_000)))
            .count();
        assert_eq!(others, 10);
        // A window later the client counts again, in a cell of its choice.
        m.snapshot(Timestamp(1_000 + 300_000 + 200));
        assert!(m.demand_seen(quote(cells[9], 7, 301_300)));
        // The dedup state of a cell is bounded, whatever the keys.
        let mut flood = Market::new(MarketConfig::default()).expect("market");
        let taken = (0..u64::from(MAX_KEYS_PER_CELL) + 50)
            .filter(|k| flood.demand_seen(quote(cells[0], *k, 5_000)))
            .count();
        assert_eq!(taken, MAX_KEYS_PER_CELL as usize);
        assert_eq!(flood.keyed_entries(), MAX_KEYS_PER_CELL as usize);
    }

    #[test]
    fn keyed_demand_counts_once_per_key_and_cell_within_the_window() {
        let mut m = Market::new(MarketConfig::default()).expect("market");
        let a = cell(37.77, -122.42);
        let b = cell(37.70, -122.40);
        let keyed = |c, key, at| DemandSeen {
            once: Some(key),
            ..demand(c, DemandKind::Quote, at)
        };
        assert!(m.demand_seen(keyed(a, 1, 1_000)));
        // The same rider checking again, and a redelivery: not counted.
        assert!(!m.demand_seen(keyed(a, 1, 30_000)));
        assert!(!m.demand_seen(keyed(a, 1, 1_000)));
        // Another rider, or the same rider in another cell: counted.
        assert!(m.demand_seen(keyed(a, 2, 30_000)));
        assert!(m.demand_seen(keyed(b, 1, 30_000)));
        // Unkeyed signals always count.
        m.demand_seen(demand(a, DemandKind::Quote, 31_000));
        m.demand_seen(demand(a, DemandKind::Quote, 31_000));
        let w = MarketConfig::default().weight_quote;
        assert_eq!(counts(&mut m, a, 40_000).demand, 4 * w);
        // A window after the last count, the key counts again; the
        // snapshot forgot it.
        let window = MarketConfig::default().demand_window.0;
        let later = 31_000 + window;
        m.snapshot(Timestamp(later));
        assert!(m.demand_seen(keyed(a, 1, later)));
        // Keys survive a snapshot round trip (state version 2).
        let engine = crate::surge::SurgeEngine::new(
            crate::surge::DefaultCurve,
            crate::surge::SurgeConfig::default(),
        )
        .expect("engine");
        let forecasts = crate::forecast::CellForecasts::default();
        let bytes = crate::state::encode(&m, &engine, &forecasts);
        let mut back = Market::new(MarketConfig::default()).expect("market");
        let mut e2 = crate::surge::SurgeEngine::new(
            crate::surge::DefaultCurve,
            crate::surge::SurgeConfig::default(),
        )
        .expect("engine");
        let mut f2 = crate::forecast::CellForecasts::default();
        crate::state::decode_into(&bytes, &mut back, &mut e2, &mut f2).expect("decode");
        assert!(!back.demand_seen(keyed(a, 1, later + 1)));
        assert!(back.demand_seen(keyed(a, 3, later + 1)));
    }

    #[test]
    fn supply_counts_distinct_available_drivers_within_ttl() {
        let mut m = Market::new(MarketConfig::default()).expect("market");
        let a = cell(37.77, -122.42);
        let b = cell(37.70, -122.40);
        // The same driver reported three times counts once.
        for t in [1_000, 2_000, 3_000] {
            m.driver_seen(seen(1, a, true, t));
        }
        m.driver_seen(seen(2, a, true, 3_000));
        m.driver_seen(seen(3, a, false, 3_000));
        assert_eq!(counts(&mut m, a, 4_000).supply, 2);
        // Driver 2 moves to b: counted only in b.
        m.driver_seen(seen(2, b, true, 5_000));
        assert_eq!(counts(&mut m, a, 6_000).supply, 1);
        assert_eq!(counts(&mut m, b, 6_000).supply, 1);
        // A reordered older report does not move them back.
        m.driver_seen(seen(2, a, true, 4_500));
        assert_eq!(counts(&mut m, b, 6_000).supply, 1);
        // TTL (60 s): driver 1 last seen at 3 s expires after 63 s.
        assert_eq!(counts(&mut m, a, 63_000).supply, 1);
        assert_eq!(counts(&mut m, a, 63_001).supply, 0);
        assert_eq!(m.tracked_drivers(), 1);
    }

    #[test]
    fn demand_slides_out_of_the_window() {
        let cfg = MarketConfig {
            demand_window: Millis::from_secs(30),
            bucket: Millis::from_secs(1),
            ..MarketConfig::default()
        };
        let mut m = Market::new(cfg).expect("market");
        let c = cell(51.5, -0.12);
        m.demand_seen(demand(c, DemandKind::RideRequest, 10_000)); // 2 units
        m.demand_seen(demand(c, DemandKind::Quote, 20_000)); // 1 unit
        m.demand_seen(demand(c, DemandKind::AppOpen, 20_000)); // 0 units
        assert_eq!(counts(&mut m, c, 20_500).demand, 3);
        assert_eq!(counts(&mut m, c, 40_999).demand, 3);
        assert_eq!(counts(&mut m, c, 41_000).demand, 1);
        assert_eq!(counts(&mut m, c, 51_000).demand, 0);
        // Late event lands in its own bucket.
        m.demand_seen(demand(c, DemandKind::Quote, 60_000));
        m.demand_seen(demand(c, DemandKind::Quote, 55_000));
        assert_eq!(counts(&mut m, c, 60_000).demand, 2);
        assert_eq!(counts(&mut m, c, 86_000).demand, 1);
    }

    #[test]
    fn config_is_validated() {
        let zero = MarketConfig {
            bucket: Millis(0),
            ..MarketConfig::default()
        };
        assert_eq!(Market::new(zero).err(), Some(InvalidMarketConfig::ZeroSpan));
        let wide = MarketConfig {
            bucket: Millis::from_secs(600),
            ..MarketConfig::default()
        };
        assert!(matches!(
            Market::new(wide).err(),
            Some(InvalidMarketConfig::BucketTooWide { .. })
        ));
    }

    #[test]
    fn driver_ids_hash_stably() {
        assert_eq!(DriverId::from_external("d1"), DriverId::from_external("d1"));
        assert_ne!(DriverId::from_external("d1"), DriverId::from_external("d2"));
        // FNV-1a test vector: "a" → 0xaf63dc4c8601ec8c.
        assert_eq!(
            DriverId::from_external("a"),
            DriverId(0xaf63_dc4c_8601_ec8c)
        );
    }
}
