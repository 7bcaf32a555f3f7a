//! Live mode: the simulation drives the real stack. Driver positions and
//! demand go to the origin; every rider asks the edge for a quote (its
//! latency measured as the client sees it) and accepts or declines on the
//! edge's multiplier; accepted quotes are confirmed at the edge, and each
//! booking is then driven through its life at the edge with the dispatch
//! token (started after a pickup wait and completed, or cancelled by the
//! rider, or failed for want of a driver). The edge tells the origin what
//! happened (its events queue); the simulator posts no outcomes itself.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{percentile, PolicyKind, Scenario, Simulation};

/// Where the stack is and how fast to run.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Origin base URL.
    pub origin: String,
    /// Edge base URL.
    pub edge: String,
    /// Region priced.
    pub region: String,
    /// Simulated seconds per real second.
    pub speedup: f64,
    /// Stop after this many real seconds (0: the whole scenario).
    pub max_seconds: f64,
    /// The origin's producer token.
    pub origin_token: String,
    /// The edge's `DISPATCH_TOKEN`, to drive bookings.
    pub dispatch_token: String,
    /// Drive the origin's clock (an origin started with
    /// `EQ_SIMULATED_CLOCK=true`): events are stamped with simulated time,
    /// which starts a day ahead of the wall clock, and `POST /v1/clock`
    /// moves the origin's clock before each tick's events, so its ticks,
    /// windows and TTLs run in the simulator's time frame.
    pub drive_clock: bool,
    /// The origin's reader token: with it, every tick reads the origin's
    /// grid and counts where surge is ([`LiveReport::surge`]).
    pub reader_token: Option<String>,
    /// Extra CA certificates (PEM) to trust for `https://` URLs.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Checks that `scenario` plays inside `region` of the registry the edge
/// prices with, in that region's cells: otherwise the edge would refuse or
/// misplace its quotes (the pickup decides the region). The scenario's box
/// is sampled on an 11 × 11 grid, corners included.
pub fn check_region(
    scenario: &Scenario,
    registry: &shared::regions::Registry,
    region: &str,
) -> Result<(), String> {
    let r = registry
        .named(region)
        .map_err(|e| format!("region {region}: {e}"))?;
    if r.level().get() != scenario.level {
        return Err(format!(
            "the scenario prices level-{} cells; region {region} is level {} in the registry",
            scenario.level,
            r.level().get()
        ));
    }
    let [s, w, n, e] = scenario.bounds;
    for i in 0..=10 {
        for j in 0..=10 {
            let lat = s + (n - s) * f64::from(i) / 10.0;
            let lng = w + (e - w) * f64::from(j) / 10.0;
            let p = shared::geo::LatLng::new(lat, lng).map_err(|e| e.to_string())?;
            let at = registry.locate(p).map(|x| x.id().as_str());
            if at != Some(region) {
                return Err(format!(
                    "the scenario's point ({lat}, {lng}) is in {}, not region {region}",
                    at.unwrap_or("no region")
                ));
            }
        }
    }
    Ok(())
}

/// A simulated rider's client address (in 10.0.0.0/8, one per rider).
fn rider_address(seq: u64) -> String {
    let n = seq % (1 << 24);
    format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff)
}

/// The live mode's HTTP client: rustls with the platform's roots, plus the
/// certificates of `ca_file` when given (a private CA, a test proxy).
pub fn client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

/// What live mode measured.
#[derive(Debug, Clone, Default)]
pub struct LiveReport {
    /// Quotes asked of the edge.
    pub quotes: u32,
    /// Quotes that failed (non-200 or network).
    pub quote_errors: u32,
    /// Client-side quote latencies, ms, sorted.
    pub latencies_ms: Vec<f64>,
    /// Confirms that succeeded.
    pub confirmed: u32,
    /// Bookings completed at the edge.
    pub completed: u32,
    /// Bookings the rider cancelled.
    pub cancelled: u32,
    /// Bookings dispatch failed (no driver).
    pub failed: u32,
    /// Transitions the edge refused or that failed (should be 0).
    pub lifecycle_errors: u32,
    /// Highest multiplier the edge quoted.
    pub max_multiplier: f64,
    /// Location records the origin accepted.
    pub locations_accepted: u64,
    /// Demand records the origin accepted.
    pub demand_accepted: u64,
    /// Simulated minutes run.
    pub simulated_minutes: f64,
    /// The simulation's own figures (completion, waits, multipliers, fares,
    /// earnings) once the run ends.
    pub outcome: Option<crate::Outcome>,
    /// Where the origin's grids surged (with a reader token).
    pub surge: Option<crate::SurgeShares>,
}

