//! `glimpse-bench`: the edge against the write-through baseline, in one
//! invocation with its own redis-server, printed as Markdown tables: the
//! browser shape (1..6-event batches over 64 connections) first, then
//! 50-event batches, then beacons (1,000 connections at a time, one batch
//! each). The edge on Redis and the baseline also run on a 3-master Redis
//! Cluster of its own (`--redis single|cluster|both`, both by default).
//!
//! `glimpse-bench --tiny` runs in seconds (CI checks that it runs and that its
//! exactness checks pass). `glimpse-bench sdk [DIR]` prints the SDK's
//! compressed sizes.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use glimpse_bench::scenarios::{self, BenchConfig, RedisDeployments};

#[derive(Debug, Parser)]
#[command(name = "glimpse-bench", about)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The seconds-long configuration used by CI.
    #[arg(long)]
    tiny: bool,
    /// Ingest seconds per run.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Connections open at once, for every shape that runs (default: each
    /// shape's own).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Load shapes to run, in this order: browser, fifty, beacons.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
    /// Distinct ads.
    #[arg(long)]
    ads: Option<u32>,
    /// Distinct visitors.
    #[arg(long)]
    visitors: Option<u32>,
    /// The edge's sync interval.
    #[arg(long, value_parser = humantime::parse_duration)]
    sync_interval: Option<Duration>,
    /// Requests per second of the stats run.
    #[arg(long)]
    stats_rate: Option<f64>,
    /// Runs per ingest scenario (the table shows medians).
    #[arg(long)]
    repeat: Option<usize>,
    /// Scenarios to run: edge-redis, edge-redis-filled, baseline,
    /// edge-embedded, edge-embedded-relaxed, wrk, stats. edge-redis and baseline run on
    /// every deployment `--redis` names.
    #[arg(long, value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(scenarios::SCENARIOS))]
    only: Vec<String>,
    /// The Redis the Redis scenarios run on (default: both). The second
    /// generator (wrk) and the stats route run on the single Redis only.
    #[arg(long, value_enum)]
    redis: Option<RedisDeployments>,
    /// Claims per shard and day window planted before the headline shape's
    /// edge-redis-filled run (the steady state of days of traffic; 0 skips
    /// it).
    #[arg(long)]
    filled_claims: Option<usize>,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// gzip -9 and brotli sizes of the built SDK (wasm + JS).
    Sdk {
        /// The built package directory.
        #[arg(default_value = "sdk/pkg")]
        dir: std::path::PathBuf,
    },
    /// Main-thread time of the SDK's callbacks while observed ads scroll
    /// by in headless Chromium.
    SdkMainThread {
        /// The built package directory.
        #[arg(default_value = "sdk/pkg")]
        dir: std::path::PathBuf,
        /// How many ads the page holds.
        #[arg(long, default_value_t = 1000)]
        ads: usize,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = &args.command {
        let result = match command {
            Cmd::Sdk { dir } => glimpse_bench::sdk::sizes(dir),
            Cmd::SdkMainThread { dir, ads } => glimpse_bench::sdk_main_thread::measure(dir, *ads),
        };
        return match result {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("glimpse-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut cfg = if args.tiny {
        BenchConfig::tiny()
    } else {
        BenchConfig::full()
    };
    if let Some(d) = args.duration {
        cfg.duration = d;
        cfg.stats_duration = d;
    }
    if !args.shapes.is_empty() {
        let mut chosen = Vec::new();
        for name in &args.shapes {
            match cfg.shapes.iter().find(|s| s.name == name.as_str()) {
                Some(shape) => chosen.push(shape.clone()),
                None => {
                    eprintln!("glimpse-bench: no shape `{name}` (browser, fifty, beacons)");
                    return ExitCode::FAILURE;
                }
            }
        }
        cfg.shapes = chosen;
    }
    if let Some(c) = args.concurrency {
        for shape in &mut cfg.shapes {
            shape.concurrency = c;
        }
    }
    if let Some(a) = args.ads {
        cfg.mix.ads = a;
    }
    if let Some(v) = args.visitors {
        cfg.mix.visitors = v;
    }
    if let Some(s) = args.sync_interval {
        cfg.sync_interval = s;
    }
    if let Some(r) = args.stats_rate {
        cfg.stats_rate = r;
    }
    if let Some(r) = args.repeat {
        cfg.repeat = r;
    }
    if let Some(n) = args.filled_claims {
        cfg.filled_claims = n;
    }
    cfg.only = args.only.clone();
    if let Some(redis) = args.redis {
        cfg.redis = redis;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = match scenarios::run(&cfg, &rt, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("glimpse-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", scenarios::table(&cfg, &results));
    match results.all_exact() {
        Some(true) => {
            println!("exactness: every stored count equals what was sent");
            ExitCode::SUCCESS
        }
        Some(false) => {
            println!("exactness: FAILED (see the scenario lines above)");
            ExitCode::from(2)
        }
        None => {
            println!("exactness: no ingest scenario ran, so no counts were checked");
            ExitCode::SUCCESS
        }
    }
}
