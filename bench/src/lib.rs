//! Benchmarks of glimpse, measured against the design a user would otherwise
//! build.
//!
//! - [`gen`]: realistic impression batches (the SDK's wire format) and a
//!   record of exactly what was sent, for the exactness check;
//! - [`http1`]: a minimal HTTP/1.1 keep-alive client on a `TcpStream`, so the
//!   load generator costs little of the two cores it shares with the servers;
//! - [`load`]: the closed-loop ingest run and the fixed-rate stats run, with
//!   latency histograms;
//! - [`verify`]: stored counts against what was sent, through the stats
//!   routes (edge) or Redis itself (baseline);
//! - [`procs`]: the processes a benchmark starts (edge, baseline), stopped by
//!   their own pid only;
//! - [`redis_info`]: the `INFO` figures a scenario is charged with;
//! - [`redis_target`]: the Redis a scenario runs on, one server or a
//!   cluster, flushed, measured and read alike;
//! - [`scenarios`]: the side-by-side run that `glimpse-bench` prints;
//! - [`wrk`]: the browser shape from `wrk`, a second, independent generator;
//! - [`sdk`] and [`sdk_main_thread`]: the SDK's compressed size and its
//!   main-thread time in headless Chromium.
//!
//! Everything targets loopback addresses only and every run is bounded in
//! time.

pub mod gen;
pub mod http1;
pub mod load;
pub mod procs;
pub mod redis_info;
pub mod redis_target;
pub mod scenarios;
pub mod sdk;
pub mod sdk_main_thread;
pub mod verify;
pub mod wrk;
