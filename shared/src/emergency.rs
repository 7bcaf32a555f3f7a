//! Lawful emergency caps.
//!
//! During a declared emergency a region's multiplier may not exceed its
//! own normal range: the highest multiplier charged in the preceding 60
//! days, leaving out the three days with the highest prices (the 2014
//! agreement between Uber and the New York Attorney General). That is the
//! fourth-highest of the region's daily maximum multipliers over the 60
//! whole days (UTC) before the current one.
//!
//! The origin computes it from its history ([`lookback`], [`lawful_cap`])
//! and ships it with every grid; the edge applies it when the admin has
//! declared an emergency for the region ([`emergency_caps`]). With fewer
//! than four days of history there is no normal range to refer to, and an
//! emergency prices at 1.0.

use crate::surge::{Caps, Multiplier};
use crate::time::Timestamp;

/// Days of history the normal range is taken from.
pub const LOOKBACK_DAYS: u64 = 60;

/// The highest days left out.
pub const EXCLUDED_DAYS: usize = 3;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// The history window for a cap computed at `now`: from the start of the
/// day [`LOOKBACK_DAYS`] before today (inclusive) to the start of today
/// (exclusive), UTC. Today's prices — the emergency's own — never count.
pub fn lookback(now: Timestamp) -> (Timestamp, Timestamp) {
    let today = now.0 / DAY_MS * DAY_MS;
    (
        Timestamp(today.saturating_sub(LOOKBACK_DAYS * DAY_MS)),
        Timestamp(today),
    )
}

/// The day (days since the epoch, UTC) of an instant.
pub fn day_of(at: Timestamp) -> u64 {
    at.0 / DAY_MS
}

/// The lawful cap from the daily maximum multipliers of the lookback
/// window (one per day with prices, any order): the highest after the
/// three highest days, i.e. the fourth-highest. `None` with fewer than
/// four days.
pub fn lawful_cap(daily_max: &[Multiplier]) -> Option<Multiplier> {
    let mut days = daily_max.to_vec();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.get(EXCLUDED_DAYS).copied()
}

/// The caps in force during a declared emergency: the region's caps
/// narrowed to its lawful cap, or to 1.0 when it has none.
pub fn emergency_caps(caps: Caps, lawful: Option<Multiplier>) -> Caps {
    caps.effective(Some(lawful.unwrap_or(Multiplier::ONE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tenths: u16) -> Multiplier {
        Multiplier::from_tenths(tenths).expect("multiplier")
    }

    #[test]
    fn the_cap_is_the_fourth_highest_daily_maximum() {
        let days = [m(12), m(35), m(20), m(40), m(18), m(25), m(50)];
        // 5.0, 4.0 and 3.5 are left out.
        assert_eq!(lawful_cap(&days), Some(m(25)));
        // Ties count as separate days.
        assert_eq!(
            lawful_cap(&[m(30), m(30), m(30), m(30), m(10)]),
            Some(m(30))
        );
        assert_eq!(lawful_cap(&[m(30), m(20), m(10)]), None);
        assert_eq!(lawful_cap(&[]), None);
    }

    #[test]
    fn the_window_is_the_sixty_whole_days_before_today() {
        let now = Timestamp(100 * DAY_MS + 5_000);
        assert_eq!(
            lookback(now),
            (Timestamp(40 * DAY_MS), Timestamp(100 * DAY_MS))
        );
        assert_eq!(day_of(now), 100);
        assert_eq!(lookback(Timestamp(DAY_MS)).0, Timestamp(0));
    }

    #[test]
    fn an_emergency_narrows_the_caps_to_the_normal_range() {
        let caps = Caps::DEFAULT;
        assert_eq!(emergency_caps(caps, Some(m(25))).max(), m(25));
        assert_eq!(emergency_caps(caps, None).max(), Multiplier::ONE);
        // Never above the region's own cap.
        let tight = Caps::new(m(10), m(20)).expect("caps");
        assert_eq!(emergency_caps(tight, Some(m(30))).max(), m(20));
    }
}
