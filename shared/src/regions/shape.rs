//! Polygons as GeoJSON means them (RFC 7946 §3.1.6, §3.1.7): rings of
//! positions joined by straight lines in longitude/latitude degrees, a
//! point inside by the even-odd rule over every ring (so holes and the
//! parts of a multi-polygon need no special case).
//!
//! Shapes are small (a city's outline, a district's), so containment is a
//! crossing count over the edges; the region index ([`super::index`]) keeps
//! requests from running it except near a boundary.

use crate::geo::LatLng;

/// Most positions in one shape (every ring of every part): a bound on the
/// work of loading a registry and of a point test near a boundary.
pub const MAX_POSITIONS: usize = 20_000;

/// A box in degrees, `west ≤ east` (shapes never cross the antimeridian).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Southern edge, latitude.
    pub south: f64,
    /// Western edge, longitude.
    pub west: f64,
    /// Northern edge, latitude.
    pub north: f64,
    /// Eastern edge, longitude.
    pub east: f64,
}

impl Rect {
    /// The box's centre.
    pub fn center(&self) -> (f64, f64) {
        (
            (self.west + self.east) / 2.0,
            (self.south + self.north) / 2.0,
        )
    }

    /// The part of both boxes (may be empty: then `south > north` or
    /// `west > east`).
    pub fn intersection(&self, other: &Rect) -> Rect {
        Rect {
            south: self.south.max(other.south),
            west: self.west.max(other.west),
            north: self.north.min(other.north),
            east: self.east.min(other.east),
        }
    }

    /// Whether the two boxes share any point (edges included).
    pub fn intersects(&self, other: &Rect) -> bool {
        let i = self.intersection(other);
        i.south <= i.north && i.west <= i.east
    }

    fn contains(&self, (x, y): (f64, f64)) -> bool {
        (self.west..=self.east).contains(&x) && (self.south..=self.north).contains(&y)
    }
}

/// Why a shape was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidShape {
    /// No ring at all.
    #[error("the shape has no ring")]
    Empty,
    /// A ring with fewer than four positions (a triangle closes on its
    /// first position).
    #[error("ring {ring} has {positions} positions; a ring needs at least 4")]
    TooFewPositions {
        /// The ring's index among all of the shape's rings.
        ring: usize,
        /// How many it has.
        positions: usize,
    },
    /// A ring whose last position is not its first.
    #[error("ring {ring} is not closed: its last position must equal its first")]
    NotClosed {
        /// The ring's index.
        ring: usize,
    },
    /// A position that is not a longitude and a latitude in range.
    #[error("ring {ring} position {position}: {reason}")]
    BadPosition {
        /// The ring's index.
        ring: usize,
        /// The position's index in its ring.
        position: usize,
        /// Why.
        reason: String,
    },
    /// More positions than [`MAX_POSITIONS`].
    #[error("the shape has {0} positions; the most is {MAX_POSITIONS}")]
    TooLarge(usize),
    /// A shape spanning more than 180° of longitude: GeoJSON splits shapes
    /// at the antimeridian, and so must the registry.
    #[error("the shape spans {0:.1}° of longitude; split it at the antimeridian")]
    TooWide(f64),
    /// Every ring is degenerate (no area).
    #[error("the shape encloses no area")]
    NoArea,
}

/// A validated polygon or multi-polygon.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Every ring's positions as `(lng, lat)`, the closing repeat dropped.
    rings: Vec<Vec<(f64, f64)>>,
    bbox: Rect,
}

