//! The side-by-side run: for each load [`Shape`] (the browsers' few-event
//! batches first, then 50-event batches, then beacons that each open a
//! connection of their own), the edge aggregating onto Redis, the
//! write-through baseline on the same Redis, and the edge on its embedded
//! store; then the stats route at a fixed rate with and without the short
//! cache. Each scenario starts its own server processes and stops them by
//! pid; Redis is one private `redis-server` on a free loopback port, flushed
//! between scenarios. The two Redis scenarios of the first generator (edge
//! on Redis, baseline) also run on a Redis Cluster of three private masters
//! (`--redis`), with the masters' figures summed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use glimpse_wire::{Day, DayRange};
use tokio::runtime::Runtime;

use crate::gen::{BatchSize, Mix, Tally};
use crate::load::{self, now_ms, run_id, Connections, IngestConfig, LoadReport, StatsConfig};
use crate::procs::{own_cpu_seconds, sibling_binary, Server};
use crate::redis_info::Usage;
use crate::redis_target::{RedisTarget, CLAIM_SHARDS};
use crate::verify::{self, Verdict};
use crate::wrk::{self, WrkReport};

/// A load shape: how many events a batch holds and how connections carry
/// the batches.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Its name for `--shapes`.
    pub name: &'static str,
    pub batch: BatchSize,
    /// Connections open at once.
    pub concurrency: usize,
    pub connections: Connections,
}

impl Shape {
    /// What feed pages send: a few events per batch, from many kept-alive
    /// connections (a CDN or proxy in front of the edge keeps them open).
    pub fn browser(concurrency: usize) -> Self {
        Shape {
            name: "browser",
            batch: BatchSize::BROWSER,
            concurrency,
            connections: Connections::KeepAlive,
        }
    }

    /// Full 50-event batches (a server-side client, or the SDK's largest).
    pub fn fifty(concurrency: usize) -> Self {
        Shape {
            name: "fifty",
            batch: BatchSize::fixed(50),
            concurrency,
            connections: Connections::KeepAlive,
        }
    }

    /// Beacons straight from browsers: each batch on a connection of its
    /// own, `concurrency` of them at once.
    pub fn beacons(concurrency: usize) -> Self {
        Shape {
            name: "beacons",
            batch: BatchSize::BROWSER,
            concurrency,
            connections: Connections::OneBatchEach,
        }
    }

    /// A heading for its table.
    fn describe(&self) -> String {
        let batches = if self.batch.min == self.batch.max {
            format!("batches of {} events", self.batch)
        } else {
            format!(
                "batches of {} events (uniform, mean {})",
                self.batch,
                self.batch.mean()
            )
        };
        let connections = match self.connections {
            Connections::KeepAlive => format!("{} keep-alive connections", self.concurrency),
            Connections::OneBatchEach => format!(
                "{} connections at a time, each carrying one batch and closing",
                self.concurrency
            ),
        };
        format!("`{}`: {batches}, {connections}", self.name)
    }
}

/// Masters of the benchmark's Redis Cluster (no replicas).
pub const CLUSTER_MASTERS: usize = 3;

/// The Redis deployments the Redis scenarios run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisDeployments {
    /// One redis-server: every Redis scenario (both generators, the stats
    /// route).
    Single,
    /// A Redis Cluster of three masters: the edge on Redis and the baseline,
    /// loaded by glimpse-load.
    Cluster,
    /// Both of the above, in one invocation.
    Both,
}

impl RedisDeployments {
    fn single(self) -> bool {
        self != RedisDeployments::Cluster
    }

    fn cluster(self) -> bool {
        self != RedisDeployments::Single
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub duration: Duration,
    /// The load shapes, in the order of the report (the headline first).
    pub shapes: Vec<Shape>,
    /// Ads, visitors and viewable share; each shape sets the batch size.
    pub mix: Mix,
    pub sync_interval: Duration,
    pub stats_rate: f64,
    pub stats_duration: Duration,
    pub stats_connections: usize,
    /// Each ingest scenario runs this many times; the table shows medians.
    pub repeat: usize,
    /// Scenario names to run (empty: all).
    pub only: Vec<String>,
    /// Where the Redis scenarios run.
    pub redis: RedisDeployments,
    /// Claims per shard and day window planted before the headline shape's
    /// `edge-redis-filled` run on the single Redis (0: the run is skipped).
    pub filled_claims: usize,
}

impl BenchConfig {
    /// The full configuration (about six minutes with `repeat = 1`).
    pub fn full() -> Self {
        BenchConfig {
            duration: Duration::from_secs(10),
            shapes: vec![Shape::browser(64), Shape::fifty(16), Shape::beacons(1000)],
            mix: Mix::default(),
            sync_interval: Duration::from_secs(1),
            stats_rate: 5000.0,
            stats_duration: Duration::from_secs(10),
            stats_connections: 16,
            repeat: 1,
            only: Vec::new(),
            redis: RedisDeployments::Both,
            // 6.4 million claims over the 64 hashes, about 0.9 GB of Redis:
            // each hash some 14 MB, far past the CPU's caches, as after days
            // of traffic (at 10,000 batches/s a shard's day holds 54 million).
            filled_claims: 100_000,
        }
    }

