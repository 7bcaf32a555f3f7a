//! The owner's side of a region's events: an ordered consumer of the
//! region's subject feeding its market, from the first retained message
//! (the take-over replay) and then live. The region is ticked once the
//! replay has caught up.
//!
//! The consumer is re-created from the next sequence after an error (a
//! NATS node gone), so no message is applied twice or skipped.

use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures_util::StreamExt;

use super::batch::Batch;
use super::{subject, FeedStats, STREAM};
use crate::state::{lock, AppState};

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
                .create_consumer(pull::OrderedConfig {
                    filter_subject: subject(region.as_str()),
                    deliver_policy,
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
        if consumer.cached_info().num_pending == 0 {
            mark_ready();
        }
        let mut messages = match consumer.messages().await {
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
