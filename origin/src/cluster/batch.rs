//! The events of one ingest request for one region, as a stream message.
//!
//! A compact fixed-width little-endian format, validated on decode (any
//! byte string decodes into valid events or fails, never panics):
//!
//! ```text
//! "EQB" 2
//! u32 drivers, each: driver u64, cell u64, class u8, available u8, at u64
//! u32 demand,  each: cell u64, class u8, kind u8, at u64, once u64
//! ```
//!
//! 26 bytes per driver report, 26 per demand event (`once` 0: no key).
//! Version 1 messages (demand without `once`, 18 bytes) still decode, so a
//! stream written by an older build replays.

use shared::fare::VehicleClass;
use shared::geo::Cell;
use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen};
use shared::time::Timestamp;

const MAGIC: &[u8; 3] = b"EQB";
const VERSION: u8 = 2;
const DRIVER_BYTES: usize = 26;
const DEMAND_BYTES: usize = 26;
const DEMAND_BYTES_V1: usize = 18;

/// Most events in one message: keeps a message under NATS's default
/// 1 MiB payload limit.
pub const MAX_EVENTS: usize = 32_768;

/// The events of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Driver reports.
    pub drivers: Vec<DriverSeen>,
    /// Demand events.
    pub demand: Vec<DemandSeen>,
}

/// Why a message is not a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Wrong leading bytes or version.
    #[error("not an event batch (version {0:?})")]
    NotABatch(Option<u8>),
    /// Ends early or has bytes left over.
    #[error("event batch of the wrong length")]
    Length,
    /// A value no valid event holds.
    #[error("invalid event in batch: {0}")]
    Invalid(&'static str),
}

fn class_code(c: VehicleClass) -> u8 {
    VehicleClass::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or_default() as u8
}

fn kind_code(k: DemandKind) -> u8 {
    match k {
        DemandKind::RideRequest => 0,
        DemandKind::Quote => 1,
        DemandKind::AppOpen => 2,
    }
}

/// A demand key on the wire: 0 is "none" (a key that hashes to 0 is sent
/// as 1, which merely merges it with that key's rare twin).
fn once_code(once: Option<u64>) -> u64 {
    once.map_or(0, |k| k.max(1))
}

fn once_of(code: u64) -> Option<u64> {
    (code != 0).then_some(code)
}

