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

use glimpse_wire::api::{
    AdSummary, CampaignStatsResponse, CampaignSummary, PostStatsResponse, StatsResponse,
    ViewsResponse,
};
use glimpse_wire::{Day, DayRange};

pub(crate) use ingest::IngestError;

use crate::aggregate::{Aggregator, PendingImpressions};
use crate::clock::Clock;
use crate::config::Config;
use crate::counted::BatchClaims;
use crate::counts::{
    campaign_ads_prefix, campaign_key, campaign_of_key, is_ad_key, post_key, AdDays, Delta,
};
use crate::keys::Scope;
use crate::metrics::{Gauges, Metrics};
use crate::signing::SigningSecrets;
use crate::stats::{
    ad_stats, ad_summary, campaign_stats, campaign_summary, merged, post_stats, post_views, Ask,
    KeyCounts,
};
use crate::store::{Grain, Store, StoreError};
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
    /// Days the stores keep an hour's visitor sketch
    /// (`--hourly-retention-days`): older hours' visitors are not known.
    pub hourly_retention_days: u32,
}

impl EdgeParts {
    /// Default rules and no log.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        EdgeParts {
            store,
            clock,
            rules: IngestRules::default(),
            log: None,
            hourly_retention_days: crate::config::DEFAULT_HOURLY_RETENTION_DAYS,
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

/// A page of [`Edge::ads`] or [`Edge::campaigns`].
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// In id order.
    pub rows: Vec<T>,
    /// The id of the page's last row; ids after it make the next page.
    pub last: Option<String>,
    /// Whether ids sort after the last of this page.
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
    hourly_retention_days: u32,
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
            hourly_retention_days: parts.hourly_retention_days,
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

    /// The counts of `key` over the UTC days `range`: the store's merged
    /// with what is pending here, as one cut (`crate::stats`). The pending
    /// deltas are taken first: a delta no longer pending then has landed
    /// whole, so the read that follows holds it; of the ones taken, the
    /// store's marks say which it holds already.
    async fn merged_days(
        &self,
        key: &str,
        range: DayRange,
        grain: Grain,
    ) -> Result<AdDays, StoreError> {
        let pending = self.aggregator.pending(key, range, grain);
        let stored = self
            .store
            .read_days(key, range, grain)
            .await
            .map_err(|e| self.read_failed(e))?;
        Ok(merged(stored, pending))
    }

    /// What `ask` needs of `key`: its days, with their hours when the
    /// answer is by hour or in a zone other than UTC, as one cut.
    async fn key_counts(&self, key: &str, ask: &Ask) -> Result<KeyCounts, StoreError> {
        let grain = if ask.needs_hours() {
            Grain::Hours
        } else {
            Grain::Days
        };
        let days = self.merged_days(key, ask.read_range(), grain).await?;
        Ok(KeyCounts::new(days, self.hourly_sketches_from()))
    }

    /// The first UTC day whose hours' visitor sketches are still kept.
    fn hourly_sketches_from(&self) -> Day {
        let today = self.today().days_since_epoch();
        Day::from_days_since_epoch((today + 1).saturating_sub(self.hourly_retention_days))
    }

    /// The stats of `ad_id` as `ask` asks.
    pub(crate) async fn stats(&self, ad_id: &str, ask: &Ask) -> Result<StatsResponse, StoreError> {
        let counts = self.key_counts(ad_id, ask).await?;
        Ok(ad_stats(ad_id, ask, &counts, self.hourly_retention_days))
    }

    /// The stats of post `post_id`, by the same cut as an ad's, read under
    /// the post's counts key.
    pub(crate) async fn post_stats(
        &self,
        post_id: &str,
        ask: &Ask,
    ) -> Result<PostStatsResponse, StoreError> {
        let counts = self.key_counts(&post_key(post_id), ask).await?;
        Ok(post_stats(
            post_id,
            ask,
            &counts,
            self.hourly_retention_days,
        ))
    }