    /// Seconds, for CI: proves every part runs and counts exactly.
    pub fn tiny() -> Self {
        BenchConfig {
            duration: Duration::from_millis(800),
            shapes: vec![Shape::browser(2), Shape::fifty(2), Shape::beacons(20)],
            mix: Mix {
                ads: 5,
                visitors: 500,
                batch: BatchSize::BROWSER,
                viewable_share: 0.8,
            },
            sync_interval: Duration::from_millis(200),
            stats_rate: 200.0,
            stats_duration: Duration::from_millis(500),
            stats_connections: 2,
            repeat: 1,
            only: Vec::new(),
            redis: RedisDeployments::Both,
            filled_claims: 500,
        }
    }

    fn wants(&self, name: &str) -> bool {
        debug_assert!(SCENARIOS.contains(&name), "{name} is not in SCENARIOS");
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// Every scenario `--only` can name, as `wants` is asked for them.
pub const SCENARIOS: [&str; 7] = [
    "edge-redis",
    "edge-redis-filled",
    "baseline",
    "edge-embedded",
    "edge-embedded-relaxed",
    "wrk",
    "stats",
];

/// The store flags the edge binary knows (the Redis store lands separately).
#[derive(Clone, Debug, Default)]
pub struct EdgeFeatures {
    pub redis_store: bool,
    pub stats_cache: bool,
    /// `--durability strict|relaxed` (the write-ahead log).
    pub durability: bool,
    /// `--redis-cluster-nodes` (the Redis store on a Redis Cluster).
    pub redis_cluster: bool,
}

impl EdgeFeatures {
    pub fn probe(server_bin: &Path) -> Result<Self> {
        let out = Command::new(server_bin)
            .arg("--help")
            .output()
            .context("glimpse-server --help")?;
        let help = String::from_utf8_lossy(&out.stdout);
        Ok(EdgeFeatures {
            redis_store: help.contains("--store") && help.contains("--redis-url"),
            stats_cache: help.contains("--stats-cache"),
            durability: help.contains("--durability"),
            redis_cluster: help.contains("--redis-cluster-nodes"),
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Store<'a> {
    Embedded,
    Redis(&'a RedisTarget),
}

impl Store<'_> {
    fn redis(&self) -> Option<&RedisTarget> {
        match self {
            Store::Embedded => None,
            Store::Redis(redis) => Some(redis),
        }
    }
}

/// One ingest run.
#[derive(Debug)]
pub struct IngestRun {
    pub load: LoadReport,
    pub server_cpu: f64,
    pub generator_cpu: f64,
    pub redis: Option<Usage>,
    pub verdict: Verdict,
    /// Distinct (ad, day) keys that received events.
    pub ad_days: u64,
}

impl IngestRun {
    fn figures(&self) -> Row {
        let events = self.load.events;
        Row {
            events_per_s: self.load.events_per_second(),
            requests_per_s: self.load.requests_per_second(),
            p50: self.load.latency_ms(0.5),
            p99: self.load.latency_ms(0.99),
            errors: self.load.errors as f64,
            server_cpu_per_m: per_million(self.server_cpu, events),
            generator_cpu_per_m: per_million(self.generator_cpu, events),
            redis: RedisRow::of(self.redis.as_ref(), events),
            exact: self.verdict.exact(),
        }
    }
}

/// One run of the second generator, wrk.
#[derive(Debug)]
pub struct WrkRun {
    pub report: WrkReport,
    pub server_cpu: f64,
    pub redis: Option<Usage>,
    /// The events stored.
    pub stored: Result<u64, String>,
    /// Events wrk may have sent without reading their answer: wrk stops at
    /// its deadline with one batch in flight on each connection, which the
    /// server may still count.
    pub in_flight: u64,
}

impl WrkRun {
    /// The stored events are those wrk saw accepted, plus at most the
    /// batches in flight when it stopped.
    fn exact(&self) -> bool {
        let accepted = self.report.accepted_events;
        accepted > 0
            && matches!(self.stored, Ok(n) if n >= accepted && n - accepted <= self.in_flight)
    }

    fn figures(&self) -> Row {
        let events = self.report.accepted_events;
        Row {
            events_per_s: self.report.events_per_s(),
            requests_per_s: self.report.requests_per_s,
            p50: self.report.p50_ms,
            p99: self.report.p99_ms,
            errors: self.report.errors as f64,
            server_cpu_per_m: per_million(self.server_cpu, events),
            generator_cpu_per_m: per_million(self.report.cpu_seconds, events),
            redis: RedisRow::of(self.redis.as_ref(), events),
            exact: self.exact(),
        }
    }

    fn summary(&self) -> String {
        let accepted = self.report.accepted_events;
        let stored = match &self.stored {
            Ok(n) if self.exact() => format!(
                "exact: yes ({n} events stored, {accepted} seen accepted, {} in flight at the stop)",
                n - accepted
            ),
            Ok(n) => format!(
                "exact: NO ({n} events stored, {accepted} seen accepted, at most {} in flight)",
                self.in_flight
            ),
            Err(e) => format!("exact: NO ({e})"),
        };
        format!(
            "wrk: {:.0} events/s, {:.0} requests/s, latency p50 {:.3} ms, p99 {:.3} ms, {} errors; {stored}",
            self.report.events_per_s(),
            self.report.requests_per_s,
            self.report.p50_ms,
            self.report.p99_ms,
            self.report.errors
        )
    }
}

fn per_million(x: f64, events: u64) -> f64 {
    x * 1e6 / events.max(1) as f64
}

/// The ingest runs of one shape.
#[derive(Debug)]
pub struct ShapeResults {
    pub shape: Shape,
    pub edge_redis: Vec<IngestRun>,
    /// The edge on a Redis whose claim windows were filled first (the
    /// headline shape only).
    pub edge_redis_filled: Vec<IngestRun>,
    pub baseline: Vec<IngestRun>,
    pub edge_embedded: Vec<IngestRun>,
    /// The embedded store with `--durability relaxed` (answers before the
    /// write-ahead log's fsync); `edge_embedded` runs the default, strict.
    pub edge_embedded_relaxed: Vec<IngestRun>,
    /// The same load from wrk (the headline shape only).
    pub wrk_edge_redis: Vec<WrkRun>,
    pub wrk_baseline: Vec<WrkRun>,
    /// The edge and the baseline on the Redis Cluster.
    pub edge_redis_cluster: Vec<IngestRun>,
    pub baseline_cluster: Vec<IngestRun>,
}

impl ShapeResults {
    fn new(shape: Shape) -> Self {
        ShapeResults {
            shape,
            edge_redis: Vec::new(),
            edge_redis_filled: Vec::new(),
            baseline: Vec::new(),
            edge_embedded: Vec::new(),
            edge_embedded_relaxed: Vec::new(),
            wrk_edge_redis: Vec::new(),
            wrk_baseline: Vec::new(),
            edge_redis_cluster: Vec::new(),
            baseline_cluster: Vec::new(),
        }
    }

    fn exact(&self) -> bool {
        self.runs().all(|r| r.verdict.exact() && r.load.events > 0)
            && self
                .wrk_edge_redis
                .iter()
                .chain(&self.wrk_baseline)
                .all(WrkRun::exact)
    }

    fn runs(&self) -> impl Iterator<Item = &IngestRun> {
        self.edge_redis
            .iter()
            .chain(&self.edge_redis_filled)
            .chain(&self.baseline)
            .chain(&self.edge_embedded)
            .chain(&self.edge_embedded_relaxed)
            .chain(&self.edge_redis_cluster)
            .chain(&self.baseline_cluster)
    }
}

/// Everything one `glimpse-bench` invocation measured.
#[derive(Debug, Default)]
pub struct Results {
    /// One entry per shape, in the configuration's order.
    pub shapes: Vec<ShapeResults>,
    /// `(label, report)` of the stats route runs.
    pub stats: Vec<(String, LoadReport)>,
    pub notes: Vec<String>,
}

impl Results {
    /// Whether every exactness check passed; `None` when no ingest
    /// scenario ran (the stats scenario alone checks no counts).
    pub fn all_exact(&self) -> Option<bool> {
        let ran = self.shapes.iter().any(|s| s.runs().next().is_some());
        ran.then(|| self.shapes.iter().all(ShapeResults::exact))
    }
}

struct Ctx<'a> {
    rt: &'a Runtime,
    cfg: &'a BenchConfig,
    server_bin: std::path::PathBuf,
    baseline_bin: std::path::PathBuf,
    features: EdgeFeatures,
}

fn edge_command(
    ctx: &Ctx<'_>,
    dir: &Path,
    store: Store<'_>,
    stats_cache: Option<&str>,
    durability: Option<&str>,
) -> Command {
    let mut c = Command::new(&ctx.server_bin);
    c.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir)
        .arg("--sync-interval")
        .arg(humantime::format_duration(ctx.cfg.sync_interval).to_string())
        .arg("--www-dir")
        .arg(dir.join("no-www"))
        .arg("--sdk-dir")
        .arg(dir.join("no-sdk"))
        .env("RUST_LOG", "warn");
    for var in [
        "GLIMPSE_API_KEYS",
        "GLIMPSE_STORE",
        "GLIMPSE_REDIS_URL",
        "GLIMPSE_REDIS_CLUSTER_NODES",
        "GLIMPSE_STATS_CACHE",
        "GLIMPSE_DURABILITY",
    ] {
        c.env_remove(var);
    }
    if let Some(durability) = durability {
        c.args(["--durability", durability]);
    }
    if let Store::Redis(redis) = store {
        c.args(["--store", "redis"]).args(redis.client_args());
    }
    if let (Some(cache), true) = (stats_cache, ctx.features.stats_cache) {
        c.args(["--stats-cache", cache]);
    }
    c
}

fn ingest_config(ctx: &Ctx<'_>, shape: &Shape, target: std::net::SocketAddr) -> IngestConfig {
    IngestConfig {
        target,
        concurrency: shape.concurrency,
        connections: shape.connections,
        duration: ctx.cfg.duration,
        mix: Mix {
            batch: shape.batch,
            ..ctx.cfg.mix
        },
        seed: now_ms() as u64,
    }
}

fn today() -> Day {
    Day::from_epoch_ms(now_ms()).expect("clock after 1970")
}

fn ad_days(tally: &Tally, days: DayRange) -> u64 {
    let ads = (0..tally.mix().ads)
        .filter(|&a| {
            let (i, m) = tally.counts(a);
            i + m > 0
        })
        .count();
    (ads * days.len()) as u64
}

/// The edge under closed-loop ingest; then SIGTERM (the shutdown flush), a
/// restart on the same store, and the exactness check through the stats
/// routes of the new process.
/// What loading one running server measured.
struct Measured {
    load: LoadReport,
    server_cpu: f64,
    generator_cpu: f64,
    /// What was accepted, for the exactness check.
    tally: Arc<Tally>,
    /// The UTC days the load spanned.
    days: DayRange,
}

impl Measured {
    /// The run's figures with the exactness verdict and Redis deltas.
    fn into_run(self, redis: Option<Usage>, verdict: Verdict) -> IngestRun {
        IngestRun {
            ad_days: ad_days(&self.tally, self.days),
            load: self.load,
            server_cpu: self.server_cpu,
            generator_cpu: self.generator_cpu,
            redis,
            verdict,
        }
    }
}

/// Runs the ingest load against `server` and takes the CPU both sides spent.
fn load_and_measure(ctx: &Ctx<'_>, shape: &Shape, server: &Server) -> Measured {
    let config = ingest_config(ctx, shape, server.addr);
    let tally = Arc::new(Tally::new(config.mix));
    let first_day = today();
    let (cpu0, gen0) = (server.cpu_seconds(), own_cpu_seconds());
    let load = ctx
        .rt
        .block_on(load::ingest(&config, &run_id(), Arc::clone(&tally)));
    let (server_cpu, generator_cpu) = (server.cpu_seconds() - cpu0, own_cpu_seconds() - gen0);
    Measured {
        load,
        server_cpu,
        generator_cpu,
        tally,
        days: DayRange::new(first_day, today()).expect("days in order"),
    }
}

/// The claim windows an edge's claims calls can read today: today and the
/// three days before (`CLAIM_LOOKBACK_MS`, 49 h, in
/// `server/src/store/redis/plan.rs`; four windows in the first hour of a
/// day).
fn claim_windows(day: Day) -> std::ops::RangeInclusive<i64> {
    let today = i64::from(day.days_since_epoch());
    today - 3..=today
}

/// The edge on `store` under `shape`, checked through a restarted edge.
/// With `filled_claims` (a Redis store), the claim windows hold that many
/// claims per shard before the load starts, and Redis's figures count from
/// after the fill.
fn ingest_edge(
    ctx: &Ctx<'_>,
    shape: &Shape,
    store: Store<'_>,
    durability: Option<&str>,
    filled_claims: usize,
) -> Result<IngestRun> {
    let dir = tempfile::tempdir()?;
    let first_day = today();
    let before = store.redis().map(|redis| {
        let flushed = redis.flush();
        if filled_claims == 0 {
            return flushed;
        }
        redis.fill_claim_windows(claim_windows(first_day), filled_claims);
        redis.snapshot()
    });
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, None, durability),
    )?;
    let measured = load_and_measure(ctx, shape, &edge);
    edge.terminate()?;
    let redis = before.map(|b| b.delta(&store.redis().expect("flushed").snapshot()));
    if let (Some(target), true) = (store.redis(), filled_claims > 0) {
        // The edge's own claims went into the planted hashes (today's, or a
        // new day's past midnight), else the fill missed the keys it reads.
        let planted = claim_windows(first_day).count() as i64
            * i64::from(CLAIM_SHARDS)
            * filled_claims as i64;
        let windows = *claim_windows(first_day).start()..=*claim_windows(today()).end();
        let held: i64 = windows.map(|window| target.claims_held(window)).sum();
        anyhow::ensure!(
            held > planted,
            "the edge made no claim in the claim hashes planted for it ({held} held, {planted} planted): their key names no longer match the edge's"
        );
    }
    // Checked through a restarted edge: what the store kept, not memory.
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, None, durability),
    )?;
    let verdict = ctx
        .rt
        .block_on(verify::edge(edge.addr, &measured.tally, measured.days));
    edge.terminate()?;
    Ok(measured.into_run(redis, verdict))
}

