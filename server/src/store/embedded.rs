//! The embedded store: one redb database file in the data directory.
//!
//! Tables (keys are `(ad_id, days since epoch)` unless said otherwise):
//! - `counts_v3`: `(impressions, measurable, invalid, verified)`; it
//!   replaced `counts_v2`, `(impressions, measurable, invalid)`, which had
//!   replaced `counts`, `(impressions, measurable)`: [`EmbeddedStore::open`]
//!   migrates either (redb tables have a fixed value type, hence the new
//!   names);
//! - `visitors`: the day's sketch in Redis's byte format;
//! - `video`: `(starts, q25, q50, q75, completes, audible)`, only for the
//!   (ad, day)s with a video counter above zero (a missing row is zeros, so
//!   directories written before video counters need no migration);
//! - `ads_by_day`: `(day, key) -> ()`, to list the ads, campaigns and
//!   campaigns' shares of ads of a date range (`crate::counts::is_listed`:
//!   posts are not listed);
//! - `hour_sketches_by_day`: `(day, hour row) -> ()`, the hours' sketches
//!   by day, so those past `--hourly-retention-days` are deleted oldest
//!   first in the transactions that apply deltas;
//! - `post_views`: `post_id -> views`, each post's viewable total over all
//!   time, added to in the transaction that adds its days' counts, so
//!   `/v1/views` reads one row per post.
//!
//! A post's days and a campaign's are kept in the same tables as an ad's,
//! under their counts keys (`crate::counts::EventKeys`), which no ad id can
//! equal; each UTC hour of a key's day in a row of its own beside the day's,
//! `h<HH>/<key>` (`hour_row`), written in the same transaction, so a
//! read of a day with its hours is one cut.
//! - `batch_fingerprints` and `batch_fingerprints_by_time`, only in a
//!   directory an earlier version wrote: the client batch ids it counted,
//!   read until they expire, then deleted (`super::seen`); the ids counted
//!   now are in the seen index file beside the database;
//! - `applied`: `"through" -> seq`, the highest delta sequence number
//!   applied, written with the delta's counts.
//!
//! A delta is applied in one write transaction, so a crash or error leaves
//! either all of its counts or none of them; its batch ids go into the seen
//! index (`counted-batches.index`, `SeenIndex`) right after the commit,
//! and a delta found applied already records them again, so a crash in
//! between is mended when the log replays the delta. Deltas reach the store in sequence order
//! (a replayed one before any newer), so one at or below `through` has
//! landed already (a retry after a lost answer, or a delta replayed after a
//! crash between the commit and the log's delete) and changes nothing. A
//! read takes the counts and the `applied` mark in one read transaction:
//! one cut (`crate::stats`).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use glimpse_hll::Sketch;
use glimpse_wire::{Day, DayRange};
use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use super::seen::{EarlierSeen, SeenIndex};
use super::{Applied, Grain, Store, StoreError, StoredDays, StoredViews};
use crate::counted::needs_claim;
use crate::counts::{
    post_of_key, AdDays, Counters, DayCounts, Delta, HourCounts, Hours, VideoCounters,
};

/// How [`COUNTS`] holds an (ad, day)'s counters.
type StoredCounters = (u64, u64, u64, u64);

fn encode(c: Counters) -> StoredCounters {
    (c.impressions, c.measurable, c.invalid, c.verified)
}

/// The counters of a [`COUNTS`] row; the video counters are in [`VIDEO`].
fn decode((impressions, measurable, invalid, verified): StoredCounters) -> Counters {
    Counters {
        impressions,
        measurable,
        invalid,
        verified,
        video: VideoCounters::default(),
    }
}

fn encode_video(v: VideoCounters) -> StoredVideo {
    let [a, b, c, d, e, f] = v.to_array();
    (a, b, c, d, e, f)
}

fn decode_video((a, b, c, d, e, f): StoredVideo) -> VideoCounters {
    VideoCounters::from_array([a, b, c, d, e, f])
}

const COUNTS: TableDefinition<(&str, u32), StoredCounters> = TableDefinition::new("counts_v3");
/// The counts of data directories written before invalid traffic was
/// counted; migrated into [`COUNTS`] at open.
const LEGACY_COUNTS: TableDefinition<(&str, u32), (u64, u64)> = TableDefinition::new("counts");
/// The counts of data directories written before verified impressions were
/// counted; migrated into [`COUNTS`] at open.
const COUNTS_V2: TableDefinition<(&str, u32), (u64, u64, u64)> = TableDefinition::new("counts_v2");
const VISITORS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("visitors");
/// How [`VIDEO`] holds an (ad, day)'s video counters, in
/// [`VideoCounters::to_array`] order.
type StoredVideo = (u64, u64, u64, u64, u64, u64);
const VIDEO: TableDefinition<(&str, u32), StoredVideo> = TableDefinition::new("video");
const POST_VIEWS: TableDefinition<&str, u64> = TableDefinition::new("post_views");
const ADS_BY_DAY: TableDefinition<(u32, &str), ()> = TableDefinition::new("ads_by_day");
const HOUR_SKETCHES_BY_DAY: TableDefinition<(u32, &str), ()> =
    TableDefinition::new("hour_sketches_by_day");
