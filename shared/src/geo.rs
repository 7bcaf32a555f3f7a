//! Geospatial primitives: validated coordinates and S2 cells.
//!
//! Every price is attached to an S2 cell (a quadrilateral on the sphere). The
//! default level is 13 (about 0.8 km² per cell); a city can choose another.
//! Cells are identified on the wire by their S2 token (hex id with trailing
//! zeros stripped), which is what the map, the edge and the origin exchange.

use std::fmt;

use s2::cellid::CellID;
use s2::latlng::LatLng as S2LatLng;
use s2::region::RegionCoverer;

/// The default S2 level for pricing cells: about 0.8 km², a few city blocks.
pub const DEFAULT_LEVEL: Level = Level(13);

/// Mean Earth radius used for great-circle distances, in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A latitude/longitude pair in degrees, known to be finite and in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

/// Why a coordinate was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum InvalidLatLng {
    /// Latitude or longitude is NaN or infinite.
    #[error("coordinate is not a finite number")]
    NotFinite,
    /// Latitude outside [-90, 90].
    #[error("latitude {0} is outside [-90, 90]")]
    LatitudeOutOfRange(f64),
    /// Longitude outside [-180, 180].
    #[error("longitude {0} is outside [-180, 180]")]
    LongitudeOutOfRange(f64),
}

impl LatLng {
    /// Validates and builds a coordinate from degrees.
    pub fn new(lat: f64, lng: f64) -> Result<Self, InvalidLatLng> {
        if !lat.is_finite() || !lng.is_finite() {
            return Err(InvalidLatLng::NotFinite);
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(InvalidLatLng::LatitudeOutOfRange(lat));
        }
        if !(-180.0..=180.0).contains(&lng) {
            return Err(InvalidLatLng::LongitudeOutOfRange(lng));
        }
        Ok(Self { lat, lng })
    }

    /// Latitude in degrees.
    pub fn lat(self) -> f64 {
        self.lat
    }

    /// Longitude in degrees.
    pub fn lng(self) -> f64 {
        self.lng
    }

    /// Great-circle (haversine) distance in metres. Uses `libm` rather than
    /// the platform's maths library so wasm32 and native agree to the bit
    /// (fares are computed from it on both).
    pub fn distance_m(self, other: LatLng) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lng - self.lng).to_radians();
        let s1 = libm::sin(dp / 2.0);
        let s2 = libm::sin(dl / 2.0);
        let a = s1 * s1 + libm::cos(p1) * libm::cos(p2) * s2 * s2;
        2.0 * EARTH_RADIUS_M * libm::asin(libm::sqrt(a).min(1.0))
    }

    fn to_s2(self) -> S2LatLng {
        S2LatLng::from_degrees(self.lat, self.lng)
    }

    fn from_s2(ll: S2LatLng) -> Self {
        // Points produced by S2 are on the sphere; clamp only float noise.
        Self {
            lat: ll.lat.deg().clamp(-90.0, 90.0),
            lng: ll.lng.deg().clamp(-180.0, 180.0),
        }
    }
}

/// An S2 cell level, 0 (a cube face) to 30 (about 1 cm²).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Level(u8);

/// A level outside 0..=30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("S2 level {0} is outside 0..=30")]
pub struct InvalidLevel(pub i64);

impl Level {
    /// The finest S2 level.
    pub const MAX: u8 = 30;

    /// Validates a level.
    pub fn new(level: u8) -> Result<Self, InvalidLevel> {
        if level > Self::MAX {
            return Err(InvalidLevel(i64::from(level)));
        }
        Ok(Self(level))
    }

    /// The level as a number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// Mean area of a cell at this level, in square metres.
    pub fn average_area_m2(self) -> f64 {
        // The six faces split the sphere evenly; each level quarters a cell.
        let sphere = 4.0 * std::f64::consts::PI * EARTH_RADIUS_M * EARTH_RADIUS_M;
        sphere / 6.0 / 4f64.powi(i32::from(self.0))
    }
}

