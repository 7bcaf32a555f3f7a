//! Compact binary snapshots of a region's pricing state: the market's
//! windows (drivers seen within the TTL, demand buckets) and the surge
//! engine's per-cell smoothing (EMA, published multiplier, caps).
//!
//! A region's state after a restart (or, later, a hand-over) is its last
//! snapshot, decoded into the same [`Market`] and [`SurgeEngine`] that
//! produced it, so the next tick computes exactly what an uninterrupted run
//! would. Encoding is deterministic (entries sorted by key) and decoding
//! validates everything it reads: any byte string either decodes into a
//! valid state or fails with a [`StateError`], never a panic.
//!
//! # Format (version 4)
//!
//! `"EQS" 4`, then the market (drivers, demand, and the keys of keyed
//! demand counted within the window), the engine cells, the policy's own
//! state (a flag byte, then a controller's threshold as 8 bytes) and the
//! forecasts' open buckets per cell and vehicle class (`crate::forecast`;
//! their history is written apart, once per bucket). Version 3 (open
//! buckets per cell, read as the standard class's), version 2 (no policy
//! state, no open buckets) and version 1 (nor the demand keys) still
//! decode.
//!
//! An engine-only snapshot ([`encode_engine`], `"EQE" 3`,
//! [`ENGINE_VERSION`]) is the engine cells and the policy state; it has its
//! own version, so members not yet upgraded still read a new member's.
//! Integers are LEB128 varints except ids (driver keys, cell ids, EMA bits),
//! which are fixed 8-byte little-endian because they are uniformly spread.
//! Driver times are stored as the distance below the newest one; demand
//! bucket indexes as deltas. About 20 bytes per driver, 10 + 2 per bucket
//! per demand key, 13 per engine cell.

use crate::forecast::CellForecasts;
use crate::market::Market;
use crate::surge::{Policy, SurgeEngine};

/// The leading bytes of every snapshot.
pub const MAGIC: [u8; 3] = *b"EQS";
/// The leading bytes of an engine-only snapshot ([`encode_engine`]).
pub const ENGINE_MAGIC: [u8; 3] = *b"EQE";
/// The format version written by this build. Version 4 keyed the
/// forecasts' open buckets by vehicle class too, version 3 added the
/// policy's state and the forecasts' open buckets, version 2 the keys of
/// keyed demand; older snapshots still decode.
pub const VERSION: u8 = 4;
/// The engine-only snapshot's format version (unchanged since the policy
/// state joined it in version 3).
pub const ENGINE_VERSION: u8 = 3;

/// Why a snapshot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a snapshot (wrong leading bytes).
    #[error("not a pricing-state snapshot")]
    NotASnapshot,
    /// Written by a newer build.
    #[error("snapshot format version {0} is not supported (expected {VERSION})")]
    UnsupportedVersion(u8),
    /// The bytes end before the snapshot does.
    #[error("snapshot truncated")]
    Truncated,
    /// Bytes left over after the snapshot.
    #[error("{0} bytes after the end of the snapshot")]
    TrailingBytes(usize),
    /// A value that no valid state holds.
    #[error("invalid snapshot: {0}")]
    Invalid(&'static str),
}

/// Encodes a region's market, engine (with its policy's state) and the
/// forecasts' open buckets.
pub fn encode<P: Policy>(
    market: &Market,
    engine: &SurgeEngine<P>,
    forecasts: &CellForecasts,
) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64));
    w.0.extend_from_slice(&MAGIC);
    w.u8(VERSION);
    market.write_state(&mut w);
    engine.write_state(&mut w);
    write_policy(&mut w, engine.policy().persisted());
    forecasts.write_open(&mut w);
    w.0
}

fn write_policy(w: &mut Writer, state: Option<f64>) {
    match state {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            w.fixed64(v.to_bits());
        }
    }
}

fn read_policy(r: &mut Reader<'_>) -> Result<Option<f64>, StateError> {
    match r.u8()? {
        0 => Ok(None),
        1 => {
            let v = f64::from_bits(r.fixed64()?);
            if v.is_finite() {
                Ok(Some(v))
            } else {
                Err(StateError::Invalid("policy state is not finite"))
            }
        }
        _ => Err(StateError::Invalid("policy state flag is not 0 or 1")),
    }
}