/// A day's sketch is deleted after this many whole days at most, in ms.
const DAY_MS: i64 = 86_400_000;
/// The highest sequence number of the deltas applied, under [`APPLIED_THROUGH`]:
/// stats add only the pending deltas above it.
const APPLIED: TableDefinition<&str, u64> = TableDefinition::new("applied");
const APPLIED_THROUGH: &str = "through";

/// Reads of at most this many days run on the async worker itself.
const INLINE_READ_MAX_DAYS: usize = 7;

/// The database file inside the data directory.
pub(crate) const FILE_NAME: &str = "glimpse.redb";

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// The batch ids counted here, for ingest's lookups and the sync's.
    seen: SeenIndex,
    /// The ids an earlier version kept in the database, until they expire.
    earlier_seen: Arc<EarlierSeen>,
    /// Days an hour's sketch is kept after its day starts
    /// (`--hourly-retention-days`); `None` keeps them.
    hourly_retention_days: Option<u32>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, migrating the tables of
    /// an earlier version. A migrated directory no longer opens with that
    /// earlier version (it would see no counts): there is no way back.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let seen = SeenIndex::open_counted(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Create every table up front so readers never meet a missing one,
        // in the same transaction as the migration: all of it or none.
        let txn = db.begin_write().map_err(unavailable)?;
        migrate_counts(&txn, LEGACY_COUNTS, |(impressions, measurable)| Counters {
            impressions,
            measurable,
            ..Counters::default()
        })?;
        migrate_counts(&txn, COUNTS_V2, |(impressions, measurable, invalid)| {
            Counters {
                impressions,
                measurable,
                invalid,
                ..Counters::default()
            }
        })?;
        {
            txn.open_table(COUNTS).map_err(unavailable)?;
            txn.open_table(VISITORS).map_err(unavailable)?;
            txn.open_table(VIDEO).map_err(unavailable)?;
            txn.open_table(POST_VIEWS).map_err(unavailable)?;
            txn.open_table(ADS_BY_DAY).map_err(unavailable)?;
            txn.open_table(HOUR_SKETCHES_BY_DAY).map_err(unavailable)?;
            txn.open_table(APPLIED).map_err(unavailable)?;
        }
        EarlierSeen::migrate(&txn, &seen)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            seen,
            earlier_seen: Arc::new(EarlierSeen::open(&db)?),
            db: Arc::new(db),
            hourly_retention_days: None,
        })
    }

    /// Deletes each hour's sketch `days` days after its day starts.
    pub fn with_hourly_retention(self, days: u32) -> Self {
        EmbeddedStore {
            hourly_retention_days: Some(days),
            ..self
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// Adds the rows of `old`, a counts table of an earlier version, if it
/// exists, into [`COUNTS`] (the counters it did not have are 0), and drops
/// it.
fn migrate_counts<V: redb::Value + 'static>(
    txn: &redb::WriteTransaction,
    old: TableDefinition<(&str, u32), V>,
    to_counters: impl for<'a> Fn(V::SelfType<'a>) -> Counters,
) -> Result<(), StoreError> {
    let exists = txn
        .list_tables()
        .map_err(unavailable)?
        .any(|t| t.name() == old.name());
    if !exists {
        return Ok(());
    }
    let mut rows = 0usize;
    {
        let legacy = txn.open_table(old).map_err(unavailable)?;
        let mut counts = txn.open_table(COUNTS).map_err(unavailable)?;
        for entry in legacy.iter().map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            let key = key.value();
            let mut stored = counts
                .get(key)
                .map_err(unavailable)?
                .map(|v| decode(v.value()))
                .unwrap_or_default();
            stored += to_counters(value.value());
            counts.insert(key, encode(stored)).map_err(unavailable)?;
            rows += 1;
        }
    }
    txn.delete_table(old).map_err(unavailable)?;
    tracing::info!(
        rows,
        from = old.name(),
        to = COUNTS.name(),
        "migrated the embedded store's counts"
    );
    Ok(())
}

