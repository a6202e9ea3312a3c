//! The batch ids an edge has handed to its store, kept in redb for
//! [`BATCH_ID_RETENTION_MS`]: what ingest reads to answer a batch seen
//! before as a duplicate, on the edge itself, without asking anyone.
//!
//! Two tables: `batches`, `batch_id -> received_ms`, and `batches_by_time`,
//! `(received_ms, batch_id) -> ()`, so old ids are forgotten oldest first
//! without a scan. The embedded store keeps them in its own database, in the
//! transaction that counts the batches ([`SeenBatches`]), so an id is seen
//! exactly when its counts are stored. The Redis store keeps them in a file
//! of their own in the data directory ([`SeenIndex`]), written once a delta
//! has landed in Redis.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{StoreError, BATCH_ID_RETENTION_MS};
use crate::counted::needs_claim;
use crate::counts::Delta;

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

/// A database of its own holding only the seen batch ids: the Redis store's
/// local index of the batches this edge has synced.
#[derive(Debug, Clone)]
pub struct SeenIndex {
    db: Arc<Database>,
}

impl SeenIndex {
    /// The file inside the data directory.
    pub const FILE_NAME: &'static str = "synced-batches.redb";

    /// Opens (or creates) the index in `data_dir`. The edge holds the
    /// directory's lock (`identity.rs`) while it runs, and redb locks the
    /// file as well, so no second process writes it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(unavailable)?;
        create_tables(&txn)?;
        txn.commit().map_err(unavailable)?;
        Ok(SeenIndex { db: Arc::new(db) })
    }

    pub fn contains(&self, batch_id: &str) -> Result<bool, StoreError> {
        contains(&self.db, batch_id)
    }

    /// Records every batch of `delta` (owned or not: each is counted
    /// somewhere) but the ones the edge minted, which ingest never looks up
    /// ([`crate::counted`]), and forgets old ids, in one transaction made
    /// durable before it returns, on the blocking pool.
    pub async fn record(&self, delta: &Delta, now_ms: i64) -> Result<(), StoreError> {
        let ids: Vec<(String, i64)> = delta
            .batches
            .iter()
            .filter(|b| needs_claim(&b.batch_id))
            .map(|b| (b.batch_id.clone(), b.received_ms))
            .collect();
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut seen = SeenBatches::open(&txn)?;
                for (id, received_ms) in &ids {
                    seen.insert(id, *received_ms)?;
                }
                seen.forget_old(now_ms)?;
            }
            txn.commit().map_err(unavailable)
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
        agg.record("new", NOW + BATCH_ID_RETENTION_MS, Traffic::Valid, &[]);
        let later = NOW + BATCH_ID_RETENTION_MS + 1;
        index
            .record(&agg.begin_sync().unwrap(), later)
            .await
            .unwrap();
        assert!(!index.contains("old").unwrap() && !index.contains("bot").unwrap());
        assert!(index.contains("new").unwrap());
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
