//! Property tests of the core's invariants (native only: proptest).
#![cfg(not(target_arch = "wasm32"))]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use shared::fare::{Currency, VehicleClass};
use shared::geo::{Cell, LatLng, DEFAULT_LEVEL};
use shared::grid::{GridCell, GridSlot, Offer, SurgeGrid};
use shared::policies::{PolicySpec, POLICY_NAMES};
use shared::quote::{Ident, Keyring, QuoteClaims, QuoteError};
use shared::surge::{
    Ahead, Caps, CellInput, DefaultCurve, Multiplier, Policy, PolicyInput, SurgeConfig,
    SurgeEngine, Trend,
};
use shared::time::Timestamp;

fn multiplier(lo: u16, hi: u16) -> impl Strategy<Value = Multiplier> {
    (lo..=hi).prop_map(|t| Multiplier::from_tenths(t).expect("tenths in range"))
}

fn caps() -> impl Strategy<Value = Caps> {
    (multiplier(10, 40), multiplier(10, 80))
        .prop_map(|(a, b)| Caps::new(a.min(b), a.max(b)).expect("ordered caps"))
}

fn config() -> impl Strategy<Value = SurgeConfig> {
    (
        0.0..=1.0f64,
        0.01..=1.0f64,
        1u16..=20,
        proptest::option::of(multiplier(10, 60)),
    )
        .prop_map(|(w, a, step, e)| SurgeConfig {
            neighbour_weight: w,
            ema_alpha: a,
            max_step_tenths: step,
            emergency_cap: e,
        })
}

/// A small patch of adjacent cells, so neighbour smoothing actually mixes.
fn patch() -> Vec<Cell> {
    let centre = Cell::at(LatLng::new(37.7749, -122.4194).expect("ll"), DEFAULT_LEVEL);
    let mut cells = vec![centre];
    cells.extend(centre.neighbours());
    cells
}

/// Ticks: per tick, per cell of the patch, (supply, demand).
fn ticks() -> impl Strategy<Value = Vec<Vec<(u32, u32)>>> {
    proptest::collection::vec(proptest::collection::vec((0u32..50, 0u32..200), 9), 1..25)
}

proptest! {
    #[test]
    fn multiplier_stays_within_caps(cfg in config(), caps in caps(), ticks in ticks()) {
        let cells = patch();
        let mut engine = SurgeEngine::new(DefaultCurve, cfg).expect("valid config");
        let eff = caps.effective(cfg.emergency_cap);
        for tick in ticks {
            let inputs: Vec<CellInput> = cells.iter().zip(&tick)
                .map(|(c, (s, d))| CellInput { cell: *c, supply: *s, demand: *d, caps, ahead: None })
                .collect();
            for r in engine.update(&inputs) {
                prop_assert!(r.multiplier >= eff.min(), "{:?} below {:?}", r.multiplier, eff.min());
                prop_assert!(r.multiplier <= eff.max(), "{:?} above {:?}", r.multiplier, eff.max());
                if let Some(e) = cfg.emergency_cap {
                    prop_assert!(r.multiplier <= e);
                }
            }
        }
    }

    #[test]
    fn an_update_never_moves_more_than_max_step(cfg in config(), caps in caps(), ticks in ticks()) {
        let cells = patch();
        let mut engine = SurgeEngine::new(DefaultCurve, cfg).expect("valid config");
        for tick in ticks {
            let inputs: Vec<CellInput> = cells.iter().zip(&tick)
                .map(|(c, (s, d))| CellInput { cell: *c, supply: *s, demand: *d, caps, ahead: None })
                .collect();
            for r in engine.update(&inputs) {
                let moved = r.multiplier.tenths().abs_diff(r.previous.tenths());
                prop_assert!(moved <= cfg.max_step_tenths,
                    "moved {moved} tenths, step {}", cfg.max_step_tenths);
            }
        }
    }

    #[test]
    fn default_curve_is_monotone_in_the_ratio(a in 0.0..100.0f64, b in 0.0..100.0f64) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(DefaultCurve::of_ratio(lo) <= DefaultCurve::of_ratio(hi));
    }

    #[test]
    fn every_policy_rises_with_demand_falls_with_supply_and_stays_in_range(
        s in 0u32..1_000, d in 0u32..1_000, extra in 1u32..100, max in multiplier(10, 100),
        ahead in proptest::option::of((0.0..500.0f64, 0.0..500.0f64)),
        threshold in 0.1..10.0f64,
    ) {
        let at = |supply: u32, demand: u32| PolicyInput {
            supply,
            demand,
            ahead: ahead.map(|(demand, supply)| Ahead { demand, supply }),
            max,
        };
        for name in POLICY_NAMES {
            let mut c = PolicySpec::parse(name).expect("known").build().expect("valid");
            c.set_threshold(threshold);
            let base = c.raw(&at(s, d));
            prop_assert!(base >= 1.0 && base <= max.as_f64().max(1.0), "{name}: {base}");
            prop_assert!(base <= c.raw(&at(s, d + extra)) || s == 0 && d == 0, "{name}");
            prop_assert!(c.raw(&at(s + extra, d)) <= base || s == 0 && d == 0, "{name}");
        }
    }
}

