//! The batch ids an edge has handed to its store, kept for
//! [`BATCH_ID_RETENTION_MS`]: what ingest reads to answer a batch seen
//! before as a duplicate, on the edge itself, without asking anyone.
//!
//! The embedded store keeps them in its own redb database, in the
//! transaction that counts the batches ([`SeenBatches`]), so an id is seen
//! exactly when its counts are stored: two tables, `batches`,
//! `batch_id -> received_ms`, and `batches_by_time`,
//! `(received_ms, batch_id) -> ()`, so old ids are forgotten oldest first
//! without a scan. That one holds whole ids and is not sized for billions.
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

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{StoreError, BATCH_ID_RETENTION_MS};
use crate::counted::needs_claim;
use crate::counts::Delta;

mod fingerprints;

const BATCHES: TableDefinition<&str, i64> = TableDefinition::new("batches");
const BATCHES_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("batches_by_time");

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Creates both tables if missing, so readers never meet a missing one.
pub fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BATCHES).map_err(unavailable)?;
    txn.open_table(BATCHES_BY_TIME).map_err(unavailable)?;
    Ok(())
}

/// Whether `batch_id` was recorded (and not yet forgotten). One point
/// lookup in pages redb keeps cached: a few microseconds, cheaper inline on
/// the async worker than a hop to the blocking pool on every batch.
pub fn contains(db: &Database, batch_id: &str) -> Result<bool, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(BATCHES).map_err(unavailable)?;
    Ok(table.get(batch_id).map_err(unavailable)?.is_some())
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
    batches: Table<'txn, &'static str, i64>,
    by_time: Table<'txn, (i64, &'static str), ()>,
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
        Ok(self.batches.get(batch_id).map_err(unavailable)?.is_some())
    }

    /// Records `batch_id`, received at `received_ms`; answers false when it
    /// was recorded already (and leaves its time as it was).
    pub fn insert(&mut self, batch_id: &str, received_ms: i64) -> Result<bool, StoreError> {
        if self.contains(batch_id)? {
            return Ok(false);
        }
        self.batches
            .insert(batch_id, received_ms)
            .map_err(unavailable)?;
        self.by_time
            .insert((received_ms, batch_id), ())
            .map_err(unavailable)?;
        Ok(true)
    }

    /// Forgets the ids received more than [`BATCH_ID_RETENTION_MS`] before
    /// `now_ms`, oldest first.
    pub fn forget_old(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let cutoff_ms = now_ms - BATCH_ID_RETENTION_MS;
        let old: Vec<(i64, String)> = self
            .by_time
            .range(..(cutoff_ms, ""))
            .map_err(unavailable)?
            .map(|entry| entry.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for (ms, id) in old {
            self.by_time
                .remove((ms, id.as_str()))
                .map_err(unavailable)?;
            self.batches.remove(id.as_str()).map_err(unavailable)?;
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
