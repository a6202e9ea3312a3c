//! The batch ids an edge has counted (the embedded store) or synced (the
//! Redis store), kept for [`BATCH_ID_RETENTION_MS`]: what ingest reads to
//! answer a batch seen before as a duplicate, on the edge itself, without
//! asking anyone.
//!
//! Both stores keep them in a file of their own in the data directory
//! ([`SeenIndex`]): fingerprints in 4 KiB hash pages that grow one bucket
//! at a time, one page read per lookup, about 16 bytes of disk per id and
//! no memory that grows with them, each record journaled so a crash leaves
//! it whole (`seen/fingerprints.rs` has the layout, the odds of a false
//! "seen" and the crash rules). The stores differ in when an id goes in:
//!
//! - The embedded store records a delta's ids right after the commit that
//!   stores its counts, and before the write-ahead log lets the delta go.
//!   A crash between the two leaves the delta in the log; its replay finds
//!   the delta applied (the `through` mark) and records its ids then. So
//!   the index holds every id of a delta by the time its sync returns, and
//!   from the commit until then ingest's in-memory claim on the batch turns
//!   a copy away.
//! - The Redis store records a delta's ids once the delta has landed in
//!   Redis; there the index is a hint in front of Redis's own claims.
//!
//! Embedded directories of earlier versions kept the ids in two redb
//! tables ([`EarlierSeen`]): by 128-bit XXH3 fingerprint, which cannot be
//! moved into the index (its hash is seeded per file), so they are read
//! beside it until the last of them expires, then deleted; and, before
//! that, by the whole id, which is recorded into the index when the store
//! opens. Neither layout was sized for billions of ids: about 130 bytes of
//! disk per id and a sync's inserts slowing as the tree grew
//! (docs/BENCHMARKS.md, "The duplicate check at 1.7 billion ids").

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use self::fingerprints::{FingerprintFile, StagedRecord};

use parking_lot::RwLock;
use redb::{
    Database, ReadOnlyTable, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    TableHandle, WriteTransaction,
};
use xxhash_rust::xxh3::xxh3_128;

use super::{StoreError, BATCH_ID_RETENTION_MS};
use crate::counted::needs_claim;
use crate::counts::Delta;

mod fingerprints;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// An edge's index of the batch ids it has counted or synced: a
/// fingerprint file of its own in the data directory.
#[derive(Debug, Clone)]
pub struct SeenIndex {
    file: Arc<FingerprintFile>,
}

impl SeenIndex {
    /// The embedded store's index: the ids it has counted.
    pub const COUNTED_FILE_NAME: &'static str = "counted-batches.index";
    /// The Redis store's index: the ids it has synced.
    pub const SYNCED_FILE_NAME: &'static str = "synced-batches.index";
    /// The redb file earlier versions of the Redis store kept its ids in;
    /// they are only hints (Redis's claims catch a re-sent batch), so it is
    /// deleted rather than read.
    const EARLIER_SYNCED_FILE_NAME: &'static str = "synced-batches.redb";

    /// Opens (or creates) the embedded store's index in `data_dir`.
    pub fn open_counted(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open(data_dir, Self::COUNTED_FILE_NAME)
    }

