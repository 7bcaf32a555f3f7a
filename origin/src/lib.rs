//! The Equilibrium origin: ingest driver locations and demand, aggregate
//! them per S2 cell in time windows, recompute surge grids every tick, push
//! them to the edge, and remember the history in SQLite.
//!
//! # Layout
//!
//! * [`config`]: the TOML file, `EQ_*` environment overrides, defaults.
//! * [`ingest`]: parsing and validating JSON-array and NDJSON batches.
//! * [`aggregate`]: per region, `shared::market` + `shared::surge`; one grid
//!   per region per tick, driven by `now` (a manual clock in tests).
//! * [`push`]: delivery to the edge, newest grid per region, backoff.
//! * [`store`]: the embedded SQLite store (zones, snapshots, change log,
//!   last grids, ride outcomes, analytics queries).
//! * [`metrics`]: Prometheus text.
//! * [`server`]: the axum router, the tick loop, graceful shutdown.

pub mod aggregate;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod push;
pub mod server;
pub mod store;