impl Shape {
    /// A shape from GeoJSON rings of `[longitude, latitude]` positions (a
    /// polygon's rings, or every ring of a multi-polygon's parts).
    pub fn new(rings: Vec<Vec<[f64; 2]>>) -> Result<Self, InvalidShape> {
        if rings.is_empty() {
            return Err(InvalidShape::Empty);
        }
        let total: usize = rings.iter().map(Vec::len).sum();
        if total > MAX_POSITIONS {
            return Err(InvalidShape::TooLarge(total));
        }
        let mut bbox = Rect {
            south: f64::INFINITY,
            west: f64::INFINITY,
            north: f64::NEG_INFINITY,
            east: f64::NEG_INFINITY,
        };
        let mut out = Vec::with_capacity(rings.len());
        let mut area = 0.0;
        for (r, ring) in rings.into_iter().enumerate() {
            if ring.len() < 4 {
                return Err(InvalidShape::TooFewPositions {
                    ring: r,
                    positions: ring.len(),
                });
            }
            if ring.first() != ring.last() {
                return Err(InvalidShape::NotClosed { ring: r });
            }
            let mut pts = Vec::with_capacity(ring.len() - 1);
            for (i, [lng, lat]) in ring.iter().copied().enumerate() {
                let p = LatLng::new(lat, lng).map_err(|e| InvalidShape::BadPosition {
                    ring: r,
                    position: i,
                    reason: e.to_string(),
                })?;
                bbox.south = bbox.south.min(p.lat());
                bbox.north = bbox.north.max(p.lat());
                bbox.west = bbox.west.min(p.lng());
                bbox.east = bbox.east.max(p.lng());
                if i + 1 < ring.len() {
                    pts.push((lng, lat));
                }
            }
            area += ring_area(&pts).abs();
            out.push(pts);
        }
        let span = bbox.east - bbox.west;
        if span > 180.0 {
            return Err(InvalidShape::TooWide(span));
        }
        if area <= 0.0 {
            return Err(InvalidShape::NoArea);
        }
        Ok(Self { rings: out, bbox })
    }

    /// A rectangle as a shape (for tests and simple registries).
    pub fn rect(r: Rect) -> Result<Self, InvalidShape> {
        let (s, w, n, e) = (r.south, r.west, r.north, r.east);
        Self::new(vec![vec![[w, s], [e, s], [e, n], [w, n], [w, s]]])
    }

    /// The smallest box holding the shape.
    pub fn bbox(&self) -> Rect {
        self.bbox
    }

    /// How many edges the shape has.
    pub fn edge_count(&self) -> usize {
        self.rings.iter().map(Vec::len).sum()
    }

    /// Every position of every ring, as `(lng, lat)`.
    pub fn positions(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.rings.iter().flatten().copied()
    }

    /// Edge `i` (in ring order) as its two ends.
    fn edge(&self, mut i: usize) -> ((f64, f64), (f64, f64)) {
        for ring in &self.rings {
            if i < ring.len() {
                return (ring[i], ring[(i + 1) % ring.len()]);
            }
            i -= ring.len();
        }
        // Callers pass indices below edge_count(); a degenerate edge is
        // harmless should one ever not.
        ((0.0, 0.0), (0.0, 0.0))
    }

    /// Whether the point is inside by the even-odd rule: the reference
    /// every faster lookup must agree with.
    pub fn contains(&self, p: LatLng) -> bool {
        self.contains_xy((p.lng(), p.lat()))
    }

    fn contains_xy(&self, (x, y): (f64, f64)) -> bool {
        if !self.bbox.contains((x, y)) {
            return false;
        }
        let mut inside = false;
        for ring in &self.rings {
            let mut j = ring.len() - 1;
            for i in 0..ring.len() {
                let ((xi, yi), (xj, yj)) = (ring[i], ring[j]);
                if (yi > y) != (yj > y) && x < xi + (y - yi) * (xj - xi) / (yj - yi) {
                    inside = !inside;
                }
                j = i;
            }
        }
        inside
    }

    /// How the box lies against the shape, looking only at `edges` (the
    /// edges that touch a box holding this one; every edge at the start).
    /// Returns the edges that touch this box: none means the box is wholly
    /// inside or wholly outside, which its centre then tells.
    pub(crate) fn classify(&self, rect: &Rect, edges: &[u32]) -> (Side, Vec<u32>) {
        let touching: Vec<u32> = edges
            .iter()
            .copied()
            .filter(|&i| {
                let (a, b) = self.edge(i as usize);
                segment_touches(a, b, rect)
            })
            .collect();
        if !touching.is_empty() {
            return (Side::Boundary, touching);
        }
        let side = if self.contains_xy(rect.center()) {
            Side::Inside
        } else {
            Side::Outside
        };
        (side, touching)
    }

