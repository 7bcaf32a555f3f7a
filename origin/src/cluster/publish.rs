//! Ingest in cluster mode: a request's validated events, grouped by region,
//! published to the event stream; the request is answered only after the
//! stream acknowledged every message.
//!
//! Every message carries a deduplication id (`Nats-Msg-Id`): the request's
//! own, derived from its `Idempotency-Key`, kind and body when the client
//! sent one (so the same request posted again, to this or another origin,
//! within the stream's duplicate window, is stored once), or a random one
//! (so a publish the client library retries is stored once).

use std::collections::BTreeMap;

use async_nats::jetstream::message::PublishMessage;
use sha2::{Digest, Sha256};
use shared::market::{DemandSeen, DriverSeen};

use super::batch::Batch;
use super::{subject, Cluster};
use crate::config::Region;

/// What publishing a request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages the stream stored.
    pub stored: usize,
    /// Messages the stream had already stored (a repeated request).
    pub duplicates: usize,
}

/// The stream did not acknowledge every message.
#[derive(Debug, thiserror::Error)]
#[error("event stream did not acknowledge the batch: {0}")]
pub struct PublishFailed(pub String);

/// The deduplication prefix of a request: from its `Idempotency-Key`, its
/// kind and its body when the client sent a key, else random.
pub fn request_id(idempotency_key: Option<&str>, kind: &str, body: &[u8]) -> String {
    match idempotency_key {
        Some(key) => {
            let mut h = Sha256::new();
            for part in [key.as_bytes(), kind.as_bytes(), body] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
            let d = h.finalize();
            let mut id = String::from("ik-");
            for b in &d[..16] {
                id.push_str(&format!("{b:02x}"));
            }
            id
        }
        None => {
            use std::hash::{BuildHasher, RandomState};
            let a = RandomState::new().hash_one(std::time::SystemTime::now());
            let b = RandomState::new().hash_one(a);
            format!("rq-{a:016x}{b:016x}")
        }
    }
}

/// Groups events by region (index into `regions`) into batches of at most
/// [`super::batch::MAX_EVENTS`].
pub fn by_region(
    drivers: &[(usize, DriverSeen)],
    demand: &[(usize, DemandSeen)],
) -> BTreeMap<usize, Vec<Batch>> {
    let mut grouped: BTreeMap<usize, Batch> = BTreeMap::new();
    for (r, e) in drivers {
        grouped.entry(*r).or_default().drivers.push(*e);
    }
    for (r, e) in demand {
        grouped.entry(*r).or_default().demand.push(*e);
    }
    grouped.into_iter().map(|(r, b)| (r, b.chunks())).collect()
}

/// Publishes the events and waits for every acknowledgement.
pub async fn publish(
    cluster: &Cluster,
    regions: &[Region],
    drivers: &[(usize, DriverSeen)],
    demand: &[(usize, DemandSeen)],
    request: &str,
) -> Result<Published, PublishFailed> {
    let mut acks = Vec::new();
    for (r, batches) in by_region(drivers, demand) {
        let Some(region) = regions.get(r) else {
            continue;
        };
        for (i, batch) in batches.iter().enumerate() {
            let id = format!("{request}-{}-{i}", region.id);
            let ack = cluster
                .js
                .send_publish(
                    subject(region.id.as_str()),
                    PublishMessage::build()
                        .payload(batch.encode().into())
                        .message_id(id),
                )
                .await
                .map_err(|e| PublishFailed(e.to_string()))?;
            acks.push(ack);
        }
    }
    let mut out = Published::default();
    for ack in
        futures_util::future::join_all(acks.into_iter().map(std::future::IntoFuture::into_future))
            .await
    {
        let ack = ack.map_err(|e| PublishFailed(e.to_string()))?;
        if ack.duplicate {
            out.duplicates += 1;
        } else {
            out.stored += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_ids_depend_on_key_kind_and_body_and_random_ones_differ() {
        let a = request_id(Some("k1"), "locations", b"[1]");
        assert_eq!(a, request_id(Some("k1"), "locations", b"[1]"));
        assert_ne!(a, request_id(Some("k2"), "locations", b"[1]"));
        assert_ne!(a, request_id(Some("k1"), "demand", b"[1]"));
        assert_ne!(a, request_id(Some("k1"), "locations", b"[2]"));
        assert_ne!(request_id(None, "x", b""), request_id(None, "x", b""));
    }
}