/// The write-through baseline on `redis`.
fn baseline_server(ctx: &Ctx<'_>, redis: &RedisTarget) -> Result<Server> {
    let mut command = Command::new(&ctx.baseline_bin);
    command
        .args(["--listen", "127.0.0.1:0"])
        .args(redis.client_args());
    Server::start("glimpse-baseline", command)
}

/// The write-through baseline under the same load; checked in Redis itself.
fn ingest_baseline(ctx: &Ctx<'_>, shape: &Shape, redis: &RedisTarget) -> Result<IngestRun> {
    let before = redis.flush();
    let server = baseline_server(ctx, redis)?;
    let measured = load_and_measure(ctx, shape, &server);
    server.terminate()?;
    let usage = Some(before.delta(&redis.snapshot()));
    let verdict = verify::baseline(redis, &measured.tally, measured.days);
    Ok(measured.into_run(usage, verdict))
}

/// The runs of the first generator on one Redis deployment: the edge on it
/// when `edge` (and asked for), then the baseline, each logged with its
/// label and pushed to its results.
fn redis_runs(
    ctx: &Ctx<'_>,
    shape: &Shape,
    redis: &RedisTarget,
    edge: bool,
    [edge_label, baseline_label]: [&str; 2],
    (edge_runs, baseline_runs): (&mut Vec<IngestRun>, &mut Vec<IngestRun>),
    logged: &mut dyn FnMut(&str, &IngestRun),
) -> Result<()> {
    if edge && ctx.cfg.wants("edge-redis") {
        let r = ingest_edge(ctx, shape, Store::Redis(redis), None, 0)?;
        logged(edge_label, &r);
        edge_runs.push(r);
    }
    if ctx.cfg.wants("baseline") {
        let r = ingest_baseline(ctx, shape, redis)?;
        logged(baseline_label, &r);
        baseline_runs.push(r);
    }
    Ok(())
}

