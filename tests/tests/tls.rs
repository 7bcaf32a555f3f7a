//! Pushing grids to an `https://` edge: a TLS proxy with a per-test CA in
//! front of the real worker. With the CA configured the origin's pushes
//! arrive; without it the origin says why, counts it, and keeps ticking.
//! The simulator's live-mode client trusts the same CA file.

use std::time::Duration;

use equilibrium_tests::tls::TlsProxy;
use equilibrium_tests::{wait_for, Origin, Worker, SF};

#[test]
fn the_origin_pushes_through_tls_with_the_ca_and_fails_clearly_without_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let worker = Worker::start_with_vars(&[("GRID_CACHE_MS", "200")]);
    let proxy = TlsProxy::start(worker.port, dir.path());
    let ca = proxy.ca_file.to_str().expect("path").to_owned();

    // Trusted: the grid reaches the edge through TLS.
    let trusted = Origin::start_with_env(
        &dir.path().join("trusted.sqlite"),
        &proxy.base,
        0.3,
        &[("EQ_EDGE_CA_FILE", &ca)],
    );
    trusted.post_busy_market(SF, 20);
    wait_for(
        "a surge priced from a grid pushed over TLS",
        Duration::from_secs(60),
        || worker.estimate_sf(None).1["surge_multiplier"].as_f64() > Some(1.0),
    );
    assert!(trusted.metric("equilibrium_push_total") >= 1.0);
    assert_eq!(trusted.metric("equilibrium_push_tls_failures_total"), 0.0);

    // Untrusted: a clear error in the log, a metric, and ticks go on.
    let untrusted = Origin::start(&dir.path().join("untrusted.sqlite"), &proxy.base, 0.3);
    untrusted.post_busy_market(SF, 20);
    wait_for(
        "a counted certificate failure",
        Duration::from_secs(60),
        || untrusted.metric("equilibrium_push_tls_failures_total") >= 1.0,
    );
    let log = untrusted.log();
    assert!(
        log.contains("edge TLS certificate not trusted") && log.contains("EQ_EDGE_CA_FILE"),
        "{log}"
    );
    assert_eq!(untrusted.metric("equilibrium_push_total"), 0.0);
    let ticks = untrusted.metric("equilibrium_tick_total");
    wait_for(
        "more ticks after the failure",
        Duration::from_secs(30),
        || untrusted.metric("equilibrium_tick_total") >= ticks + 3.0,
    );
    assert!(untrusted.metric("equilibrium_push_tls_failures_total") >= 1.0);
    assert_eq!(
        untrusted
            .get("/health")
            .send()
            .expect("health")
            .status()
            .as_u16(),
        200,
        "the origin is still up"
    );
    assert!(!log.contains(equilibrium_tests::ADMIN_TOKEN));

    // The simulator's live mode: trusts the CA file, not without it.
    let with_ca = sim::live::client(Some(&proxy.ca_file)).expect("client");
    let r = with_ca
        .get(format!("{}/health", proxy.base))
        .send()
        .expect("health over TLS");
    assert_eq!(r.status().as_u16(), 200);
    let without = sim::live::client(None).expect("client");
    assert!(without
        .get(format!("{}/health", proxy.base))
        .send()
        .is_err());
}