    /// Opens (or creates) the Redis store's index in `data_dir`.
    pub fn open_synced(data_dir: &Path) -> Result<Self, StoreError> {
        let earlier = data_dir.join(Self::EARLIER_SYNCED_FILE_NAME);
        match std::fs::remove_file(&earlier) {
            Ok(()) => tracing::info!(path = %earlier.display(), "deleted the earlier seen index"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "cannot delete {}: {e}",
                    earlier.display()
                )))
            }
        }
        Self::open(data_dir, Self::SYNCED_FILE_NAME)
    }

    /// The edge holds the directory's lock (`identity.rs`) while it runs,
    /// so no second process writes the file.
    fn open(data_dir: &Path, file_name: &str) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(file_name);
        let file = FingerprintFile::open(&path, BATCH_ID_RETENTION_MS)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        Ok(SeenIndex {
            file: Arc::new(file),
        })
    }

    /// One page read (two when the bucket overflows), inline on the async
    /// worker: cheaper than a hop to the blocking pool on every batch.
    pub fn contains(&self, batch_id: &str) -> Result<bool, StoreError> {
        self.file.contains(batch_id.as_bytes()).map_err(unavailable)
    }

    /// Records every batch of `delta` (counted or not: each is counted
    /// somewhere) but the ones the edge minted, which ingest never looks up
    /// ([`crate::counted`]), and forgets old ids, made durable before it
    /// returns. It blocks: call it from a blocking task.
    pub fn record_blocking(&self, delta: &Delta, now_ms: i64) -> Result<(), StoreError> {
        self.stage_blocking(delta, now_ms)?.write()
    }

    /// Works out [`SeenIndex::record_blocking`]'s record of `delta` without
    /// writing it, and with it which of the delta's ids the index held
    /// before: the same page reads answer both, where a lookup per batch
    /// and then the record would read each page twice. No other record
    /// begins until it is written or dropped. It blocks.
    pub fn stage_blocking<'d>(
        &self,
        delta: &'d Delta,
        now_ms: i64,
    ) -> Result<StagedIds<'_, 'd>, StoreError> {
        let recorded: Vec<_> = delta
            .batches
            .iter()
            .filter(|b| needs_claim(&b.batch_id))
            .collect();
        let record = self
            .file
            .stage_record(
                recorded
                    .iter()
                    .map(|b| (b.batch_id.as_bytes(), b.received_ms)),
                now_ms,
            )
            .map_err(unavailable)?;
        let held = recorded
            .into_iter()
            .zip(record.held())
            .filter_map(|(b, &held)| held.then_some(b.batch_id.as_str()))
            .collect();
        Ok(StagedIds { record, held })
    }

    /// [`SeenIndex::record_blocking`] on the blocking pool.
    pub async fn record(&self, delta: &Arc<Delta>, now_ms: i64) -> Result<(), StoreError> {
        let (index, delta) = (self.clone(), Arc::clone(delta));
        tokio::task::spawn_blocking(move || index.record_blocking(&delta, now_ms))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// How many slots the index has in use.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.file.usage().unwrap().occupied
    }
}

/// A delta's ids staged for the index ([`SeenIndex::stage_blocking`]).
pub struct StagedIds<'i, 'd> {
    record: StagedRecord<'i>,
    /// Ids the index held before this record: few, as retries are.
    held: HashSet<&'d str>,
}

impl StagedIds<'_, '_> {
    /// Whether the index held `batch_id` before this record, as
    /// [`SeenIndex::contains`] answers, with expiry judged at the record's
    /// time.
    pub fn held(&self, batch_id: &str) -> bool {
        self.held.contains(batch_id)
    }

    /// Writes the record, durable before it returns.
    pub fn write(self) -> Result<(), StoreError> {
        self.record.write().map_err(unavailable)
    }
}

const BATCHES: TableDefinition<u128, i64> = TableDefinition::new("batch_fingerprints");
const BATCHES_BY_TIME: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("batch_fingerprints_by_time");
/// The oldest layout's tables, keyed by the whole id.
pub(super) const EARLIER_BATCHES: TableDefinition<&str, i64> = TableDefinition::new("batches");
pub(super) const EARLIER_BATCHES_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("batches_by_time");

/// Whole ids recorded into the index at once while an old directory opens:
/// a record holds the images of the pages it writes until it has written
/// them (two per bucket it touches, 80 MB at most for 10,000 ids).
const MIGRATION_CHUNK: usize = 10_000;

/// The ids an earlier version of the embedded store kept in its database,
/// by fingerprint (`batch_fingerprints`, `fingerprint -> received_ms`, and
/// `batch_fingerprints_by_time`, `(received_ms, fingerprint) -> ()`): read
/// beside the index until the last of them is [`BATCH_ID_RETENTION_MS`]
/// old, then deleted. The table is held open for ingest's lookups and
/// opened again after each commit that changed it ([`EarlierSeen::refresh`]).
#[derive(Debug)]
pub struct EarlierSeen {
    table: RwLock<Option<ReadOnlyTable<u128, i64>>>,
}