/// The most events wrk can leave unanswered at its stop: a batch per
/// connection.
fn in_flight(shape: &Shape) -> u64 {
    (shape.concurrency * shape.batch.max) as u64
}

/// Loads `server` from wrk with `shape`, then stops it: wrk's report, the
/// server's CPU seconds, and the days the load spanned.
fn wrk_load(ctx: &Ctx<'_>, shape: &Shape, server: Server) -> Result<(WrkReport, f64, DayRange)> {
    let mix = ingest_config(ctx, shape, server.addr).mix;
    let first_day = today();
    let cpu0 = server.cpu_seconds();
    let report = wrk::run(
        server.addr,
        shape.concurrency,
        ctx.cfg.duration,
        mix,
        &run_id(),
    )?;
    let server_cpu = server.cpu_seconds() - cpu0;
    server.terminate()?;
    let days = DayRange::new(first_day, today()).expect("days in order");
    Ok((report, server_cpu, days))
}

/// The headline shape from wrk against the edge on Redis; the stored total
/// read back through a restarted edge.
fn wrk_edge(ctx: &Ctx<'_>, shape: &Shape, redis: &RedisTarget) -> Result<WrkRun> {
    let dir = tempfile::tempdir()?;
    let store = Store::Redis(redis);
    let before = redis.flush();
    let start = || {
        Server::start(
            "glimpse-server",
            edge_command(ctx, dir.path(), store, None, None),
        )
    };
    let (report, server_cpu, days) = wrk_load(ctx, shape, start()?)?;
    let usage = Some(before.delta(&redis.snapshot()));
    let edge = start()?;
    let stored = ctx
        .rt
        .block_on(verify::edge_total(edge.addr, ctx.cfg.mix.ads, days));
    edge.terminate()?;
    Ok(WrkRun {
        report,
        server_cpu,
        redis: usage,
        stored,
        in_flight: in_flight(shape),
    })
}

