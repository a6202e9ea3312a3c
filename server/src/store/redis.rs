//! The Redis store: many edges share one Redis or Redis Cluster.
//!
//! Each sync of the in-flight [`Delta`] has two phases. First it *claims*
//! each of the delta's batches: one call of `claims.lua` per shard of the
//! batch ids looks each id up in the shard's claim hashes of the days that
//! can hold a claim on it (from 49 h before this edge accepted it) and
//! writes `<edge>:<seq>` for the ones no one holds (a few commands per
//! call, whatever the number of batches): a batch already claimed by
//! another edge or delta is not counted again. Then it runs one *step* per (ad, day) ([`plan`]): one call
//! of the Lua script `apply.lua`, atomic on the Redis side and confined to
//! the (ad, day)'s hash slot, which merges the edge's sketch into the day's
//! HyperLogLog (SET a scratch key, PFMERGE), adds the counters of the owned
//! batches, and records the step in the (ad, day)'s ledger hash. A retried
//! claim finds its own value and a retried step finds itself in the ledger,
//! whatever happened to the reply of the first attempt. `docs/redis.md` has
//! the whole key schema and the argument for exactness.
//!
//! Once a delta has landed, its batch ids go into a local index in the data
//! directory ([`SeenIndex`]), which ingest reads to turn away a batch this
//! edge has synced before: ingest sends Redis nothing.
//!
//! Claims and ledger entries live [`plan::CLAIM_LIFETIME_MS`] (72 h); a
//! delta whose oldest batch was accepted more than
//! [`plan::RETRY_HORIZON_MS`] (23 h) ago is not sent
//! ([`StoreError::TooOld`]), since one of them may have expired.
//!
//! Before its first sync lands anything, the store checks with `boot.lua`
//! that this start's boot number is above every one Redis has seen of this
//! edge id: a data directory restored from an older copy would repeat
//! sequence numbers, and the ledgers would skip its new counts as applied
//! ([`StoreError::Restored`]).
//!
//! Posts take the same steps under their counts key (`post/<post_id>`), in
//! the post's one hash slot, and each step of a (post, day) adds its views
//! to the post's all-time total in the same script run; `/v1/views` reads a
//! total with this edge's ledger entries of its pending days (`views.lua`).
//!
//! Reads never write, but for one thing: listing a day's ads (`ads.lua`, a
//! sorted set read by the key's prefix with `ZRANGEBYLEX`) first folds in
//! the plain set an earlier version kept for that day, once. Stats read each (ad, day) with the script `read.lua`,
//! which answers the day's sketch and counters together with this edge's
//! entry in the day's ledger, atomically: the mark of which of this edge's
//! deltas the counts hold, so stats add exactly the pending ones they do not
//! (`crate::stats`). Reads are kept behind a short cache (`--stats-cache`),
//! emptied by every sync of this edge: a cached day keeps its mark, so the
//! cut stays exact for this edge's batches, and only other edges' syncs show
//! up to the cache's lifetime late.

pub mod keys;
pub mod plan;
pub mod written;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use glimpse_hll::Sketch;
use glimpse_wire::{Day, DayRange};
use parking_lot::Mutex;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use self::keys::Keys;
use self::plan::{BatchClaim, KeyPlan, StepId};
use self::written::{Answer, SketchWrite, WrittenSketches};
use super::identity::MAX_SEQUENCE;
use super::seen::SeenIndex;
use super::{Grain, Store, StoreError, StoredDays, StoredViews};
use crate::counts::{
    is_listed, post_key, post_of_key, Counters, DayCounts, Delta, HourCounts, Hours, VideoCounters,
};

/// Time allowed for one reply. A timeout leaves the outcome unknown, which
/// the ledger makes harmless; a generous value just avoids needless retries.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time allowed for one command on a cluster, its retries, reconnections
/// and redirections included. The cluster client bounds each reply by
/// [`RESPONSE_TIMEOUT`] but, unless told, not the wait for a connection or
/// a slot refresh, so a sync could wait on one command for good: with this
/// it fails, and is retried.
const CLUSTER_REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Script calls (one per (ad, day)) in flight at once during a sync.
const SYNC_CONCURRENCY: usize = 32;
/// Most batch ids in one call of `claims.lua`: Lua's `unpack` takes a few
/// thousand values, and one call should not hold Redis for long.
const CLAIMS_PER_CALL: usize = 1000;
/// Reads in flight at once for one stats answer.
const READ_CONCURRENCY: usize = 64;
/// Cached stats, counted in days of data, before the cache is emptied.
const CACHE_MAX_DAYS: usize = 4096;
/// (ad, day)s remembered as indexed: about 10 MB at most.
const INDEXED_MAX_KEYS: usize = 100_000;

