//! Demo mode's clock: `now` is the simulator's, not the wall's.
//!
//! A demo plays an evening at a speed-up. Were the origin's windows, TTLs
//! and ticks on the wall clock, five real minutes of demand window would
//! hold fifty simulated minutes of requests at 10x against drivers counted
//! over one real minute, and the map would surge everywhere. With
//! `simulated_clock` on, the simulator sets the origin's clock
//! (`POST /v1/clock`) after each of its ticks and the origin ticks every
//! `tick_seconds` of simulated time: every window is in the simulator's
//! time frame, whatever the speed-up and however fast the machine is.

use std::sync::Arc;

use shared::time::Timestamp;

use crate::clock::{Clock, ManualClock};
use crate::state::AppState;
use crate::tick::tick_once;

/// Most ticks one clock advance runs (a larger jump ticks once at the end).
pub const MAX_TICKS_PER_ADVANCE: u32 = 1_000;

/// The simulated clock and when it last ticked.
#[derive(Debug)]
pub struct SimulatedClock {
    clock: Arc<ManualClock>,
    /// The last tick's simulated time; serialises advances.
    last_tick: tokio::sync::Mutex<Option<u64>>,
}

/// Why an advance was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the clock reads {now} ms; it does not go back to {asked} ms")]
pub struct Backwards {
    /// The clock now.
    pub now: u64,
    /// The time asked for.
    pub asked: u64,
}

impl SimulatedClock {
    /// A clock reading `start` until the simulator sets it.
    pub fn new(start: Timestamp) -> Self {
        Self {
            clock: Arc::new(ManualClock::new(start)),
            last_tick: tokio::sync::Mutex::new(None),
        }
    }

    /// The clock, for the state.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Moves the clock to `to`, running every tick due on the way (one every
    /// `tick_seconds` of simulated time, the first at the first advance).
    /// Returns the ticks run.
    pub async fn advance(state: &Arc<AppState>, to: Timestamp) -> Result<u32, Backwards> {
        let Some(sim) = &state.simulated else {
            return Ok(0);
        };
        let mut last = sim.last_tick.lock().await;
        let now = sim.clock.now();
        if to < now {
            return Err(Backwards {
                now: now.0,
                asked: to.0,
            });
        }
        let step = (state.config.tick_seconds * 1_000.0).round().max(1.0) as u64;
        let mut due = last.map_or(to.0, |l| l + step);
        let mut ticks = 0;
        while due <= to.0 && ticks < MAX_TICKS_PER_ADVANCE {
            sim.clock.set(Timestamp(due));
            tick_once(state).await;
            *last = Some(due);
            ticks += 1;
            due += step;
        }
        if due <= to.0 {
            // A jump of more than MAX_TICKS_PER_ADVANCE ticks: once at its end.
            sim.clock.set(to);
            tick_once(state).await;
            *last = Some(to.0);
            ticks += 1;
        }
        sim.clock.set(to);
        Ok(ticks)
    }
}