/// The headline shape from wrk against the write-through baseline.
fn wrk_baseline(ctx: &Ctx<'_>, shape: &Shape, redis: &RedisTarget) -> Result<WrkRun> {
    let before = redis.flush();
    let (report, server_cpu, days) = wrk_load(ctx, shape, baseline_server(ctx, redis)?)?;
    let usage = Some(before.delta(&redis.snapshot()));
    Ok(WrkRun {
        report,
        server_cpu,
        redis: usage,
        stored: Ok(verify::baseline_total(redis, ctx.cfg.mix.ads, days)),
        in_flight: in_flight(shape),
    })
}

/// The stats route at a fixed rate on an edge whose store holds a day of
/// every ad and nothing pending (loaded, stopped, started again).
fn stats_run(ctx: &Ctx<'_>, store: Store<'_>, cache: Option<&str>) -> Result<LoadReport> {
    let dir = tempfile::tempdir()?;
    if let Some(redis) = store.redis() {
        redis.flush();
    }
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, cache, None),
    )?;
    let mut preload = ingest_config(ctx, &Shape::fifty(16), edge.addr);
    preload.duration = ctx.cfg.duration.min(Duration::from_secs(2));
    ctx.rt.block_on(load::ingest(
        &preload,
        &run_id(),
        Arc::new(Tally::new(preload.mix)),
    ));
    edge.terminate()?;
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, cache, None),
    )?;
    let report = ctx.rt.block_on(load::stats(&StatsConfig {
        target: edge.addr,
        rate: ctx.cfg.stats_rate,
        connections: ctx.cfg.stats_connections,
        duration: ctx.cfg.stats_duration,
        ads: ctx.cfg.mix.ads,
    }));
    edge.terminate()?;
    Ok(report)
}

