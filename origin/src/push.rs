//! Pushing grids to the edge: newest grid per region wins, retries with
//! exponential backoff, never blocks a tick.
//!
//! Ticks [`Pusher::offer`] grids; a single task delivers them. While the
//! edge is unreachable only the newest grid of each region is kept, so the
//! backlog is bounded by the number of regions, and the edge receives the
//! newest grid when it returns.
//!
//! Deployed workers are `https://` only: the client speaks TLS (rustls)
//! and trusts the platform's roots plus, optionally, the CA certificates
//! of a PEM file (`edge_ca_file`), for private deployments and tests. A
//! certificate the client does not trust is logged as such, counted in
//! `equilibrium_push_tls_failures_total`, and retried like any failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// First wait after a failure.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
struct Pending {
    generation: u64,
    body: String,
}

/// Why the edge client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    /// The CA file could not be read.
    #[error("cannot read edge_ca_file {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("edge_ca_file {path} holds no valid PEM certificate: {reason}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the edge client: {0}")]
    Client(String),
}

/// An HTTP client for the edge: rustls with the platform's roots, plus the
/// certificates of `ca_file` when given. Shared with the simulator's live
/// mode, which talks to the same edges.
pub fn edge_client(ca_file: Option<&Path>) -> Result<reqwest::Client, PushSetupError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2));
    if let Some(path) = ca_file {
        for cert in read_ca(path)? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().map_err(|e| PushSetupError::Client(e.to_string()))
}

