//! The batch ids an edge has handed to its store, kept for
//! [`BATCH_ID_RETENTION_MS`]: what ingest reads to answer a batch seen
//! before as a duplicate, on the edge itself, without asking anyone.
//!
//! The embedded store keeps them in its own redb database, in the
//! transaction that counts the batches ([`SeenBatches`]), so an id is seen
//! exactly when its counts are stored: two tables, `batch_fingerprints`,
//! `fingerprint -> received_ms`, and `batch_fingerprints_by_time`,
//! `(received_ms, fingerprint) -> ()`, so old ids are forgotten oldest first
//! without a scan. An id is kept as its 128-bit XXH3 fingerprint, not as
//! its text: every key of a table is then 16 bytes, so a leaf insert moves
//! fixed-width keys instead of rewriting the offsets of variable-length
//! ones, and a lookup compares two integers. A fresh id is taken for one
//! seen before only when its fingerprint equals one of the ids held: with
//! `n` ids held that is `n / 2^128` per lookup, `1.7e9 / 3.4e38 = 5e-30` at
//! 1.7 billion ids, and for any two of a full 48 h window's ids to meet at
//! all, at most `n^2 / 2^129 = 4.2e-21` (the birthday bound). XXH3 is not a keyed hash, so a client can craft two ids
//! of its own that collide; that only makes its own second batch a
//! duplicate, and it cannot aim at another client's id without knowing it.
//! Earlier versions kept whole ids in `batches` and `batches_by_time`:
//! opening their directory moves those ids (with their times) into the
//! fingerprint tables and deletes the old ones, in the transaction that
//! creates the tables, so it happens once and whole. Neither layout is
//! sized for billions of ids.
//!
//! The Redis store keeps them in a file of their own in the data directory
//! ([`SeenIndex`]), written once a delta has landed in Redis: fingerprints
//! in 4 KiB hash pages that grow one bucket at a time, one page read per
//! lookup, about 16 bytes of disk per id and no memory that grows with
//! them (`seen/fingerprints.rs` has the layout, the odds of a false "seen"
//! and why a crash only loses hints).

use std::path::Path;
use std::sync::Arc;

use self::fingerprints::FingerprintFile;

use parking_lot::RwLock;
use redb::{
    Database, ReadOnlyTable, ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction,
};
use xxhash_rust::xxh3::xxh3_128;

use super::{StoreError, BATCH_ID_RETENTION_MS};
use crate::counted::needs_claim;
use crate::counts::Delta;

mod fingerprints;

const BATCHES: TableDefinition<u128, i64> = TableDefinition::new("batch_fingerprints");
const BATCHES_BY_TIME: TableDefinition<(i64, u128), ()> =
    TableDefinition::new("batch_fingerprints_by_time");
/// Earlier versions' tables, keyed by the whole id.
pub(super) const EARLIER_BATCHES: TableDefinition<&str, i64> = TableDefinition::new("batches");
pub(super) const EARLIER_BATCHES_BY_TIME: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("batches_by_time");

/// The key an id is kept under.
fn fingerprint(batch_id: &str) -> u128 {
    xxh3_128(batch_id.as_bytes())
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Creates both tables if missing, so readers never meet a missing one,
/// and moves the ids of an earlier version's tables into them.
pub fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut seen = SeenBatches::open(txn)?;
    let earlier = txn
        .list_tables()
        .map_err(unavailable)?
        .any(|t| t.name() == EARLIER_BATCHES.name());
    if earlier {
        let mut ids = 0u64;
        {
            let table = txn.open_table(EARLIER_BATCHES).map_err(unavailable)?;
            for entry in table.iter().map_err(unavailable)? {
                let (id, received_ms) = entry.map_err(unavailable)?;
                seen.insert(id.value(), received_ms.value())?;
                ids += 1;
            }
        }
        txn.delete_table(EARLIER_BATCHES).map_err(unavailable)?;
        tracing::info!(ids, "moved the seen batch ids into fingerprint tables");
    }
    // It holds the same ids as `batches`, by time.
    txn.delete_table(EARLIER_BATCHES_BY_TIME)
        .map_err(unavailable)?;
    Ok(())
}

