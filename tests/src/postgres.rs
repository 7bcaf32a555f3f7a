//! A PostgreSQL server for the cluster tests: Debian's `postgresql`
//! (installed by `scripts/setup.sh`), a fresh data directory in a temporary
//! directory, on a free loopback port. PostgreSQL refuses to run as root,
//! so when the tests run as root the server runs as `nobody` (through
//! `setpriv`) and the directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for};

/// The directory of Debian's PostgreSQL programs (the newest installed).
pub fn pg_bin_dir() -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(base)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    versions.sort();
    let dir = versions
        .pop()
        .map(|v| v.join("bin"))
        .filter(|b| b.join("initdb").exists());
    dir.unwrap_or_else(|| {
        panic!("PostgreSQL is missing under /usr/lib/postgresql: run scripts/setup.sh (it installs Debian's postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the server's user.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// Creates a data directory and starts the server; waits until it
    /// accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the PostgreSQL directory to nobody");
        }
        let out = as_server_user(&pg_bin_dir().join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "eq", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            dir,
            port: free_port(),
            child: None,
        };
        pg.spawn();
        pg
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("postgres log");
        let child = as_server_user(&pg_bin_dir().join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let ready = pg_bin_dir().join("pg_isready");
        let port = self.port.to_string();
        wait_for(
            "PostgreSQL to accept connections",
            Duration::from_secs(60),
            || {
                Command::new(&ready)
                    .args(["-h", "127.0.0.1", "-p", &port, "-U", "eq"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }

    /// The connection URL.
    pub fn url(&self) -> String {
        format!("postgres://eq@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (a fast shutdown: connections are cut, nothing
    /// more is accepted) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
