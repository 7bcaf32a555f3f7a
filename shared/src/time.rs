//! Time as plain numbers. The core never reads a clock: callers pass `now`.

use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

/// A span of time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `n` whole seconds.
    pub const fn from_secs(n: u64) -> Self {
        Self(n * 1_000)
    }

    /// The span in milliseconds.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl Timestamp {
    /// Milliseconds since the epoch.
    pub const fn millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn since(self, earlier: Timestamp) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 text in UTC with millisecond precision, e.g.
    /// `2025-01-16T10:30:00.000Z`, as the API's `*_until` fields use.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0 / 1_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        // Digit by digit: every quote carries one, and `format!` is a
        // measurable share of a quote's cost in wasm.
        let mut out = String::with_capacity(24);
        let year = itoa::Buffer::new().format(y).to_owned();
        for _ in year.len()..4 {
            out.push('0');
        }
        out.push_str(&year);
        let mut two = |sep: char, v: u64| {
            out.push(sep);
            out.push(char::from(b'0' + (v / 10 % 10) as u8));
            out.push(char::from(b'0' + (v % 10) as u8));
        };
        two('-', u64::from(m));
        two('-', u64::from(d));
        two('T', rem / 3_600);
        two(':', (rem % 3_600) / 60);
        two(':', rem % 60);
        let ms = self.0 % 1_000;
        out.push('.');
        out.push(char::from(b'0' + (ms / 100) as u8));
        out.push(char::from(b'0' + (ms / 10 % 10) as u8));
        out.push(char::from(b'0' + (ms % 10) as u8));
        out.push('Z');
        out
    }
}

impl Add<Millis> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Millis) -> Timestamp {
        Timestamp(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Millis> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Millis) -> Timestamp {
        Timestamp(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        // 2025-01-16T10:30:00Z, the brief's example quote expiry.
        assert_eq!(
            Timestamp(1_737_023_400_000).to_rfc3339(),
            "2025-01-16T10:30:00.000Z"
        );
        // A leap day.
        assert_eq!(
            Timestamp(1_709_164_800_123).to_rfc3339(),
            "2024-02-29T00:00:00.123Z"
        );
    }

    #[test]
    fn rfc3339_matches_padded_formatting_across_the_range() {
        // The digit-by-digit writer against the obvious `format!` one, over
        // instants spread from 1970 to past the year 9999 (five digits).
        let reference = |t: u64| {
            let secs = t / 1_000;
            let rem = secs % 86_400;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3_600,
                (rem % 3_600) / 60,
                rem % 60,
                t % 1_000
            )
        };
        let mut t: u64 = 0;
        while t < 400_000_000_000_000 {
            assert_eq!(Timestamp(t).to_rfc3339(), reference(t), "{t}");
            t += t / 64 + 7_919;
        }
        for t in [253_402_300_799_999, 253_402_300_800_000, 86_399_999] {
            assert_eq!(Timestamp(t).to_rfc3339(), reference(t), "{t}");
        }
    }

    #[test]
    fn since_saturates() {
        assert_eq!(Timestamp(5).since(Timestamp(10)), Millis(0));
        assert_eq!(Timestamp(10).since(Timestamp(4)), Millis(6));
    }
}