fn apply_delta(
    db: &Database,
    seen: &SeenIndex,
    earlier_seen: &EarlierSeen,
    delta: &Delta,
    now_ms: i64,
    hourly_retention_days: Option<u32>,
) -> Result<(), StoreError> {
    // Staged first, written after the commit: the record's page reads tell
    // which ids the index held, so each page is read once per sync.
    let staged = seen.stage_blocking(delta, now_ms)?;
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut applied = txn.open_table(APPLIED).map_err(unavailable)?;
        let last = applied
            .get(APPLIED_THROUGH)
            .map_err(unavailable)?
            .map(|v| v.value());
        if last.is_some_and(|last| last >= delta.seq) {
            tracing::debug!(seq = delta.seq, "delta had landed before; left as it was");
            // Its ids may have missed the index (a crash or an error after
            // the commit below): recorded again, which adds what is missing.
            return staged.write();
        }
        applied
            .insert(APPLIED_THROUGH, delta.seq)
            .map_err(unavailable)?;
        // A client batch counted before (a retry that reached this edge
        // after its first copy was synced) is in the index: its counters are
        // left out. A minted id is unique and keeps no state; only a
        // directory that an earlier version wrote (no `through` mark yet)
        // may hold one, from a delta that landed before the crash that
        // replays it.
        let updates = delta.updates(|record| {
            let held = staged.held(&record.batch_id) || earlier_seen.contains(&record.batch_id)?;
            Ok(if needs_claim(&record.batch_id) {
                !held
            } else {
                last.is_some() || !held
            })
        })?;
        let mut rows = Rows {
            counts: txn.open_table(COUNTS).map_err(unavailable)?,
            visitors: txn.open_table(VISITORS).map_err(unavailable)?,
            video: txn.open_table(VIDEO).map_err(unavailable)?,
        };
        let mut ads_by_day = txn.open_table(ADS_BY_DAY).map_err(unavailable)?;
        let mut hour_sketches = txn.open_table(HOUR_SKETCHES_BY_DAY).map_err(unavailable)?;
        let mut post_views = txn.open_table(POST_VIEWS).map_err(unavailable)?;
        for update in updates {
            let (ad_id, day) = (update.key, update.day);
            rows.add(ad_id, day, update.counters, &update.visitors)?;
            for hour in &update.hours {
                if hour.counters.is_zero() && hour.visitors.is_empty() {
                    continue;
                }
                let row = hour_row(ad_id, hour.hour);
                rows.add(&row, day, hour.counters, &hour.visitors)?;
                if !hour.visitors.is_empty() {
                    hour_sketches
                        .insert((day.days_since_epoch(), row.as_str()), ())
                        .map_err(unavailable)?;
                }
            }
            match post_of_key(ad_id) {
                Some(post_id) if update.counters.impressions > 0 => {
                    let views = post_views
                        .get(post_id)
                        .map_err(unavailable)?
                        .map_or(0, |v| v.value());
                    post_views
                        .insert(post_id, views + update.counters.impressions)
                        .map_err(unavailable)?;
                }
                Some(_) => {}
                // Every other key is listed (`crate::counts::is_listed`).
                None => {
                    ads_by_day
                        .insert((day.days_since_epoch(), ad_id), ())
                        .map_err(unavailable)?;
                }
            }
        }
        if let Some(days) = hourly_retention_days {
            forget_hour_sketches(&mut hour_sketches, &mut rows.visitors, now_ms, days)?;
        }
        earlier_seen.forget_old(&txn, now_ms)?;
    }
    txn.commit().map_err(unavailable)?;
    // After the commit, so the index never holds an id whose counts are not
    // stored; until it returns, the batches' claims in memory turn their
    // copies away.
    staged.write()?;
    earlier_seen.refresh(db)
}

/// The row of hour `hour` (0..=23) of a key's days: `h<HH>/<key>`, beside
/// the day's row in the same tables. No counts key starts so (ad ids hold
/// no `/`, the others start with `post/` or `campaign/`).
fn hour_row(key: &str, hour: u8) -> String {
    format!("h{hour:02}/{key}")
}

/// The tables one (key, day) row or hour row is kept in.
struct Rows<C, V, X> {
    counts: C,
    visitors: V,
    video: X,
}

