//! Faults against the real processes: the origin killed under load, the
//! worker restarted, a slow edge.

use std::net::TcpListener;
use std::time::Duration;

use equilibrium_tests::{http, now_ms, wait_for, Origin, Worker, ADMIN_TOKEN, SF};
use serde_json::{json, Value};

#[test]
fn origin_killed_under_load_quotes_continue_and_decay_to_one() {
    // Fresh for 2 s, then decaying to 1.0 over 4 s.
    let worker = Worker::start_with_vars(&[
        ("GRID_FRESH_SECONDS", "2"),
        ("GRID_DECAY_SECONDS", "4"),
        ("GRID_CACHE_MS", "100"),
    ]);
    let dir = tempfile::tempdir().expect("tmp");
    let mut origin = Origin::start(&dir.path().join("o.sqlite"), &worker.base, 0.3);
    origin.post_busy_market(SF, 30);
    wait_for("surge at the edge", Duration::from_secs(30), || {
        let (s, q) = worker.estimate_sf(None);
        s == 200
            && q["surge_multiplier"].as_f64() > Some(1.0)
            && q["surge_source"]["source"] != "stale"
    });
    origin.kill_hard();
    // Keep quoting from 4 clients until the grid has fully decayed.
    let mut seen: Vec<(String, f64, bool)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let batch: Vec<(u16, Value)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| worker.estimate_sf(None)))
                .collect();
            hs.into_iter().map(|h| h.join().expect("client")).collect()
        });
        for (status, q) in batch {
            assert_eq!(status, 200, "a quote failed while the origin was down: {q}");
            seen.push((
                q["surge_source"]["source"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                q["surge_multiplier"].as_f64().unwrap_or(0.0),
                q["degraded"].as_bool().unwrap_or(false),
            ));
        }
        if seen
            .last()
            .is_some_and(|(src, m, _)| src == "default" && *m == 1.0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never decayed: {:?}",
            &seen[seen.len().saturating_sub(8)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale: Vec<_> = seen.iter().filter(|(src, _, _)| src == "stale").collect();
    assert!(
        !stale.is_empty(),
        "some quotes were flagged stale while decaying"
    );
    assert!(stale.iter().all(|(_, m, degraded)| *degraded && *m >= 1.0));
    assert!(seen
        .iter()
        .filter(|(src, _, _)| src == "default")
        .all(|(_, m, d)| *m == 1.0 && *d));
}

#[test]
fn worker_restart_keeps_confirmed_quotes_and_grids() {
    let state = tempfile::tempdir().expect("tmp");
    let mut w = Worker::start_at(state.path(), &[]);
    let grid = json!({"format": 1, "region": "sf", "level": 13, "generation": 7, "computed_at": now_ms(),
        "cells": [{"cell": "8085809c", "multiplier": 1.7, "supply": 1, "demand": 5, "trend": "stable"}]});
    let r = http()
        .put(w.url("/admin/v1/grids/sf"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&grid)
        .send()
        .expect("push");
    assert_eq!(r.status().as_u16(), 200);
    let (_, q) = w.estimate_sf(None);
    let (id, token) = (
        q["quote_id"].as_str().expect("id").to_owned(),
        q["quote_token"].as_str().expect("t").to_owned(),
    );
    let confirm = |w: &Worker| {
        http()
            .post(w.url(&format!("/api/v1/quotes/{id}/confirm")))
            .json(&json!({"quote_token": token}))
            .send()
            .expect("confirm")
            .status()
            .as_u16()
    };
    assert_eq!(confirm(&w), 200);
    w.stop();
    let w2 = Worker::start_at(state.path(), &[]);
    assert_eq!(
        confirm(&w2),
        409,
        "confirmed before the restart, refused after it"
    );
    let (_, q2) = w2.estimate_sf(None);
    assert_eq!(q2["surge_multiplier"], 1.7, "the grid survived: {q2}");
    assert_eq!(q2["surge_source"]["grid_generation"], 7);
}

#[test]
fn a_slow_edge_does_not_stall_the_origins_ticks() {
    // An "edge" that accepts connections and never answers.
    let black_hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = black_hole.local_addr().expect("addr");
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in black_hole.incoming().take(50) {
            held.push(c);
        }
    });
    let dir = tempfile::tempdir().expect("tmp");
    let origin = Origin::start(&dir.path().join("o.sqlite"), &format!("http://{addr}"), 0.2);
    origin.post_busy_market(SF, 30);
    let start = origin.metric("equilibrium_tick_total");
    wait_for(
        "ten more ticks while pushes hang",
        Duration::from_secs(20),
        || origin.metric("equilibrium_tick_total") >= start + 10.0,
    );
    assert_eq!(
        origin.metric("equilibrium_push_total"),
        0.0,
        "nothing was delivered"
    );
    // Ingest is not blocked either.
    origin.post_busy_market(SF, 30);
    drop(origin);
    drop(holder);
}
