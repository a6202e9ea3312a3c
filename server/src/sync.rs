//! The background task that folds pending deltas into the store: when to
//! sync, and how to back off. What a sync hands over, and in which order, is
//! step 5 and 6 of `crate::counted`.
//!
//! Two answers of the store end the retries of a delta:
//! - [`StoreError::TooOld`]: the delta can no longer be told apart from one
//!   that landed (the Redis store's claims and ledger may have expired), so
//!   it is dropped: logged as an error with its sequence number and counts,
//!   and counted in `glimpse_deltas_dropped_total` and
//!   `glimpse_impressions_dropped_total`. The store has recorded its batch
//!   ids, so a client retrying one is still told it was counted.
//! - [`StoreError::Restored`]: the data directory is a restored copy; the
//!   sync task stops with the error and the edge shuts down without
//!   syncing anything (its log keeps what it accepted).

use std::time::Duration;

use tokio::sync::watch;

use crate::counts::Counters;
use crate::edge::Edge;
use crate::store::StoreError;

/// Longest wait between two failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Syncs what is pending once. Returns whether anything was written.
pub async fn sync_once(edge: &Edge) -> Result<bool, StoreError> {
    let Some(delta) = edge.begin_sync() else {
        return Ok(false);
    };
    let started = std::time::Instant::now();
    let applied = edge.store().apply(&delta, edge.now_ms()).await;
    let metrics = edge.metrics();
    // A delta dropped as too old is done with, not a failed attempt.
    let done = matches!(applied, Ok(()) | Err(StoreError::TooOld { .. }));
    metrics.sync_finished(started.elapsed(), done);
    match applied {
        Ok(()) => {}
        Err(StoreError::TooOld { seq, age_ms }) => {
            let counters = delta
                .keys()
                .fold(Counters::default(), |mut sum, (_, _, counts)| {
                    sum += counts.counters;
                    sum
                });
            tracing::error!(
                seq,
                age_hours = age_ms / 3_600_000,
                batches = delta.batches.len(),
                impressions = counters.impressions,
                measurable = counters.measurable,
                invalid = counters.invalid,
                "dropping a delta too old to send: the store could no longer tell whether it counted"
            );
            metrics.delta_dropped(counters.impressions);
        }
        Err(e) => {
            metrics.store_error("apply");
            return Err(e);
        }
    }
    edge.synced(&delta);
    Ok(true)
}

/// Waits before the attempt that follows `failures` failed ones: doubling
/// from `base`, capped, with full jitter so many edges do not retry in step.
pub(crate) fn backoff(base: Duration, failures: u32, unit_random: f64) -> Duration {
    let exp = base
        .saturating_mul(1u32 << failures.min(16))
        .min(MAX_BACKOFF);
    exp.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
}

/// Syncs every `interval` until `shutdown` turns true; stops early with
/// the error when the data directory is found restored.
pub async fn run(
    edge: &Edge,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut failures = 0u32;
    loop {
        let wait = if failures == 0 {
            interval
        } else {
            backoff(
                interval.min(Duration::from_secs(1)),
                failures,
                rand::random(),
            )
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return Ok(()),
        }
        match sync_once(edge).await {
            Ok(_) => {
                if failures > 0 {
                    tracing::info!(after_failures = failures, "sync recovered");
                }
                failures = 0;
            }
            Err(e @ StoreError::Restored(_)) => return Err(e),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "sync failed; pending counts are kept and retried");
            }
        }
    }
}

/// Syncs until nothing is pending, for shutdown; gives up after a few tries.
pub async fn flush(edge: &Edge) -> Result<(), StoreError> {
    let mut failures = 0;
    loop {
        match sync_once(edge).await {
            Ok(true) => continue,
            Ok(false) => return Ok(()),
            Err(e @ StoreError::Restored(_)) => return Err(e),
            Err(e) if failures < 5 => {
                failures += 1;
                tracing::warn!(error = %e, "final sync failed; retrying");
                tokio::time::sleep(backoff(
                    Duration::from_millis(100),
                    failures,
                    rand::random(),
                ))
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(base, 3, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(base, 30, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(base, 30, 0.0), MAX_BACKOFF / 2);
    }
}
