//! Forecast state on disk, in two parts that change at different rates.
//!
//! * **History** ([`CellForecasts::encode_history`]): every series' level,
//!   trend, error variance, season and counters, and the bucket it is in.
//!   They change only when a bucket completes, so the origin writes them
//!   once per bucket (5 minutes): about 520 bytes a series once its
//!   weekday profile is full, about 1 KB once its weekend's is too, far
//!   less while it is young.
//! * **Open buckets** ([`CellForecasts::write_open`]): each series' running
//!   total of the bucket in progress, 16 bytes or less, written with the
//!   market state at every tick (`crate::state`, format 4: per cell and
//!   class; format 3's, per cell, read as the standard class's).
//!
//! A restart decodes the history, then the last tick's open buckets over
//! it, and continues exactly where the last persisted tick left off. Every
//! value is validated on the way in: any byte string decodes into valid
//! series or fails with a [`StateError`].
//!
//! History format 2: `"EQF" 2`, the calendar's UTC offset in minutes
//! (4 bytes, two's complement), a varint count of series pairs, then per
//! pair in ascending (cell, class): the cell id (8 bytes), the vehicle
//! class (1 byte, as in the market's snapshots), the demand series, the
//! supply series.
//! A series: its open bucket (varint, 0 for none, else bucket + 1), the
//! completed count (varint), level, trend, variance and last value (4 bytes
//! each), the number of seasonal slots written (varint) and, for each
//! slot from 0 up to the highest seen, its offset (4 bytes) and times seen
//! (1 byte): the weekday profile's 96 slots, then the weekend's.
//!
//! Format 1 (a pair per cell, classes pooled; one daily profile of UTC
//! quarter hours, at most 96 slots) still reads: each cell's pair becomes
//! its standard class's (the other classes' series start empty, so for
//! a while the cell's sum counts their share twice), its profile the
//! weekday profile, and the weekend's starts empty.
//!
//! A history written under another UTC offset than the region's calendar
//! (format 1 was always UTC; an operator changed `utc_offset_minutes`) has
//! its profiles turned by the difference, so each slot keeps its time of
//! day; a quarter hour turned across midnight stays in its day type.

use super::{CellForecasts, Kind, Series, SeriesKey, PROFILE_SLOTS, SEASON_SLOTS};
use crate::fare::VehicleClass;
use crate::geo::Cell;
use crate::market::{class_code, class_of};
use crate::state::{Reader, StateError, Writer};

/// The leading bytes of a history snapshot.
pub const HISTORY_MAGIC: [u8; 3] = *b"EQF";
/// The history format written by this build.
pub const HISTORY_VERSION: u8 = 2;

/// One cell and class's open buckets: demand's and supply's (bucket,
/// total, count).
pub(crate) type OpenBuckets = (
    (Cell, VehicleClass),
    Option<(u64, f32, u32)>,
    Option<(u64, f32, u32)>,
);

impl Series {
    fn write_history(&self, w: &mut Writer) {
        w.varint(self.open.map_or(0, |(b, _, _)| b.saturating_add(1)));
        w.varint(u64::from(self.completed));
        for v in [self.level, self.trend, self.var, self.last] {
            w.fixed32(v.to_bits());
        }
        let slots = self
            .slot_seen
            .iter()
            .rposition(|n| *n > 0)
            .map_or(0, |i| i + 1);
        w.varint(slots as u64);
        for s in 0..slots {
            w.fixed32(self.season[s].to_bits());
            w.u8(self.slot_seen[s]);
        }
    }

    /// Reads a series of history format `version` (1 or 2).
    fn read_history(r: &mut Reader<'_>, kind: Kind, version: u8) -> Result<Self, StateError> {
        let mut s = Series::new(kind);
        s.open = match read_bucket(r)? {
            0 => None,
            b => Some((b - 1, 0.0, 0)),
        };
        s.completed = r.u32()?;
        s.level = r.finite_f32("forecast level is not finite")?;
        s.trend = r.finite_f32("forecast trend is not finite")?;
        s.var = r.finite_f32("forecast variance is not finite")?;
        if s.var < 0.0 {
            return Err(StateError::Invalid("forecast variance is negative"));
        }
        s.last = r.finite_f32("forecast last value is not finite")?;
        let slots = usize::try_from(r.varint()?).map_err(|_| StateError::Truncated)?;
        let most = if version == 1 {
            SEASON_SLOTS
        } else {
            PROFILE_SLOTS
        };
        if slots > most {
            return Err(StateError::Invalid("more seasonal slots than a week has"));
        }
        for i in 0..slots {
            s.season[i] = r.finite_f32("seasonal offset is not finite")?;
            s.slot_seen[i] = r.u8()?;
        }
        Ok(s)
    }

