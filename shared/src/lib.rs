//! The Equilibrium pricing core: everything about a price that does not
//! touch the network, the clock or a random number generator.
//!
//! The edge worker (wasm32) and the origin (native) both compile this crate,
//! so a quote signed at one edge verifies at another and a cell computed by
//! the origin is the cell the map draws.
//!
//! # Layout
//!
//! * [`time`]: [`time::Timestamp`] and [`time::Millis`]. Time always comes in
//!   as an argument (`now`), never from a clock.
//! * [`geo`]: validated [`geo::LatLng`], S2 [`geo::Cell`]s at a
//!   [`geo::Level`], neighbours, polygons, bounding-box coverings, tokens.
//! * [`market`]: windowed supply (distinct available drivers seen within a
//!   TTL) and demand (requests in a sliding window) per cell and vehicle class.
//! * [`surge`]: the pricing policy. [`surge::Multiplier`] (tenths, never
//!   below 1.0), zone [`surge::Caps`], the [`surge::Policy`] trait with the
//!   default curve, and [`surge::SurgeEngine`], which turns market counts
//!   into multipliers with spatial and time smoothing and a step limit.
//! * [`policies`]: the policies a region can be configured with (no surge,
//!   the default curve, forecast-aware, a controller on the region's
//!   unfulfilled share and pickup wait) and the one parser of their names.
//! * [`pricer`]: [`pricer::RegionPricer`], a region's market → engine →
//!   grid pipeline with the generation rule; surge is per cell, the
//!   vehicle classes of a cell pooled (why: the module's documentation).
//! * [`forecast`]: short-term forecasts of a cell's demand and supply
//!   (additive Holt-Winters, 5-minute buckets, a daily season).
//! * [`fare`]: ISO 4217 currencies and their minor units, tariffs per
//!   vehicle class with the booking terms a quote is priced on, trip
//!   estimates, and an itemised [`fare::FareBreakdown`] in integer minor
//!   units.
//! * [`regions`]: the region registry, the one home of geography: which
//!   region a pickup is in (an S2 cell index over GeoJSON boundaries), its
//!   currency, calendar and named zones with their caps.
//! * [`quote`]: HMAC-SHA256 signed quotes with expiry and a key id, so any
//!   edge verifies any quote with no shared state.
//! * [`booking`]: a booking's life after the quote: the state machine,
//!   who may act, the cancellation fee and the final fare, the booking
//!   token, idempotent retries.
//! * [`emergency`]: lawful emergency caps: a region's fourth-highest daily
//!   maximum multiplier of the 60 days before today.
//! * [`events`]: what the edge's events (price checks, bookings) mean to
//!   the origin: demand, counted once per key, or ride outcomes.
//! * [`experiment`]: pricing experiments: definitions validated field by
//!   field, overlapping ones refused, and each quote's arm assigned from the
//!   definition alone (switchback windows or users, by a salted hash).
//! * [`grid`]: the validated surge grid the origin pushes, and the
//!   newest-generation-wins rule.
//! * [`desk`]: the pricing desk: one effective multiplier (published,
//!   decayed by age, clamped to the caps in force) for quotes, heatmaps and
//!   the driver view; the multiplier's [`desk::Source`]; zone names.
//! * [`state`]: compact binary snapshots of a region's market windows and
//!   engine smoothing, so a restart resumes exactly where a tick left off.
//! * [`api`]: serde request/response types of every endpoint, one file per
//!   endpoint family, converting core values to and from the wire. A leaf:
//!   no other module imports it (`tests/layers.rs`). Only this module (and
//!   the few core types that *are* a wire or storage format) knows serde.
//! * [`identity`]: riders' tokens verified; [`recent`]: the bounded map of
//!   caches keyed by what clients send.

pub mod api;
pub mod arms;
pub mod booking;
pub mod desk;
pub mod emergency;
pub mod events;
pub mod experiment;
pub mod fare;
pub mod forecast;
pub mod geo;
pub mod grid;
pub mod identity;
pub mod market;
pub mod policies;
pub mod pricer;
pub mod quote;
pub mod recent;
pub mod regions;
pub mod state;
pub mod surge;
pub mod time;
