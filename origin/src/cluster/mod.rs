//! Cluster mode: several origins share the regions through NATS JetStream.
//!
//! * **Ingest on any origin** ([`publish`]): a validated request's events
//!   are grouped by region and published to the replicated stream
//!   `EQ_EVENTS`, subject `eq.events.<region>`, each message with a
//!   deduplication id; the client is answered once the stream has
//!   acknowledged every message.
//! * **Ownership** ([`lease`]): members heartbeat in the `eq_members`
//!   bucket; each region's owner is chosen by rendezvous hashing over the
//!   live members ([`owners`]) and holds a lease in `eq_leases` (create to
//!   acquire, compare-and-set to renew; the bucket's max age is the lease
//!   TTL). An owner that cannot renew stops ticking the region at once.
//! * **Take-over** ([`feed`]): the new owner restores the region's last
//!   grid and engine smoothing from `eq_grids` (written by the owner every
//!   tick) and rebuilds the market by replaying the region's subject; it
//!   ticks the region once the replay has caught up.
//!
//! Only the owner ticks and pushes a region; the edge's newest-generation
//! rule makes a brief overlap during a hand-over harmless.

pub mod batch;
pub mod feed;
pub mod lease;
pub mod owners;
pub mod publish;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};

use crate::config::{ClusterConfig, Region};

/// The event stream.
pub const STREAM: &str = "EQ_EVENTS";
/// Members' heartbeats.
pub const MEMBERS: &str = "eq_members";
/// Region leases.
pub const LEASES: &str = "eq_leases";
/// Each region's last grid and engine smoothing.
pub const GRIDS: &str = "eq_grids";

/// The stream subject of a region's events.
pub fn subject(region: &str) -> String {
    format!("eq.events.{region}")
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No NATS server answered.
    #[error("cannot connect to NATS at {urls}: {source}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The cause.
        source: async_nats::ConnectError,
    },
    /// The stream or a bucket could not be created or opened.
    #[error("cannot set up JetStream {what}: {reason}")]
    Setup {
        /// Which one.
        what: &'static str,
        /// The cause.
        reason: String,
    },
}

/// How a region's feed is doing.
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Whether the market's replay has caught up (ticks wait for it).
    pub ready: AtomicBool,
    /// Events applied to the region's market since this node acquired it
    /// (the replay included).
    pub applied: AtomicU64,
    /// Messages of the region in the stream not yet applied (the lag).
    pub pending: AtomicU64,
}

/// A region this node owns.
#[derive(Debug)]
pub struct Owned {
    /// The lease's revision in `eq_leases` (for compare-and-set).
    pub revision: u64,
    /// When the last successful renewal (or the acquisition) was sent: the
    /// lease cannot lapse before this + TTL, so the region may be ticked
    /// until shortly before that.
    pub renewed_at: Instant,
    /// The feed's progress.
    pub stats: Arc<FeedStats>,
    /// The task feeding the market from the stream.
    pub feed: tokio::task::JoinHandle<()>,
}

/// This node's view of the cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node's member name.
    pub node: String,
    /// JetStream.
    pub js: jetstream::Context,
    /// The member heartbeats.
    pub members: kv::Store,
    /// The leases.
    pub leases: kv::Store,
    /// The stored grids and engine smoothing.
    pub grids: kv::Store,
    /// The lease TTL.
    pub lease_ttl: Duration,
    /// Regions this node owns, by index into the configured regions.
    pub owned: Mutex<HashMap<usize, Owned>>,
    /// The live members, as last read.
    pub live: Mutex<Vec<String>>,
}