/// How to reach Redis and name the keys.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://` or `rediss://` URL of a single Redis.
    pub url: Option<String>,
    /// Cluster start nodes, `host:port` or URLs.
    pub cluster_nodes: Vec<String>,
    pub prefix: String,
    pub retention_days: u32,
    /// Days an hour's sketch is kept (`--hourly-retention-days`).
    pub hourly_retention_days: u32,
    pub stats_cache: Duration,
    /// This edge's id ([`super::identity::EdgeIdentity`]): its ledger
    /// field and the first half of its batch claims.
    pub edge_id: String,
    /// This start's boot number on the data directory.
    pub boot: u32,
    /// The edge's data directory, locked by its identity: home of the
    /// local index of synced batch ids ([`SeenIndex`]).
    pub data_dir: PathBuf,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may hold a password: show where, never how.
        f.debug_struct("RedisOptions")
            .field("target", &self.target())
            .field("prefix", &self.prefix)
            .field("retention_days", &self.retention_days)
            .field("hourly_retention_days", &self.hourly_retention_days)
            .field("stats_cache", &self.stats_cache)
            .field("edge_id", &self.edge_id)
            .field("boot", &self.boot)
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

/// `scheme://host:port/...` with any user and password left out.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => url.rsplit_once('@').map_or(url, |(_, h)| h).to_owned(),
    }
}

impl RedisOptions {
    fn target(&self) -> String {
        match &self.url {
            Some(url) => redact(url),
            None => format!(
                "cluster {}",
                self.cluster_nodes
                    .iter()
                    .map(|n| redact(n))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// A node given as `host:port` becomes `redis://host:port`.
fn node_url(node: &str) -> String {
    if node.contains("://") {
        node.to_owned()
    } else {
        format!("redis://{node}")
    }
}

/// One connection to a single Redis or to a cluster; cheap to clone.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Reads reused for a short while, dropped when this edge syncs.
#[derive(Debug)]
struct ReadCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, u64, V)>>,
    /// Bumped by every sync of this edge: older entries are stale.
    generation: AtomicU64,
}

impl<K: std::hash::Hash + Eq, V: Clone> ReadCache<K, V> {
    fn new(ttl: Duration) -> Self {
        ReadCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock();
        let (at, generation, value) = entries.get(key)?;
        (at.elapsed() < self.ttl && *generation == self.generation()).then(|| value.clone())
    }

    /// Keeps `value`, read when the generation was `generation`, unless a
    /// sync landed since.
    fn put(&self, key: K, generation: u64, value: V, weight: impl Fn(&V) -> usize) {
        if self.ttl.is_zero() || generation != self.generation() {
            return;
        }
        let mut entries = self.entries.lock();
        let total: usize = entries.values().map(|(_, _, v)| weight(v)).sum();
        if total + weight(&value) > CACHE_MAX_DAYS {
            let now = self.generation();
            entries.retain(|_, (at, g, _)| at.elapsed() < self.ttl && *g == now);
            if entries.values().map(|(_, _, v)| weight(v)).sum::<usize>() + weight(&value)
                > CACHE_MAX_DAYS
            {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), generation, value));
    }

    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.lock().clear();
    }
}

/// The Redis implementation of [`Store`].
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    edge_id: String,
    /// `s:<edge_id>`, this edge's field in every ledger.
    edge_field: String,
    script: Script,
    /// This start's boot number, and a nonce of this run, for `boot.lua`.
    boot: u32,
    boot_nonce: u64,
    /// Set once `boot.lua` has recorded this start: nothing is written
    /// before.
    boot_recorded: AtomicBool,
    /// `claims.lua`: a sync's claims of one shard.
    claims_script: Script,
    /// `read.lua`: one (ad, day) and this edge's ledger entry, atomically.
    read_script: Script,
    /// `ads.lua`: adds to and reads a day's ad index.
    ads_script: Script,
    /// `views.lua`: a post's total and this edge's ledger entries, atomically.
    views_script: Script,
    retention_days: u32,
    hourly_retention_days: u32,
    target: String,
    days_cache: ReadCache<(String, u32, u32, Grain), StoredDays>,
    /// Ad listings by (range, the scope's prefixes).
    ads_cache: ReadCache<(u32, u32, Vec<String>), Vec<String>>,
    /// The batch ids this edge has synced, for ingest's duplicate check.
    seen: SeenIndex,
    /// (ad, day)s known to be in their day's ad index, at most
    /// [`INDEXED_MAX_KEYS`]: past that an (ad, day) is added to its set
    /// again at each sync (harmless), so the edge's memory does not grow
    /// with the number of distinct ads.
    indexed: Mutex<HashSet<(String, Day)>>,
    /// The sketch values this edge wrote last, so a step can replace a
    /// sketch instead of merging into it ([`written`]).
    written: WrittenSketches,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.target)
            .field("prefix", &self.keys.prefix())
            .field("edge_id", &self.edge_id)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: RedisError) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