/// The ids table as the last commit that wrote it left it, held open for
/// ingest's lookups. Opening a read transaction and the table on every
/// batch cost more than the lookup itself (redb's reader registry behind a
/// mutex, then a search of the table tree for the table's name); the
/// store's one writer of the table opens it again after each commit
/// ([`SeenReader::refresh`]). An id committed is seen from then on: a
/// batch whose id a sync stores stays claimed until that sync has
/// returned, so no lookup can meet the table from before the sync and
/// miss it. The transaction held keeps the pages of at most one sync's
/// older versions from being reused.
#[derive(Debug)]
pub struct SeenReader {
    table: RwLock<ReadOnlyTable<u128, i64>>,
}

impl SeenReader {
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        Ok(SeenReader {
            table: RwLock::new(read_table(db)?),
        })
    }

    /// Reads the table as committed now; call after each commit that wrote it.
    pub fn refresh(&self, db: &Database) -> Result<(), StoreError> {
        let table = read_table(db)?;
        *self.table.write() = table;
        Ok(())
    }

    /// Whether `batch_id` was recorded (and not yet forgotten). One point
    /// lookup in pages redb keeps cached: a few microseconds, cheaper
    /// inline on the async worker than a hop to the blocking pool on every
    /// batch.
    pub fn contains(&self, batch_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .table
            .read()
            .get(fingerprint(batch_id))
            .map_err(unavailable)?
            .is_some())
    }
}

fn read_table(db: &Database) -> Result<ReadOnlyTable<u128, i64>, StoreError> {
    db.begin_read()
        .map_err(unavailable)?
        .open_table(BATCHES)
        .map_err(unavailable)
}

/// How many batch ids are recorded.
#[cfg(test)]
pub fn len(txn: &redb::ReadTransaction) -> Result<u64, StoreError> {
    use redb::ReadableTableMetadata;
    txn.open_table(BATCHES)
        .map_err(unavailable)?
        .len()
        .map_err(unavailable)
}

/// The two tables open in one write transaction.
#[derive(Debug)]
pub struct SeenBatches<'txn> {
    batches: Table<'txn, u128, i64>,
    by_time: Table<'txn, (i64, u128), ()>,
}

