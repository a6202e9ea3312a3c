//! The ingest pipeline: a decoded batch in, its answer out. Each step of the
//! batch-counted protocol ([`crate::counted`]) that ingest takes is here, in
//! order: claim, seen index, validation, count and log, the wait for the log.

use std::collections::HashSet;

use glimpse_wire::api::{IngestResponse, Rejection};
use glimpse_wire::ingest::{check_distinct_ads, Batch, BatchError, Event, EventError};
use glimpse_wire::{Day, Kind, Subject};

use super::Edge;
use crate::counted::mint_batch_id;
use crate::traffic::{Traffic, Verdict};
use crate::wal::{codec, Lsn, WalFailed};

/// Why ingest refused a batch (or a single impression) as a whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    /// The counts not yet in the store hold more memory than allowed: a
    /// clear refusal beats losing data when memory runs out.
    #[error("{pending} bytes of counts wait for the store, over the bound of {max}")]
    PendingOverBound { pending: usize, max: usize },
    /// The write-ahead log holds more than allowed: the store has not taken
    /// its batches for a while (it is down), and the disk must not fill.
    #[error("the write-ahead log holds {held} bytes of batches not yet in the store, over the bound of {max}")]
    LogOverBound { held: u64, max: u64 },
    /// The write-ahead log has failed: nothing new can be made durable.
    #[error(transparent)]
    LogFailed(#[from] WalFailed),
    /// The batch breaks a rule that only its valid events can tell.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The single impression's event is refused (an unsigned or forged ad
    /// on an edge that requires signed ads): it has no siblings to count.
    #[error(transparent)]
    Event(EventError),
}

impl Edge {
    /// Refuses new work while pending counts or the write-ahead log are over
    /// their bounds, or the log has failed. Ingest routes ask before they
    /// count, so each bound is passed by at most the batches admitted and
    /// not yet counted.
    pub(crate) fn admit(&self) -> Result<(), IngestError> {
        let pending = self.aggregator.pending_bytes();
        if pending > self.rules.max_pending_bytes {
            tracing::warn!(
                pending_bytes = pending,
                max = self.rules.max_pending_bytes,
                "pending counts over their bound; refusing ingest until a sync lands"
            );
            return Err(IngestError::PendingOverBound {
                pending,
                max: self.rules.max_pending_bytes,
            });
        }
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        if let Some(e) = wal.failure() {
            return Err(IngestError::LogFailed(e));
        }
        let held = wal.held_bytes();
        if held > self.rules.max_log_bytes {
            tracing::warn!(
                log_bytes = held,
                max = self.rules.max_log_bytes,
                "the write-ahead log is over its bound; refusing ingest until a sync lands"
            );
            return Err(IngestError::LogOverBound {
                held,
                max: self.rules.max_log_bytes,
            });
        }
        Ok(())
    }

    /// Counts a batch [`Edge::admit`] let in, judged `verdict`, exactly once
    /// (a copy of a batch counted before answers as all duplicates); answers
    /// once the batch is durable.
    pub(crate) async fn ingest(
        &self,
        batch: &Batch<'_>,
        verdict: Verdict,
    ) -> Result<IngestResponse, IngestError> {
        let duplicate_batch = || {
            self.metrics.batch_duplicate(batch.events.len() as u64);
            Ok(IngestResponse {
                accepted: 0,
                duplicates: batch.events.len() as u32,
                rejected: Vec::new(),
            })
        };
        let claim = loop {
            if let Some(claim) = self.claims.claim(&batch.batch_id) {
                break claim;
            }
            // Another copy of this batch is being counted here (or waits for
            // a sync). This answer must not overtake that copy's fsync: a
            // crash in between would lose a batch this answer acknowledged.
            match self.claims.settled(&batch.batch_id).await {
                Some(position) => {
                    if let Some(position) = position {
                        self.logged(position).await?;
                    }
                    return duplicate_batch();
                }
                // That copy was not counted after all: count this one.
                None => continue,
            }
        };
        match self.store.batch_seen(&batch.batch_id).await {
            // Dropping the claim releases it.
            Ok(true) => return duplicate_batch(),
            Ok(false) => {}
            // Not knowing is no reason to refuse: the store checks the id
            // again when the batch is synced, before it counts anything.
            Err(e) => {
                self.metrics.store_error("batch_seen");
                tracing::warn!(error = %e, "batch id lookup failed; deferring the check to sync")
            }
        }
        let now = self.now_ms();
        let mut response = IngestResponse::default();
        let mut seen_ids = HashSet::with_capacity(batch.events.len());
        let mut events: Vec<Event<'_>> = Vec::with_capacity(batch.events.len());
        for (index, raw) in batch.events.iter().enumerate() {
            // The batch's own validation: it corrects for the client's clock.
            let checked = batch.validate_event(raw, now).and_then(|e| {
                // Signing is of ads: a post's view needs no token.
                if let Some(ad_id) = e.ad_id() {
                    self.check_token(ad_id, e.token.as_deref(), now)?;
                }
                Ok(e)
            });
            match checked {
                Ok(event) if seen_ids.insert(event.id.clone()) => events.push(event),
                Ok(_) => response.duplicates += 1,
                Err(e) => {
                    // Counted by category; the message goes to the client only.
                    self.metrics.event_rejected(e.code());
                    response.rejected.push(Rejection {
                        index,
                        error: e.to_string(),
                    })
                }
            }
        }
        // On this error the claim is dropped, and so released.
        check_distinct_ads(&events)?;
        if events.is_empty() {
            // Nothing counted, so nothing to de-duplicate: no record, no log,
            // and the claim is dropped, so the id reaches neither the seen
            // index nor the store's claims ([`crate::counted`]). A copy sent
            // again is validated again and counts only what is valid then.
            return Ok(response);
        }
        response.accepted = events.len() as u32;
        // The client is not told: a bot learns nothing from the answer.
        let traffic = self.traffic(verdict, response.accepted.into());
        let lsn = self.count(&batch.batch_id, now, traffic, &events);
        claim.counted(lsn);
        self.metrics
            .batch_accepted(response.accepted.into(), response.duplicates.into());
        if let Some(lsn) = lsn {
            // If the log fails here the answer is an error, yet the batch
            // stays counted in memory with its id claimed: the client's retry
            // is then answered as a duplicate, so the batch counts once (it
            // reaches the store with the next sync) and is never doubled.
            // Releasing the claim instead would count it twice.
            self.logged(lsn).await?;
        }
        Ok(response)
    }

