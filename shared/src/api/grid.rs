//! The grid push (`PUT /admin/v1/grids/{region}`, origin → edge): the wire
//! format, its conversion to and from the core's [`SurgeGrid`], the answer.

use super::*;

/// One cell of a pushed grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridCellWire {
    /// Cell token.
    pub cell: String,
    /// Published multiplier.
    #[cfg_attr(feature = "openapi", schema(value_type = f64, minimum = 1.0))]
    pub multiplier: Multiplier,
    /// Available drivers.
    pub supply: u32,
    /// Demand units.
    pub demand: u32,
    /// `increasing`, `stable` or `decreasing`.
    pub trend: String,
    /// Format 2: demand units expected in a 5-minute bucket 15 minutes
    /// ahead (with `expected_supply`; absent before the cell has history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_demand: Option<f32>,
    /// Format 2: available drivers expected 15 minutes ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_supply: Option<f32>,
}

/// `PUT /admin/v1/grids/{region}` body: the grid wire format, version
/// [`GRID_FORMAT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GridPush {
    /// Wire format version.
    pub format: u32,
    /// Region id.
    pub region: String,
    /// S2 level of every cell.
    pub level: u8,
    /// Monotonic generation (≥ 1).
    pub generation: u64,
    /// Milliseconds since the epoch when the origin computed it.
    pub computed_at: u64,
    /// The cells.
    pub cells: Vec<GridCellWire>,
    /// The region's lawful emergency cap (the fourth-highest daily maximum
    /// multiplier of the 60 days before today), applied while an emergency
    /// is declared; absent with less history. Optional within format 1:
    /// an older reader ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f64>, minimum = 1.0))]
    pub lawful_cap: Option<Multiplier>,
    /// The arms of the region's running experiment, each priced by its own
    /// policy from the same market (format 3; absent outside an
    /// experiment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<ArmGridWire>,
}

/// One arm's multipliers in a grid push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArmGridWire {
    /// The experiment's id.
    pub experiment: String,
    /// The arm's name.
    pub arm: String,
    /// The version of the arm's policy.
    pub policy: String,
    /// Multiplier by cell token; a cell of the grid without one is 1.0.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, f64>))]
    pub multipliers: std::collections::BTreeMap<String, Multiplier>,
}

