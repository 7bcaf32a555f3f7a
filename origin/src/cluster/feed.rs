//! The owner's side of a region's events: a consumer of the region's
//! subject feeding its market, from the first retained message (the
//! take-over replay) and then live. The region is ticked once the replay
//! has caught up.
//!
//! The consumer is an ephemeral pull consumer without acknowledgements,
//! fetching at most [`BATCH_MESSAGES`] messages or [`BATCH_BYTES`] per
//! request: a replay must not outrun the server's per-client buffer (64
//! MiB; a client over it is cut off as a slow consumer). Order and
//! completeness are checked here, as an ordered consumer would: every
//! message's consumer sequence must follow the last one; after a gap or an
//! error (a NATS node gone, a cut connection) the consumer is re-created
//! from the stream sequence after the last applied message, so no message
//! is applied twice or skipped.

use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures_util::StreamExt;

use super::batch::Batch;
use super::{subject, FeedStats, STREAM};
use crate::state::{lock, AppState};

/// Most messages one pull request asks for.
pub const BATCH_MESSAGES: usize = 64;
/// Most bytes one pull request asks for (a message is at most ~0.9 MiB,
/// see [`super::batch::MAX_EVENTS`]).
pub const BATCH_BYTES: usize = 8 << 20;

/// Feeds region `idx`'s market until aborted.
pub async fn run(state: Arc<AppState>, idx: usize, stats: Arc<FeedStats>) {
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    let region = state.regions[idx].id.clone();
    let started = Instant::now();
    let mut last: Option<u64> = None;
    let mark_ready = || {
        if !stats.ready.swap(true, Release) {
            let ms = started.elapsed().as_millis() as u64;
            state.metrics.replay_ms.store(ms, Relaxed);
            let events = stats.applied.load(Relaxed);
            tracing::info!(region = %region, replay_ms = ms, events, "region caught up");
        }
    };
    loop {
        let deliver_policy = match last {
            None => DeliverPolicy::All,
            Some(seq) => DeliverPolicy::ByStartSequence {
                start_sequence: seq + 1,
            },
        };
        let consumer = async {
            let stream = cluster
                .js
                .get_stream(STREAM)
                .await
                .map_err(|e| e.to_string())?;
            stream
                .create_consumer(pull::Config {
                    filter_subject: subject(region.as_str()),
                    deliver_policy,
                    ack_policy: AckPolicy::None,
                    memory_storage: true,
                    num_replicas: 1,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let consumer = match consumer {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "cannot read the region's events; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Consumer sequences of this consumer start at 1.
        let mut delivered = 0u64;
        if consumer.cached_info().num_pending == 0 {
            mark_ready();
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(BATCH_MESSAGES)
            .max_bytes_per_batch(BATCH_BYTES)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(region = %region, error = %e, "cannot read the region's events; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(region = %region, error = %e, "event stream interrupted; resuming");
                    break;
                }
            };
            let Ok(info) = msg.info() else {
                continue;
            };
            let (seq, pending) = (info.stream_sequence, info.pending);
            if info.consumer_sequence != delivered + 1 {
                tracing::warn!(region = %region, expected = delivered + 1, got = info.consumer_sequence, "gap in the region's events; resuming after the last applied");
                break;
            }
            delivered = info.consumer_sequence;
            if last.is_some_and(|l| seq <= l) {
                continue;
            }
            match Batch::decode(&msg.payload) {
                Ok(batch) => {
                    lock(&state.agg).apply(idx, &batch.drivers, &batch.demand);
                    stats.applied.fetch_add(batch.len() as u64, Relaxed);
                }
                Err(e) => {
                    state.metrics.stream_bad_messages.fetch_add(1, Relaxed);
                    tracing::error!(region = %region, seq, error = %e, "unreadable event batch skipped");
                }
            }
            last = Some(seq);
            stats.pending.store(pending, Relaxed);
            if pending == 0 {
                mark_ready();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
