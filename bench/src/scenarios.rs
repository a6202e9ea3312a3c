//! The side-by-side run: the edge aggregating onto Redis, the write-through
//! baseline on the same Redis, the edge on its embedded store, and the stats
//! route at a fixed rate with and without the short cache. Each scenario
//! starts its own server processes and stops them by pid; Redis is one
//! private `redis-server` on a free loopback port, flushed between scenarios.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use glimpse_tests::redis::RedisServer;
use glimpse_wire::{Day, DayRange};
use tokio::runtime::Runtime;

use crate::gen::{Mix, Tally};
use crate::load::{self, now_ms, run_id, IngestConfig, LoadReport, StatsConfig};
use crate::procs::{own_cpu_seconds, sibling_binary, Server};
use crate::redis_info::{Snapshot, Usage};
use crate::verify::{self, Verdict};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub duration: Duration,
    pub concurrency: usize,
    pub mix: Mix,
    pub sync_interval: Duration,
    pub stats_rate: f64,
    pub stats_duration: Duration,
    pub stats_connections: usize,
    /// Each ingest scenario runs this many times; the table shows medians.
    pub repeat: usize,
    /// Scenario names to run (empty: all).
    pub only: Vec<String>,
}

impl BenchConfig {
    /// The full configuration (about two minutes with `repeat = 1`).
    pub fn full() -> Self {
        BenchConfig {
            duration: Duration::from_secs(10),
            concurrency: 16,
            mix: Mix::default(),
            sync_interval: Duration::from_secs(1),
            stats_rate: 5000.0,
            stats_duration: Duration::from_secs(10),
            stats_connections: 16,
            repeat: 1,
            only: Vec::new(),
        }
    }

    /// Seconds, for CI: proves every part runs and counts exactly.
    pub fn tiny() -> Self {
        BenchConfig {
            duration: Duration::from_millis(800),
            concurrency: 2,
            mix: Mix {
                ads: 5,
                visitors: 500,
                events: 50,
                viewable_share: 0.8,
            },
            sync_interval: Duration::from_millis(200),
            stats_rate: 200.0,
            stats_duration: Duration::from_millis(500),
            stats_connections: 2,
            repeat: 1,
            only: Vec::new(),
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// The store flags the edge binary knows (the Redis store lands separately).
#[derive(Clone, Debug, Default)]
pub struct EdgeFeatures {
    pub redis_store: bool,
    pub stats_cache: bool,
    /// `--durability strict|relaxed` (the write-ahead log).
    pub durability: bool,
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
        })
    }
}

#[derive(Clone, Debug)]
enum Store {
    Embedded,
    Redis(String),
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
    fn per_million(&self, x: f64) -> f64 {
        x * 1e6 / self.load.events.max(1) as f64
    }
}

/// Everything one `glimpse-bench` invocation measured.
#[derive(Debug, Default)]
pub struct Results {
    pub edge_redis: Vec<IngestRun>,
    pub baseline: Vec<IngestRun>,
    pub edge_embedded: Vec<IngestRun>,
    /// The embedded store with `--durability relaxed` (answers before the
    /// write-ahead log's fsync); `edge_embedded` runs the default, strict.
    pub edge_embedded_relaxed: Vec<IngestRun>,
    /// `(label, report)` of the stats route runs.
    pub stats: Vec<(String, LoadReport)>,
    pub notes: Vec<String>,
}

impl Results {
    /// Whether every exactness check passed; `None` when no ingest
    /// scenario ran (the stats scenario alone checks no counts).
    pub fn all_exact(&self) -> Option<bool> {
        let runs: Vec<&IngestRun> = self
            .edge_redis
            .iter()
            .chain(&self.baseline)
            .chain(&self.edge_embedded)
            .chain(&self.edge_embedded_relaxed)
            .collect();
        (!runs.is_empty()).then(|| runs.iter().all(|r| r.verdict.exact() && r.load.events > 0))
    }
}

struct Ctx<'a> {
    rt: &'a Runtime,
    cfg: &'a BenchConfig,
    server_bin: std::path::PathBuf,
    baseline_bin: std::path::PathBuf,
    features: EdgeFeatures,
    redis: &'a RedisServer,
}

fn edge_command(
    ctx: &Ctx<'_>,
    dir: &Path,
    store: &Store,
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
        "GLIMPSE_STATS_CACHE",
        "GLIMPSE_DURABILITY",
    ] {
        c.env_remove(var);
    }
    if let Some(durability) = durability {
        c.args(["--durability", durability]);
    }
    if let Store::Redis(url) = store {
        c.args(["--store", "redis", "--redis-url", url]);
    }
    if let (Some(cache), true) = (stats_cache, ctx.features.stats_cache) {
        c.args(["--stats-cache", cache]);
    }
    c
}

fn flush_redis(ctx: &Ctx<'_>) -> Snapshot {
    ctx.redis.cmd(&[b"FLUSHALL"]).not_error();
    Snapshot::take(&mut ctx.redis.connect())
}

