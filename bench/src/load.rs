//! The two load shapes: closed-loop ingest (each connection sends its next
//! batch as soon as the previous one is answered) and fixed-rate GETs of the
//! stats route (each request has a scheduled send time; when a late answer
//! delays it, its latency counts from that time, so a stalled server is
//! charged for the requests it delayed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use crate::gen::{BatchWriter, Mix, Rng, Tally};
use crate::http1::{Client, Response};

/// Latencies are recorded in microseconds, 1 us to 60 s.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A random run id, so batch ids never repeat across runs.
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut rng = Rng::new(nanos ^ u64::from(std::process::id()) << 32);
    format!("{:08x}", rng.next_u64() as u32)
}

/// How a load connection is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// Each connection sends its next batch as soon as the previous one is
    /// answered (a client behind one kept-alive connection).
    KeepAlive,
    /// Each connection carries one batch and closes; the next batch opens
    /// a new one (beacons from many browsers, each with its own
    /// connection).
    OneBatchEach,
}

#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// A loopback address.
    pub target: SocketAddr,
    /// Connections open at once.
    pub concurrency: usize,
    pub connections: Connections,
    pub duration: Duration,
    pub mix: Mix,
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub elapsed: Duration,
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed (I/O error, unexpected status, events refused).
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Events accepted by the server (ingest only).
    pub events: u64,
    /// Microseconds.
    pub latency: Histogram<u64>,
}

impl LoadReport {
    pub fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }

    pub fn events_per_second(&self) -> f64 {
        self.per_second(self.events)
    }

    pub fn requests_per_second(&self) -> f64 {
        self.per_second(self.ok)
    }

    /// Latency at `q` (0..1) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self, what: &str) -> String {
        let mut s = format!(
            "{what}: {:.0} events/s, {:.0} requests/s, latency p50 {:.3} ms, p99 {:.3} ms, p999 {:.3} ms, {} ok, {} errors",
            self.events_per_second(),
            self.requests_per_second(),
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            self.latency_ms(0.999),
            self.ok,
            self.errors,
        );
        if let Some(e) = &self.first_error {
            s.push_str(&format!(" (first: {e})"));
        }
        s
    }
}

struct ConnResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    events: u64,
    latency: Histogram<u64>,
}

impl ConnResult {
    fn new() -> Self {
        ConnResult {
            ok: 0,
            errors: 0,
            first_error: None,
            events: 0,
            latency: histogram(),
        }
    }

    /// Counts a failed request; the first reason is kept for the report.
    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    /// Counts an answer with an unexpected status, keeping its body.
    fn refused(&mut self, resp: &Response<'_>) {
        let body = String::from_utf8_lossy(resp.body);
        self.fail(format!("status {}: {body}", resp.status));
    }
}

/// Waits for every connection's task and folds their results together.
async fn join(tasks: Vec<tokio::task::JoinHandle<ConnResult>>, started: Instant) -> LoadReport {
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("load task panicked"));
    }
    merge(results, started.elapsed())
}

fn merge(results: Vec<ConnResult>, elapsed: Duration) -> LoadReport {
    let mut report = LoadReport {
        elapsed,
        ok: 0,
        errors: 0,
        first_error: None,
        events: 0,
        latency: histogram(),
    };
    for r in results {
        report.ok += r.ok;
        report.errors += r.errors;
        report.events += r.events;
        report.first_error = report.first_error.or(r.first_error);
        report
            .latency
            .add(&r.latency)
            .expect("histograms of the same bounds");
    }
    report
}