impl Cluster {
    /// Connects and creates (or opens) the stream and the buckets.
    pub async fn connect(
        config: &ClusterConfig,
        regions: &[Region],
        retain: Duration,
    ) -> Result<Self, ClusterError> {
        let node = if config.node_id.is_empty() {
            use std::hash::{BuildHasher, RandomState};
            let r = RandomState::new().hash_one(std::time::SystemTime::now());
            format!("origin-{r:016x}")
        } else {
            config.node_id.clone()
        };
        let urls: Vec<async_nats::ServerAddr> = config
            .nats_urls
            .iter()
            .filter_map(|u| u.parse().ok())
            .collect();
        let client = async_nats::ConnectOptions::new()
            .name(&node)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(urls)
            .await
            .map_err(|source| ClusterError::Connect {
                urls: config.nats_urls.join(","),
                source,
            })?;
        let js = jetstream::new(client);
        // A JetStream cluster that has just started answers before it has
        // elected its meta leader: retry the set-up for a minute.
        let mut tries = 0;
        loop {
            match Self::set_up(&js, config, regions, retain).await {
                Ok(buckets) => return Ok(Self::with(node, js, buckets, config)),
                Err(e) if tries < 60 => {
                    if tries % 10 == 0 {
                        tracing::warn!(error = %e, "JetStream not ready; retrying");
                    }
                    tries += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates (or opens) the stream and the three buckets.
    async fn set_up(
        js: &jetstream::Context,
        config: &ClusterConfig,
        regions: &[Region],
        retain: Duration,
    ) -> Result<[kv::Store; 3], ClusterError> {
        let setup = |what: &'static str| {
            move |e: &dyn std::fmt::Display| ClusterError::Setup {
                what,
                reason: e.to_string(),
            }
        };
        let subjects = regions.iter().map(|r| subject(r.id.as_str())).collect();
        js.get_or_create_stream(stream::Config {
            name: STREAM.into(),
            subjects,
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            max_age: retain,
            duplicate_window: Duration::from_secs(config.idempotency_window_seconds),
            ..Default::default()
        })
        .await
        .map_err(|e| setup("stream")(&e))?;
        let lease_ttl = Duration::from_secs(config.lease_ttl_seconds);
        let bucket = |name: &str, max_age: Duration| kv::Config {
            bucket: name.into(),
            history: 1,
            max_age,
            num_replicas: config.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let members = js
            .create_or_update_key_value(bucket(MEMBERS, lease_ttl))
            .await
            .map_err(|e| setup("members bucket")(&e))?;
        let leases = js
            .create_or_update_key_value(bucket(LEASES, lease_ttl))
            .await
            .map_err(|e| setup("leases bucket")(&e))?;
        let grids = js
            .create_or_update_key_value(bucket(GRIDS, Duration::ZERO))
            .await
            .map_err(|e| setup("grids bucket")(&e))?;
        Ok([members, leases, grids])
    }

    fn with(
        node: String,
        js: jetstream::Context,
        [members, leases, grids]: [kv::Store; 3],
        config: &ClusterConfig,
    ) -> Self {
        Self {
            node,
            js,
            members,
            leases,
            grids,
            lease_ttl: Duration::from_secs(config.lease_ttl_seconds),
            owned: Mutex::new(HashMap::new()),
            live: Mutex::new(Vec::new()),
        }
    }

    /// How long after its last renewal a region may still be ticked: two
    /// thirds of the TTL, so the owner stops well before the lease can
    /// lapse and another member acquire it.
    pub fn tick_margin(&self) -> Duration {
        self.lease_ttl * 2 / 3
    }

    /// The regions this node may tick now: owned, caught up, and renewed
    /// recently enough.
    pub fn tickable(&self) -> Vec<usize> {
        let margin = self.tick_margin();
        let owned = crate::state::lock(&self.owned);
        let mut out: Vec<usize> = owned
            .iter()
            .filter(|(_, o)| {
                o.stats.ready.load(std::sync::atomic::Ordering::Acquire)
                    && o.renewed_at.elapsed() < margin
            })
            .map(|(i, _)| *i)
            .collect();
        out.sort_unstable();
        out
    }
}

/// A region's stored grid and engine smoothing: the `eq_grids` value.
/// `u32` length of the grid's JSON, the JSON, then the engine snapshot.
pub fn encode_stored(grid_json: &str, engine: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + grid_json.len() + engine.len());
    out.extend_from_slice(&(grid_json.len() as u32).to_le_bytes());
    out.extend_from_slice(grid_json.as_bytes());
    out.extend_from_slice(engine);
    out
}

/// Splits an `eq_grids` value into the grid's JSON and the engine snapshot.
pub fn decode_stored(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let json = std::str::from_utf8(bytes.get(4..4usize.checked_add(len)?)?).ok()?;
    Some((json, &bytes[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_round_trip_and_refuse_garbage() {
        let v = encode_stored("{\"a\":1}", &[1, 2, 3]);
        assert_eq!(decode_stored(&v), Some(("{\"a\":1}", &[1u8, 2, 3][..])));
        assert_eq!(decode_stored(&[9, 0, 0, 0, b'x']), None);
        assert_eq!(decode_stored(&[]), None);
        assert_eq!(decode_stored(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