/// Runs every scenario the configuration asks for.
pub fn run(cfg: &BenchConfig, rt: &Runtime, log: &mut dyn FnMut(&str)) -> Result<Results> {
    let server_bin = sibling_binary("glimpse-server")?;
    let baseline_bin = sibling_binary("glimpse-baseline")?;
    let features = EdgeFeatures::probe(&server_bin)?;
    let ctx = Ctx {
        rt,
        cfg,
        server_bin,
        baseline_bin,
        features,
    };
    let mut results = Results::default();
    if !ctx.features.redis_store {
        results.notes.push(
            "this glimpse-server has no Redis store (--store redis): the edge-on-Redis scenarios did not run"
                .into(),
        );
    }
    let single = cfg.redis.single().then(RedisTarget::single);
    let edge_on_cluster = ctx.features.redis_store && ctx.features.redis_cluster;
    if cfg.redis.cluster() && ctx.features.redis_store && !edge_on_cluster {
        results.notes.push(
            "this glimpse-server has no --redis-cluster-nodes: the edge-on-Redis-Cluster scenarios did not run"
                .into(),
        );
    }
    // Its masters are started only when a scenario will use them.
    let cluster = (cfg.redis.cluster()
        && (cfg.wants("baseline") || (edge_on_cluster && cfg.wants("edge-redis"))))
    .then(|| RedisTarget::cluster(CLUSTER_MASTERS));
    if cluster.is_some() {
        results.notes.push(format!(
            "the Redis Cluster rows ran on {CLUSTER_MASTERS} masters (no replicas) on loopback ports; their Redis figures are the masters' INFO summed, CPU including each node's cluster bus"
        ));
    }
    results.shapes = cfg.shapes.iter().cloned().map(ShapeResults::new).collect();
    // The second generator loads the headline shape on the single Redis,
    // when it keeps its connections alive (wrk does).
    let headline = cfg.shapes.first();
    let wrk_shape = headline
        .filter(|s| s.connections == Connections::KeepAlive && cfg.wants("wrk") && single.is_some())
        .map(|s| s.name);
    let wrk_available = wrk_shape.is_some() && wrk::available();
    if wrk_shape.is_some() && !wrk_available {
        results.notes.push(
            "wrk is not installed (Debian: apt-get install wrk): the second generator's rows did not run"
                .into(),
        );
    }
    // Rounds alternate the scenarios, so a slow spell of the machine lands
    // on all of them rather than on one.
    for round in 0..cfg.repeat.max(1) {
        for shaped in &mut results.shapes {
            let shape = shaped.shape.clone();
            let mut logged = |what: &str, r: &IngestRun| {
                // Each run's server CPU too, so the table's medians come
                // with their spread.
                log(&format!(
                    "[{round}] {} / {what}: {}, server CPU {:.2} s / M; {}",
                    shape.name,
                    r.load.summary("ingest"),
                    r.figures().server_cpu_per_m,
                    r.verdict
                ));
            };
            if let Some(redis) = &single {
                let runs = (&mut shaped.edge_redis, &mut shaped.baseline);
                let labels = ["edge on Redis", "write-through baseline"];
                let edge = ctx.features.redis_store;
                redis_runs(&ctx, &shape, redis, edge, labels, runs, &mut logged)?;
            }
            if let (Some(redis), true) = (
                &single,
                headline.map(|s| s.name) == Some(shape.name)
                    && ctx.features.redis_store
                    && cfg.filled_claims > 0
                    && cfg.wants("edge-redis-filled"),
            ) {
                let store = Store::Redis(redis);
                let r = ingest_edge(&ctx, &shape, store, None, cfg.filled_claims)?;
                logged("edge on Redis, claim windows filled", &r);
                shaped.edge_redis_filled.push(r);
            }
            if cfg.wants("edge-embedded") {
                let r = ingest_edge(&ctx, &shape, Store::Embedded, None, 0)?;
                logged("edge on embedded store", &r);
                shaped.edge_embedded.push(r);
            }
            if ctx.features.durability && cfg.wants("edge-embedded-relaxed") {
                let r = ingest_edge(&ctx, &shape, Store::Embedded, Some("relaxed"), 0)?;
                logged("edge on embedded store, --durability relaxed", &r);
                shaped.edge_embedded_relaxed.push(r);
            }
            if let Some(redis) = &cluster {
                let runs = (&mut shaped.edge_redis_cluster, &mut shaped.baseline_cluster);
                let labels = [
                    "edge on Redis Cluster",
                    "write-through baseline on Redis Cluster",
                ];
                redis_runs(
                    &ctx,
                    &shape,
                    redis,
                    edge_on_cluster,
                    labels,
                    runs,
                    &mut logged,
                )?;
            }
            if let (Some(redis), true) = (&single, wrk_available && wrk_shape == Some(shape.name)) {
                if ctx.features.redis_store {
                    let r = wrk_edge(&ctx, &shape, redis)?;
                    log(&format!(
                        "[{round}] {} / edge on Redis, {}",
                        shape.name,
                        r.summary()
                    ));
                    shaped.wrk_edge_redis.push(r);
                }
                let r = wrk_baseline(&ctx, &shape, redis)?;
                log(&format!(
                    "[{round}] {} / write-through baseline, {}",
                    shape.name,
                    r.summary()
                ));
                shaped.wrk_baseline.push(r);
            }
        }
    }
    if cfg.wants("stats") {
        let mut runs: Vec<(String, Store<'_>, Option<&str>)> = match &single {
            Some(redis) if ctx.features.redis_store => {
                let redis = Store::Redis(redis);
                if ctx.features.stats_cache {
                    vec![
                        ("edge on Redis, --stats-cache 1s".into(), redis, Some("1s")),
                        ("edge on Redis, --stats-cache 0s".into(), redis, Some("0s")),
                    ]
                } else {
                    vec![("edge on Redis (no --stats-cache flag)".into(), redis, None)]
                }
            }
            _ => Vec::new(),
        };
        runs.push(("edge on embedded store".into(), Store::Embedded, None));
        for (label, store, cache) in runs {
            let report = stats_run(&ctx, store, cache)?;
            log(&format!("stats, {label}: {}", report.summary("stats")));
            results.stats.push((label, report));
        }
    }
    Ok(results)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The Redis figures of a run, per million events.
#[derive(Clone, Copy, Debug)]
struct RedisRow {
    cmds_per_m: f64,
    cpu_per_m: f64,
    bytes_per_m: f64,
}

impl RedisRow {
    /// `NaN`s for a run without Redis.
    fn of(usage: Option<&Usage>, events: u64) -> Self {
        let per_m = |f: fn(&Usage) -> f64| usage.map_or(f64::NAN, |u| per_million(f(u), events));
        RedisRow {
            cmds_per_m: per_m(|u| u.commands() as f64),
            cpu_per_m: per_m(|u| u.cpu_seconds),
            bytes_per_m: per_m(|u| u.net_input_bytes as f64),
        }
    }
}

/// The figures of one run, or the medians of a scenario's runs.
#[derive(Clone, Copy, Debug)]
struct Row {
    events_per_s: f64,
    requests_per_s: f64,
    p50: f64,
    p99: f64,
    errors: f64,
    server_cpu_per_m: f64,
    generator_cpu_per_m: f64,
    redis: RedisRow,
    exact: bool,
}

/// The medians of runs' figures; `None` when the scenario did not run.
fn row(runs: &[Row]) -> Option<Row> {
    if runs.is_empty() {
        return None;
    }
    let m = |f: fn(&Row) -> f64| median(runs.iter().map(f).collect());
    Some(Row {
        events_per_s: m(|r| r.events_per_s),
        requests_per_s: m(|r| r.requests_per_s),
        p50: m(|r| r.p50),
        p99: m(|r| r.p99),
        errors: m(|r| r.errors),
        server_cpu_per_m: m(|r| r.server_cpu_per_m),
        generator_cpu_per_m: m(|r| r.generator_cpu_per_m),
        redis: RedisRow {
            cmds_per_m: m(|r| r.redis.cmds_per_m),
            cpu_per_m: m(|r| r.redis.cpu_per_m),
            bytes_per_m: m(|r| r.redis.bytes_per_m),
        },
        exact: runs.iter().all(|r| r.exact),
    })
}

fn ingest_row(runs: &[IngestRun]) -> Option<Row> {
    row(&runs.iter().map(IngestRun::figures).collect::<Vec<_>>())
}

fn wrk_row(runs: &[WrkRun]) -> Option<Row> {
    row(&runs.iter().map(WrkRun::figures).collect::<Vec<_>>())
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn write_row(out: &mut String, name: &str, r: &Row) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        fmt_num(r.events_per_s),
        fmt_num(r.requests_per_s),
        fmt_num(r.p50),
        fmt_num(r.p99),
        fmt_num(r.errors),
        fmt_num(r.server_cpu_per_m),
        fmt_num(r.generator_cpu_per_m),
        fmt_num(r.redis.cmds_per_m),
        fmt_num(r.redis.cpu_per_m),
        fmt_num(r.redis.bytes_per_m),
        if r.exact { "yes" } else { "NO" }
    );
}

