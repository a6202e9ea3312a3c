//! Counters of what the edge did, and their Prometheus text exposition. No
//! I/O and no HTTP: handlers and the sync task bump counters, `http` serves
//! [`Metrics::render`] at `/metrics`.
//!
//! Every label value is a `&'static str` code from a fixed set (an error's
//! category, never its message), so the number of series is bounded whatever
//! clients send.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the sync duration histogram, in seconds.
const SYNC_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A counter per label value.
#[derive(Debug, Default)]
struct Labeled(Mutex<BTreeMap<&'static str, u64>>);

impl Labeled {
    fn add(&self, label: &'static str, n: u64) {
        *self.0.lock().entry(label).or_default() += n;
    }

    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }
}

#[derive(Debug)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; SYNC_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let at = SYNC_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(SYNC_BUCKETS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

/// What only the scrape can measure: sizes read from other modules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    /// Whether the store answered a ping during this scrape.
    pub store_up: bool,
    pub pending_keys: usize,
    pub pending_bytes: usize,
    /// `--max-pending-bytes`: past it ingest answers 503.
    pub max_pending_bytes: usize,
    pub rate_limited_clients: usize,
    pub requests_in_flight: usize,
    /// The write-ahead log's counters, when it runs.
    pub wal: Option<crate::wal::WalFigures>,
}

/// All counters of one edge.
#[derive(Debug, Default)]
pub struct Metrics {
    events_accepted: AtomicU64,
    events_duplicate: AtomicU64,
    events_rejected: Labeled,
    events_invalid: Labeled,
    batches_accepted: AtomicU64,
    batches_duplicate: AtomicU64,
    batches_rejected: Labeled,
    http_errors: Labeled,
    rate_limited: AtomicU64,
    load_shed: AtomicU64,
    sync_duration: Histogram,
    sync_failures: AtomicU64,
    deltas_dropped: AtomicU64,
    impressions_dropped: AtomicU64,
    store_errors: Labeled,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    /// A batch was accepted with these counts (its rejected events are
    /// counted one by one with [`Metrics::event_rejected`]).
    pub fn batch_accepted(&self, accepted: u64, duplicate_events: u64) {
        inc(&self.batches_accepted, 1);
        inc(&self.events_accepted, accepted);
        inc(&self.events_duplicate, duplicate_events);
    }

    /// A batch whose id was already counted; none of its events count.
    pub fn batch_duplicate(&self, events: u64) {
        inc(&self.batches_duplicate, 1);
        inc(&self.events_duplicate, events);
    }

    /// Accepted events counted as invalid traffic, by the verdict's reason
    /// (`automation` or `crawler`, see [`crate::traffic::Verdict::reason`]).
    pub fn events_invalid(&self, reason: &'static str, events: u64) {
        self.events_invalid.add(reason, events);
    }

    /// One event refused inside a batch, by category.
    pub fn event_rejected(&self, reason: &'static str) {
        self.events_rejected.add(reason, 1);
    }

    /// A whole batch refused, by error code.
    pub fn batch_rejected(&self, reason: &'static str) {
        self.batches_rejected.add(reason, 1);
    }

    /// Any error answer, by error code.
    pub fn http_error(&self, code: &'static str) {
        self.http_errors.add(code, 1);
    }

    pub fn rate_limited(&self) {
        inc(&self.rate_limited, 1);
    }

    pub fn load_shed(&self) {
        inc(&self.load_shed, 1);
    }

    /// A sync attempt that wrote something (or failed) took `took`.
    pub fn sync_finished(&self, took: Duration, ok: bool) {
        self.sync_duration.observe(took);
        if !ok {
            inc(&self.sync_failures, 1);
        }
    }

    /// A delta too old to send was dropped, with its impressions.
    pub fn delta_dropped(&self, impressions: u64) {
        inc(&self.deltas_dropped, 1);
        inc(&self.impressions_dropped, impressions);
    }