impl RedisStore {
    /// Sets up the connection without waiting for Redis: an edge starts and
    /// takes impressions while Redis is still down. Opens the local index
    /// of synced batch ids in the data directory.
    pub fn open(options: RedisOptions) -> Result<RedisStore, StoreError> {
        let keys = Keys::new(&options.prefix).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let seen = SeenIndex::open_synced(&options.data_dir)?;
        let target = options.target();
        let bad_config = |e: RedisError| StoreError::Unavailable(format!("{target}: {e}"));
        let conn = match (&options.url, options.cluster_nodes.as_slice()) {
            (Some(url), []) => {
                let client = redis::Client::open(url.as_str()).map_err(bad_config)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(
                    ConnectionManager::new_lazy_with_config(client, config).map_err(bad_config)?,
                )
            }
            (None, nodes) if !nodes.is_empty() => {
                let client = ClusterClient::builder(nodes.iter().map(|n| node_url(n)))
                    .retries(2)
                    .overall_response_timeout(Some(CLUSTER_REQUEST_TIMEOUT))
                    .build()
                    .map_err(bad_config)?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                Conn::Cluster(client.get_pending_async_connection_with_config(config))
            }
            _ => {
                return Err(StoreError::Unavailable(
                    "--store redis needs exactly one of --redis-url and --redis-cluster-nodes"
                        .into(),
                ))
            }
        };
        tracing::info!(
            target = %target,
            edge_id = %options.edge_id,
            "Redis store configured"
        );
        Ok(RedisStore {
            conn,
            edge_field: keys::edge_field(&options.edge_id),
            keys,
            edge_id: options.edge_id,
            script: Script::new(include_str!("redis/apply.lua")),
            boot: options.boot,
            boot_nonce: rand::random(),
            boot_recorded: AtomicBool::new(false),
            claims_script: Script::new(include_str!("redis/claims.lua")),
            read_script: Script::new(include_str!("redis/read.lua")),
            ads_script: Script::new(include_str!("redis/ads.lua")),
            views_script: Script::new(include_str!("redis/views.lua")),
            retention_days: options.retention_days,
            hourly_retention_days: options.hourly_retention_days,
            target,
            days_cache: ReadCache::new(options.stats_cache),
            ads_cache: ReadCache::new(options.stats_cache),
            seen,
            indexed: Mutex::new(HashSet::new()),
            written: WrittenSketches::default(),
        })
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(|e| unavailable(what, e))
    }