impl EarlierSeen {
    /// Inside the transaction that opens the store: records the whole ids of
    /// the oldest layout into `index` and deletes their tables. The index
    /// is written before the transaction commits, so a crash in between
    /// records them again at the next open.
    pub fn migrate(txn: &WriteTransaction, index: &SeenIndex) -> Result<(), StoreError> {
        let held = txn
            .list_tables()
            .map_err(unavailable)?
            .any(|t| t.name() == EARLIER_BATCHES.name());
        if held {
            let table = txn.open_table(EARLIER_BATCHES).map_err(unavailable)?;
            let mut chunk: Vec<(String, i64)> = Vec::with_capacity(MIGRATION_CHUNK);
            let mut ids = 0u64;
            let mut entries = table.iter().map_err(unavailable)?.peekable();
            while entries.peek().is_some() {
                chunk.clear();
                for entry in entries.by_ref().take(MIGRATION_CHUNK) {
                    let (id, received_ms) = entry.map_err(unavailable)?;
                    chunk.push((id.value().to_owned(), received_ms.value()));
                }
                let newest_ms = chunk.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
                index
                    .file
                    .record(chunk.iter().map(|(id, ms)| (id.as_bytes(), *ms)), newest_ms)
                    .map_err(unavailable)?;
                ids += chunk.len() as u64;
            }
            drop(entries);
            drop(table);
            txn.delete_table(EARLIER_BATCHES).map_err(unavailable)?;
            tracing::info!(ids, "moved the seen batch ids into the index file");
        }
        txn.delete_table(EARLIER_BATCHES_BY_TIME)
            .map_err(unavailable)?;
        Ok(())
    }

    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(EarlierSeen {
            table: RwLock::new(read_table(db)?),
        })
    }

    /// Reads the table as committed now (gone once deleted); call after
    /// each commit that ran [`EarlierSeen::forget_old`].
    pub fn refresh(&self, db: &Database) -> Result<(), StoreError> {
        if self.table.read().is_some() {
            *self.table.write() = read_table(db)?;
        }
        Ok(())
    }

    /// Whether the earlier tables hold `batch_id`: one point lookup while
    /// they exist, nothing after.
    pub fn contains(&self, batch_id: &str) -> Result<bool, StoreError> {
        let Some(table) = &*self.table.read() else {
            return Ok(false);
        };
        Ok(table
            .get(xxh3_128(batch_id.as_bytes()))
            .map_err(unavailable)?
            .is_some())
    }

    /// Forgets the ids received more than [`BATCH_ID_RETENTION_MS`] before
    /// `now_ms`, oldest first, and deletes both tables once nothing is left.
    pub fn forget_old(&self, txn: &WriteTransaction, now_ms: i64) -> Result<(), StoreError> {
        if self.table.read().is_none() {
            return Ok(());
        }
        let cutoff_ms = now_ms - BATCH_ID_RETENTION_MS;
        let empty = {
            let mut batches = txn.open_table(BATCHES).map_err(unavailable)?;
            let mut by_time = txn.open_table(BATCHES_BY_TIME).map_err(unavailable)?;
            let old: Vec<(i64, u128)> = by_time
                .range(..(cutoff_ms, 0))
                .map_err(unavailable)?
                .map(|entry| entry.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            for key in old {
                by_time.remove(key).map_err(unavailable)?;
                batches.remove(key.1).map_err(unavailable)?;
            }
            batches.is_empty().map_err(unavailable)?
        };
        if empty {
            txn.delete_table(BATCHES).map_err(unavailable)?;
            txn.delete_table(BATCHES_BY_TIME).map_err(unavailable)?;
            tracing::info!("the earlier seen batch ids have expired; their tables are deleted");
        }
        Ok(())
    }
}

