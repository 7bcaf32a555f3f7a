//! The region registry: the one home of geography. Which region a point is
//! in (and so whose grid, caps, tariff and currency price it), the region's
//! named zones with their own caps, its calendar and its cell level.
//!
//! A request never names its own region: the edge derives it from the
//! pickup ([`Registry::resolve`]); a region a request asserts must be the
//! pickup's. The origin applies the same registry to what it ingests.
//!
//! Boundaries are GeoJSON polygons ([`Shape`]); each is covered with S2
//! cells once, when the registry is built ([`ShapeIndex`]), so a lookup
//! costs a few binary searches, not a scan of polygons. Regions should not
//! overlap: an overlap the index sees (a cell inside two regions) is
//! refused; where a sliver escapes that check, the region listed first
//! holds the point. The same for a region's zones.
//!
//! The admin's JSON is `api::regions` (the wire); this module validates
//! what it converts into.

mod index;
mod shape;

pub use index::{ShapeIndex, MAX_CELLS_PER_SHAPE, MAX_INDEX_LEVEL};
pub use shape::{InvalidShape, Rect, Shape, MAX_POSITIONS};

use crate::fare::Currency;
use crate::geo::{BoundingBox, Cell, LatLng, Level};
use crate::quote::Ident;
use crate::surge::{Caps, Multiplier};

/// Most regions in one registry.
pub const MAX_REGIONS: usize = 500;
/// Most named zones in one region.
pub const MAX_ZONES: usize = 200;
/// Longest zone name, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// A named zone as the admin defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    /// Its id, unique in the region.
    pub id: Ident,
    /// What riders and drivers see ("Financial District").
    pub name: String,
    /// Where it is.
    pub boundary: Shape,
    /// The lowest multiplier its cells price at (none: the region's).
    pub min: Option<Multiplier>,
    /// The highest (none: the region's).
    pub max: Option<Multiplier>,
    /// An inactive zone never surges: its cells price at 1.0.
    pub active: bool,
}

/// A region as the admin defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSpec {
    /// Its id: grids, KV keys and Zone objects are named by it.
    pub id: Ident,
    /// Where it is.
    pub boundary: Shape,
    /// What its tariffs charge in.
    pub currency: Currency,
    /// Local standard time, minutes ahead of UTC (its forecasts' days).
    pub utc_offset_minutes: i32,
    /// The S2 level of its pricing cells.
    pub level: Level,
    /// Whose tariffs it prices with: `tariff:<this>:<class>` (usually its
    /// own id; regions of one city can share one).
    pub tariff_region: Ident,
    /// Its named zones.
    pub zones: Vec<ZoneSpec>,
}

/// A named zone of a region.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    spec: ZoneSpec,
}

impl Zone {
    /// Its id.
    pub fn id(&self) -> &Ident {
        &self.spec.id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether it surges at all.
    pub fn active(&self) -> bool {
        self.spec.active
    }

    /// `caps` narrowed to this zone: its own minimum and maximum where it
    /// has them (never widening the region's), 1.0 when inactive. The one
    /// rule for a zone's caps.
    pub fn narrow(&self, caps: Caps) -> Caps {
        if !self.spec.active {
            return Caps::new(Multiplier::ONE, Multiplier::ONE).unwrap_or(caps);
        }
        let max = self.spec.max.map_or(caps.max(), |m| m.min(caps.max()));
        let min = self
            .spec
            .min
            .map_or(caps.min(), |m| m.max(caps.min()))
            .min(max);
        Caps::new(min, max).unwrap_or(caps)
    }
}

/// A region of the registry.
#[derive(Debug, Clone)]
pub struct Region {
    id: Ident,
    boundary: Shape,
    currency: Currency,
    utc_offset_minutes: i32,
    level: Level,
    tariff_region: Ident,
    zones: Vec<Zone>,
    zone_shapes: Vec<Shape>,
    zone_index: ShapeIndex,
    extent: BoundingBox,
}

impl Region {
    /// Its id.
    pub fn id(&self) -> &Ident {
        &self.id
    }

    /// Its currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Minutes ahead of UTC.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.utc_offset_minutes
    }

    /// Its pricing cells' level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The region whose tariff keys it prices with.
    pub fn tariff_region(&self) -> &Ident {
        &self.tariff_region
    }

    /// Its boundary.
    pub fn boundary(&self) -> &Shape {
        &self.boundary
    }

    /// The box holding it: the map's and the unbounded heatmap's extent.
    pub fn extent(&self) -> BoundingBox {
        self.extent
    }

    /// Its named zones, in the admin's order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The named zone holding `p`, if any (the first listed, should two).
    pub fn zone_at(&self, p: LatLng) -> Option<&Zone> {
        self.zone_index
            .locate(&self.zone_shapes, p)
            .and_then(|i| self.zones.get(i))
    }

