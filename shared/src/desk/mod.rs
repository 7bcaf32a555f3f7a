//! The pricing desk: one view of the effective multiplier for every way a
//! price is shown.
//!
//! A quote, the rider heatmap and the driver view all price from the same
//! inputs — the region's grid (if any), the caps in force (the region's
//! caps narrowed by an emergency cap), the staleness settings and `now` —
//! and this module is the only place that turns them into a multiplier:
//! the published value, decayed by the grid's age, clamped to the caps.
//! What a map shows for a cell is therefore what a quote there charges.
//!
//! The desk also assembles every answer built on that multiplier: the
//! quote ([`Desk::quote`]), the rider heatmap ([`Desk::rider_heatmap`]),
//! the driver's recommendations ([`Desk::driver_zones`]) and the price
//! stream's payload ([`Desk::effective_grid`]).
//!
//! No I/O: the edge reads the inputs (concurrently) and calls the desk.

mod driver;
mod heatmap;
mod quote;

pub use driver::{
    hourly_earnings, DriverAsk, DriverCell, DriverView, MAX_RADIUS_M, MAX_RECOMMENDED,
};
pub use heatmap::{level_for_zoom, MapZone, RiderHeatmap, TooManyZones, MAX_ZONES};
pub use quote::{PricedQuote, QuoteAsk};

use crate::experiment::ArmChoice;
use crate::geo::{Cell, LatLng, Level, DEFAULT_LEVEL};
use crate::grid::{Freshness, GridCell, Staleness, SurgeGrid};
use crate::quote::Ident;
use crate::regions::{Region, Zone};
use crate::surge::{Caps, Multiplier};
use crate::time::{Millis, Timestamp};

/// Where a price's multiplier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A fresh grid just read from KV or the zone object.
    Fresh,
    /// A fresh grid from this isolate's cache.
    Cached,
    /// A grid past its fresh age, decaying toward 1.0.
    Stale,
    /// No grid, or one fully decayed: 1.0 (clamped to the caps).
    Default,
}

/// A multiplier source name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown multiplier source {0:?}; expected fresh, cached, stale or default")]
pub struct UnknownSource(pub String);

impl Source {
    /// Every source.
    pub const ALL: [Source; 4] = [Self::Fresh, Self::Cached, Self::Stale, Self::Default];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Fresh => "fresh",
            Source::Cached => "cached",
            Source::Stale => "stale",
            Source::Default => "default",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, UnknownSource> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownSource(s.chars().take(32).collect()))
    }

    /// Whether a price from this source is degraded (stale or default).
    pub fn degraded(self) -> bool {
        matches!(self, Source::Stale | Source::Default)
    }
}

/// How busy a cell looks to a rider, from its effective multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DemandLevel {
    /// Up to 1.0×.
    Low,
    /// 1.1× to 1.5×.
    Medium,
    /// 1.6× to 2.5×.
    High,
    /// Above 2.5×.
    VeryHigh,
}

/// A demand level name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown demand level {0:?}; expected low, medium, high or very_high")]
pub struct UnknownDemandLevel(pub String);

impl DemandLevel {
    /// Every level, lowest first.
    pub const ALL: [DemandLevel; 4] = [Self::Low, Self::Medium, Self::High, Self::VeryHigh];

    /// The level a multiplier shows as.
    pub fn of(m: Multiplier) -> Self {
        match m.tenths() {
            ..=10 => Self::Low,
            11..=15 => Self::Medium,
            16..=25 => Self::High,
            _ => Self::VeryHigh,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::VeryHigh => "very_high",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, UnknownDemandLevel> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownDemandLevel(s.chars().take(32).collect()))
    }
}

/// The name of a pricing cell: its named zone's name when the registry
/// puts it in one ([`crate::regions::Region::zone_of_cell`]), else its
/// region and its cell token. The one place zone names are built.
pub fn zone_name(region: &Ident, zone: Option<&Zone>, cell: Cell) -> String {
    match zone {
        Some(z) => z.name().to_owned(),
        None => [region.as_str(), " ", &cell.token()].concat(),
    }
}

/// Everything besides the grid that decides a multiplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeskInputs {
    /// The caps in force: the region's caps narrowed by an emergency cap
    /// ([`Caps::effective`]).
    pub caps: Caps,
    /// How long a grid is trusted and how fast it decays.
    pub staleness: Staleness,
    /// Now.
    pub now: Timestamp,
    /// Whether the grid came from the isolate's cache (only changes the
    /// source's name, `cached` instead of `fresh`).
    pub from_cache: bool,
    /// Whether an emergency is declared for the region: the caps then
    /// narrow to the grid's lawful cap, 1.0 without one
    /// ([`crate::emergency::emergency_caps`]).
    pub emergency: bool,
    /// A safety setting (caps, the emergency cap, a declaration) could not
    /// be read or parsed and no good value of it is known: every price is
    /// 1.0 from the `default` source until it can. Safety settings fail
    /// closed.
    pub degraded: bool,
}