impl Default for Level {
    fn default() -> Self {
        DEFAULT_LEVEL
    }
}

/// A valid S2 cell. Ordered and hashed by its 64-bit id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cell(CellID);

/// A token or id that does not name a valid S2 cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid S2 cell token")]
pub struct InvalidCell(pub String);

impl Cell {
    /// The cell at `level` containing `point`.
    pub fn at(point: LatLng, level: Level) -> Self {
        Self(leaf_of(point).parent(u64::from(level.0)))
    }

    /// Builds a cell from its 64-bit id, refusing ids that are not cells.
    pub fn from_id(id: u64) -> Result<Self, InvalidCell> {
        let cell = CellID(id);
        if cell.is_valid() {
            Ok(Self(cell))
        } else {
            Err(InvalidCell(format!("{id:#x}")))
        }
    }

    /// Parses a token (hex id, trailing zeros stripped), as on the wire.
    pub fn from_token(token: &str) -> Result<Self, InvalidCell> {
        let ok =
            !token.is_empty() && token.len() <= 16 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(InvalidCell(token.to_owned()));
        }
        Self::from_id(CellID::from_token(token).0).map_err(|_| InvalidCell(token.to_owned()))
    }

    /// The token of this cell: lowercase hex, trailing zeros stripped.
    pub fn token(self) -> String {
        self.0.to_token()
    }

    /// The 64-bit S2 cell id.
    pub fn id(self) -> u64 {
        self.0 .0
    }

    /// This cell's level.
    pub fn level(self) -> Level {
        // A valid CellID's level is at most 30 by construction.
        Level(self.0.level() as u8)
    }

    /// The ancestor of this cell at a coarser (or equal) level.
    pub fn parent(self, level: Level) -> Self {
        if level >= self.level() {
            return self;
        }
        Self(self.0.parent(u64::from(level.0)))
    }

    /// The centre of the cell.
    pub fn center(self) -> LatLng {
        LatLng::from_s2(S2LatLng::from(self.0))
    }

    /// The four vertices of the cell, counter-clockwise, for drawing it.
    pub fn vertices(self) -> [LatLng; 4] {
        let cell = s2::cell::Cell::from(self.0);
        cell.vertices().map(|p| LatLng::from_s2(S2LatLng::from(p)))
    }

    /// The four children of this cell, one level finer (none for a leaf).
    pub fn children(self) -> Option<[Cell; 4]> {
        if self.0.is_leaf() {
            return None;
        }
        Some(self.0.children().map(Cell))
    }

    /// The ids of the first and last leaf cells inside this cell: every
    /// cell inside it has an id in that range (ids sort cells depth first).
    pub fn range(self) -> (u64, u64) {
        (self.0.range_min().0, self.0.range_max().0)
    }

    /// Whether `other` is this cell or inside it.
    pub fn contains(self, other: Cell) -> bool {
        self.0.contains(&other.0)
    }

    /// A latitude/longitude box, in degrees, holding every point of the
    /// cell: `[south, west, north, east]` with west ≤ east (a cell across
    /// the antimeridian or touching a pole gets every longitude). The `s2`
    /// crate's bound, which is conservative by construction.
    pub fn bound(self) -> [f64; 4] {
        let r = s2::cell::Cell::from(self.0).rect_bound();
        let (south, north) = (r.lat.lo.to_degrees(), r.lat.hi.to_degrees());
        let (mut west, mut east) = (r.lng.lo.to_degrees(), r.lng.hi.to_degrees());
        if west > east || r.lng.is_full() {
            (west, east) = (-180.0, 180.0);
        }
        [south.max(-90.0), west, north.min(90.0), east]
    }

    /// The eight cells around this one at the same level (four across the
    /// edges, four across the corners). Near a cube corner there are seven.
    pub fn neighbours(self) -> Vec<Cell> {
        let mut out: Vec<Cell> = self
            .0
            .all_neighbors(self.0.level())
            .into_iter()
            .filter(|c| *c != self.0)
            .map(Cell)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The leaf cell of a point.
///
/// The `s2` crate's own conversion picks the cube face with a different
/// tie-break from the reference S2 library (C++, and s2sphere): for a point
/// exactly on a face boundary (|x| = |y|, e.g. longitude 45° on the equator)
/// it prefers x where the reference prefers y. The differential fixture
/// caught 191 such points. Face selection and the face → (i, j) projection
/// are therefore done here, following the reference; the rest is the crate.
fn leaf_of(point: LatLng) -> CellID {
    let p = unit_vector(point);
    let face = face_of(&p);
    let (u, v) = match face {
        0 => (p.y / p.x, p.z / p.x),
        1 => (-p.x / p.y, p.z / p.y),
        2 => (-p.x / p.z, -p.y / p.z),
        3 => (p.z / p.x, p.y / p.x),
        4 => (p.z / p.y, -p.x / p.y),
        _ => (-p.y / p.z, -p.x / p.z),
    };
    CellID::from_face_ij(face, st_to_ij(uv_to_st(u)), st_to_ij(uv_to_st(v)))
}

/// The cube face of a point: the axis of its largest absolute component,
/// ties going to the later axis as in the reference, +3 when negative.
fn face_of(p: &s2::r3::vector::Vector) -> u8 {
    let (ax, ay, az) = (p.x.abs(), p.y.abs(), p.z.abs());
    let (axis_face, value) = if ax > ay {
        if ax > az {
            (0, p.x)
        } else {
            (2, p.z)
        }
    } else if ay > az {
        (1, p.y)
    } else {
        (2, p.z)
    };
    if value < 0.0 {
        axis_face + 3
    } else {
        axis_face
    }
}

/// The point on the unit sphere, computed with `libm` so that wasm32 and
/// native agree to the bit (the platform maths libraries differ in the last
/// bit for some inputs, which moves points that sit exactly on a face edge).
fn unit_vector(p: LatLng) -> s2::r3::vector::Vector {
    let s2ll = p.to_s2();
    let (phi, theta) = (s2ll.lat.rad(), s2ll.lng.rad());
    let cosphi = libm::cos(phi);
    s2::r3::vector::Vector {
        x: libm::cos(theta) * cosphi,
        y: libm::sin(theta) * cosphi,
        z: libm::sin(phi),
    }
}

/// The quadratic projection from face coordinates to cell-space.
fn uv_to_st(u: f64) -> f64 {
    if u >= 0.0 {
        0.5 * (1.0 + 3.0 * u).sqrt()
    } else {
        1.0 - 0.5 * (1.0 - 3.0 * u).sqrt()
    }
}

/// Cell-space coordinate to a leaf-cell index on the face.
fn st_to_ij(s: f64) -> i32 {
    const MAX_SIZE: i32 = 1 << 30;
    ((f64::from(MAX_SIZE) * s).floor() as i32).clamp(0, MAX_SIZE - 1)
}

impl fmt::Debug for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cell({})", self.token())
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token())
    }
}