    /// Moves every profile's slots `by` quarter hours later in the day
    /// (a history read under another UTC offset than it was written in).
    fn turn_profiles(&mut self, by: i64) {
        let by = by.rem_euclid(SEASON_SLOTS as i64) as usize;
        if by == 0 {
            return;
        }
        for profile in 0..PROFILE_SLOTS / SEASON_SLOTS {
            let range = profile * SEASON_SLOTS..(profile + 1) * SEASON_SLOTS;
            self.season[range.clone()].rotate_right(by);
            self.slot_seen[range].rotate_right(by);
        }
    }

    fn open_bucket(&self) -> Option<(u64, f32, u32)> {
        self.open
    }
}

fn write_open(w: &mut Writer, open: Option<(u64, f32, u32)>) {
    match open {
        None => w.u8(0),
        Some((b, total, n)) => {
            w.u8(1);
            w.varint(b);
            w.fixed32(total.to_bits());
            w.varint(u64::from(n));
        }
    }
}

/// The last bucket an instant can be in: a bucket past it is corrupt.
fn read_bucket(r: &mut Reader<'_>) -> Result<u64, StateError> {
    let b = r.varint()?;
    if b > super::bucket_of(crate::time::Timestamp(u64::MAX)) {
        return Err(StateError::Invalid("forecast bucket beyond any time"));
    }
    Ok(b)
}

fn read_open(r: &mut Reader<'_>) -> Result<Option<(u64, f32, u32)>, StateError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let b = read_bucket(r)?;
            let total = r.finite_f32("open bucket total is not finite")?;
            if total < 0.0 {
                return Err(StateError::Invalid("open bucket total is negative"));
            }
            Ok(Some((b, total, r.u32()?)))
        }
        _ => Err(StateError::Invalid("open bucket flag is not 0 or 1")),
    }
}

/// A cell id and, from `with_class` formats on, its class (else the
/// standard class: formats that pooled the classes).
fn read_key(
    r: &mut Reader<'_>,
    last: &mut Option<(Cell, VehicleClass)>,
    with_class: bool,
) -> Result<(Cell, VehicleClass), StateError> {
    let cell = Cell::from_id(r.fixed64()?).map_err(|_| StateError::Invalid("invalid cell id"))?;
    let class = if with_class {
        class_of(r.u8()?)?
    } else {
        VehicleClass::Standard
    };
    let key = (cell, class);
    if last.is_some_and(|l| l >= key) {
        return Err(StateError::Invalid("forecast cells not in ascending order"));
    }
    *last = Some(key);
    Ok(key)
}

fn write_key(w: &mut Writer, (cell, class): (Cell, VehicleClass)) {
    w.fixed64(cell.id());
    w.u8(class_code(class));
}

impl CellForecasts {
    fn sorted(&self) -> Vec<(&SeriesKey, &(Series, Series))> {
        let mut cells: Vec<_> = self.cells.iter().collect();
        cells.sort_unstable_by_key(|(k, _)| **k);
        cells
    }

