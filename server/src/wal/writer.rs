//! The writer thread that owns the segment files: group commit, the fsync
//! policy, and deleting segments whose deltas are in the store.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::{codec, list_segments, segment_path, Lsn};

/// The largest written buffer kept for the next group (a few groups' worth
/// at the browser shape).
const MAX_SPARE_BYTES: usize = 1 << 20;

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the writer has made durable, or why it stopped.
#[derive(Clone, Debug, Default)]
struct Progress {
    durable: Lsn,
    failed: Option<Arc<str>>,
}

/// Appended and not yet taken by the writer.
#[derive(Debug, Default)]
struct Pending {
    /// `(segment seq, bytes, records)`, in append order (hence seq order).
    chunks: Vec<(u64, Vec<u8>, u64)>,
    /// A written group's buffer, emptied, for the next group's first
    /// record: a fresh one grown record by record was reallocated several
    /// times per group, under this lock, on the request path.
    spare: Vec<u8>,
    appended: Lsn,
    forget_through: Option<u64>,
    stop: bool,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    fsyncs: AtomicU64,
    writes: AtomicU64,
    records: AtomicU64,
    bytes_written: AtomicU64,
    bytes_on_disk: AtomicU64,
    /// Appended, not yet taken by the writer: on disk soon.
    bytes_unwritten: AtomicU64,
}

/// A snapshot of the log's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalFigures {
    /// Group commits (one `fdatasync` per file touched, usually one).
    pub fsyncs: u64,
    /// Groups written, each in one `write` per segment it spans (a relaxed
    /// log gathers many records into each).
    pub writes: u64,
    /// Records written (durable at the next fsync).
    pub records: u64,
    pub bytes_written: u64,
    /// Size of the segments on disk now.
    pub bytes_on_disk: u64,
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    counters: Counters,
}