    /// Runs the step of one (ad, day), its hours included, at the edge's
    /// time `now_ms`.
    async fn apply_key(&self, plan: KeyPlan<'_>, seq: u64, now_ms: i64) -> Result<(), StoreError> {
        let keys = self.keys.day_keys(plan.key, plan.day);
        let expiry = plan::day_expiry_ms(plan.day, self.retention_days);
        let hour_sketch_expiry = plan::day_expiry_ms(plan.day, self.hourly_retention_days);
        let mut conn = self.conn.clone();
        let id = StepId { seq, chunk: 0 };
        let mut call = self.script.prepare_invoke();
        call.key(&keys.visitors)
            .key(&keys.counters)
            .key(&keys.ledger)
            .key(&keys.scratch);
        // Each sketch key with how it is written.
        let day_write: Option<(String, SketchWrite)> = plan.visitors.as_ref().map(|sketch| {
            let write = self.written.prepare(&keys.visitors, sketch);
            (keys.visitors.clone(), write)
        });
        let mut hour_writes = Vec::new();
        for hour in &plan.hours {
            if let Some(sketch) = &hour.visitors {
                let key = self.keys.hour_visitors(plan.key, plan.day, hour.hour);
                call.key(&key);
                let write = self.written.prepare(&key, sketch);
                hour_writes.push((key, write));
            }
        }
        if let Some(post_id) = post_of_key(plan.key) {
            call.key(self.keys.post_views(post_id));
        }
        call.arg(&self.edge_field).arg(id.seq).arg(id.chunk);
        match &day_write {
            Some((_, w)) => call.arg(&w.bytes).arg(w.expect.as_arg()),
            None => call.arg("").arg(""),
        };
        call.arg(expiry)
            .arg(plan::CLAIM_LIFETIME_MS)
            .arg(hour_sketch_expiry)
            .arg(hour_writes.len());
        for (_, w) in &hour_writes {
            call.arg(&w.bytes).arg(w.expect.as_arg());
        }
        for (field, n) in counter_fields(plan.counters) {
            if n > 0 {
                call.arg(field).arg(n);
            }
        }
        for hour in &plan.hours {
            for (field, n) in counter_fields(hour.counters) {
                if n > 0 {
                    call.arg(hour_field(hour.hour, field)).arg(n);
                }
            }
        }
        let what = || format!("sync step {id} of {} {}", plan.key, plan.day);
        // On an error the writes are dropped, and with them what the edge
        // knew of the keys: the next step asks afresh.
        let reply: Vec<Value> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&what(), e))?;
        match reply.split_first() {
            Some((Value::Int(0), [])) => tracing::debug!(key = plan.key, day = %plan.day,
                step = %id, "step had landed before; left as it was"),
            Some((Value::Int(1), answers))
                if answers.len() == usize::from(day_write.is_some()) + hour_writes.len() =>
            {
                // The answers come in the order of the keys: the day's first.
                let writes = day_write.into_iter().chain(hour_writes);
                for ((key, write), answer) in writes.zip(answers) {
                    let answer = match answer {
                        Value::Int(1) => Answer::Stored,
                        Value::Nil => Answer::MergedBlind,
                        Value::BulkString(bytes) => Answer::Merged(bytes.clone()),
                        other => {
                            return Err(StoreError::Corrupt(format!(
                                "{}: the sync script answered {other:?} for {key}",
                                what()
                            )))
                        }
                    };
                    self.written
                        .settle(key, write, answer, now_ms)
                        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?;
                }
            }
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "{}: the sync script answered {reply:?}",
                    what()
                )))
            }
        }
        Ok(())
    }

    /// Claims `batches`, all of `shard`, for the delta whose claim value is
    /// `ours`, at the edge's time `now_ms`, with one call of `claims.lua`
    /// that reads the windows their claims can be in; answers the ids this
    /// delta does not own.
    async fn claim_shard<'a>(
        &self,
        shard: u16,
        batches: &[BatchClaim<'a>],
        ours: &str,
        now_ms: i64,
    ) -> Result<Vec<&'a str>, StoreError> {
        let windows = plan::CLAIMS;
        let oldest_accepted = batches.iter().map(|b| b.accepted_ms).fold(now_ms, i64::min);
        let mut call = self.claims_script.prepare_invoke();
        for window in windows.to_check(now_ms, oldest_accepted) {
            call.key(self.keys.claims(shard, window));
        }
        call.arg(ours)
            .arg(windows.expiry_ms(windows.window(now_ms)));
        for b in batches {
            call.arg(b.batch_id);
        }
        let mut conn = self.conn.clone();
        let taken: Vec<String> = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("claiming batches", e))?;
        let taken: HashSet<&str> = taken.iter().map(String::as_str).collect();
        Ok(batches
            .iter()
            .map(|b| b.batch_id)
            .filter(|id| taken.contains(id))
            .collect())
    }

    /// Phase 1 of a sync: claims every batch of the delta that needs a
    /// claim, one script call per shard (and per [`CLAIMS_PER_CALL`] ids);
    /// answers those another edge or delta holds.
    async fn claim_batches<'a>(
        &self,
        delta: &'a Delta,
        seq: u64,
        now_ms: i64,
    ) -> Result<HashSet<&'a str>, StoreError> {
        let ours = plan::claim_value(&self.edge_id, seq);
        let mut by_shard: HashMap<u16, Vec<BatchClaim<'a>>> = HashMap::new();
        for claim in plan::claims(delta) {
            by_shard
                .entry(plan::claim_shard(claim.batch_id))
                .or_default()
                .push(claim);
        }
        let ours = ours.as_str();
        let mut jobs: Vec<BoxFuture<'_, Result<Vec<&'a str>, StoreError>>> = Vec::new();
        for (shard, batches) in &by_shard {
            for chunk in batches.chunks(CLAIMS_PER_CALL) {
                jobs.push(self.claim_shard(*shard, chunk, ours, now_ms).boxed());
            }
        }
        let not_owned: Vec<Vec<&str>> = futures_util::stream::iter(jobs)
            .buffer_unordered(SYNC_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(not_owned.into_iter().flatten().collect())
    }

    /// Adds `ad_ids` to `day`'s ad index, in one call of `ads.lua`.
    async fn index_day(&self, day: Day, ad_ids: Vec<String>) -> Result<(), StoreError> {
        let mut call = self.ads_script.prepare_invoke();
        call.key(self.keys.ads_of_day(day))
            .key(self.keys.old_ads_of_day(day))
            .arg("add")
            .arg(plan::day_expiry_ms(day, self.retention_days));
        for ad_id in &ad_ids {
            call.arg(ad_id);
        }
        let mut conn = self.conn.clone();
        let _: i64 = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("indexing the day's ads", e))?;
        let mut indexed = self.indexed.lock();
        for ad_id in ad_ids {
            if indexed.len() >= INDEXED_MAX_KEYS {
                break;
            }
            indexed.insert((ad_id, day));
        }
        Ok(())
    }

    /// The ids of `day`'s ads under each of `prefixes` (every ad for the
    /// empty prefix), read by range from the day's index.
    async fn day_ads(&self, day: Day, prefixes: &[String]) -> Result<Vec<String>, StoreError> {
        let mut call = self.ads_script.prepare_invoke();
        call.key(self.keys.ads_of_day(day))
            .key(self.keys.old_ads_of_day(day))
            .arg("list");
        for prefix in prefixes {
            let (min, max) = keys::lex_range(prefix);
            call.arg(min).arg(max);
        }
        let mut conn = self.conn.clone();
        call.invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable("listing the day's ads", e))
    }

    /// One (ad, day), with its hours when `grain` asks, and the last of
    /// this edge's deltas it holds (its ledger entry; 0 for none), read
    /// atomically by `read.lua`.
    async fn read_day(
        &self,
        key: &str,
        day: Day,
        grain: Grain,
    ) -> Result<(Option<DayCounts>, u64), StoreError> {
        let keys = self.keys.day_keys(key, day);
        let mut call = self.read_script.prepare_invoke();
        call.key(&keys.visitors)
            .key(&keys.counters)
            .key(&keys.ledger);
        if grain == Grain::Hours {
            for hour in 0..24 {
                call.key(self.keys.hour_visitors(key, day, hour));
            }
        }
        call.arg(&self.edge_field).arg(&COUNTER_FIELDS);
        let mut conn = self.conn.clone();
        let reply: DayReply = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&format!("reading {key} {day}"), e))?;
        let (sketch, fields, step, hash, sketches) = reply;
        let applied = match step {
            Some(step) => {
                StepId::parse(&step)
                    .ok_or_else(|| StoreError::Corrupt(format!("{}: step {step:?}", keys.ledger)))?
                    .seq
            }
            None => 0,
        };
        let fields: [Option<u64>; COUNTER_FIELDS.len()] =
            fields.try_into().map_err(|f: Vec<_>| {
                StoreError::Corrupt(format!(
                    "HMGET of {} fields answered {}",
                    COUNTER_FIELDS.len(),
                    f.len()
                ))
            })?;
        if sketch.is_none() && fields.iter().all(Option::is_none) {
            return Ok((None, applied));
        }
        let decode = |bytes: &[u8], name: &dyn Fn() -> String| {
            Sketch::from_redis_bytes(bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", name())))
        };
        let visitors = match sketch {
            Some(bytes) => decode(&bytes, &|| keys.visitors.clone())?,
            None => Sketch::new(),
        };
        let hours = match grain {
            Grain::Days => Hours::default(),
            Grain::Hours => {
                let mut counters = hour_counters(&hash)
                    .map_err(|e| StoreError::Corrupt(format!("{}: {e}", keys.counters)))?;
                let mut hours = Vec::new();
                for (hour, sketch) in (0..24u8).zip(sketches) {
                    let counters = counters.remove(&hour).unwrap_or_default();
                    let visitors = match sketch {
                        Some(bytes) => decode(&bytes, &|| self.keys.hour_visitors(key, day, hour))?,
                        None if counters.is_zero() => continue,
                        None => Sketch::new(),
                    };
                    hours.push((hour, HourCounts { counters, visitors }));
                }
                hours.into_iter().collect()
            }
        };
        let counts = DayCounts {
            counters: counters_of_fields(fields),
            visitors,
            hours,
        };
        Ok((Some(counts), applied))
    }
}

