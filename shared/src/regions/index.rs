//! Which shape holds a point, without testing every shape: each shape is
//! covered once, when the registry loads, by S2 cells of several levels,
//! each marked *inside* (every point of the cell is in the shape) or
//! *boundary* (an edge passes through it). A lookup walks the point's
//! ancestors at the levels used — a handful of binary searches — and runs
//! the exact even-odd test only for shapes whose boundary cell holds it.
//!
//! The covering is built top down, like S2's region coverer: cells that a
//! shape's edges do not touch are wholly inside or wholly outside (their
//! centre tells which); cells an edge touches are split until
//! [`MAX_INDEX_LEVEL`] or the shape's cell budget. A cell is judged by a
//! latitude/longitude box that holds all of it (the `s2` crate's bound,
//! narrowed by its parent's), so *inside* is never wrong; the edges a
//! child is tested against are only those that touched its parent.

use super::shape::{Rect, Shape, Side};
use crate::geo::{BoundingBox, Cell, LatLng, Level};

/// The finest level a boundary is refined to: about 150 m cells, so a
/// boundary test runs for points within that of an edge.
pub const MAX_INDEX_LEVEL: u8 = 16;

/// Most cells one shape's covering may have.
pub const MAX_CELLS_PER_SHAPE: usize = 1_024;

/// One shape's mark on one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    /// The shape's index in the list the index was built over.
    shape: u32,
    /// Every point of the cell is in the shape.
    inside: bool,
}

/// The cell coverings of a list of shapes.
#[derive(Debug, Clone, Default)]
pub struct ShapeIndex {
    /// (cell id, mark), sorted by cell id; a cell two shapes' boundaries
    /// cross appears once per shape.
    cells: Vec<(u64, Mark)>,
    /// The levels that occur in `cells`, coarsest first.
    levels: Vec<Level>,
}

impl ShapeIndex {
    /// Covers every shape.
    pub fn build(shapes: &[Shape]) -> Self {
        let mut cells = Vec::new();
        for (i, shape) in shapes.iter().enumerate() {
            cover(shape, i as u32, &mut cells);
        }
        cells.sort_unstable_by_key(|(id, m)| (*id, m.shape));
        let mut levels: Vec<Level> = cells
            .iter()
            .filter_map(|(id, _)| Cell::from_id(*id).ok().map(Cell::level))
            .collect();
        levels.sort_unstable();
        levels.dedup();
        Self { cells, levels }
    }

    /// How many cells the coverings hold (a measure of the index's size).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The first shape of `shapes` (the list the index was built over)
    /// that holds `p`, by index: the same answer as testing each shape in
    /// order with [`Shape::contains`].
    pub fn locate(&self, shapes: &[Shape], p: LatLng) -> Option<usize> {
        let leaf = Cell::at(p, Level::new(Level::MAX).unwrap_or_default());
        let mut best: Option<usize> = None;
        for level in &self.levels {
            let id = leaf.parent(*level).id();
            let start = self.cells.partition_point(|(c, _)| *c < id);
            for (_, mark) in self.cells[start..].iter().take_while(|(c, _)| *c == id) {
                let shape = mark.shape as usize;
                if best.is_some_and(|b| b <= shape) {
                    continue;
                }
                let holds = mark.inside || shapes.get(shape).is_some_and(|s| s.contains(p));
                if holds {
                    best = Some(shape);
                }
            }
        }
        best
    }
}

impl ShapeIndex {
    /// Two shapes that both hold a cell wholly (a cell inside one equal to,
    /// or inside, a cell inside the other), listed first, second, and the
    /// cell: a certain overlap. Cells a boundary crosses prove nothing
    /// (neighbours that touch share them).
    pub fn overlap(&self) -> Option<(usize, usize, Cell)> {
        for (id, mark) in self.cells.iter().filter(|(_, m)| m.inside) {
            let Ok(cell) = Cell::from_id(*id) else {
                continue;
            };
            let (lo, hi) = cell.range();
            let start = self.cells.partition_point(|(c, _)| *c < lo);
            let other = self.cells[start..]
                .iter()
                .take_while(|(c, _)| *c <= hi)
                .find(|(_, m)| m.inside && m.shape != mark.shape);
            if let Some((_, m)) = other {
                let (a, b) = (mark.shape.min(m.shape), mark.shape.max(m.shape));
                return Some((a as usize, b as usize, cell));
            }
        }
        None
    }
}

/// A cell's box: the `s2` bound, narrowed to its parent's box (which holds
/// the parent, hence the child).
fn cell_rect(cell: Cell, parent: Option<&Rect>) -> Rect {
    let [south, west, north, east] = cell.bound();
    let r = Rect {
        south,
        west,
        north,
        east,
    };
    match parent {
        Some(p) => r.intersection(p),
        None => r,
    }
}

