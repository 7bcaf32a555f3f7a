//! Live mode: the simulation drives the real stack. Driver positions and
//! demand go to the origin; every rider asks the edge for a quote (its
//! latency measured as the client sees it) and accepts or declines on the
//! edge's multiplier; accepted quotes are confirmed at the edge; outcomes go
//! back to the origin for its analytics.

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
    /// Extra CA certificates (PEM) to trust for `https://` URLs.
    pub ca_file: Option<std::path::PathBuf>,
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
}

impl LiveReport {
    /// One line per figure.
    pub fn summary(&self) -> String {
        format!(
            "simulated {:.1} min · origin accepted {} locations, {} demand events · {} quotes ({} errors), latency p50 {:.1} ms p99 {:.1} ms · {} confirmed · max multiplier {:.1}x",
            self.simulated_minutes,
            self.locations_accepted,
            self.demand_accepted,
            self.quotes,
            self.quote_errors,
            percentile(&self.latencies_ms, 0.5),
            percentile(&self.latencies_ms, 0.99),
            self.confirmed,
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
    while !sim.done() {
        if cfg.max_seconds > 0.0 && started.elapsed().as_secs_f64() > cfg.max_seconds {
            break;
        }
        let tick_start = Instant::now();
        let ev = sim.step();
        let ts = now_ms();
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
        let mut outcomes = Vec::new();
        for (from, to) in &ev.riders {
            rider_seq += 1;
            let t0 = Instant::now();
            let res = http
                .post(format!("{}/api/v1/pricing/estimate", cfg.edge))
                .json(&json!({
                    "pickup_location": {"latitude": from.0, "longitude": from.1},
                    "dropoff_location": {"latitude": to.0, "longitude": to.1},
                    "region": cfg.region,
                    "user_id": format!("sim-rider-{rider_seq}"),
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
            let draw = (crate::Rng::new(rider_seq).next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if draw >= accept {
                continue;
            }
            let id = quote["quote_id"].as_str().unwrap_or_default().to_owned();
            let token = quote["quote_token"].as_str().unwrap_or_default();
            let c = http
                .post(format!("{}/api/v1/quotes/{id}/confirm", cfg.edge))
                .json(&json!({ "quote_token": token }))
                .send()?;
            if c.status().is_success() {
                rep.confirmed += 1;
                outcomes.push(json!({"ride_id": id, "region": cfg.region, "latitude": from.0, "longitude": from.1,
                    "completed": true, "multiplier": m, "fare_minor": quote["final_fare"].as_f64().and_then(shared::fare::decimal_to_minor),
                    "currency": quote["currency"], "quote_id": id, "timestamp": ts}));
            }
        }
        if !outcomes.is_empty() {
            let r = http
                .post(format!("{}/v1/outcomes", cfg.origin))
                .bearer_auth(&cfg.origin_token)
                .json(&outcomes)
                .send()?;
            anyhow::ensure!(
                r.status().is_success(),
                "the origin refused outcomes: {} {}",
                r.status(),
                r.text().unwrap_or_default()
            );
        }
        rep.simulated_minutes = sim.time() / 60.0;
        rep.latencies_ms.sort_by(f64::total_cmp);
        progress(&rep);
        if let Some(rest) = tick_real.checked_sub(tick_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    rep.outcome = Some(sim.finish());
    Ok(rep)
}