/// The log of one run. See the module docs.
#[derive(Debug)]
pub struct Wal {
    shared: Arc<Shared>,
    policy: SyncPolicy,
    progress: watch::Receiver<Progress>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A record could not be made durable.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the write-ahead log failed: {0}")]
pub struct WalFailed(pub Arc<str>);

impl Wal {
    /// Starts the writer on `dir` (after [`recover`] has read it).
    pub fn start(dir: &Path, policy: SyncPolicy) -> anyhow::Result<Wal> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let on_disk: u64 = list_segments(dir)?
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
        });
        shared
            .counters
            .bytes_on_disk
            .store(on_disk, Ordering::Relaxed);
        let (tx, progress) = watch::channel(Progress::default());
        let writer = {
            let shared = Arc::clone(&shared);
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name("glimpse-wal".into())
                .spawn(move || Writer::new(dir, shared, tx, policy).run())
                .context("starting the write-ahead log writer")?
        };
        Ok(Wal {
            shared,
            policy,
            progress,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Adds one framed record ([`codec::encode_record`]) to segment `seq`;
    /// answers the position to wait on. Memory only: meant to run under the
    /// aggregator's guard.
    pub fn append(&self, seq: u64, record: &[u8]) -> Lsn {
        let mut pending = self.shared.pending.lock();
        // A relaxed writer gathers for a moment once woken, so only the
        // first record of a gathering wakes it: waking it per record cost
        // a thread switch and a `write` per request.
        let wake = self.policy == SyncPolicy::EveryGroup || pending.chunks.is_empty();
        match pending.chunks.last_mut() {
            Some((s, bytes, n)) if *s == seq => {
                bytes.extend_from_slice(record);
                *n += 1;
            }
            _ => {
                let mut bytes = std::mem::take(&mut pending.spare);
                bytes.extend_from_slice(record);
                pending.chunks.push((seq, bytes, 1));
            }
        }
        pending.appended += record.len() as u64;
        self.shared
            .counters
            .bytes_unwritten
            .fetch_add(record.len() as u64, Ordering::Relaxed);
        let lsn = pending.appended;
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
        lsn
    }

    /// Whether an acknowledgement waits for its record's fsync
    /// ([`SyncPolicy::EveryGroup`]), rather than going out at once.
    pub fn acks_wait_for_fsync(&self) -> bool {
        self.policy == SyncPolicy::EveryGroup
    }

    /// Everything appended so far.
    #[cfg(test)]
    pub fn appended(&self) -> Lsn {
        self.shared.pending.lock().appended
    }

    /// Waits until everything up to `lsn` is on disk.
    pub async fn durable(&self, lsn: Lsn) -> Result<(), WalFailed> {
        let mut rx = self.progress.clone();
        let progress = rx
            .wait_for(|p| p.durable >= lsn || p.failed.is_some())
            .await
            .map_err(|_| WalFailed("the writer has stopped".into()))?;
        match &progress.failed {
            Some(why) if progress.durable < lsn => Err(WalFailed(Arc::clone(why))),
            _ => Ok(()),
        }
    }

    /// Why the log failed, if it did; ingest refuses work from then on.
    pub fn failure(&self) -> Option<WalFailed> {
        self.progress.borrow().failed.clone().map(WalFailed)
    }

    /// Delta `seq` is in the store: its segment and older ones may go.
    pub fn forget_through(&self, seq: u64) {
        let mut pending = self.shared.pending.lock();
        pending.forget_through = pending.forget_through.max(Some(seq));
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// The bytes the log holds or is about to: its segments on disk and
    /// what is appended but not yet written. What `--max-log-bytes` bounds.
    pub fn held_bytes(&self) -> u64 {
        let c = &self.shared.counters;
        c.bytes_on_disk.load(Ordering::Relaxed) + c.bytes_unwritten.load(Ordering::Relaxed)
    }

    pub fn figures(&self) -> WalFigures {
        let c = &self.shared.counters;
        WalFigures {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            bytes_on_disk: c.bytes_on_disk.load(Ordering::Relaxed),
        }
    }

    /// Writes what is pending, then stops the writer. Idempotent.
    pub fn close(&self) {
        self.shared.pending.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(writer) = self.writer.lock().take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// When the writer fsyncs what it has written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After every group, before its waiters wake (`--durability strict`).
    EveryGroup,
    /// At most every `fsync` (`--durability relaxed`). What is appended
    /// is written `write` after the first record of it (what a killed
    /// process can lose), and reaches the disk with the next fsync. Fewer
    /// fsyncs and writes leave the cores to ingest.
    AtMostEvery {
        write: std::time::Duration,
        fsync: std::time::Duration,
    },
}

/// The thread that owns the files.
struct Writer {
    dir: PathBuf,
    shared: Arc<Shared>,
    progress: watch::Sender<Progress>,
    policy: SyncPolicy,
    /// The segment being appended to.
    current: Option<(u64, File)>,
    /// Segments written since the last fsync, other than `current`.
    unsynced: Vec<(u64, File)>,
    /// Whether anything was written since the last fsync.
    dirty: bool,
    /// Whether a segment was created since the last fsync (its directory
    /// entry needs one too).
    created: bool,
    /// The position written so far: durable after the next fsync.
    written: Lsn,
    last_sync: Instant,
    failed: bool,
}

impl Writer {
    fn new(
        dir: PathBuf,
        shared: Arc<Shared>,
        progress: watch::Sender<Progress>,
        policy: SyncPolicy,
    ) -> Self {
        Writer {
            dir,
            shared,
            progress,
            policy,
            current: None,
            unsynced: Vec::new(),
            dirty: false,
            created: false,
            written: 0,
            last_sync: Instant::now(),
            failed: false,
        }
    }

    /// When the written data must be fsynced by, if that is up to a timer.
    fn sync_deadline(&self) -> Option<Instant> {
        match self.policy {
            SyncPolicy::AtMostEvery { fsync, .. } if self.dirty => Some(self.last_sync + fsync),
            _ => None,
        }
    }

    fn run(mut self) {
        let mut written: Option<Vec<u8>> = None;
        loop {
            let (chunks, end, forget, stop) = {
                let mut pending = self.shared.pending.lock();
                if let Some(mut bytes) = written.take() {
                    bytes.clear();
                    pending.spare = bytes;
                }
                while pending.chunks.is_empty() && pending.forget_through.is_none() && !pending.stop
                {
                    match self.sync_deadline() {
                        None => self.shared.wake.wait(&mut pending),
                        Some(deadline) => {
                            if self
                                .shared
                                .wake
                                .wait_until(&mut pending, deadline)
                                .timed_out()
                            {
                                break;
                            }
                        }
                    }
                }
                if let SyncPolicy::AtMostEvery { write, .. } = self.policy {
                    // Gather: appends meanwhile do not wake this thread;
                    // close cuts it short.
                    let until = Instant::now() + write;
                    while !pending.chunks.is_empty() && !pending.stop {
                        if self.shared.wake.wait_until(&mut pending, until).timed_out() {
                            break;
                        }
                    }
                }
                (
                    std::mem::take(&mut pending.chunks),
                    pending.appended,
                    pending.forget_through.take(),
                    pending.stop,
                )
            };
            if !self.failed {
                let result = self.write(&chunks, end).and_then(|()| {
                    let due = match self.policy {
                        SyncPolicy::EveryGroup => true,
                        SyncPolicy::AtMostEvery { fsync, .. } => {
                            stop || self.last_sync.elapsed() >= fsync
                        }
                    };
                    if self.dirty && due {
                        self.sync()
                    } else {
                        Ok(())
                    }
                });
                if let Err(e) = result {
                    let why: Arc<str> = format!("{e:#}").into();
                    tracing::error!(error = %why, "the write-ahead log failed; ingest answers 503 until the edge is restarted");
                    self.failed = true;
                    self.progress.send_modify(|p| p.failed = Some(why));
                }
            }
            if let Some(seq) = forget {
                if let Err(e) = self.delete_through(seq) {
                    // Harmless: an old segment replays to no effect.
                    tracing::warn!(error = %e, "could not delete synced write-ahead log segments");
                }
            }
            if stop && self.shared.pending.lock().chunks.is_empty() {
                return;
            }
            // Kept unless a backlog made it large.
            written = chunks
                .into_iter()
                .next()
                .map(|(_, bytes, _)| bytes)
                .filter(|bytes| bytes.capacity() <= MAX_SPARE_BYTES);
        }
    }

    /// Writes a group (everything appended up to `end`), without fsync.
    fn write(&mut self, chunks: &[(u64, Vec<u8>, u64)], end: Lsn) -> anyhow::Result<()> {
        for (seq, bytes, _) in chunks {
            if self.current.as_ref().is_none_or(|(s, _)| s != seq) {
                let path = segment_path(&self.dir, *seq);
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                if file.metadata()?.len() == 0 {
                    file.write_all(&codec::header(*seq))
                        .with_context(|| format!("writing {}", path.display()))?;
                    self.add_on_disk(codec::HEADER_LEN as u64);
                    self.created = true;
                }
                // The previous segment still needs the next fsync.
                if let Some(old) = self.current.replace((*seq, file)) {
                    self.unsynced.push(old);
                }
            }
            let (_, file) = self.current.as_mut().expect("opened above");
            file.write_all(bytes)
                .with_context(|| format!("writing segment {seq}"))?;
            self.add_on_disk(bytes.len() as u64);
            self.dirty = true;
        }
        self.written = end;
        let c = &self.shared.counters;
        let bytes: u64 = chunks.iter().map(|c| c.1.len() as u64).sum();
        if !chunks.is_empty() {
            c.writes.fetch_add(1, Ordering::Relaxed);
        }
        c.records
            .fetch_add(chunks.iter().map(|c| c.2).sum(), Ordering::Relaxed);
        c.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        c.bytes_unwritten.fetch_sub(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Fsyncs every file written since the last fsync, then wakes the
    /// requests waiting on what was written.
    fn sync(&mut self) -> anyhow::Result<()> {
        for (_, file) in self.unsynced.iter().chain(self.current.as_ref()) {
            file.sync_data().context("fsync of a segment")?;
            self.shared.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.unsynced.clear();
        if std::mem::take(&mut self.created) {
            // A new file's directory entry must be durable too.
            sync_dir(&self.dir).context("fsync of the log directory")?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        let written = self.written;
        self.progress.send_modify(|p| p.durable = written);
        Ok(())
    }

    fn add_on_disk(&self, n: u64) {
        self.shared
            .counters
            .bytes_on_disk
            .fetch_add(n, Ordering::Relaxed);
    }

    fn delete_through(&mut self, seq: u64) -> std::io::Result<()> {
        if self.current.as_ref().is_some_and(|(s, _)| *s <= seq) {
            self.current = None;
        }
        // Their batches are in the store: no fsync owed.
        self.unsynced.retain(|(s, _)| *s > seq);
        for (s, path) in list_segments(&self.dir)? {
            if s > seq {
                break;
            }
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path)?;
            let _ = self.shared.counters.bytes_on_disk.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |b| Some(b.saturating_sub(len)),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::recover;
    use super::super::tests::record;
    use super::*;

    #[tokio::test]
    async fn a_relaxed_log_writes_within_moments_and_fsyncs_on_its_timer_or_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        // A timer that never fires within the test: only the close syncs.
        let wal = Wal::start(
            &wal_dir,
            SyncPolicy::AtMostEvery {
                write: std::time::Duration::from_millis(1),
                fsync: std::time::Duration::from_secs(3600),
            },
        )
        .unwrap();
        let records: Vec<Vec<u8>> = (0..3).map(|i| record(&format!("b{i}"), "u")).collect();
        let mut last = 0;
        for r in &records {
            last = wal.append(7, r);
        }
        // Written within moments (a killed process loses none of it once
        // written), not fsynced.
        let full = (codec::HEADER_LEN + records.iter().map(Vec::len).sum::<usize>()) as u64;
        let path = segment_path(&wal_dir, 7);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while fs::metadata(&path).map_or(0, |m| m.len()) < full {
            assert!(
                Instant::now() < deadline,
                "the writer never wrote the records"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(wal.figures().fsyncs, 0);
        wal.close();
        wal.durable(last).await.unwrap();
        assert_eq!(wal.figures().fsyncs, 1, "one fsync, at close");
        assert_eq!(recover(&wal_dir).unwrap()[0].delta.batches.len(), 3);
    }

    #[tokio::test]
    async fn a_relaxed_log_gathers_records_into_one_write_and_strict_writes_each_group() {
        let dir = tempfile::tempdir().unwrap();
        // A gathering that outlasts the test: everything appended meanwhile
        // goes out in one write, when close cuts the gathering short.
        let relaxed = Wal::start(
            &dir.path().join("relaxed"),
            SyncPolicy::AtMostEvery {
                write: std::time::Duration::from_secs(3600),
                fsync: std::time::Duration::from_secs(3600),
            },
        )
        .unwrap();
        for i in 0..50 {
            relaxed.append(7, &record(&format!("b{i}"), "u"));
        }
        relaxed.close();
        let figures = relaxed.figures();
        assert_eq!(
            (figures.writes, figures.records, figures.fsyncs),
            (1, 50, 1),
            "{figures:?}"
        );

        // Strict: a record waited on before the next is a group of its own.
        let strict = Wal::start(&dir.path().join("strict"), SyncPolicy::EveryGroup).unwrap();
        for i in 0..3 {
            let lsn = strict.append(7, &record(&format!("b{i}"), "u"));
            strict.durable(lsn).await.unwrap();
        }
        let figures = strict.figures();
        assert_eq!(
            (figures.writes, figures.records, figures.fsyncs),
            (3, 3, 3),
            "{figures:?}"
        );
    }

    #[tokio::test]
    async fn a_write_that_fails_fails_its_waiters_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let wal = Wal::start(&wal_dir, SyncPolicy::EveryGroup).unwrap();
        // The directory vanishes: the segment cannot be created.
        fs::remove_dir(&wal_dir).unwrap();
        let lsn = wal.append(1, &record("b1", "u1"));
        let err = wal.durable(lsn).await.unwrap_err();
        assert!(err.to_string().contains("write-ahead log failed"), "{err}");
        assert!(wal.failure().is_some());
        let later = wal.append(1, &record("b2", "u2"));
        assert!(wal.durable(later).await.is_err());
    }
}
