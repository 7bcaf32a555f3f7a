//! Where `now` comes from: the system clock in production, a manual clock
//! in tests (ticks, restores and retention are driven by it, never by
//! `sleep`).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use shared::time::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that moves only when told to: tests set it, tick, advance it.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(AtomicU64::new(at.0))
    }

    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(SeqCst))
    }
}
