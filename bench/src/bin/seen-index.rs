//! `seen-index`: the edge's duplicate check filled to many ids on a
//! synthetic clock, with lookup and record latency measured at the start
//! and at the end, and the disk it takes. Two subjects: the fingerprint
//! file itself (`server/src/store/seen/fingerprints.rs`, compiled here as
//! it is), or the whole embedded store (`--store embedded`), whose records
//! are deltas of batches with no events applied as a sync applies them,
//! and whose lookups are ingest's `batch_seen`.
//!
//! ```text
//! cargo run --release -p glimpse-bench --bin seen-index -- --ids 50000000
//! cargo run --release -p glimpse-bench --bin seen-index -- --store embedded --ids 10000000
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use glimpse_server::counts::{BatchRecord, Delta};
use glimpse_server::store::{embedded::EmbeddedStore, Store};
use hdrhistogram::Histogram;

#[path = "../../../server/src/store/seen/fingerprints.rs"]
mod fingerprints;

use fingerprints::FingerprintFile;

/// The edge's retention of batch ids (`BATCH_ID_RETENTION_MS`).
const RETENTION_MS: i64 = 48 * 3_600_000;
/// An hour's start, where the synthetic clock begins.
const T0_MS: i64 = 1_764_000_000_000;

/// What is filled and measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Subject {
    /// The fingerprint file alone.
    File,
    /// The embedded store, through `apply` and `batch_seen`.
    Embedded,
}

#[derive(Debug, Parser)]
#[command(name = "seen-index", about)]
struct Args {
    /// What to fill.
    #[arg(long, value_enum, default_value_t = Subject::File)]
    store: Subject,
    /// Ids held at the end.
    #[arg(long, default_value_t = 50_000_000)]
    ids: u64,
    /// Ids per record while filling: large records fill the file quickly;
    /// the measured records are `--sync-ids` each.
    #[arg(long, default_value_t = 1_000_000)]
    fill_record: u64,
    /// Ids per measured record: one sync of an edge at 10,000 batches/s
    /// syncing every second.
    #[arg(long, default_value_t = 10_000)]
    sync_ids: u64,
    /// Measured records at the start and at the end.
    #[arg(long, default_value_t = 20)]
    records: u64,
    /// Measured lookups at the start and at the end, of ids held and as
    /// many of ids not held.
    #[arg(long, default_value_t = 200_000)]
    lookups: u64,
    /// Batches per second of the synthetic clock, which the records follow.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Directory for the file (a temporary one inside it, removed at the
    /// end); the system's temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn id(n: u64) -> String {
    format!("bench-{n:020}")
}

/// The index under test.
enum Index {
    File(FingerprintFile),
    Embedded {
        store: EmbeddedStore,
        runtime: tokio::runtime::Runtime,
        next_seq: u64,
    },
}

impl Index {
    fn record(&mut self, names: Vec<String>, now_ms: i64) -> anyhow::Result<()> {
        match self {
            Index::File(file) => {
                // As the embedded store's sync does: staged, the ids held
                // before read off the staging (none: every name is new),
                // then written.
                let record =
                    file.stage_record(names.iter().map(|n| (n.as_bytes(), now_ms)), now_ms)?;
                let held = record.held().iter().filter(|&&held| held).count();
                anyhow::ensure!(held == 0, "{held} of {} new ids read as held", names.len());
                record.write()?;
            }
            Index::Embedded {
                store,
                runtime,
                next_seq,
            } => {
                let batches = names
                    .into_iter()
                    .map(|batch_id| BatchRecord {
                        batch_id,
                        received_ms: now_ms,
                        counts: Vec::new(),
                    })
                    .collect();
                *next_seq += 1;
                let delta = Arc::new(Delta {
                    seq: *next_seq,
                    ads: Default::default(),
                    batches,
                });
                runtime.block_on(store.apply(&delta, now_ms))?;
            }
        }
        Ok(())
    }

    fn contains(&self, name: &str) -> anyhow::Result<bool> {
        Ok(match self {
            Index::File(file) => file.contains(name.as_bytes())?,
            Index::Embedded { store, runtime, .. } => runtime.block_on(store.batch_seen(name))?,
        })
    }

    /// Page reads of lookups so far, where the index counts them.
    fn lookup_page_reads(&self) -> Option<u64> {
        match self {
            Index::File(file) => Some(file.lookup_page_reads()),
            Index::Embedded { .. } => None,
        }
    }
}