    /// Every series' history (see the module documentation).
    pub fn encode_history(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(64));
        w.bytes(&HISTORY_MAGIC);
        w.u8(HISTORY_VERSION);
        w.fixed32(self.params.calendar.utc_offset_minutes() as i32 as u32);
        let cells = self.sorted();
        w.varint(cells.len() as u64);
        for (key, (d, s)) in cells {
            write_key(&mut w, *key);
            d.write_history(&mut w);
            s.write_history(&mut w);
        }
        w.0
    }

    /// Replaces every series with an [`Self::encode_history`] snapshot's
    /// (open buckets start empty until [`Self::apply_open`]). On error
    /// nothing changes.
    pub fn decode_history(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let mut r = Reader(bytes);
        if r.take(3)? != HISTORY_MAGIC {
            return Err(StateError::NotASnapshot);
        }
        let version = r.u8()?;
        if !(1..=HISTORY_VERSION).contains(&version) {
            return Err(StateError::UnsupportedVersion(version));
        }
        let written_offset = if version >= 2 {
            let minutes = i64::from(r.fixed32()? as i32);
            super::Calendar::from_utc_offset_minutes(minutes)
                .map_err(|_| StateError::Invalid("forecast calendar offset is not a clock's"))?
                .utc_offset_minutes()
        } else {
            0
        };
        let turn = (self.params.calendar.utc_offset_minutes() - written_offset) / 15;
        // A pair is at least its key and two minimal series.
        let n = r.count(8 + 2 * 19)?;
        let mut cells = std::collections::HashMap::with_capacity(n);
        let mut last = None;
        for _ in 0..n {
            let key = read_key(&mut r, &mut last, version >= 2)?;
            let mut d = Series::read_history(&mut r, Kind::Sum, version)?;
            let mut s = Series::read_history(&mut r, Kind::Mean, version)?;
            d.turn_profiles(turn);
            s.turn_profiles(turn);
            cells.insert(key, (d, s));
        }
        if !r.0.is_empty() {
            return Err(StateError::TrailingBytes(r.0.len()));
        }
        self.cells = cells;
        Ok(())
    }

    /// Appends every series' open bucket, (cell, class) ascending.
    pub(crate) fn write_open(&self, w: &mut Writer) {
        let cells = self.sorted();
        w.varint(cells.len() as u64);
        for (key, (d, s)) in cells {
            write_key(w, *key);
            write_open(w, d.open_bucket());
            write_open(w, s.open_bucket());
        }
    }

    /// Reads what [`Self::write_open`] wrote, in the market state's format
    /// `version` (3: per cell, read as the standard class; 4: per cell and
    /// class).
    pub(crate) fn read_open(
        r: &mut Reader<'_>,
        version: u8,
    ) -> Result<Vec<OpenBuckets>, StateError> {
        let n = r.count(10)?;
        let mut out = Vec::with_capacity(n);
        let mut last = None;
        for _ in 0..n {
            let key = read_key(r, &mut last, version >= 4)?;
            out.push((key, read_open(r)?, read_open(r)?));
        }
        Ok(out)
    }

    /// Sets the open buckets read by [`Self::read_open`] (a cell without
    /// history starts a new series with its open bucket).
    /// When the history is older than the open bucket (its write failed,
    /// or a cluster's backlog dropped it), the series first complete the
    /// buckets between as a gap (no demand, the last supply), as they do
    /// when no event comes at all.
    pub(crate) fn apply_open(&mut self, opens: Vec<OpenBuckets>) {
        let p = self.params;
        let set = |series: &mut Series, open: Option<(u64, f32, u32)>| {
            if let Some((bucket, _, _)) = open {
                series.advance_to(bucket, &p);
                series.open = open;
            }
        };
        for ((cell, class), d, s) in opens {
            let e = self.entry(cell, class);
            set(&mut e.0, d);
            set(&mut e.1, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::forecast::HORIZONS;
    use crate::geo::{LatLng, DEFAULT_LEVEL};
    use crate::time::Timestamp;

    fn cell(i: u32) -> Cell {
        Cell::at(
            LatLng::new(37.70 + f64::from(i) * 0.01, -122.45).expect("coordinate"),
            DEFAULT_LEVEL,
        )
    }

    /// Two days of a cell's life, ticked every 30 s.
    fn busy(f: &mut CellForecasts, from_s: u64, to_s: u64) {
        for t in (from_s..to_s).step_by(30) {
            let now = Timestamp(t * 1_000);
            for i in 0..3 {
                let units = 1 + ((t / 600) % 4) as u32 + i;
                f.demand(cell(i), VehicleClass::Standard, now, units);
            }
            // Cell 0 has XL riders and drivers too.
            f.demand(cell(0), VehicleClass::Xl, now, 1);
            let supply: HashMap<(Cell, VehicleClass), u32> = [
                ((cell(0), VehicleClass::Standard), 3),
                ((cell(0), VehicleClass::Xl), 1),
                ((cell(1), VehicleClass::Standard), 1),
            ]
            .into_iter()
            .collect();
            f.tick(now, &supply);
        }
    }

    #[test]
    fn history_and_open_buckets_restore_the_same_forecasts() {
        let mut a = CellForecasts::default();
        busy(&mut a, 0, 2 * 86_400 + 100);
        let history = a.encode_history();
        // The tick goes on within the bucket; only its open totals change.
        busy(&mut a, 2 * 86_400 + 100, 2 * 86_400 + 250);
        let mut open = Writer(Vec::new());
        a.write_open(&mut open);

        let mut b = CellForecasts::default();
        b.decode_history(&history).expect("history decodes");
        let opens = CellForecasts::read_open(&mut Reader(&open.0), crate::state::VERSION)
            .expect("open decodes");
        b.apply_open(opens);
        for i in 0..3 {
            assert_eq!(a.expected(cell(i)), b.expected(cell(i)), "cell {i}");
        }
        // And they stay equal as both go on.
        busy(&mut a, 2 * 86_400 + 250, 2 * 86_400 + 3_000);
        busy(&mut b, 2 * 86_400 + 250, 2 * 86_400 + 3_000);
        for i in 0..3 {
            assert!(a.expected(cell(i)).is_some());
            assert_eq!(a.expected(cell(i)), b.expected(cell(i)), "cell {i}");
        }
        // Each class's forecast is restored too.
        let xl = |f: &CellForecasts| f.class_demand_forecast(cell(0), VehicleClass::Xl, 3);
        assert!(xl(&a).is_some());
        assert_eq!(xl(&a), xl(&b));
        // Four pairs (cell 0 has two classes) of weekday series, a full day
        // each: about 520 bytes a series.
        assert!(history.len() < 4 * 2 * 540, "{} bytes", history.len());
    }

    #[test]
    fn a_history_older_than_the_open_buckets_catches_up_as_a_gap() {
        let mut a = CellForecasts::default();
        busy(&mut a, 0, 86_400 + 100);
        let stale = a.encode_history();
        // Three buckets later, the history was not written again.
        busy(&mut a, 86_400 + 100, 86_400 + 1_000);
        let mut open = Writer(Vec::new());
        a.write_open(&mut open);
        let mut b = CellForecasts::default();
        b.decode_history(&stale).expect("history");
        b.apply_open(
            CellForecasts::read_open(&mut Reader(&open.0), crate::state::VERSION).expect("open"),
        );
        // Forecasts exist and go on; the missed buckets count as quiet ones.
        busy(&mut b, 86_400 + 1_000, 86_400 + 1_300);
        let f = b.expected(cell(0)).expect("a forecast");
        assert!(f.demand.is_finite() && f.demand >= 0.0);
        assert_eq!(
            b.cells
                .get(&(cell(0), VehicleClass::Xl))
                .map(|(d, _)| d.open.map(|o| o.0)),
            a.cells
                .get(&(cell(0), VehicleClass::Xl))
                .map(|(d, _)| d.open.map(|o| o.0 + 1)),
            "both in the bucket after"
        );
    }

    #[test]
    fn format_1_reads_as_the_weekday_profile() {
        // A format-1 history: one cell, a demand series with a day of
        // slots, an empty supply series.
        let mut w = Writer(Vec::new());
        w.bytes(&HISTORY_MAGIC);
        w.u8(1);
        w.varint(1);
        w.fixed64(cell(0).id());
        let mut day = Series::new(Kind::Sum);
        let p = crate::forecast::Params::default();
        for b in 0..crate::forecast::BUCKETS_PER_DAY + 1 {
            day.observe(Timestamp(b * crate::forecast::BUCKET.0 + 1), 3.0, &p);
        }
        // Its open bucket empty, as a history holds it.
        day.advance_to(crate::forecast::BUCKETS_PER_DAY + 2, &p);
        day.write_history(&mut w);
        Series::new(Kind::Mean).write_history(&mut w);
        let mut f = CellForecasts::default();
        f.decode_history(&w.0).expect("format 1 decodes");
        let history = |s: &Series| {
            let mut w = Writer(Vec::new());
            s.write_history(&mut w);
            w.0
        };
        assert_eq!(
            f.cells
                .get(&(cell(0), VehicleClass::Standard))
                .map(|c| history(&c.0)),
            Some(history(&day)),
            "a pooled cell becomes its standard class"
        );
        // 97 slots would be a weekend slot, which format 1 cannot hold.
        let mut bad = Writer(Vec::new());
        bad.bytes(&HISTORY_MAGIC);
        bad.u8(1);
        bad.varint(1);
        bad.fixed64(cell(0).id());
        bad.varint(0);
        bad.varint(1);
        bad.bytes(&[0; 16]);
        bad.varint(97);
        bad.bytes(&[0; 5 * 97 + 64]);
        assert_eq!(
            CellForecasts::default().decode_history(&bad.0),
            Err(StateError::Invalid("more seasonal slots than a week has"))
        );
    }

    #[test]
    fn a_history_read_under_another_offset_keeps_each_slot_time_of_day() {
        let p = crate::forecast::Params::default();
        // A cell busy at 02:00 UTC, a day long, in UTC.
        let mut utc = CellForecasts::new(p);
        for b in 0..crate::forecast::BUCKETS_PER_DAY + 1 {
            let at = Timestamp(b * crate::forecast::BUCKET.0 + 1);
            let units = if (b / 12) % 24 == 2 { 30 } else { 1 };
            utc.demand(cell(0), VehicleClass::Standard, at, units);
            utc.tick(at, &HashMap::new());
        }
        let history = utc.encode_history();
        let busy = |f: &CellForecasts| {
            let (d, _) = &f.cells[&(cell(0), VehicleClass::Standard)];
            (0..SEASON_SLOTS)
                .max_by(|a, b| d.season[*a].total_cmp(&d.season[*b]))
                .expect("slots")
        };
        assert_eq!(busy(&utc), 8, "02:00 UTC");
        // Read in San Francisco: 02:00 UTC is 18:00 there.
        let sf = crate::forecast::Calendar::from_utc_offset_minutes(-480).expect("sf");
        let mut there = CellForecasts::new(crate::forecast::Params { calendar: sf, ..p });
        there.decode_history(&history).expect("decodes");
        assert_eq!(busy(&there), 72, "18:00 local");
        // And written there, read back there: unchanged.
        let again = there.encode_history();
        let mut back = CellForecasts::new(crate::forecast::Params { calendar: sf, ..p });
        back.decode_history(&again).expect("decodes");
        assert_eq!(busy(&back), 72);
        assert_eq!(back.encode_history(), again);
        // An offset no clock uses is refused.
        let mut bad = again.clone();
        bad[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            CellForecasts::default().decode_history(&bad),
            Err(StateError::Invalid(
                "forecast calendar offset is not a clock's"
            ))
        );
    }

    #[test]
    fn state_format_3_open_buckets_read_as_the_standard_class() {
        // Format 3 wrote a cell's open buckets without a class.
        let mut w = Writer(Vec::new());
        w.varint(1);
        w.fixed64(cell(0).id());
        write_open(&mut w, Some((7, 2.0, 1)));
        write_open(&mut w, None);
        let opens = CellForecasts::read_open(&mut Reader(&w.0), 3).expect("format 3");
        assert_eq!(
            opens,
            vec![((cell(0), VehicleClass::Standard), Some((7, 2.0, 1)), None)]
        );
        // Read as format 4 the same bytes are not a valid class.
        assert!(CellForecasts::read_open(&mut Reader(&w.0), 4).is_err());
    }

    #[test]
    fn a_bucket_beyond_any_time_is_refused() {
        let mut w = Writer(Vec::new());
        w.bytes(&HISTORY_MAGIC);
        w.u8(HISTORY_VERSION);
        w.fixed32(0); // UTC
        w.varint(1);
        write_key(&mut w, (cell(0), VehicleClass::Standard));
        w.varint(u64::MAX); // the demand series' open bucket
        w.bytes(&[0; 64]); // the rest, so the count is not refused first
        assert_eq!(
            CellForecasts::default().decode_history(&w.0),
            Err(StateError::Invalid("forecast bucket beyond any time"))
        );
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly() {
        let mut a = CellForecasts::default();
        busy(&mut a, 0, 3_600);
        let good = a.encode_history();
        for cut in 0..good.len() {
            assert!(CellForecasts::default()
                .decode_history(&good[..cut])
                .is_err());
        }
        let mut flipped = good.clone();
        for i in 4..flipped.len() {
            flipped[i] ^= 0xff;
            let mut f = CellForecasts::default();
            if f.decode_history(&flipped).is_ok() {
                // Whatever decoded forecasts and ticks without a panic.
                for c in f.cells().collect::<Vec<_>>() {
                    for h in HORIZONS {
                        let _ = f.demand_forecast(c, h);
                    }
                }
                busy(&mut f, 3_600, 4_000);
            }
            flipped[i] ^= 0xff;
        }
        let mut trailing = good;
        trailing.push(0);
        assert_eq!(
            CellForecasts::default().decode_history(&trailing),
            Err(StateError::TrailingBytes(1))
        );
    }
}