    /// The single-impression form: one measurable and one viewable
    /// impression of the ad or post `subject_id` (an id already checked) by
    /// `user_id`, now, as a batch of its own under a minted id
    /// ([`crate::counted`]). An ad's `token` is checked by the same rule as
    /// a batch's events.
    pub(crate) async fn ingest_single(
        &self,
        subject: Subject,
        subject_id: &str,
        user_id: &str,
        token: Option<&str>,
        verdict: Verdict,
    ) -> Result<(), IngestError> {
        self.admit()?;
        let now = self.now_ms();
        if subject == Subject::Ad {
            self.check_token(subject_id, token, now).map_err(|e| {
                self.metrics.event_rejected(e.code());
                IngestError::Event(e)
            })?;
        }
        let day = Day::from_epoch_ms(now).expect("the server clock is after 1970");
        let event = |kind| Event {
            id: "single".into(),
            subject,
            subject_id: subject_id.into(),
            user_id: user_id.into(),
            kind,
            ts: now,
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
            day,
        };
        let traffic = self.traffic(verdict, 2);
        let lsn = self.count(
            &mint_batch_id(),
            now,
            traffic,
            &[event(Kind::Measurable), event(Kind::Viewable)],
        );
        self.metrics.batch_accepted(2, 0);
        if let Some(lsn) = lsn {
            self.logged(lsn).await?;
        }
        Ok(())
    }

    /// How a batch of `events` events judged `verdict` counts, under
    /// `--count-automation`; counts its invalid events by reason.
    fn traffic(&self, verdict: Verdict, events: u64) -> Traffic {
        let traffic = verdict.traffic(self.rules.count_automation);
        if let (Traffic::Invalid, Some(reason)) = (traffic, verdict.reason()) {
            self.metrics.events_invalid(reason, events);
        }
        traffic
    }

    /// With `--ad-signing-secret`, refuses an event of `ad_id` without a
    /// valid `token` for it; without it, lets every event through. The one
    /// rule for batches and the single-impression form alike.
    fn check_token(&self, ad_id: &str, token: Option<&str>, now_ms: i64) -> Result<(), EventError> {
        let Some(secrets) = &self.rules.ad_signing else {
            return Ok(());
        };
        let now_secs = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
        secrets
            .verify(ad_id, token, now_secs)
            .map_err(|why| EventError::new("invalid_token", why))
    }

    /// Counts one batch and logs it, in the segment of the generation that
    /// counts it. Answers the log position to wait on before acknowledging
    /// it; `None` when there is nothing to wait for (no log, or relaxed).
    fn count(
        &self,
        batch_id: &str,
        received_ms: i64,
        traffic: Traffic,
        events: &[Event<'_>],
    ) -> Option<Lsn> {
        let Some(wal) = &self.wal else {
            self.aggregator
                .record(batch_id, received_ms, traffic, events);
            return None;
        };
        // Encoded before the guard is taken: under it, only a copy.
        let mut record = Vec::with_capacity(32 + events.len() * 64);
        codec::encode_record(&mut record, traffic, batch_id, received_ms, events);
        let lsn = self
            .aggregator
            .record_then(batch_id, received_ms, traffic, events, |seq| {
                wal.append(seq, &record)
            });
        wal.acks_wait_for_fsync().then_some(lsn)
    }

    /// Waits until the log holds everything up to `lsn`.
    async fn logged(&self, lsn: Lsn) -> Result<(), WalFailed> {
        match &self.wal {
            None => Ok(()),
            Some(wal) => wal.durable(lsn).await.inspect_err(|e| {
                tracing::error!(error = %e, "a batch could not be made durable; refusing it");
            }),
        }
    }
}