/// The level whose cells are about a quarter of the shape's box, where the
/// covering starts.
fn start_level(bbox: &Rect) -> Level {
    let mid = (bbox.south + bbox.north) / 2.0;
    let point = |lat: f64, lng: f64| LatLng::new(lat, lng).ok();
    let span = |a: Option<LatLng>, b: Option<LatLng>| match (a, b) {
        (Some(a), Some(b)) => a.distance_m(b).max(1.0),
        _ => 1.0,
    };
    let height = span(point(bbox.south, bbox.west), point(bbox.north, bbox.west));
    let width = span(point(mid, bbox.west), point(mid, bbox.east));
    let area = height * width;
    let mut level = 1u8;
    while level < MAX_INDEX_LEVEL
        && Level::new(level + 1).is_ok_and(|l| l.average_area_m2() * 4.0 >= area)
    {
        level += 1;
    }
    Level::new(level).unwrap_or_default()
}

/// Appends the covering of `shape` (as shape number `id`) to `out`.
fn cover(shape: &Shape, id: u32, out: &mut Vec<(u64, Mark)>) {
    let bbox = shape.bbox();
    let mut level = start_level(&bbox);
    let start = loop {
        let corner = |lat, lng| LatLng::new(lat, lng).ok();
        let cells = match (corner(bbox.south, bbox.west), corner(bbox.north, bbox.east)) {
            (Some(sw), Some(ne)) => BoundingBox::new(sw, ne)
                .ok()
                .and_then(|b| b.covering(level, 64).ok()),
            _ => None,
        };
        match cells {
            Some(c) => break c,
            None if level.get() > 1 => level = Level::new(level.get() - 1).unwrap_or_default(),
            None => return,
        }
    };
    let all = shape.all_edges();
    // (cell, its box, the edges touching the box of its parent)
    let mut frontier: Vec<(Cell, Rect, Vec<u32>)> = start
        .into_iter()
        .map(|c| (c, cell_rect(c, None), all.clone()))
        .collect();
    let mut emitted = 0usize;
    while !frontier.is_empty() {
        let mut boundary = Vec::new();
        for (cell, rect, edges) in frontier {
            match shape.classify(&rect, &edges) {
                (Side::Inside, _) => {
                    out.push((
                        cell.id(),
                        Mark {
                            shape: id,
                            inside: true,
                        },
                    ));
                    emitted += 1;
                }
                (Side::Outside, _) => {}
                (Side::Boundary, touching) => boundary.push((cell, rect, touching)),
            }
        }
        let finest = boundary
            .first()
            .is_some_and(|(c, _, _)| c.level().get() >= MAX_INDEX_LEVEL);
        let over_budget = emitted + 4 * boundary.len() > MAX_CELLS_PER_SHAPE;
        if finest || over_budget {
            for (cell, _, _) in boundary {
                out.push((
                    cell.id(),
                    Mark {
                        shape: id,
                        inside: false,
                    },
                ));
            }
            return;
        }
        frontier = boundary
            .into_iter()
            .flat_map(|(cell, rect, touching)| {
                cell.children()
                    .into_iter()
                    .flatten()
                    .map(move |child| (child, cell_rect(child, Some(&rect)), touching.clone()))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("valid")
    }

    fn rect(south: f64, west: f64, north: f64, east: f64) -> Shape {
        Shape::rect(Rect {
            south,
            west,
            north,
            east,
        })
        .expect("rect")
    }

    #[test]
    fn points_find_their_shape_and_the_first_one_wins() {
        let shapes = vec![
            rect(37.70, -122.52, 37.82, -122.35),
            rect(37.75, -122.30, 37.85, -122.20),
            // Overlaps the first: the first wins where both hold a point.
            rect(37.78, -122.40, 37.90, -122.30),
        ];
        let index = ShapeIndex::build(&shapes);
        assert!(index.len() < 3 * MAX_CELLS_PER_SHAPE);
        assert_eq!(index.locate(&shapes, ll(37.7749, -122.4194)), Some(0));
        assert_eq!(index.locate(&shapes, ll(37.80, -122.25)), Some(1));
        assert_eq!(index.locate(&shapes, ll(37.80, -122.38)), Some(0));
        assert_eq!(index.locate(&shapes, ll(37.88, -122.38)), Some(2));
        assert_eq!(index.locate(&shapes, ll(37.60, -122.40)), None);
        assert_eq!(index.locate(&shapes, ll(-33.0, 151.0)), None);
    }

    #[test]
    fn a_boundary_point_is_decided_by_the_exact_test() {
        let shapes = vec![rect(10.0, 10.0, 10.5, 10.5)];
        let index = ShapeIndex::build(&shapes);
        for (lat, lng) in [(10.0000001, 10.25), (9.9999999, 10.25), (10.25, 10.4999999)] {
            let p = ll(lat, lng);
            assert_eq!(
                index.locate(&shapes, p).is_some(),
                shapes[0].contains(p),
                "{p:?}"
            );
        }
    }

    #[test]
    fn a_country_sized_shape_stays_within_its_budget() {
        let shapes = vec![rect(25.0, -124.0, 49.0, -67.0)];
        let index = ShapeIndex::build(&shapes);
        assert!(index.len() <= MAX_CELLS_PER_SHAPE, "{}", index.len());
        assert_eq!(index.locate(&shapes, ll(39.0, -98.0)), Some(0));
        assert_eq!(index.locate(&shapes, ll(50.0, -98.0)), None);
    }
}