impl LiveReport {
    /// One line per figure.
    pub fn summary(&self) -> String {
        format!(
            "simulated {:.1} min · origin accepted {} locations, {} demand events · {} quotes ({} errors), latency p50 {:.1} ms p99 {:.1} ms · {} confirmed: {} completed, {} cancelled, {} failed ({} errors) · max multiplier {:.1}x",
            self.simulated_minutes,
            self.locations_accepted,
            self.demand_accepted,
            self.quotes,
            self.quote_errors,
            percentile(&self.latencies_ms, 0.5),
            percentile(&self.latencies_ms, 0.99),
            self.confirmed,
            self.completed,
            self.cancelled,
            self.failed,
            self.lifecycle_errors,
            self.max_multiplier,
        )
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stops the run on a refused token: nothing it sends would count.
fn authorised(r: reqwest::blocking::Response) -> anyhow::Result<reqwest::blocking::Response> {
    let status = r.status().as_u16();
    anyhow::ensure!(
        !matches!(status, 401 | 403),
        "the origin refused the producer token ({status}): set --origin-token or EQ_PRODUCER_TOKEN"
    );
    Ok(r)
}

/// Runs the scenario against the stack; `progress` gets each tick's report.
pub fn run(
    scenario: Scenario,
    cfg: &LiveConfig,
    mut progress: impl FnMut(&LiveReport),
) -> anyhow::Result<LiveReport> {
    let http = client(cfg.ca_file.as_deref())?;
    let mut sim = Simulation::new(scenario, PolicyKind::Default);
    let mut rep = LiveReport::default();
    let started = Instant::now();
    let tick_real = Duration::from_secs_f64(sim.scenario().tick_s / cfg.speedup.max(0.01));
    let mut rider_seq = 0u64;
    let mut pending: Vec<Booking> = Vec::new();
    // Simulated time starts a day ahead of the wall clock: the edge's own
    // events (price checks, bookings), stamped with the wall clock, then
    // never fall into the simulated market's windows.
    let sim_t0 = now_ms() + 86_400_000;
    let mut surge = crate::SurgeCounter::default();
    while !sim.done() {
        if cfg.max_seconds > 0.0 && started.elapsed().as_secs_f64() > cfg.max_seconds {
            break;
        }
        let tick_start = Instant::now();
        let ev = sim.step();
        let ts = if cfg.drive_clock {
            sim_t0 + (sim.time() * 1_000.0) as u64
        } else {
            now_ms()
        };
        if cfg.drive_clock {
            // The origin ticks up to this tick (on the events so far), then
            // takes this tick's events.
            let r = http
                .post(format!("{}/v1/clock", cfg.origin))
                .bearer_auth(&cfg.origin_token)
                .json(&json!({ "now": ts }))
                .send()
                .map_err(anyhow::Error::from)
                .and_then(authorised)?;
            anyhow::ensure!(
                r.status().is_success(),
                "the origin refused its clock ({}): start it with EQ_SIMULATED_CLOCK=true, or run without --drive-origin-clock: {}",
                r.status(),
                r.text().unwrap_or_default()
            );
            if let Some(reader) = &cfg.reader_token {
                let g: Value = http
                    .get(format!("{}/v1/grids/{}", cfg.origin, cfg.region))
                    .bearer_auth(reader)
                    .send()?
                    .json()?;
                let cells = g["cells"].as_array().into_iter().flatten().filter_map(|c| {
                    let cell = shared::geo::Cell::from_token(c["cell"].as_str()?).ok()?;
                    Some((cell, c["multiplier"].as_f64()?))
                });
                surge.count(sim.time(), sim.scenario().spikes.first(), cells);
            }
        }
        let locations: String = ev
            .drivers
            .iter()
            .map(|(i, p, avail)| {
                json!({"driver_id": format!("sim-driver-{i}"), "latitude": p.0, "longitude": p.1,
                       "available": avail, "timestamp": ts})
                .to_string()
                    + "\n"
            })
            .collect();
        let r: Value = http
            .post(format!("{}/v1/ingest/locations", cfg.origin))
            .bearer_auth(&cfg.origin_token)
            .header("content-type", "application/x-ndjson")
            .body(locations)
            .send()
            .map_err(anyhow::Error::from)
            .and_then(authorised)?
            .json()?;
        rep.locations_accepted += r["accepted"].as_u64().unwrap_or(0);
        if !ev.riders.is_empty() {
            let demand: Vec<Value> = ev
                .riders
                .iter()
                .map(|(from, _)| json!({"kind": "ride_request", "latitude": from.0, "longitude": from.1, "timestamp": ts}))
                .collect();
            let r: Value = http
                .post(format!("{}/v1/ingest/demand", cfg.origin))
                .bearer_auth(&cfg.origin_token)
                .json(&demand)
                .send()
                .map_err(anyhow::Error::from)
                .and_then(authorised)?
                .json()?;
            rep.demand_accepted += r["accepted"].as_u64().unwrap_or(0);
        }
        for (from, to) in &ev.riders {
            rider_seq += 1;
            let t0 = Instant::now();
            // Each simulated rider is a client of its own: the edge counts a
            // price check once per client address (`CF-Connecting-IP`,
            // which Cloudflare sets from the real client; a local stack
            // takes it from the request), so riders sharing this one
            // machine's address would be one asker.
            let res = http
                .post(format!("{}/api/v1/pricing/estimate", cfg.edge))
                .header("cf-connecting-ip", rider_address(rider_seq))
                .json(&json!({
                    "pickup_location": {"latitude": from.0, "longitude": from.1},
                    "dropoff_location": {"latitude": to.0, "longitude": to.1},
                    "region": cfg.region,
                }))
                .send();
            rep.quotes += 1;
            let quote: Value = match res {
                Ok(r) if r.status().is_success() => {
                    rep.latencies_ms.push(t0.elapsed().as_secs_f64() * 1_000.0);
                    r.json()?
                }
                _ => {
                    rep.quote_errors += 1;
                    continue;
                }
            };
            let m = quote["surge_multiplier"].as_f64().unwrap_or(1.0);
            rep.max_multiplier = rep.max_multiplier.max(m);
            let accept = (-sim.scenario().elasticity * (m - 1.0)).exp();
            // Deterministic per rider: accept if a hash of the rider falls
            // under the acceptance probability.
            let mut rng = crate::Rng::new(rider_seq);
            if unit(&mut rng) >= accept {
                continue;
            }
            let id = quote["quote_id"].as_str().unwrap_or_default().to_owned();
            let token = quote["quote_token"].as_str().unwrap_or_default();
            let c = http
                .post(format!("{}/api/v1/quotes/{id}/confirm", cfg.edge))
                .header("idempotency-key", format!("confirm-{id}"))
                .json(&json!({ "quote_token": token }))
                .send()?;
            if !c.status().is_success() {
                continue;
            }
            rep.confirmed += 1;
            let booking: Value = c.json()?;
            let booking_id = booking["booking_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let minutes = quote["estimated_duration"].as_f64().unwrap_or(10.0);
            let now = sim.time();
            // What becomes of the booking: a few riders cancel at once
            // (free, within the grace period), a few find no driver, the
            // rest are picked up after a wait and driven about as estimated.
            let fate = unit(&mut rng);
            let next = if fate < 0.04 {
                Step::Cancel
            } else if fate < 0.08 {
                Step::Fail
            } else {
                Step::Start
            };
            let due = match next {
                Step::Start => now + 120.0 + 300.0 * unit(&mut rng),
                _ => now,
            };
            pending.push(Booking {
                id: booking_id,
                next,
                due,
                minutes: minutes * (0.9 + 0.25 * unit(&mut rng)),
            });
        }
        advance(&http, cfg, &mut pending, sim.time(), &mut rep)?;
        rep.simulated_minutes = sim.time() / 60.0;
        rep.latencies_ms.sort_by(f64::total_cmp);
        progress(&rep);
        if let Some(rest) = tick_real.checked_sub(tick_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    // Bookings still under way end now: every confirmed booking reaches a
    // final status, so the origin hears of each one.
    while !pending.is_empty() {
        advance(&http, cfg, &mut pending, f64::INFINITY, &mut rep)?;
    }
    rep.outcome = Some(sim.finish());
    if cfg.drive_clock && cfg.reader_token.is_some() {
        rep.surge = Some(surge.shares());
    }
    Ok(rep)
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut crate::Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A booking's next transition at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Start,
    Complete,
    Cancel,
    Fail,
}

/// A booking the simulator is driving.
#[derive(Debug, Clone)]
struct Booking {
    id: String,
    next: Step,
    /// Simulated time (s) of the next transition.
    due: f64,
    /// The trip's real duration, minutes.
    minutes: f64,
}

/// Makes every transition due by `now` at the edge, as dispatch.
fn advance(
    http: &reqwest::blocking::Client,
    cfg: &LiveConfig,
    pending: &mut Vec<Booking>,
    now: f64,
    rep: &mut LiveReport,
) -> anyhow::Result<()> {
    let mut later = Vec::with_capacity(pending.len());
    for mut b in pending.drain(..) {
        if b.due > now {
            later.push(b);
            continue;
        }
        let (action, body) = match b.next {
            Step::Start => ("start", json!({})),
            // About 24 km/h door to door, as the edge's route model.
            Step::Complete => (
                "complete",
                json!({"distance_km": b.minutes * 0.4, "duration_minutes": b.minutes}),
            ),
            Step::Cancel => ("cancel", json!({"reason": "rider changed plans"})),
            Step::Fail => ("fail", json!({"reason": "no driver found"})),
        };
        let r = http
            .post(format!("{}/api/v1/bookings/{}/{action}", cfg.edge, b.id))
            .bearer_auth(&cfg.dispatch_token)
            .header("idempotency-key", format!("{action}-{}", b.id))
            .json(&body)
            .send()?;
        let status = r.status().as_u16();
        anyhow::ensure!(
            !matches!(status, 401 | 403),
            "the edge refused the dispatch token ({status}): set --dispatch-token or EQ_DISPATCH_TOKEN"
        );
        if status != 200 {
            rep.lifecycle_errors += 1;
            continue;
        }
        match b.next {
            Step::Start => {
                b.next = Step::Complete;
                b.due = if now.is_finite() {
                    now + b.minutes * 60.0
                } else {
                    now
                };
                later.push(b);
            }
            Step::Complete => rep.completed += 1,
            Step::Cancel => rep.cancelled += 1,
            Step::Fail => rep.failed += 1,
        }
    }
    *pending = later;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> shared::regions::Registry {
        shared::api::admin::parse_registry(include_str!("../../config/regions.json"))
            .expect("the shipped registry")
    }

    #[test]
    fn the_scenarios_play_in_the_shipped_registrys_sf() {
        let registry = shipped();
        for scenario in [Scenario::evening(1, 60.0), Scenario::short(1, 5.0)] {
            assert_eq!(check_region(&scenario, &registry, "sf"), Ok(()));
        }
        let mut moved = Scenario::evening(1, 60.0);
        moved.bounds = [37.70, -122.52, 37.95, -122.38];
        let e = check_region(&moved, &registry, "sf").expect_err("north of sf");
        assert!(e.contains("no region"), "{e}");
        let mut finer = Scenario::evening(1, 60.0);
        finer.level = 13;
        assert!(check_region(&finer, &registry, "sf").is_err());
        assert!(check_region(&Scenario::evening(1, 60.0), &registry, "zz").is_err());
    }
}