/// Bytes the file system allocated to the files in `dir`.
fn disk_bytes(dir: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let (mut disk, mut length) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let metadata = entry?.metadata()?;
        disk += metadata.blocks() * 512;
        length += metadata.len();
    }
    Ok((disk, length))
}

/// Ids `next..next + count` and the clock they are recorded at.
struct Filler<'a> {
    index: &'a mut Index,
    dir: &'a std::path::Path,
    next: u64,
    rate: u64,
}

impl Filler<'_> {
    fn now_ms(&self) -> i64 {
        T0_MS + (self.next * 1000 / self.rate) as i64
    }

    fn record(&mut self, count: u64) -> anyhow::Result<Duration> {
        let names: Vec<String> = (self.next..self.next + count).map(id).collect();
        self.next += count;
        let now_ms = self.now_ms();
        let started = Instant::now();
        self.index.record(names, now_ms)?;
        Ok(started.elapsed())
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid precision")
}

fn micros(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

/// Measures `args.records` records of `args.sync_ids` ids and lookups of
/// held and of unknown ids, and prints them with the file's size.
fn measure(label: &str, filler: &mut Filler, args: &Args) -> anyhow::Result<()> {
    let mut records = histogram();
    for _ in 0..args.records {
        records.record(filler.record(args.sync_ids)?.as_nanos() as u64)?;
    }
    let held = filler.next;
    let unknown = u64::MAX / 2;
    let mut line = format!(
        "{label}: {held} ids; record of {} ids p50 {:.0} µs, p99 {:.0} µs",
        args.sync_ids,
        micros(&records, 0.5),
        micros(&records, 0.99)
    );
    // Held ids spread over the whole file, unknown ones never recorded;
    // no more lookups than ids held.
    let lookups_made = args.lookups.min(held);
    let step = (held / lookups_made.max(1)).max(1);
    for (what, first, step, expect) in [("held", 0, step, true), ("unknown", unknown, 1, false)] {
        let mut lookups = histogram();
        let reads_before = filler.index.lookup_page_reads();
        for k in 0..lookups_made {
            let name = id(first + k * step);
            let started = Instant::now();
            let found = filler.index.contains(&name)?;
            lookups.record(started.elapsed().as_nanos() as u64)?;
            anyhow::ensure!(found == expect, "{name}: found {found}, expected {expect}");
        }
        line += &format!(
            "; lookup of {what} ids p50 {:.2} µs, p99 {:.2} µs",
            micros(&lookups, 0.5),
            micros(&lookups, 0.99),
        );
        if let (Some(before), Some(after)) = (reads_before, filler.index.lookup_page_reads()) {
            let reads = after - before;
            line += &format!(
                ", {:.3} page reads each",
                reads as f64 / lookups_made.max(1) as f64
            );
        }
    }
    if let Index::File(file) = &*filler.index {
        line += &format!("; {} buckets", file.usage()?.buckets);
    }
    let (disk, length) = disk_bytes(filler.dir)?;
    line += &format!(
        "; {:.1} MB on disk ({:.2} B per id), {:.1} MB long",
        disk as f64 / 1e6,
        disk as f64 / held as f64,
        length as f64 / 1e6
    );
    println!("{line}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.fill_record > 0 && args.sync_ids > 0 && args.rate > 0,
        "record sizes and the rate must be positive"
    );
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent)
        .with_context(|| format!("cannot make a directory in {}", parent.display()))?;
    let mut index = match args.store {
        Subject::File => Index::File(FingerprintFile::open(
            &dir.path().join("seen"),
            RETENTION_MS,
        )?),
        Subject::Embedded => Index::Embedded {
            store: EmbeddedStore::open(dir.path())?,
            runtime: tokio::runtime::Builder::new_current_thread().build()?,
            next_seq: 0,
        },
    };
    let mut filler = Filler {
        index: &mut index,
        dir: dir.path(),
        next: 0,
        rate: args.rate,
    };
    measure("start", &mut filler, &args)?;
    let started = Instant::now();
    let fill_to = args.ids.saturating_sub(args.records * args.sync_ids);
    while filler.next < fill_to {
        filler.record(args.fill_record.min(fill_to - filler.next))?;
    }
    println!(
        "filled to {} ids in {:.1} s ({:.0} ids/s)",
        filler.next,
        started.elapsed().as_secs_f64(),
        filler.next as f64 / started.elapsed().as_secs_f64()
    );
    measure("end", &mut filler, &args)?;
    Ok(())
}
