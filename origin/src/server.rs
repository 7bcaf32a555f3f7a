//! Serving: the HTTP API, the ticker, the pusher, retention and (in
//! cluster mode) the lease loop, and a graceful shutdown that finishes a
//! last tick and hands the owned regions over.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::http::app;
use crate::state::AppState;
use crate::tick::tick_once;

/// Runs the server until `shutdown` resolves, with the ticker, the pusher
/// and retention; then stops accepting, runs a last tick (persisted) and
/// tries to deliver pending grids for up to two seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ticker = {
        let state = state.clone();
        let stop = wait_stop(stop_rx.clone());
        tokio::spawn(async move {
            if state.simulated.is_some() {
                // Ticks follow the simulator's clock (`POST /v1/clock`).
                stop.await;
                return;
            }
            let period = Duration::from_secs_f64(state.config.tick_seconds);
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = interval.tick() => { tick_once(&state).await; }
                    _ = &mut stop => break,
                }
            }
        })
    };
    let pusher = tokio::spawn(state.pusher.clone().run(wait_stop(stop_rx.clone())));
    let retention = tokio::spawn(crate::retention::run(
        state.clone(),
        wait_stop(stop_rx.clone()),
    ));
    // Cluster mode: membership and region leases, and the history backlog.
    let leases = tokio::spawn(crate::cluster::lease::run(
        state.clone(),
        wait_stop(stop_rx.clone()),
    ));
    let (backlog_stop_tx, backlog_stop_rx) = tokio::sync::watch::channel(false);
    let backlog = state.cluster.is_some().then(|| {
        tokio::spawn(crate::backlog::run(
            state.clone(),
            wait_stop(backlog_stop_rx),
        ))
    });
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown);
    let result = server.await;
    tracing::info!("shutting down: last tick, then flush");
    let _ = stop_tx.send(true);
    let _ = ticker.await;
    let _ = pusher.await;
    let _ = retention.await;
    let _ = leases.await;
    tick_once(&state).await;
    if let Some(cluster) = &state.cluster {
        // Hand every region over now rather than after a lease TTL.
        crate::cluster::lease::release_all(&state, cluster).await;
    }
    // The last tick's history too (up to two seconds).
    let _ = backlog_stop_tx.send(true);
    if let Some(b) = backlog {
        let _ = b.await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), state.pusher.flush()).await;
    result
}
