//! One benchmark per hot function of the pricing core.
//!
//! `cargo bench -p equilibrium-shared --bench core`; results in BENCHMARKS.md.

mod estimate;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shared::fare::{price, RouteModel, Tariff, VehicleClass};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen, Market, MarketConfig};
use shared::quote::{Ident, Keyring, QuoteClaims};
use shared::surge::{
    Caps, CellInput, DefaultCurve, Multiplier, Policy, PolicyInput, SurgeConfig, SurgeEngine,
};
use shared::time::{Millis, Timestamp};

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sf_point(i: u64) -> LatLng {
    let u = |k: u64| (mix(i * 3 + k) >> 11) as f64 / (1u64 << 53) as f64;
    LatLng::new(37.6 + u(0) * 0.3, -122.55 + u(1) * 0.4).expect("point")
}

fn latlng_to_cell(c: &mut Criterion) {
    let points: Vec<LatLng> = (0..1_024).map(sf_point).collect();
    let mut g = c.benchmark_group("geo");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("latlng_to_cell_l13", |b| {
        b.iter(|| {
            for p in &points {
                black_box(Cell::at(black_box(*p), DEFAULT_LEVEL));
            }
        })
    });
    // Baseline: the s2 crate's own conversion (different face tie-break).
    let raw: Vec<s2::latlng::LatLng> = points
        .iter()
        .map(|p| s2::latlng::LatLng::from_degrees(p.lat(), p.lng()))
        .collect();
    g.bench_function("baseline_s2_crate_cellid", |b| {
        b.iter(|| {
            for p in &raw {
                black_box(s2::cellid::CellID::from(black_box(*p)).parent(13));
            }
        })
    });
    g.finish();
}

fn market_update(c: &mut Criterion) {
    let cells: Vec<Cell> = (0..4_096)
        .map(|i| Cell::at(sf_point(i), DEFAULT_LEVEL))
        .collect();
    let mut market = Market::new(MarketConfig::default()).expect("market");
    // Warm state: 20,000 drivers already known.
    for d in 0..20_000u64 {
        market.driver_seen(DriverSeen {
            driver: DriverId(d),
            cell: cells[(d % 4_096) as usize],
            class: VehicleClass::Standard,
            available: true,
            at: Timestamp(1_000),
        });
    }
    let mut g = c.benchmark_group("market");
    g.throughput(Throughput::Elements(1_024));
    let mut t = 2_000u64;
    g.bench_function("event_update", |b| {
        b.iter(|| {
            t += 1;
            for k in 0..1_024u64 {
                let cell = cells[((t + k) % 4_096) as usize];
                if k % 4 == 0 {
                    market.demand_seen(DemandSeen {
                        cell,
                        class: VehicleClass::Standard,
                        kind: DemandKind::RideRequest,
                        at: Timestamp(t),
                        once: None,
                    });
                } else {
                    market.driver_seen(DriverSeen {
                        driver: DriverId(mix(t * 1_024 + k) % 20_000),
                        cell,
                        class: VehicleClass::Standard,
                        available: k % 3 != 0,
                        at: Timestamp(t),
                    });
                }
            }
        })
    });
    // Baseline: the cheapest possible per-event state update, one hash-map
    // insert of driver → cell.
    let mut plain: std::collections::HashMap<u64, u64> = (0..20_000).map(|d| (d, 0)).collect();
    g.bench_function("baseline_hashmap_insert", |b| {
        b.iter(|| {
            t += 1;
            for k in 0..1_024u64 {
                plain.insert(
                    mix(t * 1_024 + k) % 20_000,
                    cells[((t + k) % 4_096) as usize].id(),
                );
            }
        })
    });
    g.finish();
}

/// A tick's engine inputs for `cells`: 0-19 drivers, 0-39 demand units.
fn busy_inputs(cells: &[shared::geo::Cell]) -> Vec<CellInput> {
    cells
        .iter()
        .enumerate()
        .map(|(i, cell)| CellInput {
            cell: *cell,
            supply: (mix(i as u64) % 20) as u32,
            demand: (mix(i as u64 + 99) % 40) as u32,
            caps: Caps::DEFAULT,
            ahead: None,
        })
        .collect()
}

