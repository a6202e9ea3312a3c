//! The edge's core: the state every part shares and what can be done with
//! it, as plain Rust values. No HTTP: the routes in `crate::http` and the
//! sync task in `crate::sync` call in here.
//!
//! An [`Edge`] is built once, by [`Edge::new`], from its [`EdgeParts`]: the
//! store, the clock, the [`IngestRules`] and the write-ahead log with what it
//! replayed. It owns the aggregator of pending counts, the batch claims
//! ([`crate::counted`]) and the metrics. The ingest pipeline is in
//! [`ingest`]; stats, readiness and the sync hand-off are here.

mod ingest;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use glimpse_wire::api::{AdSummary, PostStatsResponse, StatsResponse, ViewsResponse};
use glimpse_wire::{Day, DayRange};

pub(crate) use ingest::IngestError;

use crate::aggregate::{Aggregator, PendingImpressions};
use crate::clock::Clock;
use crate::config::Config;
use crate::counted::BatchClaims;
use crate::counts::{post_key, Delta};
use crate::keys::Scope;
use crate::metrics::{Gauges, Metrics};
use crate::signing::SigningSecrets;
use crate::stats::{ad_stats, ad_summary, post_stats, post_views};
use crate::store::{Store, StoreError};
use crate::wal::{Log, Wal};

/// Why the edge takes no batches, in `/readyz`: the log has failed.
const LOG_FAILED: &str = "the write-ahead log has failed; the edge's logs say why";
/// Why the edge takes no batches, in `/readyz`: memory is at its bound.
const PENDING_OVER_BOUND: &str =
    "counts waiting for the store are over --max-pending-bytes until a sync lands";
/// Why the edge takes no batches, in `/readyz`: the log is at its bound.
const LOG_OVER_BOUND: &str =
    "batches waiting for the store fill the log past --max-log-bytes until a sync lands";

/// How long `/readyz` and `/metrics` wait for the store to answer a ping.
const READINESS_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// What ingest accepts and how it counts: the flags that shape it.
#[derive(Clone, Debug)]
pub struct IngestRules {
    /// Ingest refuses batches while pending counts hold more memory than
    /// this (`--max-pending-bytes`).
    pub max_pending_bytes: usize,
    /// Ingest refuses batches while the write-ahead log holds more bytes
    /// than this (`--max-log-bytes`).
    pub max_log_bytes: u64,
    /// When set, every event must carry a valid token for its ad under one
    /// of these secrets (`--ad-signing-secret`, see [`crate::signing`]).
    pub ad_signing: Option<SigningSecrets>,
    /// Automated browsers count as people (`--count-automation`, see
    /// `crate::traffic`).
    pub count_automation: bool,
}

impl Default for IngestRules {
    /// No memory or log bound, no signing, automation counted as invalid.
    fn default() -> Self {
        IngestRules {
            max_pending_bytes: usize::MAX,
            max_log_bytes: u64::MAX,
            ad_signing: None,
            count_automation: false,
        }
    }
}

impl IngestRules {
    /// The rules the flags give; refuses what [`Config::validate`] refuses.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        Ok(IngestRules {
            max_pending_bytes: usize::try_from(config.max_pending_bytes).unwrap_or(usize::MAX),
            max_log_bytes: config.max_log_bytes,
            ad_signing: config.ad_signing()?,
            count_automation: config.count_automation,
        })
    }
}

/// What an edge is built from.
#[derive(Debug)]
pub struct EdgeParts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub rules: IngestRules,
    /// The write-ahead log; `None` runs without one (tests of the routes).
    pub log: Option<Log>,
}

impl EdgeParts {
    /// Default rules and no log.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        EdgeParts {
            store,
            clock,
            rules: IngestRules::default(),
            log: None,
        }
    }
}

/// The store's health as `/readyz` and `/metrics` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreHealth {
    /// It answered a ping.
    Up,
    /// It refused or failed the ping.
    Unreachable,
    /// It did not answer within the readiness timeout.
    Slow,
}

impl StoreHealth {
    /// The word `/readyz` shows: `ok`, `unreachable` or `timeout`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreHealth::Up => "ok",
            StoreHealth::Unreachable => "unreachable",
            StoreHealth::Slow => "timeout",
        }
    }
}