/// Why a pushed grid was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidGridPush {
    /// Bad region id.
    #[error("region: {0}")]
    Region(#[from] InvalidIdent),
    /// Bad level.
    #[error("level {0} is outside 0..=30")]
    Level(u8),
    /// Bad cell token.
    #[error("cell {index}: {token:?} is not a valid S2 cell token")]
    Cell {
        /// Position in `cells`.
        index: usize,
        /// The token.
        token: String,
    },
    /// Bad trend.
    #[error("cell {index}: trend {trend:?} is not increasing, stable or decreasing")]
    Trend {
        /// Position in `cells`.
        index: usize,
        /// The value.
        trend: String,
    },
    /// An arm grid is invalid.
    #[error("arms[{index}]: {reason}")]
    Arm {
        /// Position in `arms`.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The grid as a whole is invalid.
    #[error(transparent)]
    Grid(#[from] InvalidGrid),
}

fn arm_grid(index: usize, w: ArmGridWire) -> Result<crate::grid::ArmGrid, InvalidGridPush> {
    let bad = |reason: String| InvalidGridPush::Arm { index, reason };
    let ident = |what: &str, v: &str| Ident::new(v).map_err(|e| bad(format!("{what}: {e}")));
    if w.multipliers.len() > crate::grid::MAX_GRID_CELLS {
        return Err(bad(format!("{} cells", w.multipliers.len())));
    }
    let mut cells = Vec::with_capacity(w.multipliers.len());
    for (token, m) in w.multipliers {
        let cell = Cell::from_token(&token).map_err(|_| {
            bad(format!(
                "{:?} is not a valid S2 cell token",
                token.chars().take(20).collect::<String>()
            ))
        })?;
        cells.push((cell, m));
    }
    Ok(crate::grid::ArmGrid::new(
        ident("experiment", &w.experiment)?,
        ident("arm", &w.arm)?,
        ident("policy", &w.policy)?,
        cells,
    ))
}

impl TryFrom<GridPush> for SurgeGrid {
    type Error = InvalidGridPush;

    fn try_from(p: GridPush) -> Result<Self, Self::Error> {
        if !GRID_FORMATS_READ.contains(&p.format) {
            return Err(InvalidGrid::Format(p.format).into());
        }
        let region = Ident::new(&p.region)?;
        let level = Level::new(p.level).map_err(|_| InvalidGridPush::Level(p.level))?;
        if p.arms.len() > *crate::experiment::ARMS.end() {
            return Err(InvalidGridPush::Arm {
                index: p.arms.len() - 1,
                reason: format!("at most {} arms", crate::experiment::ARMS.end()),
            });
        }
        let arms = p
            .arms
            .into_iter()
            .enumerate()
            .map(|(i, a)| arm_grid(i, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cells = Vec::with_capacity(p.cells.len());
        for (index, c) in p.cells.into_iter().enumerate() {
            let cell = Cell::from_token(&c.cell).map_err(|_| InvalidGridPush::Cell {
                index,
                token: c.cell.chars().take(20).collect(),
            })?;
            let trend = Trend::parse(&c.trend).map_err(|_| InvalidGridPush::Trend {
                index,
                trend: c.trend.chars().take(20).collect(),
            })?;
            let forecast = match (c.expected_demand, c.expected_supply) {
                (Some(d), Some(s)) if d.is_finite() && s.is_finite() && d >= 0.0 && s >= 0.0 => {
                    Some(CellForecast {
                        demand: d,
                        supply: s,
                    })
                }
                _ => None,
            };
            cells.push(GridCell {
                cell,
                multiplier: c.multiplier,
                supply: c.supply,
                demand: c.demand,
                trend,
                forecast,
            });
        }
        Ok(
            SurgeGrid::new(region, level, p.generation, Timestamp(p.computed_at), cells)?
                .with_lawful_cap(p.lawful_cap)
                .with_arms(arms)?,
        )
    }
}

impl From<&SurgeGrid> for GridPush {
    fn from(g: &SurgeGrid) -> Self {
        Self {
            // Format 3 only when there are arms: an edge that reads
            // formats 1-2 keeps taking every grid outside an experiment.
            format: if g.arms().is_empty() { 2 } else { GRID_FORMAT },
            region: g.region().as_str().to_owned(),
            level: g.level().get(),
            generation: g.generation(),
            computed_at: g.computed_at().0,
            cells: g
                .cells()
                .iter()
                .map(|c| GridCellWire {
                    cell: c.cell.token(),
                    multiplier: c.multiplier,
                    supply: c.supply,
                    demand: c.demand,
                    trend: c.trend.as_str().to_owned(),
                    expected_demand: c.forecast.map(|f| f.demand),
                    expected_supply: c.forecast.map(|f| f.supply),
                })
                .collect(),
            lawful_cap: g.lawful_cap(),
            arms: g
                .arms()
                .iter()
                .map(|a| ArmGridWire {
                    experiment: a.experiment.to_string(),
                    arm: a.arm.to_string(),
                    policy: a.policy.to_string(),
                    multipliers: a
                        .multipliers()
                        .iter()
                        .map(|(c, m)| (c.token(), *m))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Response of a grid push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPushResponse {
    /// `applied` or `stale`.
    pub status: String,
    /// Generation now held by the edge.
    pub generation: u64,
    /// Generation it replaced, if applied over one.
    pub previous: Option<u64>,
    /// The region's experiments as the edge holds them: the value of
    /// `experiment:<region>` in its CONFIG namespace, verbatim (the origin
    /// parses it with [`parse_experiments`], as the edge does). Absent when
    /// the region has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiments: Option<String>,
    /// Whether the edge read that key for this answer: false when it could
    /// not (KV failing), and then `experiments` says nothing.
    #[serde(default)]
    pub experiments_read: bool,
}