    /// A store operation failed: `apply`, `read` or `batch_seen`.
    pub fn store_error(&self, operation: &'static str) {
        self.store_errors.add(operation, 1);
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let labeled = |out: &mut String, name: &str, label: &str, help: &str, c: &Labeled| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (value, n) in c.snapshot() {
                // Label values are static codes of [a-z_]; nothing to escape.
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
            }
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: usize| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "glimpse_events_accepted_total",
            "Events accepted and counted (as impressions or as invalid traffic).",
            get(&self.events_accepted),
        );
        labeled(
            &mut out,
            "glimpse_events_invalid_total",
            "reason",
            "Accepted events counted as invalid traffic instead of impressions, by reason.",
            &self.events_invalid,
        );
        counter(
            &mut out,
            "glimpse_events_duplicate_total",
            "Events not counted because their batch or event id was already counted.",
            get(&self.events_duplicate),
        );
        labeled(
            &mut out,
            "glimpse_events_rejected_total",
            "reason",
            "Events refused inside an accepted batch, by reason.",
            &self.events_rejected,
        );
        counter(
            &mut out,
            "glimpse_batches_accepted_total",
            "Batches accepted (202) and counted.",
            get(&self.batches_accepted),
        );
        counter(
            &mut out,
            "glimpse_batches_duplicate_total",
            "Batches whose id was already counted.",
            get(&self.batches_duplicate),
        );
        labeled(
            &mut out,
            "glimpse_batches_rejected_total",
            "reason",
            "Ingest requests refused as a whole, by error code.",
            &self.batches_rejected,
        );
        labeled(
            &mut out,
            "glimpse_http_errors_total",
            "code",
            "Error answers on any route, by error code.",
            &self.http_errors,
        );
        counter(
            &mut out,
            "glimpse_rate_limited_total",
            "Ingest requests refused with 429 by the per-client rate limit.",
            get(&self.rate_limited),
        );
        counter(
            &mut out,
            "glimpse_load_shed_total",
            "Requests refused with 503 at the concurrency limit.",
            get(&self.load_shed),
        );
        let name = "glimpse_sync_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to apply one pending delta to the store.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, le) in SYNC_BUCKETS.iter().enumerate() {
            cumulative += get(&self.sync_duration.buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += get(&self.sync_duration.buckets[SYNC_BUCKETS.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = get(&self.sync_duration.sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
        counter(
            &mut out,
            "glimpse_sync_failures_total",
            "Sync attempts that failed (the delta is kept and retried).",
            get(&self.sync_failures),
        );
        counter(
            &mut out,
            "glimpse_deltas_dropped_total",
            "Deltas dropped unsent because they were too old for the store to tell whether they had counted (23 h on Redis).",
            get(&self.deltas_dropped),
        );
        counter(
            &mut out,
            "glimpse_impressions_dropped_total",
            "Impressions of the deltas in glimpse_deltas_dropped_total.",
            get(&self.impressions_dropped),
        );
        labeled(
            &mut out,
            "glimpse_store_errors_total",
            "operation",
            "Failed store operations, by operation.",
            &self.store_errors,
        );
        gauge(
            &mut out,
            "glimpse_pending_keys",
            "Counts keys (an ad's, post's or campaign's day, and each of its hours) accepted but not yet in the store.",
            gauges.pending_keys,
        );
        gauge(
            &mut out,
            "glimpse_pending_bytes",
            "Heap bytes held by pending counts, their batch records and claims (estimated allocation by allocation).",
            gauges.pending_bytes,
        );
        gauge(
            &mut out,
            "glimpse_pending_bytes_limit",
            "--max-pending-bytes: past it ingest answers 503 until a sync lands.",
            gauges.max_pending_bytes,
        );
        gauge(
            &mut out,
            "glimpse_store_up",
            "1 if the store answered a ping during this scrape, else 0 (ingest goes on; counts wait in memory).",
            usize::from(gauges.store_up),
        );
        gauge(
            &mut out,
            "glimpse_rate_limit_clients",
            "Clients with a rate-limit bucket in memory.",
            gauges.rate_limited_clients,
        );
        gauge(
            &mut out,
            "glimpse_requests_in_flight",
            "Requests being served now, under the concurrency limit.",
            gauges.requests_in_flight,
        );
        if let Some(wal) = gauges.wal {
            counter(
                &mut out,
                "glimpse_wal_fsyncs_total",
                "Write-ahead log fsyncs (group commits; records_total / fsyncs_total is the records per fsync).",
                wal.fsyncs,
            );
            counter(
                &mut out,
                "glimpse_wal_writes_total",
                "Write-ahead log groups written (records_total / writes_total is the records per write).",
                wal.writes,
            );
            counter(
                &mut out,
                "glimpse_wal_records_total",
                "Batches written to the write-ahead log.",
                wal.records,
            );
            counter(
                &mut out,
                "glimpse_wal_written_bytes_total",
                "Bytes of records written to the write-ahead log.",
                wal.bytes_written,
            );
            gauge(
                &mut out,
                "glimpse_wal_bytes",
                "Size of the write-ahead log segments on disk (batches not yet in the store).",
                usize::try_from(wal.bytes_on_disk).unwrap_or(usize::MAX),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[test]
    fn renders_counters_labels_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.batch_accepted(5, 1);
        m.batch_duplicate(3);
        m.event_rejected("invalid_id");
        m.event_rejected("invalid_id");
        m.event_rejected("ts_out_of_window");
        m.events_invalid("crawler", 3);
        m.events_invalid("automation", 2);
        m.events_invalid("crawler", 1);
        m.batch_rejected("invalid_json");
        m.rate_limited();
        m.sync_finished(Duration::from_millis(3), true);
        m.sync_finished(Duration::from_millis(30), false);
        m.sync_finished(Duration::from_secs(60), false);
        m.store_error("apply");
        m.delta_dropped(7);
        let text = m.render(&Gauges {
            store_up: false,
            pending_keys: 7,
            pending_bytes: 1234,
            max_pending_bytes: 4096,
            wal: Some(crate::wal::WalFigures {
                fsyncs: 3,
                writes: 4,
                records: 12,
                bytes_written: 900,
                bytes_on_disk: 500,
            }),
            ..Gauges::default()
        });
        assert!(text.contains("glimpse_wal_fsyncs_total 3"));
        assert!(text.contains("glimpse_wal_writes_total 4"));
        assert!(text.contains("glimpse_wal_records_total 12"));
        assert!(text.contains("glimpse_wal_written_bytes_total 900"));
        assert!(text.contains("glimpse_wal_bytes 500"));
        assert_eq!(
            line(&text, "glimpse_events_accepted_total "),
            "glimpse_events_accepted_total 5"
        );
        assert_eq!(
            line(&text, "glimpse_events_duplicate_total "),
            "glimpse_events_duplicate_total 4"
        );
        assert_eq!(
            line(
                &text,
                "glimpse_events_rejected_total{reason=\"invalid_id\"}"
            ),
            "glimpse_events_rejected_total{reason=\"invalid_id\"} 2"
        );
        assert!(text.contains("glimpse_batches_rejected_total{reason=\"invalid_json\"} 1"));
        assert!(text.contains("glimpse_events_invalid_total{reason=\"crawler\"} 4"));
        assert!(text.contains("glimpse_events_invalid_total{reason=\"automation\"} 2"));
        assert!(text.contains("glimpse_rate_limited_total 1"));
        assert!(text.contains("glimpse_sync_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("glimpse_sync_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("glimpse_sync_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("glimpse_sync_duration_seconds_bucket{le=\"10\"} 2"));
        assert!(text.contains("glimpse_sync_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("glimpse_sync_duration_seconds_count 3"));
        assert!(text.contains("glimpse_sync_failures_total 2"));
        assert!(text.contains("glimpse_deltas_dropped_total 1"));
        assert!(text.contains("glimpse_impressions_dropped_total 7"));
        assert!(text.contains("glimpse_store_errors_total{operation=\"apply\"} 1"));
        assert!(text.contains("glimpse_pending_keys 7"));
        assert!(text.contains("glimpse_pending_bytes 1234"));
        assert!(text.contains("glimpse_pending_bytes_limit 4096"));
        assert!(text.contains("glimpse_store_up 0"));
        // Every sample line belongs to a declared metric.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(declared.iter().any(|d| name.starts_with(d.as_str())), "{l}");
            }
        }
    }
}