    /// The named zone a pricing cell belongs to: the one holding its
    /// centre. A quote is priced by its cell, so its zone is its cell's.
    pub fn zone_of_cell(&self, cell: Cell) -> Option<&Zone> {
        self.zone_at(cell.center())
    }
}

/// Why a registry was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidRegistry {
    /// No region.
    #[error("the registry has no region")]
    Empty,
    /// More than [`MAX_REGIONS`].
    #[error("the registry has {0} regions; the most is {MAX_REGIONS}")]
    TooManyRegions(usize),
    /// Two regions with one id.
    #[error("region {0} is listed twice")]
    DuplicateRegion(String),
    /// More than [`MAX_ZONES`] in a region.
    #[error("region {region} has {count} zones; the most is {MAX_ZONES}")]
    TooManyZones {
        /// The region.
        region: String,
        /// How many.
        count: usize,
    },
    /// Two zones of a region with one id.
    #[error("region {region}: zone {zone} is listed twice")]
    DuplicateZone {
        /// The region.
        region: String,
        /// The zone.
        zone: String,
    },
    /// A zone name that is empty, too long or not printable.
    #[error(
        "region {region}: zone {zone}: the name must be 1-{MAX_NAME_CHARS} printable characters"
    )]
    BadZoneName {
        /// The region.
        region: String,
        /// The zone.
        zone: String,
    },
    /// A zone whose minimum is above its maximum.
    #[error("region {region}: zone {zone}: min_multiplier is above max_multiplier")]
    ZoneCapsInverted {
        /// The region.
        region: String,
        /// The zone.
        zone: String,
    },
    /// A UTC offset that is not a multiple of 15 minutes in −12 h..=+14 h.
    #[error(
        "region {region}: utc_offset_minutes {minutes} must be a multiple of 15 in -720..=840"
    )]
    BadUtcOffset {
        /// The region.
        region: String,
        /// The offset given.
        minutes: i32,
    },
    /// A boundary whose box is not a valid latitude/longitude box.
    #[error("region {region}: boundary: {reason}")]
    BadBoundary {
        /// The region.
        region: String,
        /// Why.
        reason: String,
    },
    /// Two regions (or two zones of a region) both hold a cell.
    #[error("{first} and {second} overlap (both hold the cell {cell})")]
    Overlap {
        /// The one listed first.
        first: String,
        /// The other.
        second: String,
        /// A cell both hold.
        cell: String,
    },
}

/// Why a request's pickup cannot be priced in the region it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misplaced {
    /// The request names a region nobody registered.
    #[error("no region is called {0:?}")]
    UnknownRegion(String),
    /// The pickup is in no region.
    #[error("the pickup is outside every region this service prices")]
    OutsideServiceArea,
    /// The request names a region the pickup is not in.
    #[error("the pickup is in region {actual}, not {asserted}")]
    Mismatch {
        /// What the request said.
        asserted: String,
        /// Where the pickup is.
        actual: String,
    },
}

impl Misplaced {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownRegion(_) => "unknown_region",
            Self::OutsideServiceArea => "outside_service_area",
            Self::Mismatch { .. } => "region_mismatch",
        }
    }
}

/// Every region, indexed by geography.
#[derive(Debug, Clone)]
pub struct Registry {
    regions: Vec<Region>,
    shapes: Vec<Shape>,
    index: ShapeIndex,
}

impl Registry {
    /// Validates the regions and covers their boundaries.
    pub fn new(specs: Vec<RegionSpec>) -> Result<Self, InvalidRegistry> {
        if specs.is_empty() {
            return Err(InvalidRegistry::Empty);
        }
        if specs.len() > MAX_REGIONS {
            return Err(InvalidRegistry::TooManyRegions(specs.len()));
        }
        let mut regions: Vec<Region> = Vec::with_capacity(specs.len());
        for spec in specs {
            if regions.iter().any(|r| r.id == spec.id) {
                return Err(InvalidRegistry::DuplicateRegion(spec.id.to_string()));
            }
            regions.push(region(spec)?);
        }
        let shapes: Vec<Shape> = regions.iter().map(|r| r.boundary.clone()).collect();
        let index = ShapeIndex::build(&shapes);
        let names: Vec<String> = regions.iter().map(|r| r.id.to_string()).collect();
        refuse_overlaps(&index, &names)?;
        Ok(Self {
            regions,
            shapes,
            index,
        })
    }