/// The certificates of a PEM file (at least one).
pub fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, PushSetupError> {
    let pem = std::fs::read(path).map_err(|source| PushSetupError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: String| PushSetupError::BadCa {
        path: path.to_path_buf(),
        reason,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Whether a request failed because the server's certificate was refused
/// (unknown issuer, wrong name, expired): a configuration problem retrying
/// will not fix, so it is logged and counted apart.
///
/// The rustls error sits several boxes deep in reqwest's chain (hyper's
/// connect error boxes it again), where a downcast cannot always reach it;
/// rustls's own wording for certificate errors ("invalid peer
/// certificate", "received fatal alert: BadCertificate"/"UnknownCA") is the
/// fallback.
pub fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // io::Error's source() skips the error it wraps: look inside.
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return matches!(
                    tls,
                    rustls::Error::InvalidCertificate(_)
                        | rustls::Error::NoCertificatesPresented
                        | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
                        | rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
                );
            }
            let text = candidate.to_string();
            if text.contains("invalid peer certificate")
                || text.contains("received fatal alert: BadCertificate")
                || text.contains("received fatal alert: UnknownCA")
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The push queue: at most one grid per region.
#[derive(Debug)]
pub struct Pusher {
    pending: Mutex<BTreeMap<String, Pending>>,
    /// Each region's experiments as the edge last answered a push with
    /// them, and whether the tick has taken that answer yet.
    experiments: Mutex<BTreeMap<String, (Option<String>, bool)>>,
    wake: Notify,
    edge_url: String,
    token: String,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// What one delivery attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 2xx, or 409 (the edge already has this or a newer generation).
    Done,
    /// Refused for good (4xx other than 409): retrying cannot help.
    Refused(u16),
    /// Network error or 5xx: retry later.
    Retry,
}

impl Pusher {
    /// A pusher to `edge_url` (empty: pushing disabled), trusting the
    /// platform's roots and the certificates in `ca_file`.
    pub fn new(
        edge_url: &str,
        token: &str,
        ca_file: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PushSetupError> {
        Ok(Self {
            pending: Mutex::new(BTreeMap::new()),
            experiments: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
            edge_url: edge_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client: edge_client(ca_file)?,
            metrics,
        })
    }

    /// Whether an edge is configured.
    pub fn enabled(&self) -> bool {
        !self.edge_url.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a region's grid; replaces an older queued one.
    pub fn offer(&self, region: &str, generation: u64, body: String) {
        if !self.enabled() {
            return;
        }
        let mut p = self.lock();
        if shared::grid::supersedes(generation, p.get(region).map(|cur| cur.generation)) {
            p.insert(region.to_owned(), Pending { generation, body });
        }
        self.metrics.pushes_pending.store(p.len() as u64, Relaxed);
        drop(p);
        self.wake.notify_one();
    }

    /// Regions waiting to be delivered.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// The regions whose experiments the edge reported differently since
    /// the last call, with the value it reported (`None`: the key is
    /// absent): the admin defines experiments in the edge's KV, and the
    /// origin learns them from the answers to its pushes.
    pub fn take_experiments(&self) -> Vec<(String, Option<String>)> {
        let mut map = self.experiments.lock().unwrap_or_else(|p| p.into_inner());
        map.iter_mut()
            .filter(|(_, (_, fresh))| *fresh)
            .map(|(region, (text, fresh))| {
                *fresh = false;
                (region.clone(), text.clone())
            })
            .collect()
    }

    fn heard_experiments(&self, region: &str, body: &str) {
        // A 200 from an edge of this version always answers in this shape;
        // anything else (an older edge) says nothing about experiments.
        let Ok(r) = serde_json::from_str::<shared::api::GridPushResponse>(body) else {
            return;
        };
        if !r.experiments_read {
            // The edge could not read the key this time: keep what we knew.
            return;
        }
        let mut map = self.experiments.lock().unwrap_or_else(|p| p.into_inner());
        let changed = map.get(region).is_none_or(|(t, _)| *t != r.experiments);
        if changed {
            map.insert(region.to_owned(), (r.experiments, true));
        }
    }

    async fn deliver(&self, region: &str, body: &str) -> Outcome {
        let url = format!("{}/admin/v1/grids/{region}", self.edge_url);
        let start = Instant::now();
        let res = self
            .client
            .put(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 409 => {
                self.metrics.pushes_ok.fetch_add(1, Relaxed);
                self.metrics
                    .push_micros_sum
                    .fetch_add(start.elapsed().as_micros() as u64, Relaxed);
                if r.status().as_u16() == 200 {
                    if let Ok(body) = r.text().await {
                        self.heard_experiments(region, &body);
                    }
                }
                Outcome::Done
            }
            Ok(r) if r.status().is_client_error() => Outcome::Refused(r.status().as_u16()),
            Ok(r) => {
                tracing::warn!(
                    region,
                    status = r.status().as_u16(),
                    "edge refused push; will retry"
                );
                Outcome::Retry
            }
            Err(e) if is_certificate_error(&e) => {
                self.metrics.push_tls_failures.fetch_add(1, Relaxed);
                tracing::error!(
                    region,
                    error = %error_chain(&e),
                    "edge TLS certificate not trusted (for a private CA set edge_ca_file or EQ_EDGE_CA_FILE); will retry"
                );
                Outcome::Retry
            }
            Err(e) => {
                tracing::warn!(region, error = %error_chain(&e), "edge unreachable; will retry");
                Outcome::Retry
            }
        }
    }

    /// Delivers everything pending once. Returns true if all succeeded.
    pub async fn flush(&self) -> bool {
        let batch: Vec<(String, Pending)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut all_ok = true;
        for (region, p) in batch {
            let outcome = self.deliver(&region, &p.body).await;
            match outcome {
                Outcome::Done | Outcome::Refused(_) => {
                    if let Outcome::Refused(status) = outcome {
                        tracing::error!(
                            region,
                            status,
                            generation = p.generation,
                            "edge refused grid; dropped"
                        );
                    }
                    let mut q = self.lock();
                    // Remove only if no newer grid arrived meanwhile.
                    if q.get(&region)
                        .is_some_and(|cur| cur.generation == p.generation)
                    {
                        q.remove(&region);
                    }
                    self.metrics.pushes_pending.store(q.len() as u64, Relaxed);
                }
                Outcome::Retry => {
                    self.metrics.pushes_failed.fetch_add(1, Relaxed);
                    all_ok = false;
                }
            }
        }
        all_ok
    }

    /// Runs until `stop` resolves: waits for grids, delivers, backs off
    /// exponentially (200 ms doubling to 10 s) while the edge fails.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        if !self.enabled() {
            stop.await;
            return;
        }
        tokio::pin!(stop);
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.pending() == 0 {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = &mut stop => return,
                }
            }
            if self.flush().await {
                backoff = FIRST_BACKOFF;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// An error and its causes on one line ("a: b: c"), so a log says why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_recognised_through_wrapping() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        assert!(is_certificate_error(&io));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(io);
        let wrapped = std::io::Error::other(boxed);
        assert!(is_certificate_error(&wrapped));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_certificate_error(&refused));
    }
}
