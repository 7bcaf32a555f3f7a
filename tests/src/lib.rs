//! Harness for the end-to-end tests: build and start the real processes
//! (the worker under `wrangler dev`, i.e. workerd), wait for readiness by
//! polling, and stop them (whole process group) when dropped.

pub mod nats;
pub mod postgres;
pub mod regions;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use reqwest::blocking::Client;

/// The admin token the test worker is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The origin's producer token in the tests (ingest, outcomes).
pub const PRODUCER_TOKEN: &str = "test-producer-token-0123456789";
/// The origin's reader token in the tests (grids, analytics).
pub const READER_TOKEN: &str = "test-reader-token-0123456789";
/// The dispatch system's token the test worker is started with.
pub const DISPATCH_TOKEN: &str = "test-dispatch-token-0123456789";
/// The signing keys the test worker is started with (`k1` signs).
pub const SIGNING_KEYS: &str = "k1:test-signing-key-0123456789";
/// The tests' identity provider: one per test binary, its keys made on
/// first use ([`sim::identity`]). Every worker the harness starts verifies
/// its tokens (the `identity` key and `RIDER_TOKEN_SECRET`).
pub fn provider() -> &'static sim::identity::Provider {
    static P: std::sync::OnceLock<sim::identity::Provider> = std::sync::OnceLock::new();
    P.get_or_init(|| sim::identity::Provider::new().expect("an identity provider"))
}

/// A verified rider's token (ES256, valid for an hour).
pub fn rider_token(rider: &str) -> String {
    provider().token(sim::identity::Alg::Es256, rider, sim::identity::now_secs())
}

/// Central San Francisco, the tests' pickup point.
pub const SF: (f64, f64) = (37.7749, -122.4194);

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A free TCP port on loopback, never one this test binary was given
/// before. The port is free when chosen but bound later by the server the
/// harness starts; the OS may hand the same port to the next caller in the
/// meantime, and two servers told the same port leave the second test
/// talking to the first one's server (seen once in CI: a worker that
/// failed to bind, and a test pushing grids to another test's worker).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}

/// An HTTP client with a generous timeout, for the end-to-end tests: one
/// per test binary, cloned (building one loads the platform's CA roots,
/// which costs milliseconds; a loop of requests must not pay it each time).
/// No connection is reused: a test that makes a server refuse a body
/// mid-upload must not leave a broken connection for the next request.
pub fn http() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client")
        })
        .clone()
}

/// Polls `check` until it returns true or `deadline` passes.
pub fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

static BUILD: Once = Once::new();

/// Concurrent `wrangler dev` starts in one project directory interfere
/// with each other (its bundling scratch space is shared), so starts are
/// serialised; the workers then run side by side.
static START: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the worker once per test binary (skipped when up to date).
pub fn build_worker() {
    BUILD.call_once(|| {
        let status = Command::new("bash")
            .arg(root().join("scripts/build-worker.sh"))
            .status()
            .expect("run scripts/build-worker.sh");
        assert!(status.success(), "worker build failed");
    });
}

/// Sets a KV key in a worker's local state (running or not) with the
/// admin's command, `wrangler kv key put --local`.
pub fn kv_put_at(state_dir: &Path, binding: &str, key: &str, value: &str) {
    wrangler_kv_key(state_dir, "put", binding, &[key, value]);
}