/// What `read.lua` answers: the day's sketch, its counters, this edge's
/// ledger entry, and for a read with hours the counters hash whole and the
/// hours' sketches (both empty for a read by day).
type DayReply = (
    Option<Vec<u8>>,
    Vec<Option<u64>>,
    Option<String>,
    Vec<(String, u64)>,
    Vec<Option<Vec<u8>>>,
);

impl RedisStore {
    /// One post's total and this edge's ledger entry on each of `days`,
    /// read atomically by `views.lua`.
    async fn read_views(&self, post_id: &str, days: &[Day]) -> Result<StoredViews, StoreError> {
        let key = post_key(post_id);
        let mut call = self.views_script.prepare_invoke();
        call.key(self.keys.post_views(post_id));
        for day in days {
            call.key(self.keys.ledger(&key, *day));
        }
        call.arg(&self.edge_field);
        let mut conn = self.conn.clone();
        let (views, steps): (Option<u64>, Vec<Option<String>>) = call
            .invoke_async(&mut conn)
            .await
            .map_err(|e| unavailable(&format!("reading the views of {post_id}"), e))?;
        let mut stored = StoredViews {
            views: views.unwrap_or(0),
            ..StoredViews::default()
        };
        for (day, step) in days.iter().zip(steps) {
            if let Some(step) = step {
                let id = StepId::parse(&step).ok_or_else(|| {
                    StoreError::Corrupt(format!("{}: step {step:?}", self.keys.ledger(&key, *day)))
                })?;
                stored.applied.by_day.insert(*day, id.seq);
            }
        }
        Ok(stored)
    }
}