    /// Every edge's index, for the first [`Shape::classify`].
    pub(crate) fn all_edges(&self) -> Vec<u32> {
        (0..self.edge_count() as u32).collect()
    }
}

/// Where a box lies against a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Every point of the box is inside.
    Inside,
    /// No point of the box is inside.
    Outside,
    /// An edge passes through the box.
    Boundary,
}

/// Twice the signed area of a ring (shoelace), in square degrees.
fn ring_area(ring: &[(f64, f64)]) -> f64 {
    let mut a = 0.0;
    let mut j = ring.len() - 1;
    for i in 0..ring.len() {
        a += (ring[j].0 - ring[i].0) * (ring[j].1 + ring[i].1);
        j = i;
    }
    a
}

/// Whether the segment `a`–`b` has a point in the closed box
/// (Liang–Barsky clipping).
fn segment_touches(a: (f64, f64), b: (f64, f64), r: &Rect) -> bool {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
    for (p, q) in [
        (-dx, a.0 - r.west),
        (dx, r.east - a.0),
        (-dy, a.1 - r.south),
        (dy, r.north - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return false;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("valid")
    }

    fn square_with_hole() -> Shape {
        Shape::new(vec![
            vec![[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0], [0.0, 0.0]],
            vec![[1.0, 1.0], [3.0, 1.0], [3.0, 3.0], [1.0, 3.0], [1.0, 1.0]],
        ])
        .expect("shape")
    }

    #[test]
    fn even_odd_containment_with_a_hole() {
        let s = square_with_hole();
        assert!(s.contains(ll(0.5, 0.5)));
        assert!(!s.contains(ll(2.0, 2.0)), "inside the hole");
        assert!(s.contains(ll(3.5, 2.0)));
        assert!(!s.contains(ll(5.0, 2.0)));
        assert!(!s.contains(ll(-0.1, 2.0)));
    }

    #[test]
    fn bad_rings_are_refused_with_where() {
        assert_eq!(Shape::new(vec![]), Err(InvalidShape::Empty));
        assert!(matches!(
            Shape::new(vec![vec![[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]),
            Err(InvalidShape::TooFewPositions { ring: 0, .. })
        ));
        assert_eq!(
            Shape::new(vec![vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]),
            Err(InvalidShape::NotClosed { ring: 0 })
        );
        assert!(matches!(
            Shape::new(vec![vec![[0.0, 0.0], [1.0, 95.0], [1.0, 1.0], [0.0, 0.0]]]),
            Err(InvalidShape::BadPosition {
                ring: 0,
                position: 1,
                ..
            })
        ));
        assert!(matches!(
            Shape::new(vec![vec![
                [-170.0, 0.0],
                [170.0, 0.0],
                [170.0, 1.0],
                [-170.0, 0.0]
            ]]),
            Err(InvalidShape::TooWide(_))
        ));
        assert_eq!(
            Shape::new(vec![vec![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]]),
            Err(InvalidShape::NoArea)
        );
    }

    #[test]
    fn boxes_classify_against_the_edges() {
        let s = square_with_hole();
        let all = s.all_edges();
        let r = |south, west, north, east| Rect {
            south,
            west,
            north,
            east,
        };
        assert_eq!(s.classify(&r(0.2, 0.2, 0.8, 0.8), &all).0, Side::Inside);
        assert_eq!(s.classify(&r(1.5, 1.5, 2.5, 2.5), &all).0, Side::Outside);
        assert_eq!(s.classify(&r(5.0, 5.0, 6.0, 6.0), &all).0, Side::Outside);
        let (side, touching) = s.classify(&r(-0.5, 0.5, 0.5, 1.5), &all);
        assert_eq!(side, Side::Boundary);
        assert_eq!(touching, vec![0], "only the bottom edge");
        // Touching at a corner is touching.
        assert_eq!(s.classify(&r(4.0, 4.0, 5.0, 5.0), &all).0, Side::Boundary);
    }
}