/// `wrangler kv key <verb> --local --binding <binding> <args>` on a
/// worker's local state; panics with wrangler's error if it fails.
fn wrangler_kv_key(state_dir: &Path, verb: &str, binding: &str, args: &[&str]) {
    let out = Command::new(root().join("node_modules/.bin/wrangler"))
        .current_dir(root())
        .args(["kv", "key", verb, "--local", "--binding", binding])
        .arg("--persist-to")
        .arg(state_dir)
        .args(args)
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .unwrap_or_else(|e| panic!("run wrangler kv key {verb}: {e}"));
    assert!(
        out.status.success(),
        "wrangler kv key {verb} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `wrangler dev` serving the worker on loopback.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port.
    pub port: u16,
    /// Where local KV and Durable Object state persist.
    pub state_dir: PathBuf,
    /// A wrangler config of this worker's own (deleted when it stops).
    config: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

impl Worker {
    /// Starts a worker with fresh local state.
    pub fn start() -> Self {
        Self::start_with_vars(&[])
    }

    /// Starts a worker with fresh local state and `--var NAME:VALUE`s.
    pub fn start_with_vars(vars: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut w = Self::start_at(&dir, vars);
        w._tmp = Some(tmp);
        w
    }

    /// Starts a worker on existing state (to test restarts), with extra
    /// `--var NAME:VALUE` settings.
    pub fn start_at(state_dir: &Path, vars: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), state_dir, vars)
    }

    /// Starts a worker on a given port (to bring an edge up where an origin
    /// already pushes).
    pub fn start_on(port: u16, state_dir: &Path, vars: &[(&str, &str)]) -> Self {
        Self::start_with(port, state_dir, vars, None)
    }

    /// Starts a worker on existing state whose queue is gone (the
    /// `wrangler.toml` without its queue's producer and consumer): every
    /// send to `EVENTS` fails, as when the queue is down.
    pub fn start_without_queue(state_dir: &Path, vars: &[(&str, &str)]) -> Self {
        let text = std::fs::read_to_string(root().join("wrangler.toml")).expect("wrangler.toml");
        let mut kept = String::new();
        let mut skipping = false;
        for line in text.lines() {
            if line.starts_with("[[") || line.starts_with('[') {
                skipping = line.starts_with("[[queues.");
            }
            if !skipping {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        assert!(!kept.contains("queues."), "the queue sections are gone");
        let port = free_port();
        let config = root().join(format!("wrangler.test-noqueue-{port}.toml"));
        std::fs::write(&config, kept).expect("write the config");
        Self::start_with(port, state_dir, vars, Some(config))
    }

    fn start_with(
        port: u16,
        state_dir: &Path,
        vars: &[(&str, &str)],
        config: Option<PathBuf>,
    ) -> Self {
        build_worker();
        let _one_at_a_time = START.lock().unwrap_or_else(|p| p.into_inner());
        // The test regions, as an admin would put them (before the start,
        // so no request ever sees the shipped registry alone).
        kv_put_at(state_dir, "CONFIG", "regions", &regions::registry_json());
        // Riders are verified against the tests' provider (a test that
        // needs anonymous-only riders deletes the key).
        kv_put_at(state_dir, "CONFIG", "identity", &provider().identity_json());
        let log = std::fs::File::create(state_dir.join("wrangler.log")).expect("log file");
        let mut cmd = Command::new(root().join("node_modules/.bin/wrangler"));
        cmd.current_dir(root())
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(
                config
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("--config"), c.as_os_str()]),
            )
            .arg("--persist-to")
            .arg(state_dir)
            .args([
                "--show-interactive-dev-session=false",
                "--log-level",
                "warn",
            ])
            .env("WRANGLER_SEND_METRICS", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // Defaults, unless the caller sets them (key rotation tests do).
        let mut all: Vec<(&str, &str)> = vec![
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("QUOTE_SIGNING_KEYS", SIGNING_KEYS),
            ("DISPATCH_TOKEN", DISPATCH_TOKEN),
            ("ORIGIN_TOKEN", PRODUCER_TOKEN),
            ("RIDER_TOKEN_SECRET", provider().secret()),
            // A batch the origin did not take is retried after a second.
            ("EVENTS_RETRY_SECONDS", "1"),
        ];
        all.retain(|(k, _)| !vars.iter().any(|(name, _)| name == k));
        all.extend_from_slice(vars);
        for (k, v) in all {
            cmd.args(["--var", &format!("{k}:{v}")]);
        }
        // Own process group, so drop can stop wrangler and workerd together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("start wrangler dev");
        let w = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            state_dir: state_dir.to_path_buf(),
            config,
            _tmp: None,
        };
        let client = http();
        let url = w.url("/health");
        wait_for("the worker's /health", Duration::from_secs(120), || {
            client
                .get(&url)
                .timeout(Duration::from_secs(5))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        w
    }

    /// A URL on this worker.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks for a quote from [`SF`] to a point ~1.4 km away in region `sf`,
    /// as the verified `rider` when given ([`rider_token`]): the status and
    /// the JSON body (`Null` if the body is not JSON).
    pub fn estimate_sf(&self, rider: Option<&str>) -> (u16, serde_json::Value) {
        let body = serde_json::json!({
            "pickup_location": {"latitude": SF.0, "longitude": SF.1},
            "dropoff_location": {"latitude": 37.7849, "longitude": -122.4094},
            "region": "sf",
        });
        let mut r = http().post(self.url("/api/v1/pricing/estimate"));
        if let Some(rider) = rider {
            r = r.bearer_auth(rider_token(rider));
        }
        let r = r.json(&body).send().expect("estimate");
        (
            r.status().as_u16(),
            r.json().unwrap_or(serde_json::Value::Null),
        )
    }

    /// `ws://` URL on this worker.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Sets a KV key in the local state with the admin's command,
    /// `wrangler kv key put --local`.
    pub fn kv_put(&self, binding: &str, key: &str, value: &str) {
        kv_put_at(&self.state_dir, binding, key, value);
    }

    /// Deletes a KV key with `wrangler kv key delete --local`.
    pub fn kv_delete(&self, binding: &str, key: &str) {
        wrangler_kv_key(&self.state_dir, "delete", binding, &[key]);
    }

    /// How many Zone objects hold state (local `wrangler dev` keeps one
    /// SQLite file per object under the state directory).
    pub fn zone_objects(&self) -> usize {
        let dir = self.state_dir.join("v3/do/equilibrium-edge-Zone");
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "sqlite"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// The worker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("wrangler.log")).unwrap_or_default()
    }

    /// Stops the worker (as at drop), keeping the state directory.
    pub fn stop(&mut self) {
        let pgid = self.child.id().to_string();
        let quiet = |sig: &str| {
            let _ = Command::new("kill")
                .args(["-s", sig, "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        };
        quiet("TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        quiet("KILL");
        let _ = self.child.wait();
        if let Some(c) = self.config.take() {
            let _ = std::fs::remove_file(c);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

static BUILD_ORIGIN: Once = Once::new();

/// The origin binary, built once per test binary.
pub fn origin_bin() -> PathBuf {
    BUILD_ORIGIN.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .current_dir(root())
            .args(["build", "-q", "-p", "equilibrium-origin", "--bin", "origin"])
            .status()
            .expect("cargo build origin");
        assert!(status.success(), "origin build failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    target.join("debug/origin")
}

/// A running origin server.
#[derive(Debug)]
pub struct Origin {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its SQLite file.
    pub database: PathBuf,
    /// Its log file.
    pub log_path: PathBuf,
}

impl Origin {
    /// Starts `origin serve` on a free port with `database`, pushing to
    /// `edge_url` (may be unreachable), ticking every `tick_seconds`.
    pub fn start(database: &Path, edge_url: &str, tick_seconds: f64) -> Self {
        Self::start_with_env(database, edge_url, tick_seconds, &[])
    }

    /// As [`Origin::start`], with extra environment (e.g. `EQ_EDGE_CA_FILE`).
    pub fn start_with_env(
        database: &Path,
        edge_url: &str,
        tick_seconds: f64,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(free_port(), database, edge_url, tick_seconds, env)
    }

    /// As [`Origin::start_with_env`], on a given port (to restart an origin
    /// where an edge already sends its events).
    pub fn start_on(
        port: u16,
        database: &Path,
        edge_url: &str,
        tick_seconds: f64,
        env: &[(&str, &str)],
    ) -> Self {
        let bin = origin_bin();
        let log_path = database.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("origin log");
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--database")
            .arg(database)
            .args(["--edge-url", edge_url])
            .env("EQ_EDGE_TOKEN", ADMIN_TOKEN)
            .env("EQ_PRODUCER_TOKENS", PRODUCER_TOKEN)
            .env("EQ_READER_TOKENS", READER_TOKEN)
            .env("EQ_TICK_SECONDS", tick_seconds.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start origin");
        let o = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            database: database.to_path_buf(),
            log_path,
        };
        let client = http();
        let url = o.url("/health");
        wait_for("the origin's /health", Duration::from_secs(60), || {
            client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        o
    }

    /// A URL on this origin.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A GET with the reader token.
    pub fn get(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        http().get(self.url(path)).bearer_auth(READER_TOKEN)
    }

    /// A POST with the producer token.
    pub fn post(&self, path: &str) -> reqwest::blocking::RequestBuilder {
        http().post(self.url(path)).bearer_auth(PRODUCER_TOKEN)
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_hard();
        false
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A busy market at a point: one available driver and `requests` ride
    /// requests, through the ingest API (NDJSON and a JSON array).
    pub fn post_busy_market(&self, at: (f64, f64), requests: usize) {
        let t = now_ms();
        let driver = serde_json::json!({"driver_id": "d-1", "latitude": at.0, "longitude": at.1,
            "available": true, "timestamp": t});
        let r = self
            .post("/v1/ingest/locations")
            .header("content-type", "application/x-ndjson")
            .body(driver.to_string())
            .send()
            .expect("post locations");
        assert_eq!(r.status().as_u16(), 200);
        let demand: Vec<serde_json::Value> = (0..requests as u64)
            .map(|i| serde_json::json!({"kind": "ride_request", "latitude": at.0, "longitude": at.1, "timestamp": t + i}))
            .collect();
        let r = self
            .post("/v1/ingest/demand")
            .json(&demand)
            .send()
            .expect("post demand");
        assert_eq!(r.status().as_u16(), 200);
        let report: serde_json::Value = r.json().expect("report");
        assert_eq!(report["accepted"].as_u64(), Some(requests as u64));
    }

    /// A counter or gauge from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Milliseconds since the epoch (the tests' clock for grids and quotes).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