/// Decodes a snapshot into `market` and `engine`, replacing their state.
/// Their configurations are kept: windows and smoothing settings come from
/// the running build's configuration, not from the snapshot. On error
/// neither is changed.
pub fn decode_into<P: Policy>(
    bytes: &[u8],
    market: &mut Market,
    engine: &mut SurgeEngine<P>,
    forecasts: &mut CellForecasts,
) -> Result<(), StateError> {
    let mut r = Reader(bytes);
    if r.take(3)? != MAGIC {
        return Err(StateError::NotASnapshot);
    }
    let version = r.u8()?;
    if !(1..=VERSION).contains(&version) {
        return Err(StateError::UnsupportedVersion(version));
    }
    let m = Market::read_state(&mut r, version)?;
    let e = SurgeEngine::<P>::read_state(&mut r)?;
    let (policy, opens) = if version >= 3 {
        (
            read_policy(&mut r)?,
            CellForecasts::read_open(&mut r, version)?,
        )
    } else {
        (None, Vec::new())
    };
    if !r.0.is_empty() {
        return Err(StateError::TrailingBytes(r.0.len()));
    }
    market.replace_state(m);
    engine.replace_state(e);
    if let Some(p) = policy {
        engine.policy_mut().resume(p);
    }
    forecasts.apply_open(opens);
    Ok(())
}

/// Encodes only the engine's per-cell smoothing: what a new owner of a
/// region continues from when it rebuilds the market itself (a cluster
/// take-over replays the market's events from the region's stream).
pub fn encode_engine<P: Policy>(engine: &SurgeEngine<P>) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(32));
    w.0.extend_from_slice(&ENGINE_MAGIC);
    w.u8(ENGINE_VERSION);
    engine.write_state(&mut w);
    write_policy(&mut w, engine.policy().persisted());
    w.0
}

/// Decodes an [`encode_engine`] snapshot into `engine`, replacing its
/// smoothing state (its configuration is kept). On error it is unchanged.
pub fn decode_engine_into<P: Policy>(
    bytes: &[u8],
    engine: &mut SurgeEngine<P>,
) -> Result<(), StateError> {
    let mut r = Reader(bytes);
    if r.take(3)? != ENGINE_MAGIC {
        return Err(StateError::NotASnapshot);
    }
    let version = r.u8()?;
    // Version 4 was written for a while by builds that shared the state's
    // version; its layout is version 3's.
    if !(1..=VERSION).contains(&version) {
        return Err(StateError::UnsupportedVersion(version));
    }
    let e = SurgeEngine::<P>::read_state(&mut r)?;
    let policy = if version >= 3 {
        read_policy(&mut r)?
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(StateError::TrailingBytes(r.0.len()));
    }
    engine.replace_state(e);
    if let Some(p) = policy {
        engine.policy_mut().resume(p);
    }
    Ok(())
}

/// Appends encoded values.
#[derive(Debug)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn fixed64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn fixed32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
}

/// Reads encoded values, failing on truncation or overlong varints.
#[derive(Debug)]
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], StateError> {
        if self.0.len() < n {
            return Err(StateError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, StateError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, StateError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    /// A finite `f32`, as [`Writer::fixed32`] of its bits wrote it.
    pub(crate) fn finite_f32(&mut self, what: &'static str) -> Result<f32, StateError> {
        let v = f32::from_bits(self.fixed32()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(StateError::Invalid(what))
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, StateError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(StateError::Invalid("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(StateError::Invalid("varint overflows 64 bits"))
    }

    /// A count of entries, each at least `min_entry_bytes` long: a count the
    /// remaining bytes cannot hold is refused before anything is allocated.
    pub(crate) fn count(&mut self, min_entry_bytes: usize) -> Result<usize, StateError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| StateError::Truncated)?;
        if n.saturating_mul(min_entry_bytes) > self.0.len() {
            return Err(StateError::Truncated);
        }
        Ok(n)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StateError> {
        u32::try_from(self.varint()?).map_err(|_| StateError::Invalid("count exceeds u32"))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, StateError> {
        u16::try_from(self.varint()?).map_err(|_| StateError::Invalid("value exceeds u16"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overflow() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut w = Writer(Vec::new());
            w.varint(v);
            let mut r = Reader(&w.0);
            assert_eq!(r.varint(), Ok(v));
            assert!(r.0.is_empty());
        }
        let mut r = Reader(&[0xff; 11]);
        assert!(r.varint().is_err());
        let mut r = Reader(&[0x80]);
        assert_eq!(r.varint(), Err(StateError::Truncated));
    }
}
