//! The glimpse edge server: a library, so tests can run a whole edge
//! in-process, and a thin binary (`main.rs`).
//!
//! A batch flows through the modules in this order:
//!
//! - `http`: routes, extractors, auth, the guard layers (rate limit, load
//!   shedding, body timeout), static files, and the mapping of errors to
//!   JSON answers; the only module that knows HTTP. Each route calls the core.
//! - `edge`: the core, [`Edge`]: the state everything shares (aggregator,
//!   batch claims, log, store, clock, ingest rules, metrics) and the ingest
//!   pipeline, as plain Rust. Ingest validates events with `glimpse_wire`,
//!   checks signed ads ([`signing`]), judges the traffic (`traffic`), and
//!   counts each batch once by the protocol in `counted`.
//! - `aggregate`: pending [`counts`] per (ad, day), in memory; no I/O.
//! - `wal`: the write-ahead log: each accepted batch is appended (group
//!   commit) before ingest answers, replayed at start, truncated once the
//!   store has it; the only module that touches `<data-dir>/wal/`.
//! - [`sync`]: the background task that hands deltas to the store.
//! - [`store`]: the [`store::Store`] trait and its implementations (the
//!   embedded redb store, the default, and the Redis / Redis Cluster store,
//!   whose key schema and sync protocol are in `docs/redis.md`), the local
//!   index of synced batch ids and the edge's identity; with `wal`, the only
//!   modules that touch persistent state.
//! - `stats`: stored days merged with pending ones into the answers, by UTC
//!   day and hour, or by the days and hours of a time zone (`tz`); no I/O.
//!
//! [`run`] ties them together on a listener the caller owns and stops when the
//! caller's shutdown future resolves.

mod aggregate;
pub mod clock;
pub mod config;
mod counted;
pub mod counts;
mod edge;
mod heap;
mod http;
pub mod keys;
mod metrics;
mod proxies;
mod ratelimit;
pub mod signing;
mod stats;
pub mod store;
pub mod sync;
mod traffic;
mod tz;
mod wal;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use edge::{Edge, EdgeParts, IngestRules};
pub use http::{app, metrics_app, Access, Guard, HttpParts, HttpState};

use crate::clock::SystemClock;
use crate::store::identity::EdgeIdentity;
use crate::wal::Log;

/// The access rule from `--api-keys` and `--api-keys-file`; a keys file that
/// cannot be read or parsed stops the start with the line at fault.
pub fn load_access(config: &Config) -> anyhow::Result<Access> {
    let scoped = match &config.api_keys_file {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API keys file {}", path.display()))?;
            let keys = keys::parse_keys_file(&text)
                .with_context(|| format!("in the API keys file {}", path.display()))?;
            tracing::info!(keys = keys.len(), file = %path.display(), "loaded scoped API keys");
            keys
        }
    };
    Ok(Access::from_parts(&config.api_keys, scoped))
}

/// The write-ahead log's directory inside the data directory.
fn wal_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("wal")
}

/// Runs an edge on `listener` until `shutdown` resolves, then flushes every
/// pending count to the store before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Held (with the directory's lock) until the run ends.
    let identity = EdgeIdentity::load(&config.data_dir).context("loading the edge identity")?;
    tracing::info!(edge_id = %identity.id, boot = identity.boot, "edge identity");
    let store = store::open(&config, &identity)?;
    // A restored data directory stops the start here; if the store cannot
    // be asked now, the edge starts anyway and the store asks again before
    // its first sync writes anything.
    match store.verify_identity().await {
        Ok(()) => {}
        Err(e @ store::StoreError::Restored(_)) => return Err(e.into()),
        Err(e) => tracing::warn!(
            error = %e,
            "could not check this start against the store; checked again before the first sync"
        ),
    }
    let log = Log::open(&wal_dir(&config), config.durability, &identity)?;
    let access = load_access(&config)?;
    if matches!(access, Access::LoopbackOnly) {
        tracing::warn!(
            "no API keys configured (--api-keys, --api-keys-file): stats routes answer loopback clients only"
        );
    }
    if config.durability == config::Durability::Relaxed {
        tracing::warn!("--durability relaxed: ingest answers before its batch is fsynced; a crash loses the last moments of accepted batches");
    }
    let edge = Arc::new(Edge::new(EdgeParts {
        store,
        clock: Arc::new(SystemClock),
        rules: IngestRules::from_config(&config).map_err(anyhow::Error::msg)?,
        log: Some(log),
        hourly_retention_days: config.hourly_sketch_days(),
    }));
    for (what, dir) in [("demo site", &config.www_dir), ("SDK", &config.sdk_dir)] {
        if !dir.is_dir() {
            tracing::info!(dir = %dir.display(), "{what} directory not found; not serving it");
        }
    }
    let http = Arc::new(HttpState::new(
        Arc::clone(&edge),
        HttpParts::from_config(&config, access),
    ));

    let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
    // Woken when the sync task stops on its own (a restored data
    // directory): the edge then shuts down.
    let sync_failed = Arc::new(tokio::sync::Notify::new());
    let sync_task = {
        let edge = Arc::clone(&edge);
        let interval = config.sync_interval;
        let sync_failed = Arc::clone(&sync_failed);
        tokio::spawn(async move {
            let ran = sync::run(&edge, interval, sync_stopped).await;
            if ran.is_err() {
                sync_failed.notify_one();
            }
            ran
        })
    };
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = sync_failed.notified() => {}
        }
    };

    let metrics_task = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let metrics_listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            // On stdout like the main address, for scripts and tests.
            println!(
                "glimpse-server metrics on http://{}",
                metrics_listener.local_addr()?
            );
            let serve = http::serve(
                metrics_listener,
                metrics_app(Arc::clone(&http)),
                config.header_read_timeout,
                std::future::pending(),
            );
            Some(tokio::spawn(serve))
        }
    };

    http::serve(listener, app(http), config.header_read_timeout, shutdown).await;
    if let Some(task) = metrics_task {
        task.abort();
    }

    tracing::info!("shutting down: flushing pending counts");
    let _ = stop_sync.send(true);
    if let Err(e) = sync_task.await.context("the sync task panicked")? {
        // Nothing may be synced; the log keeps what was accepted.
        edge.close_log();
        return Err(e.into());
    }
    sync::flush(&edge)
        .await
        .context("flushing pending counts at shutdown")?;
    edge.close_log();
    tracing::info!("all pending counts are in the store");
    drop(identity);
    Ok(())
}