/// Records this start, or refuses a restored data directory.
const BOOT_SCRIPT: &str = include_str!("redis/boot.lua");

/// The fields of an (ad, day)'s counters hash, `n:{…}`: the counters, then
/// the video counters in [`VideoCounters::to_array`] order.
const COUNTER_FIELDS: [&str; 10] = [
    "imp", "meas", "invalid", "verified", "vs", "v25", "v50", "v75", "vc", "aud",
];

/// The field of counter `field` of UTC hour `hour` in a day's counters
/// hash: `<HH>:<field>`.
fn hour_field(hour: u8, field: &str) -> String {
    format!("{hour:02}:{field}")
}

/// The hours' counters among a day's counters hash (`HGETALL`): the fields
/// `<HH>:<field>`; the day's own fields are skipped.
fn hour_counters(hash: &[(String, u64)]) -> Result<HashMap<u8, Counters>, String> {
    let mut hours: HashMap<u8, [Option<u64>; COUNTER_FIELDS.len()]> = HashMap::new();
    for (name, n) in hash {
        let Some((hour, field)) = name.split_once(':') else {
            continue;
        };
        let hour: u8 = hour
            .parse()
            .ok()
            .filter(|h| *h < 24)
            .ok_or_else(|| format!("field {name:?} names no hour"))?;
        // A field this version does not know (a newer one wrote it) is left
        // as the day's unknown fields are.
        if let Some(at) = COUNTER_FIELDS.iter().position(|f| *f == field) {
            hours.entry(hour).or_default()[at] = Some(*n);
        }
    }
    Ok(hours
        .into_iter()
        .map(|(hour, fields)| (hour, counters_of_fields(fields)))
        .collect())
}