/// A latitude/longitude box, south-west to north-east. A box whose west edge
/// is east of its east edge crosses the antimeridian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    south_west: LatLng,
    north_east: LatLng,
}

/// Why a bounding box or its covering was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBounds {
    /// A corner is not a valid coordinate.
    #[error("invalid corner: {0}")]
    Corner(#[from] InvalidLatLng),
    /// The south edge is north of the north edge.
    #[error("south edge {south} is north of north edge {north}")]
    Inverted {
        /// Requested south edge.
        south: f64,
        /// Requested north edge.
        north: f64,
    },
    /// The box would need more cells than the caller allows.
    #[error("the box needs about {estimated} cells at level {level}; the limit is {limit}")]
    TooManyCells {
        /// Rough count of cells the box covers.
        estimated: u64,
        /// The level asked for.
        level: u8,
        /// The caller's limit.
        limit: usize,
    },
}

impl BoundingBox {
    /// A box from its south-west and north-east corners.
    pub fn new(south_west: LatLng, north_east: LatLng) -> Result<Self, InvalidBounds> {
        if south_west.lat > north_east.lat {
            return Err(InvalidBounds::Inverted {
                south: south_west.lat,
                north: north_east.lat,
            });
        }
        Ok(Self {
            south_west,
            north_east,
        })
    }