/// `"accepted":N` of an ingest answer.
fn accepted_of(body: &[u8]) -> Option<u64> {
    let at = body.windows(11).position(|w| w == b"\"accepted\":")? + 11;
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// Runs closed-loop ingest for `config.duration`; accepted events go into
/// `tally`. Must run inside a tokio runtime.
pub async fn ingest(config: &IngestConfig, run_id: &str, tally: Arc<Tally>) -> LoadReport {
    let started = Instant::now();
    let deadline = started + config.duration;
    let tasks: Vec<_> = (0..config.concurrency)
        .map(|c| {
            let mut writer = BatchWriter::new(config.mix, run_id, c, config.seed);
            let tally = Arc::clone(&tally);
            let target = config.target;
            let one_each = config.connections == Connections::OneBatchEach;
            tokio::spawn(async move {
                let mut r = ConnResult::new();
                let mut client = None;
                while Instant::now() < deadline {
                    // A beacon's latency includes its connection's setup.
                    let mut sent = Instant::now();
                    if client.is_none() {
                        let connected = if one_each {
                            Client::connect_for_one(target).await
                        } else {
                            Client::connect(target).await
                        };
                        match connected {
                            Ok(c) => client = Some(c),
                            Err(e) => {
                                r.fail(format!("connect: {e}"));
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        }
                    }
                    let conn = client.as_mut().expect("connected");
                    writer.next_batch(now_ms());
                    if !one_each {
                        sent = Instant::now();
                    }
                    let answer = conn
                        .request(
                            "POST",
                            "/v1/impressions",
                            Some("text/plain;charset=UTF-8"),
                            &writer.body,
                        )
                        .await;
                    let micros = sent.elapsed().as_micros() as u64;
                    match answer {
                        Ok(resp) if resp.status == 202 => {
                            let n = writer.events.len() as u64;
                            match accepted_of(resp.body) {
                                Some(a) if a == n => {
                                    r.ok += 1;
                                    r.events += n;
                                    r.latency.saturating_record(micros.max(1));
                                    tally.add(&writer.events);
                                }
                                _ => {
                                    let body = String::from_utf8_lossy(resp.body).into_owned();
                                    r.fail(format!("not all events accepted: {body}"));
                                }
                            }
                        }
                        Ok(resp) => r.refused(&resp),
                        Err(e) => {
                            // The outcome is unknown: the exactness check
                            // will say so if the batch did land.
                            r.fail(format!("request: {e}"));
                            client = None;
                        }
                    }
                    if one_each {
                        client = None;
                    }
                }
                r
            })
        })
        .collect();
    join(tasks, started).await
}

#[derive(Clone, Debug)]
pub struct StatsConfig {
    /// A loopback address.
    pub target: SocketAddr,
    /// Requests per second, spread evenly over the connections.
    pub rate: f64,
    pub connections: usize,
    pub duration: Duration,
    /// Ads to query (drawn uniformly).
    pub ads: u32,
}

/// GETs `/v1/ads/{ad}/stats` at a fixed rate for `config.duration`.
pub async fn stats(config: &StatsConfig) -> LoadReport {
    let started = Instant::now();
    let total = (config.rate * config.duration.as_secs_f64()).round() as u64;
    let connections = config.connections.max(1) as u64;
    let interval = Duration::from_secs_f64(connections as f64 / config.rate);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let config = config.clone();
            tokio::spawn(async move {
                let mut r = ConnResult::new();
                let mut rng = Rng::new(0x57a7_5000 + c);
                let mut client = None;
                // Request k of this connection is due at offset + k * interval.
                let offset = interval.mul_f64(c as f64 / connections as f64);
                let mut k = 0u64;
                // When this connection's previous answer arrived.
                let mut answered = started;
                while k * connections + c < total {
                    let due = started + offset + interval * k as u32;
                    tokio::time::sleep_until(due.into()).await;
                    k += 1;
                    // A request sent late because the previous answer came
                    // late is charged from its due time (the server's stall
                    // delayed it); one sent late only because the timer
                    // woke late (tokio's timer has millisecond ticks) is
                    // charged from its send: that slack is the generator's.
                    let charged_from = if answered > due { due } else { Instant::now() };
                    if client.is_none() {
                        match Client::connect(config.target).await {
                            Ok(cl) => client = Some(cl),
                            Err(e) => {
                                r.fail(format!("connect: {e}"));
                                continue;
                            }
                        }
                    }
                    let conn = client.as_mut().expect("connected");
                    let path = format!("/v1/ads/ad-{:04}/stats", rng.below(config.ads.max(1)));
                    let result = conn.request("GET", &path, None, &[]).await;
                    answered = Instant::now();
                    match result {
                        Ok(resp) if resp.status == 200 => {
                            r.ok += 1;
                            let micros = (answered - charged_from).as_micros() as u64;
                            r.latency.saturating_record(micros.max(1));
                        }
                        Ok(resp) => r.refused(&resp),
                        Err(e) => {
                            r.fail(format!("request: {e}"));
                            client = None;
                        }
                    }
                }
                r
            })
        })
        .collect();
    join(tasks, started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_accepted_count() {
        assert_eq!(
            accepted_of(br#"{"accepted":50,"duplicates":0,"rejected":[]}"#),
            Some(50)
        );
        assert_eq!(accepted_of(br#"{"error":{}}"#), None);
    }
}