    /// The stats of campaign `campaign_id`: its own key's counts (reach is
    /// the union of all its ads' visitors) and the numbers of each ad in it
    /// (the campaign's share of the ad), the ads with counts in the range.
    pub(crate) async fn campaign_stats(
        &self,
        campaign_id: &str,
        ask: &Ask,
    ) -> Result<CampaignStatsResponse, StoreError> {
        let counts = self.key_counts(&campaign_key(campaign_id), ask).await?;
        let prefix = campaign_ads_prefix(campaign_id);
        let shares = self
            .listed(ask.read_range(), vec![prefix.clone()], |key| {
                key.starts_with(&prefix)
            })
            .await?;
        let daily = ask.daily();
        let mut ads = Vec::with_capacity(shares.len());
        for share in shares {
            let ad_id = &share[prefix.len()..];
            let stats = self.stats_of_key(&share, ad_id, &daily).await?;
            if has_counts(&stats) {
                ads.push(ad_summary(&stats));
            }
        }
        Ok(campaign_stats(
            campaign_id,
            ask,
            &counts,
            ads,
            self.hourly_retention_days,
        ))
    }

    /// The stats of counts key `key`, answered as those of ad `ad_id`.
    async fn stats_of_key(
        &self,
        key: &str,
        ad_id: &str,
        ask: &Ask,
    ) -> Result<StatsResponse, StoreError> {
        let counts = self.key_counts(key, ask).await?;
        Ok(ad_stats(ad_id, ask, &counts, self.hourly_retention_days))
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

    /// The listed keys (`crate::counts::is_listed`) with data in `range`,
    /// stored or pending, that start with one of `prefixes` and satisfy
    /// `wanted`, ascending.
    async fn listed(
        &self,
        range: DayRange,
        prefixes: Vec<String>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = self
            .store
            .listed_in_range(range, prefixes)
            .await
            .map_err(|e| self.read_failed(e))?;
        keys.retain(|k| wanted(k));
        keys.extend(self.aggregator.pending_listed(range, &wanted));
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// At most `limit` of `ids` (ascending) after `after`, each made a row by
    /// `row`; in a zone other than UTC the UTC days read hold hours outside
    /// the range, so rows without counts are left out (a page may then be
    /// shorter than `limit`).
    async fn page<T, F, Fut>(
        ids: Vec<String>,
        after: Option<&str>,
        limit: usize,
        row: F,
        counted: impl Fn(&T) -> bool,
    ) -> Result<Page<T>, StoreError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut ids: Vec<String> = match after {
            Some(after) => ids.into_iter().filter(|id| id.as_str() > after).collect(),
            None => ids,
        };
        let more = ids.len() > limit;
        ids.truncate(limit);
        let last = ids.last().cloned();
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let r = row(id).await?;
            if counted(&r) {
                rows.push(r);
            }
        }
        Ok(Page { rows, last, more })
    }

    /// One page of the ads inside `scope` with counts in `ask`'s range, by ad
    /// id: at most `limit` ads whose ids sort after `after`. The scope is
    /// applied to the ids before any stats are read, and only the page's
    /// stats are.
    pub(crate) async fn ads(
        &self,
        ask: &Ask,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<AdSummary>, StoreError> {
        let daily = ask.daily();
        let ids = self
            .listed(ask.read_range(), scope.prefixes(), |key| {
                is_ad_key(key) && scope.allows(key)
            })
            .await?;
        Self::page(
            ids,
            after,
            limit,
            |id| {
                let daily = &daily;
                async move { Ok(ad_summary(&self.stats(&id, daily).await?)) }
            },
            |ad| ad.impressions + ad.measurable + ad.invalid > 0 || ask.zone().is_utc(),
        )
        .await
    }

    /// One page of the campaigns inside `scope` (the prefix rule on campaign
    /// ids) with counts in `ask`'s range, by campaign id, as [`Edge::ads`].
    pub(crate) async fn campaigns(
        &self,
        ask: &Ask,
        scope: &Scope,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CampaignSummary>, StoreError> {
        let daily = ask.daily();
        let prefixes = scope.prefixes().iter().map(|p| campaign_key(p)).collect();
        let keys = self
            .listed(ask.read_range(), prefixes, |key| {
                campaign_of_key(key).is_some_and(|id| scope.allows(id))
            })
            .await?;
        let ids = keys
            .iter()
            .filter_map(|k| campaign_of_key(k).map(str::to_owned))
            .collect();
        Self::page(
            ids,
            after,
            limit,
            |id| {
                let daily = &daily;
                async move { Ok(campaign_summary(&self.campaign_stats(&id, daily).await?)) }
            },
            |c| c.impressions + c.measurable + c.invalid > 0 || ask.zone().is_utc(),
        )
        .await
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

/// Whether an answer counted anything in its range.
fn has_counts(stats: &StatsResponse) -> bool {
    stats.impressions + stats.measurable + stats.invalid > 0
}