    /// South-west corner.
    pub fn south_west(&self) -> LatLng {
        self.south_west
    }

    /// North-east corner.
    pub fn north_east(&self) -> LatLng {
        self.north_east
    }

    /// Whether the point lies inside the box (edges included).
    pub fn contains(&self, p: LatLng) -> bool {
        let lat_ok = (self.south_west.lat..=self.north_east.lat).contains(&p.lat);
        let (w, e) = (self.south_west.lng, self.north_east.lng);
        let lng_ok = if w <= e {
            (w..=e).contains(&p.lng)
        } else {
            p.lng >= w || p.lng <= e
        };
        lat_ok && lng_ok
    }

    fn to_s2(self) -> s2::rect::Rect {
        let (sw, ne) = (self.south_west.to_s2(), self.north_east.to_s2());
        // from_point_pair would pick the shorter longitude span; a box is
        // explicit about west and east, so build the intervals directly.
        let lat = s2::r1::interval::Interval::new(sw.lat.rad(), ne.lat.rad());
        let lng = s2::s1::interval::Interval::new(sw.lng.rad(), ne.lng.rad());
        s2::rect::Rect { lat, lng }
    }

    fn area_m2(&self) -> f64 {
        let r = self.to_s2();
        r.area() * EARTH_RADIUS_M * EARTH_RADIUS_M
    }