fn grid_recompute(c: &mut Criterion) {
    let cells = estimate::ten_thousand_cells();
    assert_eq!(cells.len(), 10_000, "the box must hold 10,000 cells");
    let inputs = busy_inputs(&cells);
    let mut engine = SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine");
    engine.update(&inputs); // warm: neighbour lists and smoothing state
    let mut g = c.benchmark_group("surge");
    g.sample_size(20);
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("grid_recompute_10k_cells", |b| {
        b.iter(|| black_box(engine.update(black_box(&inputs))))
    });
    // Baseline: the raw curve alone, no smoothing, caps or state.
    g.bench_function("baseline_raw_curve_10k_cells", |b| {
        b.iter(|| {
            let out: Vec<f64> = inputs
                .iter()
                .map(|i| {
                    DefaultCurve.raw(&PolicyInput {
                        supply: i.supply,
                        demand: i.demand,
                        ahead: None,
                        max: i.caps.max(),
                    })
                })
                .collect();
            black_box(out)
        })
    });
    g.finish();
}

fn quote_sign_verify(c: &mut Criterion) {
    let keys = Keyring::parse("k1:benchmark-secret-0123456789").expect("keys");
    let pickup = sf_point(1);
    let trip = RouteModel::default()
        .estimate(pickup, sf_point(2))
        .expect("trip");
    let fare = price(
        &Tariff::default_for(VehicleClass::Standard),
        trip,
        Multiplier::from_tenths(14).expect("m"),
    );
    let claims = QuoteClaims {
        quote_id: Ident::new("q_0123456789abcdef").expect("id"),
        region: Ident::new("sf").expect("region"),
        cell: Cell::at(pickup, DEFAULT_LEVEL),
        class: VehicleClass::Standard,
        surge: fare.surge_multiplier,
        base_fare: fare.subtotal + fare.booking_fee,
        final_fare: fare.total,
        currency: fare.currency,
        distance_m: trip.distance_m,
        duration_s: trip.duration_s,
        grid_generation: 7,
        issued_at: Timestamp(1_000),
        expires_at: Timestamp(1_000) + Millis::from_secs(120),
        source: Some(shared::desk::Source::Fresh),
        arm: None,
        terms: None,
    };
    let token = keys.sign(&claims);
    let mut g = c.benchmark_group("quote");
    g.bench_function("sign", |b| {
        b.iter(|| black_box(keys.sign(black_box(&claims))))
    });
    // Baseline: HMAC-SHA256 alone over a message of the canonical length.
    let msg = vec![b'x'; 120];
    g.bench_function("baseline_hmac_sha256", |b| {
        use hmac::Mac;
        b.iter(|| {
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(b"benchmark-secret-0123456789")
                    .expect("any key length");
            mac.update(black_box(&msg));
            black_box(mac.finalize().into_bytes())
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| black_box(keys.verify(black_box(&token), Timestamp(2_000))))
    });
    g.bench_function("price_trip", |b| {
        b.iter_batched(
            || (sf_point(3), sf_point(4)),
            |(a, z)| {
                let t = RouteModel::default().estimate(a, z).expect("trip");
                black_box(price(
                    &Tariff::default_for(VehicleClass::Standard),
                    t,
                    Multiplier::ONE,
                ))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The durable-windows snapshot a tick persists: a busy region (20,000
/// drivers, demand in 10,000 cell × class keys with 60 buckets each, an
/// engine tracking 10,000 cells), encoded and decoded, beside the grid
/// recompute of the same 10,000 cells that every tick already runs.
fn state_snapshot(c: &mut Criterion) {
    use shared::market::{DemandKind, DemandSeen, DriverId, DriverSeen, Market, MarketConfig};
    use shared::time::{Millis, Timestamp};
    let cells = estimate::ten_thousand_cells();
    let config = MarketConfig {
        demand_window: Millis::from_secs(300),
        bucket: Millis::from_secs(5),
        ..MarketConfig::default()
    };
    let mut market = Market::new(config).expect("market");
    let t0 = 1_800_000_000_000u64;
    for d in 0..20_000u64 {
        market.driver_seen(DriverSeen {
            driver: DriverId(mix(d)),
            cell: cells[(mix(d + 7) % 10_000) as usize],
            class: shared::fare::VehicleClass::Standard,
            available: d % 5 != 0,
            at: Timestamp(t0 + 240_000 + mix(d) % 60_000),
        });
    }
    for (i, cell) in cells.iter().enumerate() {
        for b in 0..60u64 {
            market.demand_seen(DemandSeen {
                cell: *cell,
                class: shared::fare::VehicleClass::Standard,
                kind: DemandKind::Quote,
                at: Timestamp(t0 + b * 5_000 + i as u64 % 5_000),
                once: None,
            });
        }
    }
    let inputs = busy_inputs(&cells);
    let mut engine = SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine");
    engine.update(&inputs);
    let forecasts = shared::forecast::CellForecasts::default();
    let bytes = shared::state::encode(&market, &engine, &forecasts);
    println!(
        "state snapshot: {} bytes for 20,000 drivers, 10,000 demand keys x 60 buckets, 10,000 engine cells",
        bytes.len()
    );
    let mut g = c.benchmark_group("state");
    g.sample_size(20);
    g.bench_function("encode_busy_region", |b| {
        b.iter(|| {
            black_box(shared::state::encode(
                black_box(&market),
                black_box(&engine),
                black_box(&forecasts),
            ))
        })
    });
    g.bench_function("decode_busy_region", |b| {
        b.iter_batched(
            || {
                (
                    Market::new(config).expect("market"),
                    SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine"),
                )
            },
            |(mut m, mut e)| {
                let mut f = shared::forecast::CellForecasts::default();
                shared::state::decode_into(black_box(&bytes), &mut m, &mut e, &mut f)
                    .expect("decode");
                black_box((m, e))
            },
            BatchSize::LargeInput,
        )
    });
    // Baseline: the tick's grid recompute of the same 10,000 cells.
    g.bench_function("baseline_grid_recompute_10k_cells", |b| {
        b.iter(|| black_box(engine.update(black_box(&inputs))))
    });
    g.finish();
}

/// One tick of forecasts for 10,000 cells (demand and supply each): every
/// cell's tick observations, a new bucket completing for all of them, and
/// the 15-minute forecast read back; beside the grid recompute of the same
/// cells, which a tick runs anyway.
fn forecast_update(c: &mut Criterion) {
    use shared::forecast::{Kind, Params, Series, BUCKET};
    let cells = estimate::ten_thousand_cells();
    let inputs = busy_inputs(&cells);
    let p = Params::default();
    let mut series: Vec<(Series, Series)> = (0..cells.len())
        .map(|_| (Series::new(Kind::Sum), Series::new(Kind::Mean)))
        .collect();
    // Warm: a day of buckets, so every seasonal slot is in use.
    for b in 0..shared::forecast::BUCKETS_PER_DAY {
        let at = Timestamp(b * BUCKET.0 + 1);
        for (i, (d, s)) in series.iter_mut().enumerate() {
            d.observe(at, (mix(i as u64 + b) % 9) as f32, &p);
            s.observe(at, (mix(i as u64 * 7 + b) % 4) as f32, &p);
        }
    }
    let mut engine = SurgeEngine::new(DefaultCurve, SurgeConfig::default()).expect("engine");
    engine.update(&inputs);
    let mut g = c.benchmark_group("forecast");
    g.sample_size(20);
    g.throughput(Throughput::Elements(cells.len() as u64));
    let mut bucket = shared::forecast::BUCKETS_PER_DAY;
    g.bench_function("tick_10k_cells", |b| {
        b.iter(|| {
            // Each tick opens a new bucket: the worst case, every series
            // completing one (a 5 s tick does so once every 60 ticks).
            bucket += 1;
            let at = Timestamp(bucket * BUCKET.0 + 1);
            let mut sum = 0.0f32;
            for (i, (d, s)) in series.iter_mut().enumerate() {
                d.observe(at, (i % 5) as f32, &p);
                s.observe(at, (i % 3) as f32, &p);
                sum += d.forecast(3, &p).map_or(0.0, |f| f.expected);
            }
            black_box(sum)
        })
    });
    // The same through the region's `CellForecasts`, as the pricer runs
    // it: series per cell and class (one cell in ten has XL riders and
    // drivers too), the supply map of the tick, the grid's forecast.
    let classes = |i: usize| {
        if i.is_multiple_of(10) {
            &[VehicleClass::Standard, VehicleClass::Xl][..]
        } else {
            &[VehicleClass::Standard][..]
        }
    };
    let mut region = shared::forecast::CellForecasts::new(p);
    let feed = |region: &mut shared::forecast::CellForecasts, b: u64| {
        let at = Timestamp(b * BUCKET.0 + 1);
        let mut supply = HashMap::new();
        for (i, cell) in cells.iter().enumerate() {
            for class in classes(i) {
                region.demand(*cell, *class, at, (mix(i as u64 + b) % 9) as u32);
                supply.insert((*cell, *class), (mix(i as u64 * 7 + b) % 4) as u32);
            }
        }
        region.tick(at, &supply);
    };
    for b in 0..shared::forecast::BUCKETS_PER_DAY {
        feed(&mut region, b);
    }
    let mut region_bucket = shared::forecast::BUCKETS_PER_DAY;
    g.bench_function("cell_forecasts_tick_10k_cells", |b| {
        b.iter(|| {
            region_bucket += 1;
            feed(&mut region, region_bucket);
            let sum: f32 = cells
                .iter()
                .filter_map(|c| region.expected(*c))
                .map(|f| f.demand)
                .sum();
            black_box(sum)
        })
    });
    g.bench_function("baseline_grid_recompute_10k_cells", |b| {
        b.iter(|| black_box(engine.update(black_box(&inputs))))
    });
    g.finish();
}

/// A region's tick with a two-arm experiment running (each arm's engine
/// over the same market) against the same tick with none.
fn experiment_arms(c: &mut Criterion) {
    let cells = estimate::ten_thousand_cells();
    let t0 = 1_800_000_000_000u64;
    let build = || {
        let mut p = shared::pricer::RegionPricer::new(
            Ident::new("sf").expect("id"),
            DEFAULT_LEVEL,
            Caps::DEFAULT,
            MarketConfig::default(),
            shared::policies::PolicySpec::Default
                .build()
                .expect("policy"),
            SurgeConfig::default(),
        )
        .expect("pricer");
        for (i, cell) in cells.iter().enumerate() {
            for d in 0..(mix(i as u64) % 4) {
                p.driver_seen(DriverSeen {
                    driver: DriverId(i as u64 * 8 + d),
                    cell: *cell,
                    class: VehicleClass::Standard,
                    available: true,
                    at: Timestamp(t0),
                });
            }
            for k in 0..(mix(i as u64 + 99) % 8) {
                p.demand_seen(DemandSeen {
                    cell: *cell,
                    class: VehicleClass::Standard,
                    kind: DemandKind::RideRequest,
                    at: Timestamp(t0 + k),
                    once: None,
                });
            }
        }
        p
    };
    let now = Timestamp(t0 + 1_000);
    let mut plain = build();
    plain.tick(now).expect("tick");
    let mut with_arms = build();
    let json = format!(
        r#"{{"id":"e1","region":"sf","split":"switchback","window_minutes":30,"salt":"s",
            "start":{t0},"end":{},
            "arms":[{{"name":"control","policy":"default","share_percent":50}},
                    {{"name":"forecast","policy":"forecast","share_percent":50}}]}}"#,
        t0 + 86_400_000
    );
    let (defs, refused) = shared::api::parse_experiments(&Ident::new("sf").expect("id"), &json);
    assert!(refused.is_empty(), "{refused:?}");
    with_arms.arms_mut().set_definitions(defs);
    let warm = with_arms.tick(now).expect("tick");
    assert_eq!(warm.grid.arms().len(), 2, "the arms run");
    let mut g = c.benchmark_group("experiment");
    g.sample_size(20);
    g.throughput(Throughput::Elements(cells.len() as u64));
    g.bench_function("region_tick_10k_cells_two_arms", |b| {
        b.iter(|| black_box(with_arms.tick(now).expect("tick")))
    });
    g.bench_function("baseline_region_tick_10k_cells", |b| {
        b.iter(|| black_box(plain.tick(now).expect("tick")))
    });
    g.finish();
}

/// The estimate's work after its body is read, as the edge does it
/// (`estimate/mod.rs`: parse and validate the request, price at the pickup
/// in a 10,000-cell grid, sign, the quote event's JSON, the answer's JSON),
/// against what the edge's `POST /health` baseline does after reading the
/// same body (a one-line answer). `wasm.rs` runs the same in wasm32.
fn estimate_after_body(c: &mut Criterion) {
    let work = estimate::EstimateWork::new();
    let mut g = c.benchmark_group("edge");
    g.bench_function("estimate_after_body", |b| {
        b.iter(|| black_box(work.run(black_box(estimate::BODY))))
    });
    g.bench_function("baseline_body_answer", |b| {
        b.iter(|| black_box(estimate::baseline(black_box(estimate::BODY))))
    });
    g.finish();
}

/// The pickup's region in a registry of a hundred cities
/// (`estimate::hundred_regions_json`), against the pickup's cell alone
/// (what every quote computed before), over the same points; and what an
/// isolate pays once to load that registry.
fn region_lookup(c: &mut Criterion) {
    let registry =
        shared::api::admin::parse_registry(&estimate::hundred_regions_json()).expect("registry");
    let points: Vec<LatLng> = (0..1_024).map(sf_point).collect();
    let mut g = c.benchmark_group("regions");
    g.throughput(Throughput::Elements(points.len() as u64));
    g.bench_function("locate_100_regions", |b| {
        b.iter(|| {
            for p in &points {
                black_box(registry.locate(black_box(*p)).map(|r| r.zone_at(*p)));
            }
        })
    });
    g.bench_function("baseline_latlng_to_cell_l13", |b| {
        b.iter(|| {
            for p in &points {
                black_box(Cell::at(black_box(*p), DEFAULT_LEVEL));
            }
        })
    });
    g.finish();
    let text = estimate::hundred_regions_json();
    let mut g = c.benchmark_group("regions_load");
    g.sample_size(10);
    g.bench_function("parse_and_cover_100_regions", |b| {
        b.iter(|| black_box(shared::api::admin::parse_registry(black_box(&text))))
    });
    g.finish();
}

/// A rider's token verified (`shared::identity`), each algorithm, and the
/// edge's cached verification (a lookup in a full [`Recent`] of 4,096
/// tokens), against the estimate's work after its body in the same run:
/// what verification adds to an estimate.
fn identity(c: &mut Criterion) {
    use sim::identity::{Alg, Provider};
    let p = Provider::new().expect("provider");
    let config = shared::api::admin::parse_identity(&p.identity_json()).expect("identity");
    let v = shared::identity::Verifier::new(config, Some(p.secret().as_bytes())).expect("v");
    let now = sim::identity::now_secs();
    let at = shared::time::Timestamp(now * 1000);
    let work = estimate::EstimateWork::new();
    let mut g = c.benchmark_group("identity");
    g.bench_function("baseline_estimate_after_body", |b| {
        b.iter(|| black_box(work.run(black_box(estimate::BODY))))
    });
    for (name, alg) in [
        ("verify_es256", Alg::Es256),
        ("verify_rs256", Alg::Rs256),
        ("verify_hs256", Alg::Hs256),
    ] {
        let token = p.token(alg, "rider-1", now);
        assert!(v.verify(&token, at).is_ok());
        g.bench_function(name, |b| {
            b.iter(|| black_box(v.verify(black_box(&token), at)))
        });
    }
    let mut seen = shared::recent::Recent::new(4_096);
    let tokens: Vec<String> = (0..4_096)
        .map(|i| p.token(Alg::Hs256, &format!("r{i}"), now))
        .collect();
    for t in &tokens {
        seen.insert(t.clone(), v.verify(t, at).expect("verified"));
    }
    let mut i = 0;
    g.bench_function("cached_4096_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(seen.get(black_box(&tokens[i])).map(|r| r.until > at))
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    identity,
    region_lookup,
    latlng_to_cell,
    market_update,
    grid_recompute,
    quote_sign_verify,
    estimate_after_body,
    state_snapshot,
    forecast_update,
    experiment_arms
);
criterion_main!(benches);
