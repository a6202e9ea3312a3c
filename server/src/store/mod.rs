//! Where synced counts live. The edge talks to a store only through [`Store`]:
//! the sync task applies [`Delta`]s, the stats routes read days, and ingest
//! asks whether a batch id was already counted. `open` opens the one the
//! flags name.
//!
//! - [`embedded`]: the default, a redb database in the data directory.
//! - `redis`: a Redis or Redis Cluster shared by many edges.
//!
//! `identity` is the edge's id and boot counter in the data directory,
//! which number the deltas of both; `seen` the batch ids an edge has
//! handed to its store, which both keep on the edge for ingest to read.

pub mod embedded;
pub(crate) mod identity;
pub(crate) mod redis;
pub(crate) mod seen;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use glimpse_wire::{Day, DayRange};

use self::embedded::EmbeddedStore;
use self::identity::EdgeIdentity;
use self::redis::{RedisOptions, RedisStore};
use crate::config::{Config, StoreKind};
use crate::counts::{AdDays, Delta};

/// How long a batch id is remembered for de-duplication. The contract asks
/// for at least 24 h; twice that covers the 48 h window of accepted events.
pub const BATCH_ID_RETENTION_MS: i64 = 48 * 3_600_000;

/// A store failure. The message is for logs and `/readyz`; it never holds
/// client data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store holds invalid data: {0}")]
    Corrupt(String),
    /// The data directory is a restored copy: this start's boot number is
    /// not above one the store has seen. Fatal: the edge stops.
    #[error("refusing to run on a restored data directory: {0}")]
    Restored(String),
    /// The delta is older than the store can still recognise as applied
    /// (`redis::plan::RETRY_HORIZON_MS`): it is not sent, and the sync
    /// drops it.
    #[error(
        "delta {seq} is too old to send: its oldest batch was accepted {} h ago",
        age_ms / 3_600_000
    )]
    TooOld { seq: u64, age_ms: i64 },
}

/// What a store holds of one ad over a range, and which of this edge's
/// deltas that holds: read as one cut, so stats can add exactly the pending
/// deltas the stored counts do not hold yet (`crate::stats`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredDays {
    /// The days on which the ad has data.
    pub days: AdDays,
    pub applied: Applied,
}

/// A post's all-time views as a store holds them, and which of this edge's
/// deltas that total holds on each day asked about: one cut, like
/// [`StoredDays`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredViews {
    pub views: u64,
    pub applied: Applied,
}

/// Which of this edge's deltas stored counts hold, by sequence number.
/// Deltas land in sequence order, each whole before the next is tried, so
/// one number per (ad, day) says it: every delta numbered up to it has
/// landed there, none after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Deltas up to this number have landed on every day (the embedded
    /// store applies a delta in one transaction).
    pub everywhere: u64,
    /// Deltas up to this number have landed on this (ad, day) (the Redis
    /// store applies a delta one (ad, day) at a time).
    pub by_day: BTreeMap<Day, u64>,
}

impl Applied {
    /// Whether delta `seq`'s counts of `day` are in the stored counts.
    pub fn holds(&self, day: Day, seq: u64) -> bool {
        seq <= self.everywhere || self.by_day.get(&day).is_some_and(|&s| seq <= s)
    }
}

/// How finely a read of a key's days comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grain {
    /// Each day's counts, without its hours ([`crate::counts::DayCounts::hours`]
    /// left empty).
    Days,
    /// Each day's counts and those of each of its hours.
    Hours,
}

#[async_trait]
pub trait Store: Debug + Send + Sync + 'static {
    /// `"embedded"` or `"redis"`: the `source` of unique-visitor answers.
    fn kind(&self) -> &'static str;

    /// Applies one delta atomically enough that applying it again after an
    /// error never counts anything twice. Counters of a batch the store has
    /// already counted are left out ([`Delta::updates`]); the batch ids are
    /// remembered for [`BATCH_ID_RETENTION_MS`] from `now_ms`. The delta
    /// is shared, so a store that works on it elsewhere (another thread)
    /// takes a handle, never a copy: a copy would double the pending memory
    /// while a sync runs.
    async fn apply(&self, delta: &Arc<Delta>, now_ms: i64) -> Result<(), StoreError>;

    /// The counts of `key` (any counts key: `crate::counts::EventKeys`) on
    /// the days of `range` on which it has data, with their hours when
    /// `grain` asks, and the deltas of this edge they hold
    /// ([`StoredDays::applied`]), each day (hours included) read atomically
    /// with its mark.
    async fn read_days(
        &self,
        key: &str,
        range: DayRange,
        grain: Grain,
    ) -> Result<StoredDays, StoreError>;

    /// The all-time viewable total of each post of `posts` (a post id, and
    /// the days on which this edge has pending counts of it), in order, each
    /// read atomically with the marks of this edge's deltas that the total
    /// holds on those days. A post never seen is 0. Never scans days: the
    /// total is kept as deltas are applied.
    async fn read_post_views(
        &self,
        posts: &[(String, Vec<Day>)],
    ) -> Result<Vec<StoredViews>, StoreError>;

    /// The listed keys (`crate::counts::is_listed`: ads, campaigns and
    /// campaigns' shares of ads) with data on any day of `range` that start
    /// with one of `prefixes`, ascending. The prefixes are applied as the
    /// keys are read, so a scoped API key that reads a few ads costs a few,
    /// wherever the store can.
    async fn listed_in_range(
        &self,
        range: DayRange,
        prefixes: Vec<String>,
    ) -> Result<Vec<String>, StoreError>;

    /// Whether a batch with this id has been counted already, as far as
    /// this edge knows: both stores answer from the batches this edge has
    /// synced, kept on the edge (`seen`), so ingest never waits on the
    /// network. (A batch that only another edge counted is left out at this
    /// edge's next sync instead.)
    async fn batch_seen(&self, batch_id: &str) -> Result<bool, StoreError>;

    /// Answers when the store can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Checks, once, that this start of the edge is newer than every start
    /// the store has seen of its id ([`StoreError::Restored`] if not), and
    /// records it. The embedded store lives in the data directory, so a
    /// restored copy restores it too: nothing to check. The Redis store
    /// checks again before its first sync writes anything, when Redis could
    /// not be asked at start.
    async fn verify_identity(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens the store the configuration names, for this start of the edge. The
/// Redis store does not wait for Redis: it connects on first use and
/// reconnects on its own.
pub(crate) fn open(config: &Config, identity: &EdgeIdentity) -> anyhow::Result<Arc<dyn Store>> {
    match config.store {
        StoreKind::Embedded => {
            let store = EmbeddedStore::open(&config.data_dir)
                .with_context(|| {
                    format!(
                        "opening the embedded store in {}",
                        config.data_dir.display()
                    )
                })?
                .with_hourly_retention(config.hourly_sketch_days());
            Ok(Arc::new(store))
        }
        StoreKind::Redis => {
            if config.redis_url.is_none() && config.redis_cluster_nodes.is_empty() {
                anyhow::bail!("--store redis needs --redis-url or --redis-cluster-nodes");
            }
            // rediss:// needs a TLS provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let store = RedisStore::open(RedisOptions {
                url: config.redis_url.clone(),
                cluster_nodes: config.redis_cluster_nodes.clone(),
                prefix: config.redis_prefix.clone(),
                retention_days: config.retention_days,
                hourly_retention_days: config.hourly_sketch_days(),
                stats_cache: config.stats_cache,
                edge_id: identity.id.clone(),
                boot: identity.boot,
                data_dir: config.data_dir.clone(),
            })
            .context("setting up the Redis store")?;
            Ok(Arc::new(store))
        }
    }
}