fn claims_strategy() -> impl Strategy<Value = QuoteClaims> {
    (
        "[a-z0-9]{8,20}",
        "[a-z]{2,8}",
        (-80.0..80.0f64, -179.0..179.0f64),
        0usize..4,
        multiplier(10, 50),
        (0i64..100_000, 0i64..100_000),
        (0u32..100_000, 0u32..10_000),
        0u64..1_000_000,
        (1_000_000_000_000u64..2_000_000_000_000, 1u64..3_600_000),
    )
        .prop_map(
            |(
                id,
                region,
                (lat, lng),
                class,
                surge,
                (base, fin),
                (dist, dur),
                generation,
                (issued, ttl),
            )| {
                QuoteClaims {
                    quote_id: Ident::new(&id).expect("id"),
                    region: Ident::new(&region).expect("region"),
                    cell: Cell::at(LatLng::new(lat, lng).expect("ll"), DEFAULT_LEVEL),
                    class: VehicleClass::ALL[class],
                    surge,
                    base_fare: base,
                    final_fare: fin,
                    currency: Currency::USD,
                    distance_m: dist,
                    duration_s: dur,
                    grid_generation: generation,
                    issued_at: Timestamp(issued),
                    expires_at: Timestamp(issued + ttl),
                    source: [
                        None,
                        Some(shared::desk::Source::Fresh),
                        Some(shared::desk::Source::Stale),
                        Some(shared::desk::Source::Fresh),
                    ][(generation % 4) as usize],
                    // Every fourth quote priced in an experiment's arm.
                    arm: (generation % 4 == 3).then(|| shared::experiment::ArmStamp {
                        experiment: Ident::new("e1").expect("id"),
                        arm: Ident::new(["control", "treatment"][(issued % 2) as usize])
                            .expect("id"),
                        policy: Ident::new("forecast-0123abcd").expect("id"),
                        unit: issued % 1_000,
                    }),
                    // Every third quote with a source carries its terms
                    // (format eq4), with or without an arm.
                    terms: (generation % 4 != 0 && issued % 3 == 0).then(|| shared::fare::Terms {
                        tariff: shared::fare::Tariff {
                            currency: Currency::USD,
                            base,
                            per_km: i64::from(dist % 500),
                            per_minute: i64::from(dur % 90),
                            booking_fee: fin % 300,
                            minimum_fare: base % 1_000,
                        },
                        cancellation_fee: fin % 1_000,
                        cancellation_grace: shared::time::Millis(ttl),
                        reprice_tolerance_percent: dist % 100,
                    }),
                }
            },
        )
}

fn ring() -> Keyring {
    Keyring::parse("k1:a-secret-of-at-least-16-bytes").expect("ring")
}