/// The row of `e / b` for every figure where a ratio means something.
fn write_ratio(out: &mut String, name: &str, e: &Row, b: &Row) {
    let _ = writeln!(
        out,
        "| {name} | {} | {} | {} | {} | | {} | | {} | {} | {} | |",
        fmt_num(e.events_per_s / b.events_per_s),
        fmt_num(e.requests_per_s / b.requests_per_s),
        fmt_num(e.p50 / b.p50),
        fmt_num(e.p99 / b.p99),
        fmt_num(e.server_cpu_per_m / b.server_cpu_per_m),
        fmt_num(e.redis.cmds_per_m / b.redis.cmds_per_m),
        fmt_num(e.redis.cpu_per_m / b.redis.cpu_per_m),
        fmt_num(e.redis.bytes_per_m / b.redis.bytes_per_m),
    );
}

/// One shape's table with its ratio rows, and the Redis command breakdown.
fn shape_table(out: &mut String, cfg: &BenchConfig, shaped: &ShapeResults) {
    let _ = writeln!(out, "\n{}\n", shaped.shape.describe());
    let _ = writeln!(out, "| scenario | impressions/s | requests/s | p50 ms | p99 ms | errors | server CPU s / M | load gen CPU s / M | Redis commands / M | Redis CPU s / M | bytes to Redis / M | exact |");
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let edge_redis = ingest_row(&shaped.edge_redis);
    let filled = ingest_row(&shaped.edge_redis_filled);
    let baseline = ingest_row(&shaped.baseline);
    let embedded = ingest_row(&shaped.edge_embedded);
    let relaxed = ingest_row(&shaped.edge_embedded_relaxed);
    let wrk_edge = wrk_row(&shaped.wrk_edge_redis);
    let wrk_base = wrk_row(&shaped.wrk_baseline);
    let edge_cluster = ingest_row(&shaped.edge_redis_cluster);
    let baseline_cluster = ingest_row(&shaped.baseline_cluster);
    let cluster = format!("Redis Cluster ({CLUSTER_MASTERS} masters)");
    let edge_cluster_name = format!("edge, {cluster}");
    let baseline_cluster_name = format!("write-through baseline, {cluster}");
    let filled_name = format!(
        "edge, Redis store, claim windows filled ({} claims per shard and day)",
        fmt_num(cfg.filled_claims as f64)
    );
    for (name, r) in [
        ("edge, Redis store", &edge_redis),
        (&filled_name, &filled),
        ("write-through baseline", &baseline),
        ("edge, embedded store", &embedded),
        ("edge, embedded store, --durability relaxed", &relaxed),
        ("edge, Redis store (wrk)", &wrk_edge),
        ("write-through baseline (wrk)", &wrk_base),
        (&edge_cluster_name, &edge_cluster),
        (&baseline_cluster_name, &baseline_cluster),
    ] {
        if let Some(r) = r {
            write_row(out, name, r);
        }
    }
    let cluster_ratio = format!("ratio edge on {cluster} / baseline on {cluster}");
    for (name, e, b) in [
        ("ratio edge on Redis / baseline", &edge_redis, &baseline),
        (
            "ratio edge on Redis, claim windows filled / baseline",
            &filled,
            &baseline,
        ),
        ("ratio embedded / baseline", &embedded, &baseline),
        ("ratio embedded relaxed / baseline", &relaxed, &baseline),
        ("ratio edge on Redis / baseline (wrk)", &wrk_edge, &wrk_base),
        (&cluster_ratio, &edge_cluster, &baseline_cluster),
    ] {
        if let (Some(e), Some(b)) = (e, b) {
            write_ratio(out, name, e, b);
        }
    }
    for (on, e, b) in [
        (String::new(), &edge_redis, &baseline),
        (" with the claim windows filled".into(), &filled, &baseline),
        (
            format!(" on the {cluster}"),
            &edge_cluster,
            &baseline_cluster,
        ),
    ] {
        if let (Some(e), Some(b)) = (e, b) {
            let _ = writeln!(
                out,
                "\nImpressions per Redis CPU second{on}: edge {} vs baseline {} = {}x.",
                fmt_num(1e6 / e.redis.cpu_per_m),
                fmt_num(1e6 / b.redis.cpu_per_m),
                fmt_num(b.redis.cpu_per_m / e.redis.cpu_per_m),
            );
        }
    }
    for (name, runs) in [
        ("edge, Redis store", &shaped.edge_redis),
        ("write-through baseline", &shaped.baseline),
        (&edge_cluster_name, &shaped.edge_redis_cluster),
        (&baseline_cluster_name, &shaped.baseline_cluster),
    ] {
        if let Some(r) = runs.first() {
            if let Some(u) = &r.redis {
                let syncs = (cfg.duration.as_secs_f64() / cfg.sync_interval.as_secs_f64()).ceil()
                    as u64
                    + 1;
                let _ = writeln!(
                    out,
                    "\n{name}, first run: {} impressions, {} Redis commands ({}); distinct ad-days {} x syncs (about {syncs}) = {}.",
                    r.load.events,
                    u.commands(),
                    u.breakdown(),
                    r.ad_days,
                    r.ad_days * syncs
                );
            }
        }
    }
}

