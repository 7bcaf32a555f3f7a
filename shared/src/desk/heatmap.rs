//! The rider heatmap: the effective price of every cell in view, merged
//! into coarser cells as the map zooms out.

use std::collections::BTreeMap;

use crate::geo::{BoundingBox, Cell, Level};
use crate::grid::GridCell;
use crate::quote::Ident;
use crate::surge::{Multiplier, Trend};
use crate::time::Timestamp;

use super::Desk;

/// A cell of the rider heatmap at its effective price.
#[derive(Debug, Clone, PartialEq)]
pub struct MapZone {
    /// The cell (merged to the map's level).
    pub cell: Cell,
    /// Its name ([`super::zone_name`]).
    pub zone_name: String,
    /// What a quote there is charged.
    pub surge_multiplier: Multiplier,
    /// Drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// Where the price is heading.
    pub trend: Trend,
}

/// The rider heatmap of a region (the wire's is `api::HeatmapResponse`).
#[derive(Debug, Clone, PartialEq)]
pub struct RiderHeatmap {
    /// Every cell in view.
    pub zones: Vec<MapZone>,
    /// When the grid was computed, if there is one.
    pub computed_at: Option<Timestamp>,
    /// The region.
    pub region: Ident,
    /// The grid's generation (0: none).
    pub generation: u64,
    /// The cells' level.
    pub level: Level,
    /// Whether the grid is past its freshness.
    pub stale: bool,
}

/// Most zones in one heatmap answer.
pub const MAX_ZONES: usize = 5_000;

/// More zones in view than one answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} zones in these bounds; zoom in or narrow the bounds (limit {MAX_ZONES})")]
pub struct TooManyZones(pub usize);

/// The cell level drawn at a map zoom: finer as the map zooms in, never
/// finer than the grid.
pub fn level_for_zoom(zoom: u8, grid_level: Level) -> Level {
    let want = (zoom + 1).clamp(1, 30);
    Level::new(want.min(grid_level.get())).unwrap_or(grid_level)
}

/// Merges cells into their parents at `level`: the highest multiplier (a
/// zoomed-out map must not hide the dearest price in an area), summed
/// supply and demand.
fn merge(cells: &[GridCell], level: Level) -> Vec<GridCell> {
    let mut out: BTreeMap<Cell, GridCell> = BTreeMap::new();
    for c in cells {
        let parent = c.cell.parent(level);
        out.entry(parent)
            .and_modify(|a| {
                a.multiplier = a.multiplier.max(c.multiplier);
                a.supply = a.supply.saturating_add(c.supply);
                a.demand = a.demand.saturating_add(c.demand);
            })
            .or_insert(GridCell { cell: parent, ..*c });
    }
    out.into_values().collect()
}

impl Desk<'_> {
    /// The rider heatmap of `region` inside `bounds` at map `zoom`, every
    /// cell at its effective multiplier.
    pub fn rider_heatmap(
        &self,
        region: &Ident,
        bounds: &BoundingBox,
        zoom: u8,
    ) -> Result<RiderHeatmap, TooManyZones> {
        let grid_level = self.level();
        let inside: Vec<GridCell> = self
            .cells()
            .into_iter()
            .filter(|c| bounds.contains(c.cell.center()))
            .collect();
        let level = level_for_zoom(zoom, grid_level);
        let cells = if level < grid_level {
            merge(&inside, level)
        } else {
            inside
        };
        if cells.len() > MAX_ZONES {
            return Err(TooManyZones(cells.len()));
        }
        let zones = cells
            .iter()
            .map(|c| MapZone {
                cell: c.cell,
                zone_name: self.zone_name(region, c.cell),
                surge_multiplier: c.multiplier,
                supply: c.supply,
                demand: c.demand,
                trend: c.trend,
            })
            .collect();
        let grid = self.grid();
        Ok(RiderHeatmap {
            zones,
            computed_at: grid.map(|g| g.computed_at()),
            region: region.clone(),
            generation: grid.map_or(0, |g| g.generation()),
            level: if grid.is_some() { level } else { grid_level },
            stale: self.stale(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{LatLng, DEFAULT_LEVEL};

    #[test]
    fn zoom_levels() {
        assert_eq!(level_for_zoom(15, DEFAULT_LEVEL), DEFAULT_LEVEL);
        assert_eq!(level_for_zoom(9, DEFAULT_LEVEL).get(), 10);
        assert_eq!(level_for_zoom(0, DEFAULT_LEVEL).get(), 1);
    }

    #[test]
    fn a_merged_cell_shows_its_dearest_child_and_sums_counts() {
        let at = |lat, lng, t| GridCell {
            cell: Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL),
            multiplier: Multiplier::from_tenths(t).expect("m"),
            supply: 2,
            demand: 5,
            trend: Trend::Stable,
            forecast: None,
        };
        let cells = [at(37.7700, -122.4200, 12), at(37.7705, -122.4205, 31)];
        let parent = Level::new(8).expect("level");
        let merged = merge(&cells, parent);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].multiplier.tenths(), 31);
        assert_eq!((merged[0].supply, merged[0].demand), (4, 10));
        assert_eq!(merged[0].cell, cells[0].cell.parent(parent));
    }
}
