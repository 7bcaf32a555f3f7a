//! The pricing stream's messages (`GET /api/v1/pricing/stream`): the whole
//! grid as the desk prices it, or — for a subscriber that asks for changes
//! (`changes=1`) — what changed since the grid it holds, when that is
//! smaller.
//!
//! The one rule of a change: [`diff`] makes it, [`apply`] applies it, and
//! applying `diff(a, b)` to `a` gives `b` exactly (a property test holds
//! them to it). A subscriber applying every change holds what one that
//! reconnects is sent.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ArmGridWire, GridCellWire, GridPush};
use crate::surge::Multiplier;

/// A message of the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StreamMessage {
    /// The whole grid.
    Grid {
        /// As the desk prices it now.
        grid: GridPush,
    },
    /// The changes from the grid the subscriber holds.
    Changes {
        /// What changed.
        changes: GridChanges,
    },
}

/// What changed from one stream grid to the next. Fields not listed keep
/// their values; `lawful_cap` and `arms` are carried whole (they are
/// small, and absent means none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridChanges {
    /// The generation of the grid these apply to.
    pub base_generation: u64,
    /// The digest of the grid these apply to ([`digest`]).
    pub base: String,
    /// The new grid's generation.
    pub generation: u64,
    /// The new grid's `computed_at`.
    pub computed_at: u64,
    /// The new grid's lawful cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lawful_cap: Option<Multiplier>,
    /// Cells added or changed, whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<GridCellWire>,
    /// Tokens of cells no longer in the grid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// The new grid's arms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<ArmGridWire>,
}

/// Why changes do not apply to a grid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangesError {
    /// The grid is not the one they were made from.
    #[error("the changes are from grid {expected}, not this one ({held})")]
    OtherBase {
        /// Their base's digest.
        expected: String,
        /// The held grid's.
        held: String,
    },
}

/// A short digest of a grid (its JSON under SHA-256, 16 hex digits): what
/// a subscriber holds, named.
pub fn digest(grid: &GridPush) -> String {
    let json = serde_json::to_vec(grid).unwrap_or_default();
    let d = Sha256::digest(&json);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The changes that take `base` to `next`; `None` when they cannot (another
/// region, level or format).
pub fn diff(base: &GridPush, next: &GridPush) -> Option<GridChanges> {
    if base.region != next.region || base.level != next.level || base.format != next.format {
        return None;
    }
    let old: std::collections::HashMap<&str, &GridCellWire> =
        base.cells.iter().map(|c| (c.cell.as_str(), c)).collect();
    let new: std::collections::HashSet<&str> = next.cells.iter().map(|c| c.cell.as_str()).collect();
    let set = next
        .cells
        .iter()
        .filter(|c| old.get(c.cell.as_str()) != Some(c))
        .cloned()
        .collect();
    let removed = base
        .cells
        .iter()
        .filter(|c| !new.contains(c.cell.as_str()))
        .map(|c| c.cell.clone())
        .collect();
    Some(GridChanges {
        base_generation: base.generation,
        base: digest(base),
        generation: next.generation,
        computed_at: next.computed_at,
        lawful_cap: next.lawful_cap,
        set,
        removed,
        arms: next.arms.clone(),
    })
}

/// `base` with `changes` applied: the grid they were made to reach (its
/// cells in token order, as every grid keeps them).
pub fn apply(base: &GridPush, changes: &GridChanges) -> Result<GridPush, ChangesError> {
    let held = digest(base);
    if held != changes.base {
        return Err(ChangesError::OtherBase {
            expected: changes.base.clone(),
            held,
        });
    }
    let mut cells: std::collections::BTreeMap<&str, &GridCellWire> =
        base.cells.iter().map(|c| (c.cell.as_str(), c)).collect();
    for r in &changes.removed {
        cells.remove(r.as_str());
    }
    for c in &changes.set {
        cells.insert(c.cell.as_str(), c);
    }
    // Token order is cell order (a token is the id's hex without trailing
    // zeros), the order every grid keeps its cells in.
    let cells = cells.into_values().cloned().collect();
    Ok(GridPush {
        format: base.format,
        region: base.region.clone(),
        level: base.level,
        generation: changes.generation,
        computed_at: changes.computed_at,
        cells,
        lawful_cap: changes.lawful_cap,
        arms: changes.arms.clone(),
    })
}

/// The message for a subscriber: the changes from `held` when it asked for
/// changes, they apply, and their JSON is shorter than the whole grid's;
/// else the whole grid. JSON text, ready to send.
pub fn message_for(held: Option<&GridPush>, next: &GridPush) -> String {
    let whole =
        serde_json::to_string(&StreamMessage::Grid { grid: next.clone() }).unwrap_or_default();
    let Some(changes) = held.and_then(|h| diff(h, next)) else {
        return whole;
    };
    let smaller = serde_json::to_string(&StreamMessage::Changes { changes }).unwrap_or_default();
    if !smaller.is_empty() && smaller.len() < whole.len() {
        smaller
    } else {
        whole
    }
}