    /// All cells at `level` that intersect the box, sorted by id. Refuses
    /// boxes that would need more than `limit` cells, before computing them.
    pub fn covering(&self, level: Level, limit: usize) -> Result<Vec<Cell>, InvalidBounds> {
        // A cheap estimate first, so a huge box never starts a huge covering.
        // Real cells vary about 2x around the mean area; add the border ring.
        let estimated = (self.area_m2() / level.average_area_m2()).ceil() as u64;
        if estimated > limit as u64 * 2 {
            return Err(InvalidBounds::TooManyCells {
                estimated,
                level: level.0,
                limit,
            });
        }
        let coverer = RegionCoverer {
            min_level: level.0,
            max_level: level.0,
            level_mod: 1,
            max_cells: limit.max(1),
        };
        let mut cells: Vec<Cell> = coverer
            .covering(&self.to_s2())
            .0
            .into_iter()
            .flat_map(|c| {
                // The coverer may return coarser cells only if max level is
                // unreachable; expand defensively to the requested level.
                if c.level() == u64::from(level.0) {
                    vec![c]
                } else {
                    c.child_iter_at_level(u64::from(level.0)).collect()
                }
            })
            .map(Cell)
            .collect();
        cells.sort_unstable();
        cells.dedup();
        if cells.len() > limit {
            return Err(InvalidBounds::TooManyCells {
                estimated: cells.len() as u64,
                level: level.0,
                limit,
            });
        }
        Ok(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("valid test coordinate")
    }

    #[test]
    fn latlng_rejects_out_of_range_and_nan() {
        assert_eq!(LatLng::new(f64::NAN, 0.0), Err(InvalidLatLng::NotFinite));
        assert_eq!(
            LatLng::new(90.1, 0.0),
            Err(InvalidLatLng::LatitudeOutOfRange(90.1))
        );
        assert_eq!(
            LatLng::new(0.0, -180.5),
            Err(InvalidLatLng::LongitudeOutOfRange(-180.5))
        );
        assert!(LatLng::new(-90.0, 180.0).is_ok());
    }

    #[test]
    fn level_is_bounded() {
        assert!(Level::new(30).is_ok());
        assert_eq!(Level::new(31), Err(InvalidLevel(31)));
        // Level 13 is the brief's "about 0.8 km²".
        let km2 = DEFAULT_LEVEL.average_area_m2() / 1e6;
        assert!((0.9..1.4).contains(&km2), "level 13 mean area {km2} km²");
    }

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let c = Cell::at(ll(37.7749, -122.4194), DEFAULT_LEVEL);
        assert_eq!(Cell::from_token(&c.token()), Ok(c));
        assert_eq!(c.level(), DEFAULT_LEVEL);
        for bad in ["", "zz", "X", "0", "12345678901234567", "8085-"] {
            assert!(Cell::from_token(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn point_is_inside_its_cell_neighbours_are_adjacent() {
        let p = ll(51.5074, -0.1278);
        let c = Cell::at(p, DEFAULT_LEVEL);
        let n = c.neighbours();
        assert_eq!(n.len(), 8);
        assert!(!n.contains(&c));
        for other in &n {
            assert_eq!(other.level(), c.level());
            // Neighbours of a ~1 km cell are within ~3 km centre to centre.
            assert!(c.center().distance_m(other.center()) < 3_000.0);
        }
        // The centre of a cell maps back to the same cell.
        assert_eq!(Cell::at(c.center(), DEFAULT_LEVEL), c);
    }

    #[test]
    fn face_ties_break_like_the_reference() {
        use s2::r3::vector::Vector;
        let v = |x, y, z| Vector { x, y, z };
        // |x| = |y|: the reference picks y (the s2 crate alone picks x).
        assert_eq!(face_of(&v(1.0, 1.0, 0.0)), 1);
        assert_eq!(face_of(&v(-1.0, -1.0, 0.0)), 4);
        // A cube corner goes to z.
        assert_eq!(face_of(&v(1.0, 1.0, 1.0)), 2);
        assert_eq!(face_of(&v(1.0, -1.0, -1.0)), 5);
        assert_eq!(face_of(&v(-1.0, 0.5, 0.2)), 3);
    }

    #[test]
    fn vertices_surround_the_center() {
        let c = Cell::at(ll(-33.8688, 151.2093), DEFAULT_LEVEL);
        let centre = c.center();
        for v in c.vertices() {
            let d = centre.distance_m(v);
            assert!((200.0..2_000.0).contains(&d), "vertex {d} m from centre");
        }
    }

    #[test]
    fn covering_contains_the_cells_of_points_inside() {
        let bb = BoundingBox::new(ll(37.70, -122.50), ll(37.80, -122.35)).expect("box");
        let cells = bb.covering(DEFAULT_LEVEL, 1_000).expect("covering");
        assert!(cells.len() > 50, "{} cells", cells.len());
        for (lat, lng) in [(37.71, -122.49), (37.75, -122.42), (37.79, -122.36)] {
            assert!(cells.contains(&Cell::at(ll(lat, lng), DEFAULT_LEVEL)));
        }
        assert!(cells.iter().all(|c| c.level() == DEFAULT_LEVEL));
    }

    #[test]
    fn covering_refuses_huge_boxes_early() {
        let bb = BoundingBox::new(ll(-80.0, -170.0), ll(80.0, 170.0)).expect("box");
        assert!(matches!(
            bb.covering(DEFAULT_LEVEL, 5_000),
            Err(InvalidBounds::TooManyCells { .. })
        ));
    }

    #[test]
    fn covering_across_the_antimeridian() {
        let bb = BoundingBox::new(ll(-17.9, 179.9), ll(-17.8, -179.9)).expect("box");
        let cells = bb.covering(DEFAULT_LEVEL, 500).expect("covering");
        assert!(cells.contains(&Cell::at(ll(-17.85, 179.95), DEFAULT_LEVEL)));
        assert!(cells.contains(&Cell::at(ll(-17.85, -179.95), DEFAULT_LEVEL)));
        // It did not wrap the long way round the planet.
        assert!(cells.len() < 500);
        assert!(bb.contains(ll(-17.85, 180.0)));
        assert!(!bb.contains(ll(-17.85, 0.0)));
    }

    #[test]
    fn inverted_box_is_refused() {
        assert!(matches!(
            BoundingBox::new(ll(10.0, 0.0), ll(5.0, 1.0)),
            Err(InvalidBounds::Inverted { .. })
        ));
    }
}
