//! `origin`: the aggregator's command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use origin::clock::SystemClock;
use origin::cluster::Cluster;
use origin::config::{mask_password, Config};
use origin::server::serve;
use origin::state::AppState;
use origin::store::pg::PgStore;
use origin::store::{History, Store};

/// Equilibrium origin: ingest driver locations and demand, recompute surge
/// grids, push them to the edge, keep the history.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (ingest, ticks, pushes, analytics, metrics).
    Serve {
        /// TOML configuration file (or EQ_CONFIG); defaults apply without
        /// one.
        #[arg(long, short, env = "EQ_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address (overrides the file and EQ_LISTEN).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// SQLite database file (overrides the file and EQ_DATABASE).
        #[arg(long)]
        database: Option<PathBuf>,
        /// Edge base URL to push grids to (overrides EQ_EDGE_URL).
        #[arg(long)]
        edge_url: Option<String>,
    },
    /// Print the effective configuration (file + environment + defaults).
    Config {
        /// TOML configuration file (or EQ_CONFIG).
        #[arg(long, short, env = "EQ_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check an admin KV value before `wrangler kv key put`s it, with the
    /// parser the edge uses (`shared::api::admin`): exits 0 and says what
    /// it holds, or exits 1 with the reason. Keys: regions,
    /// tariff:<region>:<class>, caps:<region>, emergency_cap,
    /// emergency:<region>, experiment:<region>, identity.
    Check {
        /// The KV key the value is for.
        key: String,
        /// The value's file; standard input without one.
        file: Option<PathBuf>,
    },
    /// Print the least efficient surge zones from a database.
    LeastEfficient {
        /// SQLite database file.
        #[arg(long)]
        database: PathBuf,
        /// Look back this many days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// How many zones.
        #[arg(long, default_value_t = 5)]
        limit: u32,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            database,
            edge_url,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = database {
                cfg.database = d;
            }
            if let Some(u) = edge_url {
                cfg.edge_url = u;
            }
            run(cfg)
        }
        Command::Config { config } => {
            let mut cfg = Config::load(config.as_deref())?;
            if !cfg.edge_token.is_empty() {
                cfg.edge_token = "<set>".into();
            }
            for t in cfg
                .auth
                .producer_tokens
                .iter_mut()
                .chain(cfg.auth.reader_tokens.iter_mut())
            {
                *t = "<set>".into();
            }
            // Passwords in server URLs (`nats://user:pass@host`,
            // `postgres://user:pass@host/db`).
            for u in cfg
                .cluster
                .nats_urls
                .iter_mut()
                .chain(std::iter::once(&mut cfg.cluster.postgres_url))
            {
                *u = mask_password(u);
            }
            println!("{}", toml::to_string_pretty(&ConfigView(&cfg))?);
            Ok(())
        }
        Command::Check { key, file } => {
            let text = match &file {
                Some(f) => {
                    std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?
                }
                None => std::io::read_to_string(std::io::stdin()).context("read standard input")?,
            };
            let checked = shared::api::admin::AdminKey::parse(&key)
                .and_then(|k| k.check(text.trim_end_matches('\n')));
            match checked {
                Ok(what) => {
                    println!("{key}: ok: {what}");
                    Ok(())
                }
                Err(why) => {
                    eprintln!("{key}: refused: {why}");
                    std::process::exit(1);
                }
            }
        }
        Command::LeastEfficient {
            database,
            days,
            limit,
        } => {
            let store =
                Store::open(&database).with_context(|| format!("open {}", database.display()))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as u64;
            println!("rank  zone                      avg_mult  completion%  score");
            for z in store.least_efficient_zones(now, days, limit)? {
                println!(
                    "{:>4}  {:<24}  {:>8.2}  {:>11.2}  {:>5.2}",
                    z.rank,
                    z.zone_name,
                    z.average_multiplier,
                    z.completion_rate,
                    z.inefficiency_score
                );
            }
            Ok(())
        }
    }
}

/// Serialises the config for `origin config` (Config itself only reads).
struct ConfigView<'a>(&'a Config);