/// One cell's effective price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// The multiplier every view shows and a quote charges: decayed by age,
    /// clamped to the caps.
    pub multiplier: Multiplier,
    /// What the grid published (1.0 without a grid or a cell).
    pub published: Multiplier,
    /// Where it came from.
    pub source: Source,
    /// The grid's age, if there is a grid.
    pub age: Option<Millis>,
    /// The grid's generation (0: none).
    pub generation: u64,
    /// The cell priced, at the grid's level (or the default level).
    pub cell: Cell,
}

/// A region's prices at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Desk<'g> {
    grid: Option<&'g SurgeGrid>,
    /// An experiment's arm whose multipliers replace the grid's.
    arm: Option<ArmChoice<'g>>,
    /// The region's geography: its named zones' names and caps.
    region: Option<&'g Region>,
    inputs: DeskInputs,
}

impl<'g> Desk<'g> {
    /// A desk over `grid` (none: every price is the default).
    pub fn new(grid: Option<&'g SurgeGrid>, mut inputs: DeskInputs) -> Self {
        if inputs.emergency {
            inputs.caps =
                crate::emergency::emergency_caps(inputs.caps, grid.and_then(SurgeGrid::lawful_cap));
        }
        Self {
            grid,
            arm: None,
            region: None,
            inputs,
        }
    }

    /// The desk with its region's named zones: each cell priced within its
    /// zone's caps ([`Zone::narrow`]) and shown by its zone's name.
    pub fn with_region(mut self, region: Option<&'g Region>) -> Self {
        self.region = region;
        self
    }