impl<C, V, X> Rows<C, V, X>
where
    C: ReadableTable<(&'static str, u32), StoredCounters>,
    V: ReadableTable<(&'static str, u32), &'static [u8]>,
    X: ReadableTable<(&'static str, u32), StoredVideo>,
{
    /// The counters and sketch of row `row` on `day`, if it has any.
    fn get(&self, row: &str, day: Day) -> Result<Option<(Counters, Sketch)>, StoreError> {
        let Some(mut counters) = self.counters(row, day)? else {
            return Ok(None);
        };
        counters.video = self.video(row, day)?;
        Ok(Some((counters, self.sketch(row, day)?)))
    }

    /// The row's counters of [`COUNTS`] (its video counters are in
    /// [`VIDEO`]).
    fn counters(&self, row: &str, day: Day) -> Result<Option<Counters>, StoreError> {
        let key = (row, day.days_since_epoch());
        Ok(self
            .counts
            .get(key)
            .map_err(unavailable)?
            .map(|v| decode(v.value())))
    }

    /// The row's video counters; zeros when it has none.
    fn video(&self, row: &str, day: Day) -> Result<VideoCounters, StoreError> {
        let key = (row, day.days_since_epoch());
        Ok(self
            .video
            .get(key)
            .map_err(unavailable)?
            .map(|v| decode_video(v.value()))
            .unwrap_or_default())
    }

    /// The row's sketch; empty when it has none.
    fn sketch(&self, row: &str, day: Day) -> Result<Sketch, StoreError> {
        let key = (row, day.days_since_epoch());
        match self.visitors.get(key).map_err(unavailable)? {
            Some(bytes) => Sketch::from_redis_bytes(bytes.value())
                .map_err(|e| StoreError::Corrupt(format!("sketch of {row} {day}: {e}"))),
            None => Ok(Sketch::new()),
        }
    }
}

impl
    Rows<
        redb::Table<'_, (&'static str, u32), StoredCounters>,
        redb::Table<'_, (&'static str, u32), &'static [u8]>,
        redb::Table<'_, (&'static str, u32), StoredVideo>,
    >
{
    /// Adds `counters` and `visitors` to row `row` on `day`.
    fn add(
        &mut self,
        row: &str,
        day: Day,
        counters: Counters,
        visitors: &Sketch,
    ) -> Result<(), StoreError> {
        let key = (row, day.days_since_epoch());
        let mut stored = self.counters(row, day)?.unwrap_or_default();
        stored += counters;
        self.counts
            .insert(key, encode(stored))
            .map_err(unavailable)?;
        if !visitors.is_empty() {
            let mut sketch = self.sketch(row, day)?;
            sketch.merge(visitors);
            self.visitors
                .insert(key, sketch.to_redis_bytes().as_slice())
                .map_err(unavailable)?;
        }
        if counters.video != VideoCounters::default() {
            let mut stored = self.video(row, day)?;
            stored += counters.video;
            self.video
                .insert(key, encode_video(stored))
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// Deletes the hours' sketches of the days that started `days` days or
/// more before `now_ms`, oldest first. Their counters stay.
fn forget_hour_sketches(
    by_day: &mut redb::Table<(u32, &str), ()>,
    visitors: &mut redb::Table<(&str, u32), &[u8]>,
    now_ms: i64,
    days: u32,
) -> Result<(), StoreError> {
    // A day d is past retention once d.start + days * DAY_MS <= now.
    let Ok(first_kept) = u32::try_from(now_ms.div_euclid(DAY_MS) - i64::from(days) + 1) else {
        return Ok(());
    };
    let old: Vec<(u32, String)> = by_day
        .range((0, "")..(first_kept, ""))
        .map_err(unavailable)?
        .map(|entry| {
            let (key, _) = entry.map_err(unavailable)?;
            let (day, hour_key) = key.value();
            Ok((day, hour_key.to_owned()))
        })
        .collect::<Result<_, StoreError>>()?;
    for (day, hour_key) in old {
        visitors
            .remove((hour_key.as_str(), day))
            .map_err(unavailable)?;
        by_day
            .remove((day, hour_key.as_str()))
            .map_err(unavailable)?;
    }
    Ok(())
}

fn applied_through(table: &impl ReadableTable<&'static str, u64>) -> Result<u64, StoreError> {
    Ok(table
        .get(APPLIED_THROUGH)
        .map_err(unavailable)?
        .map_or(0, |v| v.value()))
}

fn read_days(
    db: &Database,
    key: &str,
    range: DayRange,
    grain: Grain,
) -> Result<StoredDays, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let rows = Rows {
        counts: txn.open_table(COUNTS).map_err(unavailable)?,
        visitors: txn.open_table(VISITORS).map_err(unavailable)?,
        video: txn.open_table(VIDEO).map_err(unavailable)?,
    };
    let applied = Applied {
        everywhere: applied_through(&txn.open_table(APPLIED).map_err(unavailable)?)?,
        ..Applied::default()
    };
    let mut days = AdDays::new();
    for day in range.days() {
        // A day has a row whenever one of its hours has.
        let Some((counters, visitors)) = rows.get(key, day)? else {
            continue;
        };
        let hours = match grain {
            Grain::Days => Hours::default(),
            Grain::Hours => (0..24u8)
                .filter_map(|hour| match rows.get(&hour_row(key, hour), day) {
                    Ok(row) => row
                        .map(|(counters, visitors)| Ok((hour, HourCounts { counters, visitors }))),
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, StoreError>>()?
                .into_iter()
                .collect(),
        };
        days.insert(
            day,
            DayCounts {
                counters,
                visitors,
                hours,
            },
        );
    }
    Ok(StoredDays { days, applied })
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn apply(&self, delta: &Arc<Delta>, now_ms: i64) -> Result<(), StoreError> {
        // The blocking task needs its own handle on the delta.
        let delta = Arc::clone(delta);
        let hourly_retention_days = self.hourly_retention_days;
        let seen = self.seen.clone();
        let earlier_seen = Arc::clone(&self.earlier_seen);
        self.blocking(move |db| {
            apply_delta(
                db,
                &seen,
                &earlier_seen,
                &delta,
                now_ms,
                hourly_retention_days,
            )
        })
        .await
    }

    async fn read_days(
        &self,
        key: &str,
        range: DayRange,
        grain: Grain,
    ) -> Result<StoredDays, StoreError> {
        // A week of days is a few cached page reads and sketch decodes (tens
        // of microseconds): cheaper inline than a hop to the blocking pool,
        // which longer ranges and hours still take.
        if range.len() <= INLINE_READ_MAX_DAYS && grain == Grain::Days {
            return read_days(&self.db, key, range, grain);
        }
        let key = key.to_owned();
        self.blocking(move |db| read_days(db, &key, range, grain))
            .await
    }

    async fn read_post_views(
        &self,
        posts: &[(String, Vec<Day>)],
    ) -> Result<Vec<StoredViews>, StoreError> {
        let ids: Vec<String> = posts.iter().map(|(id, _)| id.clone()).collect();
        self.blocking(move |db| {
            // One read transaction: every total and the mark are one cut.
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(POST_VIEWS).map_err(unavailable)?;
            let applied = Applied {
                everywhere: applied_through(&txn.open_table(APPLIED).map_err(unavailable)?)?,
                ..Applied::default()
            };
            ids.iter()
                .map(|id| {
                    let views = table
                        .get(id.as_str())
                        .map_err(unavailable)?
                        .map_or(0, |v| v.value());
                    Ok(StoredViews {
                        views,
                        applied: applied.clone(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn listed_in_range(
        &self,
        range: DayRange,
        prefixes: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        // Each prefix is a range of each day's keys.
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ADS_BY_DAY).map_err(unavailable)?;
            let mut ads = Vec::new();
            for day in range.from().days_since_epoch()..=range.to().days_since_epoch() {
                for prefix in &prefixes {
                    let keys = table
                        .range((day, prefix.as_str())..(day + 1, ""))
                        .map_err(unavailable)?;
                    for entry in keys {
                        let (key, _) = entry.map_err(unavailable)?;
                        let ad_id = key.value().1;
                        if !ad_id.starts_with(prefix.as_str()) {
                            break;
                        }
                        ads.push(ad_id.to_owned());
                    }
                }
            }
            ads.sort_unstable();
            ads.dedup();
            Ok(ads)
        })
        .await
    }

    async fn batch_seen(&self, batch_id: &str) -> Result<bool, StoreError> {
        Ok(self.seen.contains(batch_id)? || self.earlier_seen.contains(batch_id)?)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(unavailable))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use crate::keys::Scope;
    use glimpse_wire::ingest::Event;
    use glimpse_wire::{Kind, Subject};

    use super::*;
    use crate::aggregate::Aggregator;
    use crate::store::BATCH_ID_RETENTION_MS;
    use crate::traffic::Traffic;

    const NOW: i64 = 1_764_000_000_000;
    const HOUR_MS: i64 = 3_600_000;

    fn event<'a>(id: &'a str, ad: &'a str, user: &'a str, kind: Kind) -> Event<'a> {
        Event {
            id: Cow::Borrowed(id),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind,
            ts: NOW,
            day: Day::from_epoch_ms(NOW).unwrap(),
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
        }
    }

    /// A valid batch `batch_id` at `NOW`: one viewable impression of ad-1.
    fn record_one_view(agg: &Aggregator, batch_id: &str) {
        agg.record(
            batch_id,
            NOW,
            Traffic::Valid,
            &[event("1", "ad-1", "u1", Kind::Viewable)],
        );
    }

    fn day_of(ms: i64) -> Day {
        Day::from_epoch_ms(ms).unwrap()
    }

    /// The stored days of `key` in `range`, in order.
    async fn stored_days(store: &EmbeddedStore, key: &str, range: DayRange) -> Vec<DayCounts> {
        let stored = store.read_days(key, range, Grain::Days).await.unwrap();
        stored.days.into_values().collect()
    }

    /// The stored counters of `key` on `NOW`'s day (zero when it has none).
    async fn counters_now(store: &EmbeddedStore, key: &str) -> Counters {
        let stored = store.read_days(key, today(), Grain::Days).await.unwrap();
        stored
            .days
            .get(&day_of(NOW))
            .map(|day| day.counters)
            .unwrap_or_default()
    }

    fn today() -> DayRange {
        DayRange::single(Day::from_epoch_ms(NOW).unwrap())
    }

    #[tokio::test]
    async fn post_totals_and_video_counters_are_kept_at_apply() {
        let dir = tempfile::tempdir().unwrap();
        let post = |id, post, user, kind| Event {
            subject: Subject::Post,
            ..event(id, post, user, kind)
        };
        let agg = Aggregator::new();
        agg.record(
            "b1",
            NOW,
            Traffic::Valid,
            &[
                post("1", "p1", "u1", Kind::Viewable),
                post("2", "p1", "u2", Kind::Viewable),
                post("3", "p1", "u2", Kind::Measurable),
                event("4", "p1", "u3", Kind::Viewable),
                event("5", "vid", "u3", Kind::VideoStart),
                Event {
                    audible: true,
                    campaign_id: None,
                    ..event("6", "vid", "u3", Kind::Viewable)
                },
            ],
        );
        let asks = |days: Vec<Day>| vec![("p1".to_owned(), days), ("p2".to_owned(), Vec::new())];
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
            agg.finish_sync();
            agg.record(
                "b2",
                NOW,
                Traffic::Valid,
                &[post("1", "p1", "u9", Kind::Viewable)],
            );
            let delta = agg.begin_sync().unwrap();
            store.apply(&delta, NOW).await.unwrap();
            // Applied again (a retry after a lost answer): nothing twice.
            store.apply(&delta, NOW).await.unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let views = store
            .read_post_views(&asks(vec![day_of(NOW)]))
            .await
            .unwrap();
        assert_eq!(views.iter().map(|v| v.views).collect::<Vec<_>>(), [3, 0]);
        assert!(views[0].applied.holds(day_of(NOW), 2));
        // The post's days are its own; the ad of the same id is apart, and
        // only the ad is listed.
        let post_days = stored_days(&store, "post/p1", today()).await;
        assert_eq!(
            (
                post_days[0].counters.impressions,
                post_days[0].counters.measurable
            ),
            (3, 1)
        );
        let ad_days = stored_days(&store, "p1", today()).await;
        assert_eq!(ad_days[0].counters.impressions, 1);
        let ads = store
            .listed_in_range(today(), Scope::All.prefixes())
            .await
            .unwrap();
        assert_eq!(ads, ["p1", "vid"]);
        let vid = stored_days(&store, "vid", today()).await;
        assert_eq!(
            vid[0].counters.video,
            VideoCounters::from_array([1, 0, 0, 0, 0, 1])
        );
        assert_eq!(ad_days[0].counters.video, VideoCounters::default());
    }

    #[tokio::test]
    async fn applies_deltas_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::new();
        agg.record(
            "b1",
            NOW,
            Traffic::Valid,
            &[
                event("1", "ad-1", "u1", Kind::Viewable),
                event("2", "ad-1", "u2", Kind::Viewable),
                event("3", "ad-1", "u2", Kind::Measurable),
                event("4", "ad-2", "u2", Kind::Measurable),
            ],
        );
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
            assert!(store.batch_seen("b1").await.unwrap());
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let days = stored_days(&store, "ad-1", today()).await;
        assert_eq!(days.len(), 1);
        assert_eq!(
            (days[0].counters.impressions, days[0].counters.measurable),
            (2, 1)
        );
        let mut expected = Sketch::new();
        expected.insert(b"u1");
        expected.insert(b"u2");
        assert_eq!(days[0].visitors, expected);
        assert_eq!(
            store
                .listed_in_range(today(), Scope::All.prefixes())
                .await
                .unwrap(),
            vec!["ad-1", "ad-2"]
        );
        assert!(stored_days(&store, "ad-3", today()).await.is_empty());
        assert!(!store.batch_seen("b2").await.unwrap());
    }

    #[tokio::test]
    async fn a_batch_seen_before_adds_no_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        record_one_view(&agg, "b1");
        let first = agg.begin_sync().unwrap();
        store.apply(&first, NOW).await.unwrap();
        // Applying the same delta again (a retry after a lost answer).
        store.apply(&first, NOW).await.unwrap();
        agg.finish_sync();
        // The same batch recorded again with a new one beside it.
        record_one_view(&agg, "b1");
        agg.record(
            "b2",
            NOW,
            Traffic::Valid,
            &[event("1", "ad-1", "u3", Kind::Viewable)],
        );
        let second = agg.begin_sync().unwrap();
        store.apply(&second, NOW).await.unwrap();
        let stored = store.read_days("ad-1", today(), Grain::Days).await.unwrap();
        assert_eq!(
            stored.applied.everywhere, second.seq,
            "the mark of the deltas applied, read with the counts"
        );
        let today_counts = &stored.days[&day_of(NOW)];
        assert_eq!(today_counts.counters.impressions, 2);
        assert_eq!(today_counts.visitors.estimate(), 2);
        // A delta replayed from an older number leaves the mark where it is.
        store.apply(&first, NOW).await.unwrap();
        let stored = store.read_days("ad-1", today(), Grain::Days).await.unwrap();
        assert_eq!(stored.applied.everywhere, second.seq);
    }

    #[tokio::test]
    async fn invalid_traffic_is_kept_apart_and_a_duplicate_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        let bot_batch = [
            event("1", "ad-1", "u1", Kind::Viewable),
            event("2", "ad-1", "u1", Kind::Measurable),
        ];
        agg.record("bot", NOW, Traffic::Invalid, &bot_batch);
        agg.record(
            "human",
            NOW,
            Traffic::Valid,
            &[event("1", "ad-1", "u2", Kind::Viewable)],
        );
        let first = agg.begin_sync().unwrap();
        store.apply(&first, NOW).await.unwrap();
        store.apply(&first, NOW).await.unwrap();
        agg.finish_sync();
        // The bot's batch again, in a later delta: already counted.
        agg.record("bot", NOW, Traffic::Invalid, &bot_batch);
        store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        let days = stored_days(&store, "ad-1", today()).await;
        assert_eq!(
            (
                days[0].counters.impressions,
                days[0].counters.measurable,
                days[0].counters.invalid
            ),
            (1, 0, 2)
        );
        assert_eq!(days[0].visitors.estimate(), 1, "bots are no visitors");
    }

    #[tokio::test]
    async fn a_data_dir_of_the_previous_version_opens_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let day = Day::from_epoch_ms(NOW).unwrap().days_since_epoch();
        {
            // The previous version's schema: counts without `invalid`.
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut counts = txn.open_table(LEGACY_COUNTS).unwrap();
                counts.insert(("ad-1", day), (3, 4)).unwrap();
                counts.insert(("ad-2", day - 1), (0, 9)).unwrap();
                txn.open_table(ADS_BY_DAY)
                    .unwrap()
                    .insert((day, "ad-1"), ())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let days = stored_days(&store, "ad-1", today()).await;
            assert_eq!(
                (
                    days[0].counters.impressions,
                    days[0].counters.measurable,
                    days[0].counters.invalid
                ),
                (3, 4, 0)
            );
            let yesterday = Day::from_days_since_epoch(day - 1);
            let days = stored_days(&store, "ad-2", DayRange::single(yesterday)).await;
            assert_eq!(
                (days[0].counters.measurable, days[0].counters.invalid),
                (9, 0)
            );
            let txn = store.db.begin_read().unwrap();
            assert!(
                !txn.list_tables()
                    .unwrap()
                    .any(|t| t.name() == LEGACY_COUNTS.name()),
                "the old table is gone once migrated"
            );
        }
        // New counts add to the migrated ones.
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        agg.record(
            "b1",
            NOW,
            Traffic::Invalid,
            &[event("1", "ad-1", "u1", Kind::Viewable)],
        );
        store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        let days = stored_days(&store, "ad-1", today()).await;
        assert_eq!(
            (
                days[0].counters.impressions,
                days[0].counters.measurable,
                days[0].counters.invalid
            ),
            (3, 4, 1)
        );
    }

    #[tokio::test]
    async fn batch_ids_are_forgotten_after_retention() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        record_one_view(&agg, "old");
        store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        agg.finish_sync();
        agg.record("new", NOW + BATCH_ID_RETENTION_MS, Traffic::Valid, &[]);
        // Ids are kept by the hour they came in (NOW starts one), 48 to 49 h.
        let later = NOW + BATCH_ID_RETENTION_MS + HOUR_MS;
        store
            .apply(&agg.begin_sync().unwrap(), later)
            .await
            .unwrap();
        assert!(!store.batch_seen("old").await.unwrap());
        assert!(store.batch_seen("new").await.unwrap());
        // Counts stay; only the de-duplication memory is bounded.
        assert_eq!(counters_now(&store, "ad-1").await.impressions, 1);
    }

    #[tokio::test]
    async fn a_data_dir_from_before_verified_opens_with_its_counts() {
        let dir = tempfile::tempdir().unwrap();
        let day = day_of(NOW).days_since_epoch();
        {
            // The schema before verified impressions: `counts_v2`.
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(COUNTS_V2)
                .unwrap()
                .insert(("ad-1", day), (3, 4, 5))
                .unwrap();
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let want = Counters {
            impressions: 3,
            measurable: 4,
            invalid: 5,
            verified: 0,
            video: VideoCounters::default(),
        };
        assert_eq!(counters_now(&store, "ad-1").await, want);
        assert!(
            !store
                .db
                .begin_read()
                .unwrap()
                .list_tables()
                .unwrap()
                .any(|t| t.name() == COUNTS_V2.name()),
            "the old table is gone once migrated"
        );
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(counters_now(&store, "ad-1").await, want, "migrated once");
    }

    #[tokio::test]
    async fn a_data_dir_with_whole_batch_ids_keeps_them_seen() {
        let dir = tempfile::tempdir().unwrap();
        let later = NOW + BATCH_ID_RETENTION_MS;
        {
            // Earlier versions' seen index: the whole ids, by time too.
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut batches = txn.open_table(crate::store::seen::EARLIER_BATCHES).unwrap();
                let mut by_time = txn
                    .open_table(crate::store::seen::EARLIER_BATCHES_BY_TIME)
                    .unwrap();
                for (id, ms) in [("old", NOW), ("new", later)] {
                    batches.insert(id, ms).unwrap();
                    by_time.insert((ms, id), ()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(store.batch_seen("old").await.unwrap());
        assert!(store.batch_seen("new").await.unwrap());
        assert!(!store.batch_seen("other").await.unwrap());
        assert_eq!(store.seen.len(), 2);
        {
            let txn = store.db.begin_read().unwrap();
            let earlier = [
                crate::store::seen::EARLIER_BATCHES.name(),
                crate::store::seen::EARLIER_BATCHES_BY_TIME.name(),
            ];
            assert!(
                !txn.list_tables()
                    .unwrap()
                    .any(|t| earlier.contains(&t.name())),
                "the old tables are gone once moved"
            );
        }
        // A moved id still counts once, and keeps its time: the delta that
        // carries "old" again 48 h on adds nothing; an hour later (49 h
        // after the hour it came in) it is forgotten.
        let agg = Aggregator::new();
        record_one_view(&agg, "old");
        store
            .apply(&agg.begin_sync().unwrap(), later)
            .await
            .unwrap();
        assert_eq!(counters_now(&store, "ad-1").await.impressions, 0);
        agg.finish_sync();
        agg.record("next", later + HOUR_MS, Traffic::Valid, &[]);
        store
            .apply(&agg.begin_sync().unwrap(), later + HOUR_MS)
            .await
            .unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(!store.batch_seen("old").await.unwrap());
        assert!(store.batch_seen("new").await.unwrap());
    }

    #[tokio::test]
    async fn a_delta_whose_ids_missed_the_index_records_them_when_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::new();
        record_one_view(&agg, "b1");
        let delta = agg.begin_sync().unwrap();
        EmbeddedStore::open(dir.path())
            .unwrap()
            .apply(&delta, NOW)
            .await
            .unwrap();
        // As a crash after the commit and before the index write leaves it
        // (here the whole index is lost, which is more).
        for name in [
            SeenIndex::COUNTED_FILE_NAME,
            "counted-batches.index.journal",
        ] {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        assert!(!store.batch_seen("b1").await.unwrap());
        // The log replays the delta: counted once, and its id is seen.
        store.apply(&delta, NOW).await.unwrap();
        assert!(store.batch_seen("b1").await.unwrap());
        assert_eq!(counters_now(&store, "ad-1").await.impressions, 1);
    }

    #[tokio::test]
    async fn minted_ids_keep_no_state_and_a_landed_delta_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        for i in 0..50 {
            agg.record(
                &crate::counted::mint_batch_id(),
                NOW,
                Traffic::Valid,
                &[event("1", "ad-1", &format!("u{i}"), Kind::Viewable)],
            );
        }
        agg.record(
            "client",
            NOW,
            Traffic::Valid,
            &[event("1", "ad-1", "c", Kind::Viewable)],
        );
        let first = agg.begin_sync().unwrap();
        store.apply(&first, NOW).await.unwrap();
        assert_eq!(store.seen.len(), 1, "only the client's batch id");
        // The same delta again (a lost answer, or replayed from the log
        // after it had landed): its minted batches count once all the same.
        store.apply(&first, NOW).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.apply(&first, NOW).await.unwrap();
        let c = counters_now(&store, "ad-1").await;
        assert_eq!(c.impressions, 51);
        agg.finish_sync();
        agg.record(
            &crate::counted::mint_batch_id(),
            NOW,
            Traffic::Valid,
            &[event("1", "ad-1", "v", Kind::Viewable)],
        );
        store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        let c = counters_now(&store, "ad-1").await;
        assert_eq!((c.impressions, store.seen.len()), (52, 1));
    }

    #[tokio::test]
    async fn verified_impressions_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let agg = Aggregator::new();
        let verified = Event {
            verified: true,
            ..event("1", "ad-1", "u1", Kind::Viewable)
        };
        let batch = [verified, event("2", "ad-1", "u2", Kind::Viewable)];
        agg.record("b1", NOW, Traffic::Valid, &batch);
        let first = agg.begin_sync().unwrap();
        store.apply(&first, NOW).await.unwrap();
        // A retry of the same delta, then the batch again in a later one.
        store.apply(&first, NOW).await.unwrap();
        agg.finish_sync();
        agg.record("b1", NOW, Traffic::Valid, &batch);
        store.apply(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        let c = counters_now(&store, "ad-1").await;
        assert_eq!((c.impressions, c.verified), (2, 1));
    }
}
