//! The write-ahead log: accepted batches on disk before the edge answers 202,
//! so `kill -9` (or a power cut) loses no acknowledged event.
//!
//! This is the only module that touches `<data-dir>/wal/`. The byte format is
//! in [`codec`] (pure), the writer thread in [`writer`], replay at start in
//! [`replay`]; this file names the segments.
//!
//! - **Segments are generations.** Each aggregator generation has its own
//!   file, `<seq>.wal` (20 digits), named by the sequence number its delta
//!   will carry. Ingest encodes a batch's record, then appends it (to an
//!   in-memory buffer, no I/O) inside [`crate::aggregate::Aggregator::record_then`],
//!   under the guard that also counts it, so a record always lands in the
//!   segment of the delta that holds its counts.
//! - **Group commit.** One thread owns the files. It takes everything
//!   appended so far, writes it, `fdatasync`s each file it touched once, and
//!   publishes the new durable position ([`Lsn`], bytes appended since
//!   start) on a watch channel; every request waiting on a position at or
//!   below it wakes. While one fsync runs the next group accumulates, so
//!   concurrent requests share fsyncs without any timer. Under
//!   `--durability relaxed` nothing waits, so the writer gathers for
//!   [`RELAXED_WRITE_INTERVAL`] once woken instead.
//! - **Truncation.** Once the store has delta `N` ([`Wal::forget_through`]),
//!   the writer deletes segments `<= N`, after writing anything already
//!   taken. A segment that outlives its delta (a crash between the store's
//!   commit and the delete) is replayed to no effect: both stores recognise a
//!   delta they already hold by its batch ids and sequence number.
//! - **Replay** ([`recover`]) reads the segments in order at start, before
//!   the listener serves, and rebuilds each delta with its old number.
//!
//! If a write or fsync fails the log is *failed* for the rest of the run
//! (after a failed fsync the kernel may have dropped the dirty pages, so
//! retrying cannot promise anything): waiters get an error, ingest answers
//! 503 and `/readyz` says why; restart the edge once the disk is fixed.

pub(crate) mod codec;
mod replay;
mod writer;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

pub use replay::recover;
pub use writer::{SyncPolicy, Wal, WalFailed, WalFigures};

use crate::aggregate::Recovered;
use crate::config::Durability;
use crate::store::identity::EdgeIdentity;

/// How often `--durability relaxed` fsyncs the log: a machine crash loses
/// at most this much of acknowledged batches, and fsyncs stay few under load.
pub const RELAXED_FSYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How long `--durability relaxed` gathers appended records before it
/// writes them: what a killed process can lose, and one `write` for every
/// record that arrives meanwhile instead of one each.
pub const RELAXED_WRITE_INTERVAL: Duration = Duration::from_millis(2);

/// The log of one run, opened on the data directory's `wal/`: its writer,
/// and the deltas the previous run logged and did not sync, which the edge
/// counts again first ([`crate::edge::Edge::new`]).
#[derive(Debug)]
pub struct Log {
    pub(crate) wal: Wal,
    pub(crate) replayed: Vec<Recovered>,
    /// The number of this run's first new delta, above every replayed one.
    pub(crate) first_seq: u64,
}

impl Log {
    /// Replays `dir`, then starts the writer with the fsync policy of
    /// `durability`. Refuses a log holding a segment numbered like this
    /// run's own deltas: the boot counter beside it was replaced.
    pub fn open(
        dir: &Path,
        durability: Durability,
        identity: &EdgeIdentity,
    ) -> anyhow::Result<Log> {
        let replayed = recover(dir).context("replaying the write-ahead log")?;
        let first_seq = identity.first_sequence();
        if let Some(r) = replayed.iter().find(|r| r.delta.seq >= first_seq) {
            anyhow::bail!(
                "the write-ahead log holds segment {} but this run numbers its deltas from \
                 {first_seq}: was edge-boots beside {} replaced?",
                r.delta.seq,
                dir.display()
            );
        }
        if !replayed.is_empty() {
            tracing::warn!(
                deltas = replayed.len(),
                batches = replayed
                    .iter()
                    .map(|r| r.delta.batches.len())
                    .sum::<usize>(),
                "the previous run stopped without syncing; its logged batches are pending again"
            );
        }
        let policy = match durability {
            Durability::Strict => SyncPolicy::EveryGroup,
            Durability::Relaxed => SyncPolicy::AtMostEvery {
                write: RELAXED_WRITE_INTERVAL,
                fsync: RELAXED_FSYNC_INTERVAL,
            },
        };
        Ok(Log {
            wal: Wal::start(dir, policy)?,
            replayed,
            first_seq,
        })
    }
}

/// A position in the log: bytes appended since the log was started.
pub type Lsn = u64;

const SUFFIX: &str = ".wal";

/// The file of segment `seq`.
fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Segments in `dir`, by sequence number.
fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(segment_seq) {
            segments.push((seq, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use glimpse_wire::ingest::Event;
    use glimpse_wire::{Day, Kind, Subject};

    use super::*;
    use crate::traffic::Traffic;

    fn event<'a>(ad: &'a str, user: &'a str) -> Event<'a> {
        let day = Day::from_days_since_epoch(20_417);
        Event {
            id: Cow::Borrowed("e"),
            subject: Subject::Ad,
            subject_id: Cow::Borrowed(ad),
            user_id: Cow::Borrowed(user),
            kind: Kind::Viewable,
            ts: day.start_ms(),
            day,
            token: None,
            verified: false,
            audible: false,
            campaign_id: None,
        }
    }

    pub(super) fn record(batch: &str, user: &str) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_record(&mut out, Traffic::Valid, batch, 5, &[event("ad-1", user)]);
        out
    }

    #[tokio::test]
    async fn appended_records_are_durable_replayable_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let wal = Wal::start(&wal_dir, SyncPolicy::EveryGroup).unwrap();
        let a = wal.append(10, &record("b1", "u1"));
        let b = wal.append(10, &record("b2", "u2"));
        let c = wal.append(11, &record("b3", "u3"));
        assert!(a < b && b < c && c == wal.appended());
        wal.durable(c).await.unwrap();
        let figures = wal.figures();
        assert_eq!(figures.records, 3);
        assert!(figures.fsyncs >= 1 && figures.fsyncs <= 4, "{figures:?}");
        assert!(figures.bytes_on_disk > figures.bytes_written);
        wal.close();
        drop(wal);

        let recovered = recover(&wal_dir).unwrap();
        let seqs: Vec<u64> = recovered.iter().map(|r| r.delta.seq).collect();
        assert_eq!(seqs, [10, 11]);
        let ids: Vec<&str> = recovered[0]
            .delta
            .batches
            .iter()
            .map(|b| b.batch_id.as_str())
            .collect();
        assert_eq!(ids, ["b1", "b2"]);

        let wal = Wal::start(&wal_dir, SyncPolicy::EveryGroup).unwrap();
        wal.forget_through(10);
        let d = wal.append(12, &record("b4", "u4"));
        wal.durable(d).await.unwrap();
        wal.close();
        let left: Vec<u64> = list_segments(&wal_dir)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, [11, 12]);
    }
}