fn ingest_config(ctx: &Ctx<'_>, target: std::net::SocketAddr) -> IngestConfig {
    IngestConfig {
        target,
        concurrency: ctx.cfg.concurrency,
        duration: ctx.cfg.duration,
        mix: ctx.cfg.mix,
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
fn load_and_measure(ctx: &Ctx<'_>, server: &Server) -> Measured {
    let tally = Arc::new(Tally::new(ctx.cfg.mix));
    let first_day = today();
    let (cpu0, gen0) = (server.cpu_seconds(), own_cpu_seconds());
    let load = ctx.rt.block_on(load::ingest(
        &ingest_config(ctx, server.addr),
        &run_id(),
        Arc::clone(&tally),
    ));
    let (server_cpu, generator_cpu) = (server.cpu_seconds() - cpu0, own_cpu_seconds() - gen0);
    Measured {
        load,
        server_cpu,
        generator_cpu,
        tally,
        days: DayRange::new(first_day, today()).expect("days in order"),
    }
}

fn ingest_edge(ctx: &Ctx<'_>, store: &Store, durability: Option<&str>) -> Result<IngestRun> {
    let dir = tempfile::tempdir()?;
    let before = matches!(store, Store::Redis(_)).then(|| flush_redis(ctx));
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, None, durability),
    )?;
    let measured = load_and_measure(ctx, &edge);
    edge.terminate()?;
    let redis = before.map(|b| b.delta(&Snapshot::take(&mut ctx.redis.connect())));
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

/// The write-through baseline under the same load; checked in Redis itself.
fn ingest_baseline(ctx: &Ctx<'_>) -> Result<IngestRun> {
    let before = flush_redis(ctx);
    let mut command = Command::new(&ctx.baseline_bin);
    command
        .args(["--listen", "127.0.0.1:0", "--redis-url"])
        .arg(ctx.redis.url());
    let server = Server::start("glimpse-baseline", command)?;
    let measured = load_and_measure(ctx, &server);
    server.terminate()?;
    let mut conn = ctx.redis.connect();
    let redis = Some(before.delta(&Snapshot::take(&mut conn)));
    let verdict = verify::baseline(&mut conn, &measured.tally, measured.days);
    Ok(measured.into_run(redis, verdict))
}

/// The stats route at a fixed rate on an edge whose store holds a day of
/// every ad and nothing pending (loaded, stopped, started again).
fn stats_run(ctx: &Ctx<'_>, store: &Store, cache: Option<&str>) -> Result<LoadReport> {
    let dir = tempfile::tempdir()?;
    if matches!(store, Store::Redis(_)) {
        flush_redis(ctx);
    }
    let edge = Server::start(
        "glimpse-server",
        edge_command(ctx, dir.path(), store, cache, None),
    )?;
    let mut preload = ingest_config(ctx, edge.addr);
    preload.duration = ctx.cfg.duration.min(Duration::from_secs(2));
    ctx.rt.block_on(load::ingest(
        &preload,
        &run_id(),
        Arc::new(Tally::new(ctx.cfg.mix)),
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
    let redis = RedisServer::start();
    let ctx = Ctx {
        rt,
        cfg,
        server_bin,
        baseline_bin,
        features,
        redis: &redis,
    };
    let mut results = Results::default();
    let redis_store = Store::Redis(redis.url());
    if !ctx.features.redis_store {
        results.notes.push(
            "this glimpse-server has no Redis store (--store redis): the edge-on-Redis scenarios did not run"
                .into(),
        );
    }
    for round in 0..cfg.repeat.max(1) {
        if ctx.features.redis_store && cfg.wants("edge-redis") {
            let r = ingest_edge(&ctx, &redis_store, None)?;
            log(&format!(
                "[{round}] edge on Redis: {}; {}",
                r.load.summary("ingest"),
                r.verdict
            ));
            results.edge_redis.push(r);
        }
        if cfg.wants("baseline") {
            let r = ingest_baseline(&ctx)?;
            log(&format!(
                "[{round}] write-through baseline: {}; {}",
                r.load.summary("ingest"),
                r.verdict
            ));
            results.baseline.push(r);
        }
        if cfg.wants("edge-embedded") {
            let r = ingest_edge(&ctx, &Store::Embedded, None)?;
            log(&format!(
                "[{round}] edge on embedded store: {}; {}",
                r.load.summary("ingest"),
                r.verdict
            ));
            results.edge_embedded.push(r);
        }
        if ctx.features.durability && cfg.wants("edge-embedded-relaxed") {
            let r = ingest_edge(&ctx, &Store::Embedded, Some("relaxed"))?;
            log(&format!(
                "[{round}] edge on embedded store, --durability relaxed: {}; {}",
                r.load.summary("ingest"),
                r.verdict
            ));
            results.edge_embedded_relaxed.push(r);
        }
    }
    if cfg.wants("stats") {
        let mut runs: Vec<(String, Store, Option<&str>)> = if ctx.features.redis_store {
            if ctx.features.stats_cache {
                vec![
                    (
                        "edge on Redis, --stats-cache 1s".into(),
                        redis_store.clone(),
                        Some("1s"),
                    ),
                    (
                        "edge on Redis, --stats-cache 0s".into(),
                        redis_store.clone(),
                        Some("0s"),
                    ),
                ]
            } else {
                vec![(
                    "edge on Redis (no --stats-cache flag)".into(),
                    redis_store.clone(),
                    None,
                )]
            }
        } else {
            Vec::new()
        };
        runs.push(("edge on embedded store".into(), Store::Embedded, None));
        for (label, store, cache) in runs {
            let report = stats_run(&ctx, &store, cache)?;
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

/// Medians of one scenario's runs.
#[derive(Clone, Copy, Debug)]
struct Row {
    events_per_s: f64,
    p50: f64,
    p99: f64,
    errors: f64,
    server_cpu_per_m: f64,
    generator_cpu_per_m: f64,
    redis_cmds_per_m: f64,
    redis_cpu_per_m: f64,
    redis_bytes_per_m: f64,
    exact: bool,
}

fn row(runs: &[IngestRun]) -> Option<Row> {
    if runs.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&IngestRun) -> f64| median(runs.iter().map(f).collect());
    fn redis(r: &IngestRun, f: fn(&Usage) -> f64) -> f64 {
        r.redis.as_ref().map_or(f64::NAN, |u| r.per_million(f(u)))
    }
    Some(Row {
        events_per_s: m(&|r| r.load.events_per_second()),
        p50: m(&|r| r.load.latency_ms(0.5)),
        p99: m(&|r| r.load.latency_ms(0.99)),
        errors: m(&|r| r.load.errors as f64),
        server_cpu_per_m: m(&|r| r.per_million(r.server_cpu)),
        generator_cpu_per_m: m(&|r| r.per_million(r.generator_cpu)),
        redis_cmds_per_m: m(&|r| redis(r, |u| u.commands() as f64)),
        redis_cpu_per_m: m(&|r| redis(r, |u| u.cpu_seconds)),
        redis_bytes_per_m: m(&|r| redis(r, |u| u.net_input_bytes as f64)),
        exact: runs.iter().all(|r| r.verdict.exact()),
    })
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

/// The results as Markdown tables.
pub fn table(cfg: &BenchConfig, results: &Results) -> String {
    let mut out = String::new();
    let mix = cfg.mix;
    let _ = writeln!(
        out,
        "Load: {} connections, {:?} per run, {} run(s) per scenario (medians), batches of {} events, {} ads x {} visitors, {:.0}% of measurable impressions viewable; edge sync interval {:?}.\n",
        cfg.concurrency,
        cfg.duration,
        cfg.repeat.max(1),
        mix.events,
        mix.ads,
        mix.visitors,
        mix.viewable_share * 100.0,
        cfg.sync_interval
    );
    let _ = writeln!(out, "| scenario | impressions/s | p50 ms | p99 ms | errors | server CPU s / M | load gen CPU s / M | Redis commands / M | Redis CPU s / M | bytes to Redis / M | exact |");
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let rows = [
        ("edge, Redis store", row(&results.edge_redis)),
        ("write-through baseline", row(&results.baseline)),
        ("edge, embedded store", row(&results.edge_embedded)),
        (
            "edge, embedded store, --durability relaxed",
            row(&results.edge_embedded_relaxed),
        ),
    ];
    for (name, r) in &rows {
        if let Some(r) = r {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_num(r.events_per_s),
                fmt_num(r.p50),
                fmt_num(r.p99),
                fmt_num(r.errors),
                fmt_num(r.server_cpu_per_m),
                fmt_num(r.generator_cpu_per_m),
                fmt_num(r.redis_cmds_per_m),
                fmt_num(r.redis_cpu_per_m),
                fmt_num(r.redis_bytes_per_m),
                if r.exact { "yes" } else { "NO" }
            );
        }
    }
    if let (Some(e), Some(b)) = (rows[0].1, rows[1].1) {
        let _ = writeln!(
            out,
            "| ratio edge / baseline | {} | {} | {} | | {} | | {} | {} | {} | |",
            fmt_num(e.events_per_s / b.events_per_s),
            fmt_num(e.p50 / b.p50),
            fmt_num(e.p99 / b.p99),
            fmt_num(e.server_cpu_per_m / b.server_cpu_per_m),
            fmt_num(e.redis_cmds_per_m / b.redis_cmds_per_m),
            fmt_num(e.redis_cpu_per_m / b.redis_cpu_per_m),
            fmt_num(e.redis_bytes_per_m / b.redis_bytes_per_m),
        );
        let _ = writeln!(
            out,
            "\nImpressions per Redis CPU second: edge {} vs baseline {} = {}x.",
            fmt_num(1e6 / e.redis_cpu_per_m),
            fmt_num(1e6 / b.redis_cpu_per_m),
            fmt_num(b.redis_cpu_per_m / e.redis_cpu_per_m),
        );
    }
    for (name, runs) in [
        ("edge, Redis store", &results.edge_redis),
        ("write-through baseline", &results.baseline),
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