/// The results as Markdown tables: one per shape, then the stats route.
pub fn table(cfg: &BenchConfig, results: &Results) -> String {
    let mut out = String::new();
    let mix = cfg.mix;
    let _ = writeln!(
        out,
        "Load: {:?} per run, {} run(s) per scenario (medians, the scenarios alternated), {} ads x {} visitors, {:.0}% of measurable impressions viewable; edge sync interval {:?}. \"Impressions\" counts every event (measurable and viewable).",
        cfg.duration,
        cfg.repeat.max(1),
        mix.ads,
        mix.visitors,
        mix.viewable_share * 100.0,
        cfg.sync_interval
    );
    for shaped in &results.shapes {
        shape_table(&mut out, cfg, shaped);
    }
    if !results.stats.is_empty() {
        let _ = writeln!(
            out,
            "\nStats route `GET /v1/ads/{{ad}}/stats` at a fixed rate of {:.0} requests/s over {} connections for {:?} (latency from each request's scheduled time when a late answer delayed it, else from its send):\n",
            cfg.stats_rate, cfg.stats_connections, cfg.stats_duration
        );
        let _ = writeln!(
            out,
            "| edge | requests/s | p50 ms | p99 ms | p999 ms | errors |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for (label, r) in &results.stats {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {} |",
                fmt_num(r.requests_per_second()),
                fmt_num(r.latency_ms(0.5)),
                fmt_num(r.latency_ms(0.99)),
                fmt_num(r.latency_ms(0.999)),
                r.errors
            );
        }
    }
    for note in &results.notes {
        let _ = writeln!(out, "\nNote: {note}");
    }
    out
}