/// A different but valid value for canonical field `i` (0 = format tag).
fn mutate(field: usize, value: &str) -> String {
    match field {
        // Cell token: another valid cell.
        4 => {
            let c = Cell::from_token(value).expect("token");
            c.neighbours()[0].token()
        }
        // Vehicle class.
        5 => {
            if value == "xl" {
                "economy".into()
            } else {
                "xl".into()
            }
        }
        // Currency.
        9 => {
            if value == "EUR" {
                "USD".into()
            } else {
                "EUR".into()
            }
        }
        // The multiplier's source.
        15 => {
            if value == "stale" {
                "fresh".into()
            } else {
                "stale".into()
            }
        }
        // Identifiers get a suffix (the arm's three from `eq3` too);
        // numbers get one added.
        1..=3 | 16..=18 => format!("{value}x"),
        _ => match value.parse::<u64>() {
            Ok(n) => (n + 1).to_string(),
            Err(_) => format!("{value}1"),
        },
    }
}

proptest! {
    #[test]
    fn any_changed_field_fails_verification(claims in claims_strategy(), field in 1usize..28) {
        let r = ring();
        let token = r.sign(&claims);
        let (body, sig) = token.split_once('.').expect("token shape");
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("utf8");
        let mut fields: Vec<String> = text.split('|').map(str::to_owned).collect();
        // 15 fields as `eq1` (no source), 16 as `eq2`, 20 as `eq3` (an
        // arm), 24 as `eq4` (the terms) and 28 with an arm too.
        let n = fields.len();
        let expected = match (&claims.source, &claims.arm, &claims.terms) {
            (_, Some(_), Some(_)) => 28,
            (_, None, Some(_)) => 24,
            (_, Some(_), None) => 20,
            (Some(_), None, None) => 16,
            (None, None, None) => 15,
        };
        prop_assert_eq!(n, expected);
        let field = 1 + (field - 1) % (n - 1);
        fields[field] = mutate(field, &fields[field]);
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(fields.join("|")));
        let now = claims.issued_at;
        let got = r.verify(&forged, now);
        // Changing the key id names a key we do not hold; anything else
        // breaks the signature.
        if field == 1 {
            prop_assert_eq!(got, Err(QuoteError::UnknownKey));
        } else {
            prop_assert_eq!(got, Err(QuoteError::BadSignature));
        }
        // The untouched token still verifies.
        prop_assert_eq!(r.verify(&token, now), Ok(claims));
    }

    #[test]
    fn any_flipped_byte_fails_verification(claims in claims_strategy(), pos in any::<prop::sample::Index>(), bit in 0u8..6) {
        let r = ring();
        let token = r.sign(&claims);
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        // Flip within the base64url alphabet so it still decodes sometimes.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        if bytes[i] != b'.' {
            let at = alphabet.iter().position(|c| *c == bytes[i]).expect("b64 char");
            bytes[i] = alphabet[(at ^ (1 << bit)) % 64];
        } else {
            bytes[i] = b'A';
        }
        let tampered = String::from_utf8(bytes).expect("ascii");
        prop_assert!(r.verify(&tampered, claims.issued_at).is_err());
    }

    #[test]
    fn an_expired_quote_fails(claims in claims_strategy(), late in 0u64..10_000_000) {
        let r = ring();
        let token = r.sign(&claims);
        let now = Timestamp(claims.expires_at.0 + late);
        prop_assert_eq!(r.verify(&token, now), Err(QuoteError::Expired(claims.expires_at)));
    }

    #[test]
    fn money_text_matches_float_formatting(minor in -10_000_000_000i64..10_000_000_000, pick in any::<usize>()) {
        let all: Vec<Currency> = Currency::all().collect();
        let cur = all[pick % all.len()];
        let mut text = String::new();
        cur.push_decimal(&mut text, minor);
        // -0.00 cannot occur: minor units are integers, -1 → "-0.01".
        let places = usize::from(cur.exponent());
        prop_assert_eq!(&text, &format!("{:.places$}", cur.to_decimal(minor)));
        // And back: the decimal reads as the same minor units.
        if minor >= 0 {
            prop_assert_eq!(cur.to_minor(cur.to_decimal(minor)), Some(minor as u64));
            let parsed: f64 = text.parse().expect("a number");
            prop_assert_eq!(cur.to_minor(parsed), Some(minor as u64));
        }
    }

    #[test]
    fn newest_generation_wins_in_any_arrival_order(gens in proptest::collection::vec(1u64..50, 1..30)) {
        let cell = Cell::at(LatLng::new(1.0, 2.0).expect("ll"), DEFAULT_LEVEL);
        let mut slot = GridSlot::new();
        let mut newest = 0;
        for g in &gens {
            let grid = SurgeGrid::new(
                Ident::new("r").expect("id"),
                DEFAULT_LEVEL,
                *g,
                Timestamp(*g),
                vec![GridCell { cell, multiplier: Multiplier::ONE, supply: 0, demand: 0, trend: Trend::Stable, forecast: None }],
            ).expect("grid");
            let offer = slot.offer(grid);
            if *g > newest {
                prop_assert_eq!(offer, Offer::Applied { previous: (newest > 0).then_some(newest) });
                newest = *g;
            } else {
                prop_assert_eq!(offer, Offer::Stale { current: newest });
            }
            prop_assert_eq!(slot.generation(), newest);
        }
        prop_assert_eq!(slot.generation(), *gens.iter().max().expect("non-empty"));
    }
}