impl serde::Serialize for ConfigView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let c = self.0;
        let mut st = s.serialize_struct("Config", 20)?;
        st.serialize_field("listen", &c.listen.to_string())?;
        st.serialize_field("database", &c.database.display().to_string())?;
        st.serialize_field("edge_url", &c.edge_url)?;
        st.serialize_field("edge_token", &c.edge_token)?;
        st.serialize_field(
            "edge_ca_file",
            &c.edge_ca_file.as_ref().map(|p| p.display().to_string()),
        )?;
        st.serialize_field(
            "registry",
            &c.registry.as_ref().map(|p| p.display().to_string()),
        )?;
        st.serialize_field("tick_seconds", &c.tick_seconds)?;
        st.serialize_field("supply_ttl_seconds", &c.supply_ttl_seconds)?;
        st.serialize_field("demand_window_seconds", &c.demand_window_seconds)?;
        st.serialize_field("max_body_bytes", &c.max_body_bytes)?;
        st.serialize_field("retention_days", &c.retention_days)?;
        st.serialize_field("prune_interval_seconds", &c.prune_interval_seconds)?;
        st.serialize_field("prune_batch_rows", &c.prune_batch_rows)?;
        st.serialize_field("producer_tokens", &c.auth.producer_tokens)?;
        st.serialize_field("reader_tokens", &c.auth.reader_tokens)?;
        st.serialize_field("metrics_open", &c.auth.metrics_open)?;
        st.serialize_field("cluster_node_id", &c.cluster.node_id)?;
        st.serialize_field("cluster_nats_urls", &c.cluster.nats_urls)?;
        st.serialize_field("cluster_replicas", &c.cluster.replicas)?;
        st.serialize_field("cluster_postgres_url", &c.cluster.postgres_url)?;
        st.serialize_field("cluster_lease_ttl_seconds", &c.cluster.lease_ttl_seconds)?;
        st.serialize_field(
            "cluster_idempotency_window_seconds",
            &c.cluster.idempotency_window_seconds,
        )?;
        st.end()
    }
}

#[tokio::main]
async fn run(cfg: Config) -> anyhow::Result<()> {
    if let Some(dir) = cfg.database.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let open_sqlite = |cfg: &Config| {
        Store::open(&cfg.database).with_context(|| format!("open {}", cfg.database.display()))
    };
    let state = if cfg.cluster.enabled() {
        let history: Box<dyn History> = if cfg.cluster.postgres_url.is_empty() {
            Box::new(open_sqlite(&cfg)?)
        } else {
            let url = cfg.cluster.postgres_url.clone();
            // The postgres client blocks (it runs its own small runtime).
            let (pg, err) = tokio::task::spawn_blocking(move || PgStore::open(&url)).await?;
            if let Some(e) = err {
                tracing::warn!(error = %e, "history database unreachable; ticks wait in the backlog until it answers");
            }
            Box::new(pg)
        };
        let regions = cfg.regions()?;
        let cluster = Cluster::connect(&cfg.cluster, &regions, cfg.stream_retention())
            .await
            .context("join the cluster")?;
        let nats: Vec<String> = cfg
            .cluster
            .nats_urls
            .iter()
            .map(|u| mask_password(u))
            .collect();
        tracing::info!(node = %cluster.node, nats = %nats.join(","), "cluster mode");
        AppState::in_cluster(cfg, history, Arc::new(SystemClock), Arc::new(cluster))?
    } else {
        let store = open_sqlite(&cfg)?;
        AppState::new(cfg, store, Arc::new(SystemClock))?
    };
    let r = &state.restored;
    if r.last_tick_at.is_some() {
        tracing::info!(
            grids = r.grids,
            windows = r.windows,
            lost_seconds = format!("{:.1}", r.lost_seconds),
            "restored state as of the last persisted tick; events accepted after it were lost"
        );
    }
    tracing::info!(%addr, edge = %mask_password(&state.config.edge_url), "origin listening");
    if let Some(host) = origin::config::insecure_host(&state.config.edge_url) {
        tracing::warn!(%host, "allow_insecure_http: the edge token goes to {host} over plain http, in clear");
    }
    // Tests and scripts read this line to learn the port.
    println!("listening on {addr}");
    serve(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_password("postgres://eq:secret@db:5432/x"),
            "postgres://eq:<set>@db:5432/x"
        );
        assert_eq!(mask_password("nats://n1:4222"), "nats://n1:4222");
        // A user part alone may be a token (`https://<token>@host`).
        assert_eq!(mask_password("postgres://eq@db/x"), "postgres://<set>@db/x");
        assert_eq!(mask_password(""), "");
    }
}