/// The counters as the hash's fields, in [`COUNTER_FIELDS`] order.
fn counter_fields(c: Counters) -> [(&'static str, u64); COUNTER_FIELDS.len()] {
    let [vs, v25, v50, v75, vc, aud] = c.video.to_array();
    let values = [
        c.impressions,
        c.measurable,
        c.invalid,
        c.verified,
        vs,
        v25,
        v50,
        v75,
        vc,
        aud,
    ];
    std::array::from_fn(|i| (COUNTER_FIELDS[i], values[i]))
}

/// The counters of an `HMGET` of [`COUNTER_FIELDS`]; an absent field is 0
/// (a day written before the field existed has none).
fn counters_of_fields(fields: [Option<u64>; COUNTER_FIELDS.len()]) -> Counters {
    let [impressions, measurable, invalid, verified, vs, v25, v50, v75, vc, aud] =
        fields.map(|f| f.unwrap_or(0));
    Counters {
        impressions,
        measurable,
        invalid,
        verified,
        video: VideoCounters::from_array([vs, v25, v50, v75, vc, aud]),
    }
}

/// Runs `jobs` with at most `concurrency` in flight; the first error wins.
async fn run_all(
    jobs: Vec<BoxFuture<'_, Result<(), StoreError>>>,
    concurrency: usize,
) -> Result<(), StoreError> {
    futures_util::stream::iter(jobs)
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

fn range_key(range: DayRange) -> (u32, u32) {
    (
        range.from().days_since_epoch(),
        range.to().days_since_epoch(),
    )
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn apply(&self, delta: &std::sync::Arc<Delta>, now_ms: i64) -> Result<(), StoreError> {
        let applied = self.apply_delta(delta, now_ms).await;
        if applied.is_err() {
            // Redis may have restarted and lost its ad index (without
            // persistence): index again, once, after the next success.
            self.indexed.lock().clear();
        }
        applied
    }

    async fn read_days(
        &self,
        key: &str,
        range: DayRange,
        grain: Grain,
    ) -> Result<StoredDays, StoreError> {
        self.read_days_cached(key, range, grain).await
    }

    async fn read_post_views(
        &self,
        posts: &[(String, Vec<Day>)],
    ) -> Result<Vec<StoredViews>, StoreError> {
        let reads: Vec<BoxFuture<'_, Result<StoredViews, StoreError>>> = posts
            .iter()
            .map(|(post_id, days)| self.read_views(post_id, days).boxed())
            .collect();
        futures_util::stream::iter(reads)
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn listed_in_range(
        &self,
        range: DayRange,
        prefixes: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        // Each prefix is a range of each day's index.
        self.listed_in_range_cached(range, prefixes).await
    }

    async fn batch_seen(&self, batch_id: &str) -> Result<bool, StoreError> {
        // A local point lookup, inline like the embedded store's: a batch
        // another edge synced is not known here, and is left out at this
        // edge's next sync by its claim (docs/redis.md, "Ingest").
        self.seen.contains(batch_id)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query("PING", &redis::cmd("PING")).await?;
        Ok(())
    }

    async fn verify_identity(&self) -> Result<(), StoreError> {
        if self.boot_recorded.load(Ordering::Acquire) {
            return Ok(());
        }
        // Run once per start: sent whole with EVAL, no script cache needed.
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BOOT_SCRIPT)
            .arg(1)
            .arg(self.keys.edge_boot(&self.edge_id))
            .arg(self.boot)
            .arg(self.boot_nonce);
        let reply: Vec<u64> = self.query("recording this start", &cmd).await?;
        match reply.as_slice() {
            [1] => {
                self.boot_recorded.store(true, Ordering::Release);
                self.warn_if_evicting().await;
                Ok(())
            }
            [0, held] => Err(StoreError::Restored(format!(
                "this edge (id {}) started as boot {} of its data directory, but Redis ({}) \
                 has seen boot {held} of it: the directory was restored from an older copy, \
                 so its sequence numbers would repeat and Redis would skip its new counts as \
                 already applied. Move the directory aside and start on an empty one (a new \
                 edge id); the batches in its wal/ are those of the old copy",
                self.edge_id, self.boot, self.target
            ))),
            other => Err(StoreError::Corrupt(format!(
                "the boot script answered {other:?}"
            ))),
        }
    }
}

impl RedisStore {
    /// Says so in the log, once per start, when Redis may evict keys: an
    /// evicted counter is a lost count, and an evicted boot key would let a
    /// restored data directory through. (Without persistence a restart
    /// loses the ledgers along with the boot keys, so nothing is skipped
    /// then: the counts themselves are what is lost.)
    async fn warn_if_evicting(&self) {
        let info: Result<String, StoreError> = self
            .query(
                "reading Redis's memory policy",
                redis::cmd("INFO").arg("memory"),
            )
            .await;
        match info.as_deref().map(eviction_policy) {
            Ok(Some(policy)) if policy != "noeviction" => tracing::warn!(
                target = %self.target,
                policy,
                "Redis evicts keys under memory pressure (maxmemory-policy {policy}): counts, \
                 claims and boot records can be lost; set maxmemory-policy noeviction"
            ),
            Ok(_) => {}
            // A Redis that hides INFO, or a cluster answering per node.
            Err(e) => tracing::debug!(error = %e, "could not read Redis's memory policy"),
        }
    }

    async fn apply_delta(
        &self,
        delta: &std::sync::Arc<Delta>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // The aggregator numbers deltas with the boot counter in the high
        // bits (`identity::sequence`), the same number after a replay from
        // the write-ahead log: claims and ledger recognise a previous life's
        // work by it.
        self.verify_identity().await?;
        if let Some(age_ms) = plan::too_old_to_send(delta, now_ms) {
            // Its batches are still answered as duplicates if a client
            // sends them again: they may have counted.
            self.seen.record(delta, now_ms).await?;
            return Err(StoreError::TooOld {
                seq: delta.seq,
                age_ms,
            });
        }
        let seq = delta.seq;
        if seq > MAX_SEQUENCE {
            return Err(StoreError::Corrupt(format!(
                "delta {seq} is beyond 2^53, which Lua cannot compare exactly"
            )));
        }
        // Phase 1: claim the delta's batches; phase 2: apply the counters of
        // the owned ones, and every sketch.
        let not_owned = self.claim_batches(delta, seq, now_ms).await?;
        if !not_owned.is_empty() {
            tracing::debug!(
                batches = not_owned.len(),
                "batches counted by another edge or delta were left out"
            );
        }
        let plans = plan::plan(delta, |id| !not_owned.contains(id));
        // Posts and hours are not listed.
        let ad_days: Vec<(String, Day)> = plans
            .iter()
            .filter(|p| is_listed(p.key))
            .map(|p| (p.key.to_owned(), p.day))
            .collect();
        let mut steps: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        for p in plans.into_iter().filter(|p| !p.is_noop()) {
            steps.push(self.apply_key(p, seq, now_ms).boxed());
        }
        let landed = run_all(steps, SYNC_CONCURRENCY).await;
        self.written.prune(now_ms);
        landed?;

        // The day's ad index, once per (ad, day) while syncs succeed.
        let unindexed: Vec<(String, Day)> = {
            let indexed = self.indexed.lock();
            ad_days
                .into_iter()
                .filter(|k| !indexed.contains(k))
                .collect()
        };
        let mut by_day: HashMap<Day, Vec<String>> = HashMap::new();
        for (ad_id, day) in unindexed {
            by_day.entry(day).or_default().push(ad_id);
        }
        let mut index: Vec<BoxFuture<'_, Result<(), StoreError>>> = Vec::new();
        for (day, ad_ids) in by_day {
            index.push(self.index_day(day, ad_ids).boxed());
        }
        run_all(index, SYNC_CONCURRENCY).await?;

        // The delta has landed: from now on this edge answers its batches
        // as duplicates without asking Redis. The sync releases the
        // in-memory hold on them only after this returns, so there is no
        // moment when neither answers. If this write fails the delta is
        // retried, which changes nothing in Redis (claims and ledger).
        self.seen.record(delta, now_ms).await?;

        // Forget (ad, day)s that can no longer receive events.
        let oldest = Day::from_epoch_ms(now_ms - 3 * 86_400_000);
        if let Some(oldest) = oldest {
            self.indexed.lock().retain(|(_, d)| *d >= oldest);
        }
        self.days_cache.invalidate();
        self.ads_cache.invalidate();
        Ok(())
    }

    async fn read_days_cached(
        &self,
        ad_id: &str,
        range: DayRange,
        grain: Grain,
    ) -> Result<StoredDays, StoreError> {
        let (from, to) = range_key(range);
        let cache_key = (ad_id.to_owned(), from, to, grain);
        if let Some(days) = self.days_cache.get(&cache_key) {
            return Ok(days);
        }
        let generation = self.days_cache.generation();
        let read: Vec<(Day, Option<DayCounts>, u64)> = futures_util::stream::iter(range.days())
            .map(|day| async move {
                let (counts, applied) = self.read_day(ad_id, day, grain).await?;
                Ok::<_, StoreError>((day, counts, applied))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut stored = StoredDays::default();
        for (day, counts, applied) in read {
            if let Some(counts) = counts {
                stored.days.insert(day, counts);
            }
            if applied > 0 {
                stored.applied.by_day.insert(day, applied);
            }
        }
        self.days_cache
            .put(cache_key, generation, stored.clone(), |v| {
                v.days.len().max(1)
            });
        Ok(stored)
    }

    async fn listed_in_range_cached(
        &self,
        range: DayRange,
        prefixes: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        let (from, to) = range_key(range);
        let cache_key = (from, to, prefixes);
        if let Some(ads) = self.ads_cache.get(&cache_key) {
            return Ok(ads);
        }
        let generation = self.ads_cache.generation();
        let prefixes = &cache_key.2;
        let per_day: Vec<Vec<String>> = futures_util::stream::iter(range.days())
            .map(|day| self.day_ads(day, prefixes))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut ads: Vec<String> = per_day.into_iter().flatten().collect();
        ads.sort_unstable();
        ads.dedup();
        self.ads_cache
            .put(cache_key, generation, ads.clone(), |v| v.len() / 64 + 1);
        Ok(ads)
    }
}

/// The `maxmemory_policy` of an `INFO memory` answer.
fn eviction_policy(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("maxmemory_policy:"))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eviction_policy_is_read_from_info() {
        let info = "# Memory\r\nused_memory:1024\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(eviction_policy(info), Some("allkeys-lru"));
        assert_eq!(
            eviction_policy("maxmemory_policy:noeviction"),
            Some("noeviction")
        );
        assert_eq!(eviction_policy("# Memory\r\n"), None);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(redact("redis://:secret@host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact("rediss://user:pw@h:1"), "rediss://h:1");
        assert_eq!(redact("redis://h:1/"), "redis://h:1/");
        assert_eq!(redact("h:1"), "h:1");
        assert_eq!(node_url("10.0.0.1:7000"), "redis://10.0.0.1:7000");
        assert_eq!(node_url("rediss://h:1"), "rediss://h:1");
    }

    #[test]
    fn the_read_cache_drops_entries_older_than_a_sync() {
        let cache: ReadCache<u32, Vec<u8>> = ReadCache::new(Duration::from_secs(60));
        let g = cache.generation();
        cache.put(1, g, vec![1], Vec::len);
        assert_eq!(cache.get(&1), Some(vec![1]));
        // A read that started before a sync landed is not kept.
        let before = cache.generation();
        cache.invalidate();
        cache.put(2, before, vec![2], Vec::len);
        assert_eq!((cache.get(&1), cache.get(&2)), (None, None));
        let off: ReadCache<u32, Vec<u8>> = ReadCache::new(Duration::ZERO);
        off.put(1, 0, vec![1], Vec::len);
        assert_eq!(off.get(&1), None);
    }
}