proptest! {
    /// Whatever the events' sizes, the limits and when timers fire, the
    /// batches a Batcher sends (when full, or by their timers) are every
    /// event once, in order; each within the limits unless it is one event
    /// too large for any batch; each sent when full only if the next event
    /// would not have fitted; each batch starts one timer, and only the
    /// gathering batch's timer sends anything: that batch, from the event
    /// that started it.
    #[test]
    fn batches_keep_every_event_in_order_within_their_limits(
        pushes in proptest::collection::vec((0usize..120, proptest::bool::weighted(0.1)), 0..300),
        events in 1usize..20,
        bytes in 2usize..400,
    ) {
        use shared::events::{BatchLimits, Batcher};
        let limits = BatchLimits { events, bytes };
        let sizes: Vec<usize> = pushes.iter().map(|p| p.0).collect();
        let json = |batch: &[usize]| batch.iter().map(|&i| sizes[i] + 1).sum::<usize>() + 1;
        let mut b = Batcher::default();
        let mut out: Vec<Vec<usize>> = Vec::new();
        // (timer, the event that started it), oldest first, not yet fired.
        let mut timers: Vec<(u64, usize)> = Vec::new();
        let mut newest: Option<u64> = None;
        let fire = |b: &mut Batcher<usize>, (t, first): (u64, usize), newest: Option<u64>, out: &mut Vec<Vec<usize>>| -> Result<(), TestCaseError> {
            let got = b.timer_fired(t);
            if !got.is_empty() {
                prop_assert_eq!(Some(t), newest, "a stale timer sent {:?}", got);
                prop_assert_eq!(got[0], first);
                out.push(got);
            }
            Ok(())
        };
        for (i, &(size, fire_oldest)) in pushes.iter().enumerate() {
            let next = b.push(i, size, limits);
            for batch in next.send {
                prop_assert!(!batch.is_empty());
                prop_assert!(batch.len() <= events);
                prop_assert!(json(&batch) <= bytes || batch.len() == 1, "{:?}", batch);
                // Sent before full only because the next event would not fit.
                let last = *batch.last().expect("non-empty");
                if batch.len() < events && json(&batch) < bytes && last + 1 < sizes.len() {
                    prop_assert!(json(&batch) + sizes[last + 1] + 1 > bytes);
                }
                out.push(batch);
            }
            if let Some(t) = next.start_timer {
                prop_assert!(newest.is_none_or(|n| t > n), "timer {} again", t);
                newest = Some(t);
                timers.push((t, i));
            }
            if fire_oldest && !timers.is_empty() {
                let oldest = timers.remove(0);
                fire(&mut b, oldest, newest, &mut out)?;
            }
        }
        for t in timers {
            fire(&mut b, t, newest, &mut out)?;
        }
        let flat: Vec<usize> = out.into_iter().flatten().collect();
        prop_assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
    }
}

#[test]
fn zero_supply_is_never_cheaper_than_one_driver_under_a_low_cap() {
    // The case proptest found: zone max 1.0, demand 19.
    let max = Multiplier::ONE;
    let at = |supply| PolicyInput {
        supply,
        demand: 19,
        ahead: None,
        max,
    };
    assert!(DefaultCurve.raw(&at(1)) <= DefaultCurve.raw(&at(0)));
}
