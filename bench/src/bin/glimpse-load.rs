//! `glimpse-load`: sends realistic impression batches to an edge (or the
//! baseline) and reports impressions/s and latency; optionally checks the
//! stored counts through the stats routes afterwards.
//!
//! ```text
//! glimpse-load --target 127.0.0.1:8080 --duration 10s --concurrency 16 --verify
//! glimpse-load --target 127.0.0.1:8080 --stats-rate 5000 --duration 10s
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use glimpse_bench::gen::{BatchSize, Mix, Tally};
use glimpse_bench::load::{self, now_ms, run_id, Connections, IngestConfig, StatsConfig};
use glimpse_bench::verify;
use glimpse_wire::{Day, DayRange};

#[derive(Debug, Parser)]
#[command(name = "glimpse-load", about)]
struct Args {
    /// The server, on a loopback address.
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Connections open at once, each sending its next batch on the answer.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Each batch on a connection of its own, closed after the answer
    /// (beacons from many browsers); else connections are kept alive.
    #[arg(long)]
    one_batch_per_connection: bool,
    #[arg(long, default_value_t = 100)]
    ads: u32,
    #[arg(long, default_value_t = 100_000)]
    visitors: u32,
    /// Events per batch: `N`, or `MIN..MAX` drawn uniformly per batch.
    #[arg(long, default_value = "50")]
    events: BatchSize,
    /// Share of measurable impressions that are also viewable.
    #[arg(long, default_value_t = 0.8)]
    viewable_share: f64,
    /// Instead of ingest: GET the stats route at this many requests/s.
    #[arg(long)]
    stats_rate: Option<f64>,
    /// After ingest, wait this long, then check every ad's stored counts
    /// through `GET /v1/ads/{ad}/stats` (the edge only).
    #[arg(long, value_parser = humantime::parse_duration)]
    verify_after: Option<Duration>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        eprintln!("glimpse-load targets loopback addresses only");
        return ExitCode::FAILURE;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mix = Mix {
        ads: args.ads.max(1),
        visitors: args.visitors.max(1),
        batch: args.events,
        viewable_share: args.viewable_share.clamp(0.0, 1.0),
    };
    if let Some(rate) = args.stats_rate {
        let report = rt.block_on(load::stats(&StatsConfig {
            target: args.target,
            rate,
            connections: args.concurrency,
            duration: args.duration,
            ads: mix.ads,
        }));
        println!("{}", report.summary("stats"));
        return ExitCode::SUCCESS;
    }
    let tally = Arc::new(Tally::new(mix));
    let first_day = Day::from_epoch_ms(now_ms()).expect("clock after 1970");
    let report = rt.block_on(load::ingest(
        &IngestConfig {
            target: args.target,
            concurrency: args.concurrency,
            connections: if args.one_batch_per_connection {
                Connections::OneBatchEach
            } else {
                Connections::KeepAlive
            },
            duration: args.duration,
            mix,
            seed: now_ms() as u64,
        },
        &run_id(),
        Arc::clone(&tally),
    ));
    println!("{}", report.summary("ingest"));
    if let Some(wait) = args.verify_after {
        std::thread::sleep(wait);
        let last_day = Day::from_epoch_ms(now_ms()).expect("clock after 1970");
        let days = DayRange::new(first_day, last_day).expect("days in order");
        let verdict = rt.block_on(verify::edge(args.target, &tally, days));
        println!("{verdict}");
        if !verdict.exact() {
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