impl<'txn> SeenBatches<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(SeenBatches {
            batches: txn.open_table(BATCHES).map_err(unavailable)?,
            by_time: txn.open_table(BATCHES_BY_TIME).map_err(unavailable)?,
        })
    }

    /// Whether `batch_id` is recorded.
    pub fn contains(&self, batch_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .batches
            .get(fingerprint(batch_id))
            .map_err(unavailable)?
            .is_some())
    }

    /// Records `batch_id`, received at `received_ms`; answers false when it
    /// was recorded already (and leaves its time as it was).
    pub fn insert(&mut self, batch_id: &str, received_ms: i64) -> Result<bool, StoreError> {
        let fingerprint = fingerprint(batch_id);
        // One descent of the tree instead of a lookup and then an insert:
        // at sync nearly every id is new, and the lookup before each insert
        // was a fifth of this function's samples (docs/BENCHMARKS.md, "The
        // seen-id lookup held open"). An id held already gets its own time
        // back.
        let earlier = self
            .batches
            .insert(fingerprint, received_ms)
            .map_err(unavailable)?
            .map(|time| time.value());
        if let Some(earlier_ms) = earlier {
            self.batches
                .insert(fingerprint, earlier_ms)
                .map_err(unavailable)?;
            return Ok(false);
        }
        self.by_time
            .insert((received_ms, fingerprint), ())
            .map_err(unavailable)?;
        Ok(true)
    }

    /// Forgets the ids received more than [`BATCH_ID_RETENTION_MS`] before
    /// `now_ms`, oldest first.
    pub fn forget_old(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let cutoff_ms = now_ms - BATCH_ID_RETENTION_MS;
        let old: Vec<(i64, u128)> = self
            .by_time
            .range(..(cutoff_ms, 0))
            .map_err(unavailable)?
            .map(|entry| entry.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for key in old {
            self.by_time.remove(key).map_err(unavailable)?;
            self.batches.remove(key.1).map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The Redis store's local index of the batches this edge has synced: a
/// fingerprint file of its own in the data directory.
#[derive(Debug, Clone)]
pub struct SeenIndex {
    file: Arc<FingerprintFile>,
}

impl SeenIndex {
    /// The file inside the data directory.
    pub const FILE_NAME: &'static str = "synced-batches.index";
    /// The redb file earlier versions kept the ids in; its ids are only
    /// hints (Redis's claims catch a re-sent batch), so it is deleted
    /// rather than read.
    const EARLIER_FILE_NAME: &'static str = "synced-batches.redb";

    /// Opens (or creates) the index in `data_dir`. The edge holds the
    /// directory's lock (`identity.rs`) while it runs, so no second process
    /// writes it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let earlier = data_dir.join(Self::EARLIER_FILE_NAME);
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
        let path = data_dir.join(Self::FILE_NAME);
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

    /// Records every batch of `delta` (owned or not: each is counted
    /// somewhere) but the ones the edge minted, which ingest never looks up
    /// ([`crate::counted`]), and forgets old ids, made durable before it
    /// returns, on the blocking pool.
    pub async fn record(&self, delta: &Delta, now_ms: i64) -> Result<(), StoreError> {
        let ids: Vec<(String, i64)> = delta
            .batches
            .iter()
            .filter(|b| needs_claim(&b.batch_id))
            .map(|b| (b.batch_id.clone(), b.received_ms))
            .collect();
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            file.record(ids.iter().map(|(id, ms)| (id.as_bytes(), *ms)), now_ms)
                .map_err(unavailable)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

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
            let index = SeenIndex::open(dir.path()).unwrap();
            assert!(!index.contains("old").unwrap());
            let delta = agg.begin_sync().unwrap();
            index.record(&delta, NOW).await.unwrap();
            // A retried delta records nothing new.
            index.record(&delta, NOW).await.unwrap();
            agg.finish_sync();
            assert!(index.contains("old").unwrap() && index.contains("bot").unwrap());
        }
        let index = SeenIndex::open(dir.path()).unwrap();
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
            .record(&Delta::default(), NOW + BATCH_ID_RETENTION_MS + HOUR_MS)
            .await
            .unwrap();
        assert!(!index.contains("old").unwrap() && !index.contains("bot").unwrap());
        assert!(index.contains("new").unwrap());
    }

    #[test]
    fn an_id_recorded_again_answers_false_and_keeps_its_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("seen.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut seen = SeenBatches::open(&txn).unwrap();
            assert!(seen.insert("b1", NOW).unwrap());
            assert!(!seen.insert("b1", NOW + 5_000).unwrap());
            let held = seen.batches.get(fingerprint("b1")).unwrap().unwrap();
            assert_eq!(held.value(), NOW);
            drop(held);
            // Forgotten by its first time, not the second.
            seen.forget_old(NOW + BATCH_ID_RETENTION_MS + 1).unwrap();
            assert!(!seen.contains("b1").unwrap());
            assert_eq!(seen.by_time.len().unwrap(), 0);
        }
        txn.commit().unwrap();
    }

    #[test]
    fn the_earlier_redb_index_is_deleted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = dir.path().join(SeenIndex::EARLIER_FILE_NAME);
        std::fs::write(&earlier, b"an earlier version's redb file").unwrap();
        let index = SeenIndex::open(dir.path()).unwrap();
        assert!(!earlier.exists());
        assert!(dir.path().join(SeenIndex::FILE_NAME).exists());
        assert!(!index.contains("old").unwrap());
    }

    #[tokio::test]
    async fn minted_ids_are_not_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let agg = Aggregator::new();
        let minted = crate::counted::mint_batch_id();
        agg.record(&minted, NOW, Traffic::Valid, &[]);
        agg.record("client", NOW, Traffic::Valid, &[]);
        let index = SeenIndex::open(dir.path()).unwrap();
        index.record(&agg.begin_sync().unwrap(), NOW).await.unwrap();
        assert!(index.contains("client").unwrap());
        assert!(!index.contains(&minted).unwrap());
    }
}