    /// Every region, in the admin's order.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region called `id`.
    pub fn get(&self, id: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.id.as_str() == id)
    }

    /// The region holding `p`.
    pub fn locate(&self, p: LatLng) -> Option<&Region> {
        self.index
            .locate(&self.shapes, p)
            .and_then(|i| self.regions.get(i))
    }

    /// The region a request at `pickup` is priced in. `asserted` (what the
    /// request says, if anything) must name a registered region, and the
    /// pickup's. The one rule for a request's region.
    pub fn resolve(&self, pickup: LatLng, asserted: Option<&str>) -> Result<&Region, Misplaced> {
        if let Some(a) = asserted {
            if self.get(a).is_none() {
                return Err(Misplaced::UnknownRegion(a.chars().take(64).collect()));
            }
        }
        let region = self.locate(pickup).ok_or(Misplaced::OutsideServiceArea)?;
        match asserted {
            Some(a) if a != region.id.as_str() => Err(Misplaced::Mismatch {
                asserted: a.to_owned(),
                actual: region.id.to_string(),
            }),
            _ => Ok(region),
        }
    }

    /// The registered region called `id`, or why not: for requests that
    /// name a region without a point (streams, pushes).
    pub fn named(&self, id: &str) -> Result<&Region, Misplaced> {
        self.get(id)
            .ok_or_else(|| Misplaced::UnknownRegion(id.chars().take(64).collect()))
    }
}

fn region(spec: RegionSpec) -> Result<Region, InvalidRegistry> {
    let name = spec.id.to_string();
    if spec.utc_offset_minutes % 15 != 0 || !(-720..=840).contains(&spec.utc_offset_minutes) {
        return Err(InvalidRegistry::BadUtcOffset {
            region: name,
            minutes: spec.utc_offset_minutes,
        });
    }
    if spec.zones.len() > MAX_ZONES {
        return Err(InvalidRegistry::TooManyZones {
            region: name,
            count: spec.zones.len(),
        });
    }
    let mut zones: Vec<Zone> = Vec::with_capacity(spec.zones.len());
    for z in spec.zones {
        let zone = z.id.to_string();
        if zones.iter().any(|known| known.spec.id == z.id) {
            return Err(InvalidRegistry::DuplicateZone { region: name, zone });
        }
        let chars = z.name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || z.name.chars().any(char::is_control) {
            return Err(InvalidRegistry::BadZoneName { region: name, zone });
        }
        if let (Some(min), Some(max)) = (z.min, z.max) {
            if min > max {
                return Err(InvalidRegistry::ZoneCapsInverted { region: name, zone });
            }
        }
        zones.push(Zone { spec: z });
    }
    let zone_shapes: Vec<Shape> = zones.iter().map(|z| z.spec.boundary.clone()).collect();
    let zone_index = ShapeIndex::build(&zone_shapes);
    let zone_names: Vec<String> = zones
        .iter()
        .map(|z| [name.as_str(), "/", z.spec.id.as_str()].concat())
        .collect();
    refuse_overlaps(&zone_index, &zone_names)?;
    let b = spec.boundary.bbox();
    let extent = LatLng::new(b.south, b.west)
        .and_then(|sw| Ok((sw, LatLng::new(b.north, b.east)?)))
        .map_err(|e| e.to_string())
        .and_then(|(sw, ne)| BoundingBox::new(sw, ne).map_err(|e| e.to_string()))
        .map_err(|reason| InvalidRegistry::BadBoundary {
            region: name.clone(),
            reason,
        })?;
    Ok(Region {
        extent,
        id: spec.id,
        boundary: spec.boundary,
        currency: spec.currency,
        utc_offset_minutes: spec.utc_offset_minutes,
        level: spec.level,
        tariff_region: spec.tariff_region,
        zones,
        zone_shapes,
        zone_index,
    })
}