    /// The named zone of a pricing cell, if the registry has one there.
    pub fn zone(&self, cell: Cell) -> Option<&'g Zone> {
        self.region.and_then(|r| r.zone_of_cell(cell))
    }

    /// A pricing cell's name ([`zone_name`]).
    pub fn zone_name(&self, region: &Ident, cell: Cell) -> String {
        zone_name(region, self.zone(cell), cell)
    }

    /// The caps in force in a cell: the region's, narrowed by its zone's.
    pub fn caps_at(&self, cell: Cell) -> Caps {
        match self.zone(cell) {
            Some(z) => z.narrow(self.inputs.caps),
            None => self.inputs.caps,
        }
    }

    /// The desk pricing from an experiment's arm: the arm's multipliers in
    /// place of the grid's published ones, with the same age, staleness and
    /// caps (an arm's quote is priced by the same rules as any other).
    pub fn with_arm(mut self, arm: Option<ArmChoice<'g>>) -> Self {
        self.arm = arm;
        self
    }

    /// The grid priced from, if any.
    pub fn grid(&self) -> Option<&'g SurgeGrid> {
        self.grid
    }

    /// The experiment arm priced from, if any (only with a grid).
    pub fn arm(&self) -> Option<ArmChoice<'g>> {
        self.grid.and(self.arm)
    }

    /// Now, as the desk sees it.
    pub fn now(&self) -> Timestamp {
        self.inputs.now
    }

    /// The grid's age at `now`.
    pub fn age(&self) -> Option<Millis> {
        self.grid.map(|g| self.inputs.now.since(g.computed_at()))
    }

    /// The level prices are looked up at.
    pub fn level(&self) -> Level {
        self.grid.map_or(DEFAULT_LEVEL, SurgeGrid::level)
    }

    /// Whether the grid is past its fresh age (or missing).
    pub fn stale(&self) -> bool {
        match self.age() {
            None => true,
            Some(age) => age > self.inputs.staleness.fresh_for,
        }
    }

    /// What the grid publishes for a cell of it: the arm's multiplier when
    /// the desk prices an experiment's arm (1.0 where the arm has none),
    /// the grid's otherwise.
    fn published(&self, c: &GridCell) -> Multiplier {
        match self.arm {
            Some(arm) => arm.grid.lookup(c.cell).unwrap_or(Multiplier::ONE),
            None => c.multiplier,
        }
    }

    /// The effective price of a published multiplier in a cell now.
    fn apply(&self, published: Multiplier, cell: Cell) -> (Multiplier, Source) {
        if self.inputs.degraded {
            return (Multiplier::ONE, Source::Default);
        }
        let caps = self.caps_at(cell);
        let Some(age) = self.age() else {
            return (caps.clamp(Multiplier::ONE), Source::Default);
        };
        let (decayed, freshness) = self.inputs.staleness.decay(published, age);
        let source = match freshness {
            Freshness::Fresh if self.inputs.from_cache => Source::Cached,
            Freshness::Fresh => Source::Fresh,
            Freshness::Stale => Source::Stale,
            Freshness::Default => Source::Default,
        };
        (caps.clamp(decayed), source)
    }

    /// The price at a point (a quote's pickup).
    pub fn at(&self, point: LatLng) -> Effective {
        self.at_cell(Cell::at(point, self.level()))
    }

    /// The price of a cell at the grid's level.
    pub fn at_cell(&self, cell: Cell) -> Effective {
        let published = self
            .grid
            .and_then(|g| g.lookup(cell))
            .map_or(Multiplier::ONE, |c| self.published(c));
        let (multiplier, source) = self.apply(published, cell);
        Effective {
            multiplier,
            published,
            source,
            age: self.age(),
            generation: self.grid.map_or(0, SurgeGrid::generation),
            cell,
        }
    }

    /// The grid with every cell's effective multiplier in place of the
    /// published one: the price stream's payload.
    pub fn effective_grid(&self) -> Option<SurgeGrid> {
        let g = self.grid?;
        SurgeGrid::new(
            g.region().clone(),
            g.level(),
            g.generation(),
            g.computed_at(),
            self.cells(),
        )
        .ok()
        .map(|e| e.with_lawful_cap(g.lawful_cap()))
    }

    /// Every cell of the grid with its effective multiplier in place of the
    /// published one (what the heatmaps and the stream show).
    pub fn cells(&self) -> Vec<GridCell> {
        self.grid
            .map(|g| {
                g.cells()
                    .iter()
                    .map(|c| GridCell {
                        multiplier: self.apply(self.published(c), c.cell).0,
                        ..*c
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surge::Trend;

    fn m(t: u16) -> Multiplier {
        Multiplier::from_tenths(t).expect("tenths")
    }

    fn grid(at: u64) -> SurgeGrid {
        let cells = [(37.77, -122.42, 40), (37.70, -122.45, 12)]
            .iter()
            .map(|(lat, lng, t)| GridCell {
                cell: Cell::at(LatLng::new(*lat, *lng).expect("ll"), DEFAULT_LEVEL),
                multiplier: m(*t),
                supply: 1,
                demand: 9,
                trend: Trend::Increasing,
                forecast: None,
            })
            .collect();
        SurgeGrid::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            7,
            Timestamp(at),
            cells,
        )
        .expect("grid")
    }

    fn inputs(caps: Caps, now: u64) -> DeskInputs {
        DeskInputs {
            caps,
            staleness: Staleness {
                fresh_for: Millis::from_secs(30),
                decay_over: Millis::from_secs(300),
            },
            now: Timestamp(now),
            from_cache: false,
            emergency: false,
            degraded: false,
        }
    }

    /// Every view agrees: the map's value of each cell is the quote's.
    fn assert_views_agree(desk: &Desk<'_>) {
        for c in desk.cells() {
            assert_eq!(desk.at(c.cell.center()).multiplier, c.multiplier, "{c:?}");
        }
    }

    #[test]
    fn an_arm_prices_every_view_from_its_multipliers() {
        let g = grid(1_000);
        let hot = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        let arm = crate::grid::ArmGrid::new(
            Ident::new("e1").expect("id"),
            Ident::new("calm").expect("id"),
            Ident::new("none-00000000").expect("id"),
            vec![(hot, m(13))],
        );
        let caps = Caps::DEFAULT.effective(Some(m(25)));
        let desk = Desk::new(Some(&g), inputs(caps, 2_000)).with_arm(Some(ArmChoice {
            grid: &arm,
            unit: 3,
        }));
        let at = desk.at(hot.center());
        assert_eq!((at.multiplier, at.published), (m(13), m(13)));
        // A cell the arm has no multiplier for is 1.0 in the arm.
        let cold = desk.at(LatLng::new(37.70, -122.45).expect("ll"));
        assert_eq!(cold.multiplier, Multiplier::ONE);
        assert_views_agree(&desk);
        let streamed = desk.effective_grid().expect("grid");
        assert_eq!(streamed.cells(), desk.cells().as_slice());
        // The same grid outside the arm: its own multipliers, capped.
        let plain = Desk::new(Some(&g), inputs(caps, 2_000));
        assert_eq!(plain.at(hot.center()).multiplier, m(25));
        assert!(plain.arm().is_none() && desk.arm().is_some());
    }

    #[test]
    fn an_emergency_cap_holds_in_every_view() {
        let g = grid(1_000);
        let caps = Caps::DEFAULT.effective(Some(m(15)));
        let desk = Desk::new(Some(&g), inputs(caps, 2_000));
        let hot = desk.at(LatLng::new(37.77, -122.42).expect("ll"));
        assert_eq!((hot.multiplier, hot.published), (m(15), m(40)));
        assert_eq!(hot.source, Source::Fresh);
        assert!(desk.cells().iter().all(|c| c.multiplier <= m(15)));
        assert_views_agree(&desk);
        let streamed = desk.effective_grid().expect("grid");
        assert_eq!(streamed.generation(), 7);
        assert_eq!(streamed.cells(), desk.cells().as_slice());
    }

    #[test]
    fn a_declared_emergency_caps_every_view_at_the_lawful_cap() {
        let hot = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        let declared = |g: &SurgeGrid| {
            Desk::new(
                Some(g),
                DeskInputs {
                    emergency: true,
                    ..inputs(Caps::DEFAULT, 1_000)
                },
            )
            .at(hot.center())
            .multiplier
        };
        let with_cap = grid(1_000).with_lawful_cap(Some(m(22)));
        assert_eq!(declared(&with_cap), m(22));
        // No history, no normal range: 1.0.
        assert_eq!(declared(&grid(1_000)), Multiplier::ONE);
        // Not declared: the lawful cap changes nothing.
        let calm = Desk::new(Some(&with_cap), inputs(Caps::DEFAULT, 1_000));
        assert_eq!(calm.at(hot.center()).multiplier, m(40));
        let desk = Desk::new(
            Some(&with_cap),
            DeskInputs {
                emergency: true,
                ..inputs(Caps::DEFAULT, 1_000)
            },
        );
        assert_views_agree(&desk);
        assert_eq!(
            desk.effective_grid().and_then(|g| g.lawful_cap()),
            Some(m(22))
        );
    }

    #[test]
    fn the_driver_view_goes_where_demand_will_be() {
        use crate::grid::CellForecast;
        let at = |lat: f64, lng: f64| Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL);
        let (busy_now, busy_soon) = (at(37.77, -122.42), at(37.78, -122.41));
        let cell = |c: Cell, demand: u32, expected: f32| GridCell {
            cell: c,
            multiplier: m(15),
            supply: 2,
            demand,
            trend: Trend::Stable,
            forecast: Some(CellForecast {
                demand: expected,
                supply: 2.0,
            }),
        };
        let g = SurgeGrid::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            3,
            Timestamp(1_000),
            vec![cell(busy_now, 9, 1.0), cell(busy_soon, 1, 12.0)],
        )
        .expect("grid");
        let desk = Desk::new(Some(&g), inputs(Caps::DEFAULT, 1_000));
        let tariff = crate::fare::Tariff::default_for(crate::fare::VehicleClass::Standard);
        let view = desk.driver_zones(DriverAsk {
            region: g.region(),
            here: busy_now.center(),
            radius_m: 5_000.0,
            tariff: &tariff,
            route: &crate::fare::RouteModel::default(),
        });
        assert_eq!(view.forecast_horizon_minutes, 15);
        let first = &view.recommended_zones[0];
        assert_eq!(first.cell, busy_soon, "{view:?}");
        assert_eq!(first.demand_trend, Trend::Increasing);
        assert_eq!(first.expected_demand, Some(12.0));
        assert_eq!(view.recommended_zones[1].demand_trend, Trend::Decreasing);
    }

    /// A region whose pickup cells at 37.77,-122.42 (4.0) and 37.70,-122.45
    /// (1.2) sit in a named zone capped at 2.0 and an inactive zone.
    fn zoned_region() -> crate::regions::Registry {
        let text = r#"{"regions":[{"id":"sf","currency":"USD","boundary":{"type":"Polygon","coordinates":[[[-122.6,37.6],[-122.3,37.6],[-122.3,37.9],[-122.6,37.9],[-122.6,37.6]]]},
          "zones":[{"id":"hot","name":"Hot Spot","max_multiplier":2.0,"boundary":{"type":"Polygon","coordinates":[[[-122.44,37.75],[-122.40,37.75],[-122.40,37.79],[-122.44,37.79],[-122.44,37.75]]]}},
                   {"id":"calm","name":"Calm Park","active":false,"boundary":{"type":"Polygon","coordinates":[[[-122.47,37.68],[-122.43,37.68],[-122.43,37.72],[-122.47,37.72],[-122.47,37.68]]]}}]}]}"#;
        crate::api::admin::parse_registry(text).expect("registry")
    }

    #[test]
    fn named_zones_cap_and_name_every_view() {
        let g = grid(1_000);
        let registry = zoned_region();
        let region = registry.get("sf");
        let desk = Desk::new(Some(&g), inputs(Caps::DEFAULT, 2_000)).with_region(region);
        let hot = desk.at(LatLng::new(37.77, -122.42).expect("ll"));
        assert_eq!((hot.multiplier, hot.published), (m(20), m(40)));
        let calm = desk.at(LatLng::new(37.70, -122.45).expect("ll"));
        assert_eq!((calm.multiplier, calm.published), (m(10), m(12)));
        assert_views_agree(&desk);
        let sf = Ident::new("sf").expect("id");
        assert_eq!(desk.zone_name(&sf, hot.cell), "Hot Spot");
        assert_eq!(desk.zone_name(&sf, calm.cell), "Calm Park");
        let bounds = crate::geo::BoundingBox::new(
            LatLng::new(37.6, -122.6).expect("ll"),
            LatLng::new(37.9, -122.3).expect("ll"),
        )
        .expect("box");
        let map = desk.rider_heatmap(&sf, &bounds, 14).expect("heatmap");
        let names: Vec<&str> = map.zones.iter().map(|z| z.zone_name.as_str()).collect();
        assert!(
            names.contains(&"Hot Spot") && names.contains(&"Calm Park"),
            "{names:?}"
        );
        assert!(map.zones.iter().all(|z| z.surge_multiplier <= m(20)));
        let tariff = crate::fare::Tariff::default_for(crate::fare::VehicleClass::Standard);
        let view = desk.driver_zones(DriverAsk {
            region: &sf,
            here: hot.cell.center(),
            radius_m: 20_000.0,
            tariff: &tariff,
            route: &crate::fare::RouteModel::default(),
        });
        let first = &view.recommended_zones[0];
        assert_eq!(
            (first.zone_name.as_str(), first.surge_multiplier),
            ("Hot Spot", m(20))
        );
        // Without the registry: region-wide caps and cell names.
        let plain = Desk::new(Some(&g), inputs(Caps::DEFAULT, 2_000));
        assert_eq!(plain.at(hot.cell.center()).multiplier, m(40));
        assert_eq!(
            plain.zone_name(&sf, hot.cell),
            format!("sf {}", hot.cell.token())
        );
    }

    #[test]
    fn degraded_settings_price_every_view_at_one() {
        let g = grid(1_000);
        let desk = Desk::new(
            Some(&g),
            DeskInputs {
                degraded: true,
                ..inputs(Caps::new(m(15), m(50)).expect("caps"), 2_000)
            },
        );
        let hot = desk.at(LatLng::new(37.77, -122.42).expect("ll"));
        assert_eq!(
            (hot.multiplier, hot.source),
            (Multiplier::ONE, Source::Default)
        );
        assert!(desk.cells().iter().all(|c| c.multiplier == Multiplier::ONE));
        assert_views_agree(&desk);
    }

    #[test]
    fn a_stale_grid_decays_alike_in_every_view() {
        let g = grid(0);
        // 30 s fresh, then 150 of 300 s of decay: 4.0 → 2.5, 1.2 → 1.1.
        let desk = Desk::new(Some(&g), inputs(Caps::DEFAULT, 180_000));
        assert!(desk.stale());
        let hot = desk.at(LatLng::new(37.77, -122.42).expect("ll"));
        assert_eq!((hot.multiplier, hot.source), (m(25), Source::Stale));
        assert!(hot.source.degraded());
        assert_views_agree(&desk);
    }

    #[test]
    fn no_grid_prices_the_default_within_the_caps() {
        let caps = Caps::new(m(12), m(30)).expect("caps");
        let desk = Desk::new(None, inputs(caps, 5));
        let e = desk.at(LatLng::new(1.0, 1.0).expect("ll"));
        assert_eq!(
            (e.multiplier, e.source, e.generation),
            (m(12), Source::Default, 0)
        );
        assert!(desk.cells().is_empty());
    }

    #[test]
    fn sources_parse_their_names_and_zone_names_are_one_shape() {
        for s in [
            Source::Fresh,
            Source::Cached,
            Source::Stale,
            Source::Default,
        ] {
            assert_eq!(Source::parse(s.as_str()), Ok(s));
        }
        assert!(Source::parse("fresh ").is_err());
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        assert_eq!(
            zone_name(&Ident::new("sf").expect("id"), None, cell),
            format!("sf {}", cell.token())
        );
    }
}