/// A page of [`Edge::ads`].
#[derive(Debug)]
pub(crate) struct AdsPage {
    /// In ad id order.
    pub ads: Vec<AdSummary>,
    /// Whether ads sort after the last of this page.
    pub more: bool,
}

/// The state an edge's routes and sync task share. See the module docs.
#[derive(Debug)]
pub struct Edge {
    aggregator: Aggregator,
    claims: BatchClaims,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    wal: Option<Wal>,
    rules: IngestRules,
    metrics: Metrics,
}

impl Edge {
    /// The edge of `parts`. The log's replayed deltas are pending again,
    /// ahead of any new one, and their batches claimed as counted
    /// (`crate::counted`, step 4).
    pub fn new(parts: EdgeParts) -> Edge {
        let claims = BatchClaims::default();
        let (aggregator, wal) = match parts.log {
            None => (Aggregator::new(), None),
            Some(log) => {
                for r in &log.replayed {
                    claims.claim_replayed(&r.delta);
                }
                (
                    Aggregator::with_recovered(log.first_seq, log.replayed),
                    Some(log.wal),
                )
            }
        };
        Edge {
            aggregator,
            claims,
            store: parts.store,
            clock: parts.clock,
            wal,
            rules: parts.rules,
            metrics: Metrics::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Milliseconds since the epoch, by the edge's clock.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Today, UTC, by the edge's clock.
    pub(crate) fn today(&self) -> Day {
        Day::from_epoch_ms(self.now_ms()).expect("the server clock is after 1970")
    }

    /// Estimated heap bytes of the counts not yet in the store.
    pub fn pending_bytes(&self) -> usize {
        self.aggregator.pending_bytes()
    }

    /// Whether nothing waits to be synced.
    pub fn is_idle(&self) -> bool {
        self.aggregator.is_idle()
    }

    /// The delta to hand to the store now, if any (see [`Aggregator::begin_sync`]).
    pub(crate) fn begin_sync(&self) -> Option<Arc<Delta>> {
        self.aggregator.begin_sync()
    }

    /// Step 6 of [`crate::counted`], in its order: the store holds `delta`,
    /// so it leaves memory, then its log segment (and any older) may go, then
    /// its batches' claims are released.
    pub(crate) fn synced(&self, delta: &Delta) {
        self.aggregator.finish_sync();
        if let Some(wal) = &self.wal {
            wal.forget_through(delta.seq);
        }
        self.claims.release_synced(delta);
    }

    /// Writes what the log holds and stops its writer (at shutdown, after
    /// the last sync).
    pub(crate) fn close_log(&self) {
        if let Some(wal) = &self.wal {
            wal.close();
        }
    }

    fn read_failed(&self, e: StoreError) -> StoreError {
        self.metrics.store_error("read");
        e
    }

    /// The stats of `ad_id` over `range`: the store's days merged with what
    /// is pending here, as one cut (`crate::stats`). The pending deltas are
    /// taken first: a delta no longer pending then has landed whole, so the
    /// read that follows holds it; of the ones taken, the store's marks say
    /// which it holds already.
    pub(crate) async fn stats(
        &self,
        ad_id: &str,
        range: DayRange,
    ) -> Result<StatsResponse, StoreError> {
        let pending = self.aggregator.pending(ad_id, range);
        let stored = self
            .store
            .read_days(ad_id, range)
            .await
            .map_err(|e| self.read_failed(e))?;
        Ok(ad_stats(ad_id, range, stored, pending))
    }

    /// The stats of post `post_id` over `range`, by the same cut as an
    /// ad's ([`Edge::stats`]), read under the post's counts key.
    pub(crate) async fn post_stats(
        &self,
        post_id: &str,
        range: DayRange,
    ) -> Result<PostStatsResponse, StoreError> {
        let key = post_key(post_id);
        let pending = self.aggregator.pending(&key, range);
        let stored = self
            .store
            .read_days(&key, range)
            .await
            .map_err(|e| self.read_failed(e))?;
        Ok(post_stats(post_id, range, stored, pending))
    }

    /// The all-time views of each of `post_ids` (0 for a post never
    /// seen): the store's totals and what is pending here, as one cut. The
    /// pending impressions are taken first, as for [`Edge::stats`], and the
    /// store reads each total with its marks on the days they are of.
    pub(crate) async fn views(&self, post_ids: &[String]) -> Result<ViewsResponse, StoreError> {
        let pending: Vec<Vec<PendingImpressions>> = post_ids
            .iter()
            .map(|id| self.aggregator.pending_impressions(&post_key(id)))
            .collect();
        let asks: Vec<(String, Vec<Day>)> = post_ids
            .iter()
            .zip(&pending)
            .map(|(id, deltas)| {
                let days: BTreeSet<Day> = deltas
                    .iter()
                    .flat_map(|d| d.days.iter().map(|(day, _)| *day))
                    .collect();
                (id.clone(), days.into_iter().collect())
            })
            .collect();
        let stored = self
            .store
            .read_post_views(&asks)
            .await
            .map_err(|e| self.read_failed(e))?;
        let views = post_ids
            .iter()
            .zip(stored.iter().zip(&pending))
            .map(|(id, (stored, pending))| (id.clone(), post_views(stored, pending)))
            .collect();
        Ok(ViewsResponse { views })
    }

    /// One page of the ads inside `scope` with counts in `range` (stored or
    /// pending), by ad id: at most `limit` ads whose ids sort after `after`.
    /// The scope is applied to the ids before any stats are read, and only
    /// the page's stats are.
    pub(crate) async fn ads(
        &self,
        range: DayRange,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AdsPage, StoreError> {
        let mut ids = self
            .store
            .ads_in_range(range, scope)
            .await
            .map_err(|e| self.read_failed(e))?;
        ids.extend(
            self.aggregator
                .pending_ads(range)
                .into_iter()
                .filter(|id| scope.allows(id)),
        );
        if let Some(after) = after {
            ids.retain(|id| id.as_str() > after);
        }
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let mut ads = Vec::with_capacity(ids.len());
        for id in ids {
            ads.push(ad_summary(&self.stats(&id, range).await?));
        }
        Ok(AdsPage { ads, more })
    }

    /// Whether the edge can accept ingest: its log has not failed, and the
    /// pending counts and the log are within their bounds ([`Edge::admit`]).
    /// The store is not asked: while it is down the edge keeps accepting,
    /// its counts wait in memory and in the log (up to the bounds), so a
    /// store outage must not take every edge out of service. `Err` says why
    /// not, in words fit for anyone who can reach `/readyz`: no paths, no
    /// error text; `admit` logs the detail.
    pub(crate) fn can_ingest(&self) -> Result<(), &'static str> {
        self.admit().map_err(|e| match e {
            IngestError::LogFailed(e) => {
                tracing::warn!(error = %e, "not ready: the write-ahead log has failed");
                LOG_FAILED
            }
            IngestError::LogOverBound { .. } => LOG_OVER_BOUND,
            _ => PENDING_OVER_BOUND,
        })
    }

    /// Whether the store answers now, within [`READINESS_PING_TIMEOUT`]; a
    /// failure is logged with its detail.
    pub(crate) async fn store_health(&self) -> StoreHealth {
        match tokio::time::timeout(READINESS_PING_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => StoreHealth::Up,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the store is unreachable");
                StoreHealth::Unreachable
            }
            Err(_) => {
                tracing::warn!(
                    timeout_secs = READINESS_PING_TIMEOUT.as_secs(),
                    "the store did not answer a ping in time"
                );
                StoreHealth::Slow
            }
        }
    }

    /// The Prometheus text of every metric, the store's health asked now;
    /// the two figures only the HTTP layer knows come from the caller.
    pub(crate) async fn render_metrics(
        &self,
        rate_limited_clients: usize,
        requests_in_flight: usize,
    ) -> String {
        let store_up = self.store_health().await == StoreHealth::Up;
        let gauges = Gauges {
            store_up,
            pending_keys: self.aggregator.pending_keys(),
            pending_bytes: self.aggregator.pending_bytes(),
            max_pending_bytes: self.rules.max_pending_bytes,
            rate_limited_clients,
            requests_in_flight,
            wal: self.wal.as_ref().map(Wal::figures),
        };
        self.metrics.render(&gauges)
    }
}