impl Batch {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.drivers.len() + self.demand.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            12 + self.drivers.len() * DRIVER_BYTES + self.demand.len() * DEMAND_BYTES,
        );
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.drivers.len() as u32).to_le_bytes());
        for d in &self.drivers {
            out.extend_from_slice(&d.driver.0.to_le_bytes());
            out.extend_from_slice(&d.cell.id().to_le_bytes());
            out.push(class_code(d.class));
            out.push(u8::from(d.available));
            out.extend_from_slice(&d.at.0.to_le_bytes());
        }
        out.extend_from_slice(&(self.demand.len() as u32).to_le_bytes());
        for d in &self.demand {
            out.extend_from_slice(&d.cell.id().to_le_bytes());
            out.push(class_code(d.class));
            out.push(kind_code(d.kind));
            out.extend_from_slice(&d.at.0.to_le_bytes());
            out.extend_from_slice(&once_code(d.once).to_le_bytes());
        }
        out
    }

    /// Reads message bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        let mut r = Reader(bytes);
        if r.take(3)? != MAGIC {
            return Err(BatchError::NotABatch(None));
        }
        let version = r.u8()?;
        if !(1..=VERSION).contains(&version) {
            return Err(BatchError::NotABatch(Some(version)));
        }
        let n = r.count(DRIVER_BYTES)?;
        let mut drivers = Vec::with_capacity(n);
        for _ in 0..n {
            let driver = DriverId(r.u64()?);
            let cell = r.cell()?;
            let class = r.class()?;
            let available = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(BatchError::Invalid("availability")),
            };
            let at = Timestamp(r.u64()?);
            drivers.push(DriverSeen {
                driver,
                cell,
                class,
                available,
                at,
            });
        }
        let n = r.count(if version == 1 {
            DEMAND_BYTES_V1
        } else {
            DEMAND_BYTES
        })?;
        let mut demand = Vec::with_capacity(n);
        for _ in 0..n {
            let cell = r.cell()?;
            let class = r.class()?;
            let kind = match r.u8()? {
                0 => DemandKind::RideRequest,
                1 => DemandKind::Quote,
                2 => DemandKind::AppOpen,
                _ => return Err(BatchError::Invalid("demand kind")),
            };
            let at = Timestamp(r.u64()?);
            demand.push(DemandSeen {
                cell,
                class,
                kind,
                at,
                once: if version == 1 {
                    None
                } else {
                    once_of(r.u64()?)
                },
            });
        }
        if !r.0.is_empty() {
            return Err(BatchError::Length);
        }
        Ok(Self { drivers, demand })
    }

    /// Splits into batches of at most [`MAX_EVENTS`] events.
    pub fn chunks(&self) -> Vec<Batch> {
        let mut out = Vec::new();
        for d in self.drivers.chunks(MAX_EVENTS) {
            out.push(Batch {
                drivers: d.to_vec(),
                demand: Vec::new(),
            });
        }
        for d in self.demand.chunks(MAX_EVENTS) {
            out.push(Batch {
                drivers: Vec::new(),
                demand: d.to_vec(),
            });
        }
        out
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BatchError> {
        if self.0.len() < n {
            return Err(BatchError::Length);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A count of records of `size` bytes that the rest can hold.
    fn count(&mut self, size: usize) -> Result<usize, BatchError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        let n = u32::from_le_bytes(b) as usize;
        if n.saturating_mul(size) > self.0.len() {
            return Err(BatchError::Length);
        }
        Ok(n)
    }

    fn cell(&mut self) -> Result<Cell, BatchError> {
        Cell::from_id(self.u64()?).map_err(|_| BatchError::Invalid("cell"))
    }

    fn class(&mut self) -> Result<VehicleClass, BatchError> {
        VehicleClass::ALL
            .get(usize::from(self.u8()?))
            .copied()
            .ok_or(BatchError::Invalid("vehicle class"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shared::geo::{LatLng, DEFAULT_LEVEL};

    fn sample() -> Batch {
        let cell = Cell::at(LatLng::new(37.77, -122.42).expect("ll"), DEFAULT_LEVEL);
        Batch {
            drivers: vec![DriverSeen {
                driver: DriverId(42),
                cell,
                class: VehicleClass::Xl,
                available: true,
                at: Timestamp(1_800_000_000_123),
            }],
            demand: vec![DemandSeen {
                cell,
                class: VehicleClass::Economy,
                kind: DemandKind::AppOpen,
                at: Timestamp(1_800_000_000_456),
                once: None,
            }],
        }
    }

    #[test]
    fn batches_round_trip() {
        let b = sample();
        let bytes = b.encode();
        assert_eq!(bytes.len(), 4 + 4 + DRIVER_BYTES + 4 + DEMAND_BYTES);
        assert_eq!(Batch::decode(&bytes), Ok(b));
        assert_eq!(
            Batch::decode(&Batch::default().encode()),
            Ok(Batch::default())
        );
    }

    #[test]
    fn keyed_demand_round_trips_and_version_1_still_decodes() {
        let mut b = sample();
        b.demand[0].once = Some(7);
        assert_eq!(Batch::decode(&b.encode()), Ok(b.clone()));
        // A version 1 message: demand is 18 bytes, without a key.
        let mut v1 = b"EQB\x01".to_vec();
        v1.extend_from_slice(&0u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        let d = b.demand[0];
        v1.extend_from_slice(&d.cell.id().to_le_bytes());
        v1.push(class_code(d.class));
        v1.push(kind_code(d.kind));
        v1.extend_from_slice(&d.at.0.to_le_bytes());
        let old = Batch::decode(&v1).expect("a version 1 batch");
        assert_eq!(old.demand[0], DemandSeen { once: None, ..d });
    }

    #[test]
    fn chunks_keep_every_event_in_order() {
        let one = sample();
        let big = Batch {
            drivers: vec![one.drivers[0]; MAX_EVENTS + 5],
            demand: vec![one.demand[0]; 3],
        };
        let chunks = big.chunks();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() <= MAX_EVENTS));
        assert_eq!(chunks.iter().map(Batch::len).sum::<usize>(), big.len());
    }

    proptest! {
        #[test]
        fn no_byte_string_panics_the_decoder(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = b"EQB\x02".to_vec();
            bytes.extend(tail);
            let _ = Batch::decode(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(pos in 0usize..56, byte in any::<u8>()) {
            let mut bytes = sample().encode();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(b) = Batch::decode(&bytes) {
                prop_assert_eq!(b.encode(), bytes);
            }
        }
    }
}
