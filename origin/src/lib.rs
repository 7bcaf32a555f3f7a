//! The Equilibrium origin: ingest driver locations and demand, aggregate
//! them per S2 cell in time windows, recompute surge grids every tick, push
//! them to the edge, and remember the history in SQLite.
//!
//! # Layout
//!
//! * [`config`]: the TOML file, `EQ_*` environment overrides, defaults.
//! * [`auth`]: producer and reader bearer tokens, compared in constant time.
//! * [`clock`]: `now` from the system, or a manual clock in tests.
//! * [`ingest`]: parsing and validating JSON-array and NDJSON batches.
//! * [`aggregate`]: per region, `shared::market` + `shared::surge`; one grid
//!   per region per tick, driven by `now`; its state encoded with
//!   `shared::state`.
//! * [`state`]: the server's shared state and what a start restores.
//! * [`cluster`]: cluster mode on NATS JetStream: ingest to a replicated
//!   stream, region leases, take-over by replay.
//! * [`backlog`]: cluster mode's history writes, buffered while the
//!   database is away.
//! * [`tick`]: one tick: recompute, persist (one transaction), offer pushes.
//! * [`push`]: delivery to the edge over HTTPS, newest grid per region,
//!   backoff.
//! * [`retention`]: pruning history older than `retention_days`, in batches.
//! * [`store`]: the embedded SQLite store (schema, tick persistence,
//!   analytics).
//! * [`metrics`]: Prometheus text.
//! * [`http`]: the axum router, handlers by family, the JSON error shape,
//!   the OpenAPI document.
//! * [`server`]: serving with the ticker, pusher and retention; graceful
//!   shutdown.

pub mod aggregate;
pub mod auth;
pub mod backlog;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod feedback;
pub mod guardrail;
pub mod http;
pub mod ingest;
pub mod lawful;
pub mod lookup;
pub mod metrics;
pub mod push;
pub mod retention;
pub mod server;
pub mod simclock;
pub mod state;
pub mod store;
pub mod tick;