/// Refuses shapes whose coverings put a cell inside one and inside (or
/// containing) a cell inside another: a certain overlap. Boundary cells
/// are shared by neighbours that touch, so they prove nothing.
fn refuse_overlaps(index: &ShapeIndex, names: &[String]) -> Result<(), InvalidRegistry> {
    match index.overlap() {
        None => Ok(()),
        Some((a, b, cell)) => Err(InvalidRegistry::Overlap {
            first: names.get(a).cloned().unwrap_or_default(),
            second: names.get(b).cloned().unwrap_or_default(),
            cell: cell.token(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Ident {
        Ident::new(s).expect("id")
    }

    fn square(south: f64, west: f64, size: f64) -> Shape {
        Shape::rect(Rect {
            south,
            west,
            north: south + size,
            east: west + size,
        })
        .expect("square")
    }

    fn spec(name: &str, boundary: Shape) -> RegionSpec {
        RegionSpec {
            id: id(name),
            boundary,
            currency: Currency::USD,
            utc_offset_minutes: 0,
            level: Level::default(),
            tariff_region: id(name),
            zones: vec![],
        }
    }

    fn ll(lat: f64, lng: f64) -> LatLng {
        LatLng::new(lat, lng).expect("ll")
    }

    #[test]
    fn the_pickup_decides_the_region() {
        let r = Registry::new(vec![
            spec("sf", square(37.6, -122.55, 0.25)),
            spec("oak", square(37.7, -122.28, 0.15)),
        ])
        .expect("registry");
        let sf = ll(37.7749, -122.4194);
        assert_eq!(r.resolve(sf, None).map(|x| x.id().as_str()), Ok("sf"));
        assert_eq!(r.resolve(sf, Some("sf")).map(|x| x.id().as_str()), Ok("sf"));
        assert_eq!(
            r.resolve(sf, Some("oak")).map(|x| x.id().as_str()),
            Err(Misplaced::Mismatch {
                asserted: "oak".into(),
                actual: "sf".into()
            })
        );
        let e = r.resolve(sf, Some("zz")).expect_err("made up");
        assert_eq!(e.code(), "unknown_region");
        let e = r.resolve(ll(0.0, 0.0), None).expect_err("nowhere");
        assert_eq!(e.code(), "outside_service_area");
        assert_eq!(r.named("oak").map(|x| x.id().as_str()), Ok("oak"));
        assert!(r.named("zz").is_err());
    }

    #[test]
    fn overlapping_regions_and_zones_are_refused() {
        let e = Registry::new(vec![
            spec("a", square(10.0, 10.0, 1.0)),
            spec("b", square(10.5, 10.5, 1.0)),
        ])
        .expect_err("overlap");
        assert!(matches!(e, InvalidRegistry::Overlap { .. }), "{e}");
        // Neighbours that share an edge are fine.
        Registry::new(vec![
            spec("a", square(10.0, 10.0, 1.0)),
            spec("b", square(10.0, 11.0, 1.0)),
        ])
        .expect("touching regions");
        let zone = |name: &str, south| ZoneSpec {
            id: id(name),
            name: name.to_uppercase(),
            boundary: square(south, 10.1, 0.3),
            min: None,
            max: None,
            active: true,
        };
        let mut s = spec("a", square(10.0, 10.0, 1.0));
        s.zones = vec![zone("z1", 10.1), zone("z2", 10.2)];
        assert!(matches!(
            Registry::new(vec![s]),
            Err(InvalidRegistry::Overlap { .. })
        ));
    }

    #[test]
    fn zones_have_names_and_narrow_the_caps() {
        let m = |t| Multiplier::from_tenths(t).expect("m");
        let mut s = spec("sf", square(37.6, -122.55, 0.25));
        s.zones = vec![
            ZoneSpec {
                id: id("fidi"),
                name: "Financial District".into(),
                boundary: square(37.79, -122.405, 0.01),
                min: Some(m(12)),
                max: Some(m(30)),
                active: true,
            },
            ZoneSpec {
                id: id("park"),
                name: "Golden Gate Park".into(),
                boundary: square(37.765, -122.51, 0.01),
                min: None,
                max: None,
                active: false,
            },
        ];
        let r = Registry::new(vec![s]).expect("registry");
        let sf = r.get("sf").expect("sf");
        let fidi = sf.zone_at(ll(37.795, -122.40)).expect("in fidi");
        assert_eq!(fidi.name(), "Financial District");
        let caps = fidi.narrow(Caps::DEFAULT);
        assert_eq!((caps.min(), caps.max()), (m(12), m(30)));
        // A zone never widens the region's caps.
        let tight = fidi.narrow(Caps::new(m(10), m(20)).expect("caps"));
        assert_eq!((tight.min(), tight.max()), (m(12), m(20)));
        let emergency = fidi.narrow(Caps::new(m(10), m(11)).expect("caps"));
        assert_eq!((emergency.min(), emergency.max()), (m(11), m(11)));
        let park = sf.zone_at(ll(37.77, -122.505)).expect("in the park");
        assert_eq!(park.narrow(Caps::DEFAULT).max(), Multiplier::ONE);
        assert!(sf.zone_at(ll(37.7749, -122.4194)).is_none());
    }

    #[test]
    fn bad_fields_are_refused_with_their_reason() {
        let mut s = spec("a", square(10.0, 10.0, 1.0));
        s.utc_offset_minutes = 7;
        assert!(matches!(
            Registry::new(vec![s]),
            Err(InvalidRegistry::BadUtcOffset { .. })
        ));
        assert_eq!(Registry::new(vec![]).err(), Some(InvalidRegistry::Empty));
        let twice = vec![
            spec("a", square(10.0, 10.0, 1.0)),
            spec("a", square(20.0, 10.0, 1.0)),
        ];
        assert_eq!(
            Registry::new(twice).err(),
            Some(InvalidRegistry::DuplicateRegion("a".into()))
        );
    }
}