fn read_table(db: &Database) -> Result<Option<ReadOnlyTable<u128, i64>>, StoreError> {
    match db.begin_read().map_err(unavailable)?.open_table(BATCHES) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregator;
    use crate::traffic::Traffic;

    const NOW: i64 = 1_764_000_000_000;

    #[tokio::test]
    async fn the_index_knows_every_synced_batch_across_reopen_for_48_hours() {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::new();
        agg.record("old", NOW, Traffic::Valid, &[]);
        agg.record("bot", NOW, Traffic::Invalid, &[]);
        {
            let index = SeenIndex::open_synced(dir.path()).unwrap();
            assert!(!index.contains("old").unwrap());
            let delta = agg.begin_sync().unwrap();
            index.record(&delta, NOW).await.unwrap();
            // A retried delta records nothing new.
            index.record(&delta, NOW).await.unwrap();
            agg.finish_sync();
            assert!(index.contains("old").unwrap() && index.contains("bot").unwrap());
        }
        let index = SeenIndex::open_synced(dir.path()).unwrap();
        assert!(index.contains("old").unwrap(), "kept across a restart");
        // Ids are kept by the hour they arrived in, for 48 to 49 h: NOW is
        // an hour's start, so they are all kept 48 h later and gone an hour
        // after that.
        const HOUR_MS: i64 = 3_600_000;
        agg.record("new", NOW + BATCH_ID_RETENTION_MS, Traffic::Valid, &[]);
        index
            .record(&agg.begin_sync().unwrap(), NOW + BATCH_ID_RETENTION_MS)
            .await
            .unwrap();
        agg.finish_sync();
        assert!(index.contains("old").unwrap(), "kept for 48 h");
        index
            .record(
                &Arc::new(Delta::default()),
                NOW + BATCH_ID_RETENTION_MS + HOUR_MS,
            )
            .await
            .unwrap();
        assert!(!index.contains("old").unwrap() && !index.contains("bot").unwrap());
        assert!(index.contains("new").unwrap());
    }

    #[test]
    fn earlier_fingerprint_tables_are_read_until_their_ids_expire_then_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut batches = txn.open_table(BATCHES).unwrap();
            let mut by_time = txn.open_table(BATCHES_BY_TIME).unwrap();
            for (id, ms) in [("old", NOW), ("new", NOW + 60_000)] {
                batches.insert(xxh3_128(id.as_bytes()), ms).unwrap();
                by_time.insert((ms, xxh3_128(id.as_bytes())), ()).unwrap();
            }
        }
        txn.commit().unwrap();
        let earlier = EarlierSeen::open(&db).unwrap();
        assert!(earlier.contains("old").unwrap() && earlier.contains("new").unwrap());
        assert!(!earlier.contains("other").unwrap());

        let forget = |now_ms: i64| {
            let txn = db.begin_write().unwrap();
            earlier.forget_old(&txn, now_ms).unwrap();
            txn.commit().unwrap();
            earlier.refresh(&db).unwrap();
        };
        forget(NOW + BATCH_ID_RETENTION_MS + 1);
        assert!(!earlier.contains("old").unwrap() && earlier.contains("new").unwrap());
        forget(NOW + 60_000 + BATCH_ID_RETENTION_MS + 1);
        assert!(!earlier.contains("new").unwrap());
        let txn = db.begin_read().unwrap();
        let names: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        assert!(names.is_empty(), "both tables deleted: {names:?}");
    }

    #[test]
    fn the_earlier_redb_index_is_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = dir.path().join(SeenIndex::EARLIER_SYNCED_FILE_NAME);
        std::fs::write(&earlier, b"an earlier version's redb file").unwrap();
        let index = SeenIndex::open_synced(dir.path()).unwrap();
        assert!(!earlier.exists());
        assert!(dir.path().join(SeenIndex::SYNCED_FILE_NAME).exists());
        assert!(!index.contains("old").unwrap());
    }

    #[tokio::test]
    async fn minted_ids_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::new();
        let minted = crate::counted::mint_batch_id();
        agg.record(&minted, NOW, Traffic::Valid, &[]);
        agg.record("client", NOW, Traffic::Valid, &[]);
        let index = SeenIndex::open_synced(dir.path()).unwrap();
        index.record(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        assert!(index.contains("client").unwrap());
        assert!(!index.contains(&minted).unwrap());
    }
}
