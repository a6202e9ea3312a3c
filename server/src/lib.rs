//! The glimpse edge server.
//!
//! Data flows through the modules in this order:
//!
//! - [`http`]: routes, limits, auth and static files; the only module that
//!   speaks HTTP. Ingest validates a batch with `glimpse_wire`, claims its id
//!   ([`claims`]) and records its events in the [`aggregate::Aggregator`];
//!   with `--ad-signing-secret` each event's token is checked by [`signing`],
//!   and [`traffic`] judges whether the batch comes from a known bot.
//! - [`aggregate`]: per-(ad, day) deltas in memory; no I/O.
//! - [`wal`]: the write-ahead log: each accepted batch is appended (group
//!   commit) before ingest answers, replayed at start, truncated once the
//!   store has it; the only module that touches `<data-dir>/wal/`.
//! - [`sync`]: the background task that hands deltas to the store.
//! - [`store`]: the [`store::Store`] trait and its implementations (the
//!   embedded redb store, the default, and the Redis / Redis Cluster store,
//!   whose key schema and sync protocol are in `docs/redis.md`) and the
//!   edge's identity; with [`wal`], the only modules that touch persistent
//!   state.
//! - [`stats`]: stored days merged with pending deltas; no I/O.
//!
//! [`run`] ties them together on a listener the caller owns and stops when the
//! caller's shutdown future resolves, so tests can run a whole edge in-process.

pub mod aggregate;
pub mod clock;
pub mod config;
pub mod counted;
pub mod counts;
pub mod edge;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod proxies;
pub mod ratelimit;
pub mod signing;
pub mod stats;
pub mod store;
pub mod sync;
pub mod traffic;
pub mod wal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use edge::{Edge, EdgeParts, IngestRules};
pub use http::{app, metrics_app, Access, Guard, HttpParts, HttpState};

use crate::clock::SystemClock;
use crate::config::StoreKind;
use crate::store::embedded::EmbeddedStore;
use crate::store::identity::EdgeIdentity;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::Store;
use crate::wal::Log;

/// Opens the store the configuration names, for the edge `edge_id`. The
/// Redis store does not wait for Redis: it connects on first use and
/// reconnects on its own.
pub fn open_store(config: &Config, edge_id: &str) -> anyhow::Result<Arc<dyn Store>> {
    match config.store {
        StoreKind::Embedded => {
            let store = EmbeddedStore::open(&config.data_dir).with_context(|| {
                format!(
                    "opening the embedded store in {}",
                    config.data_dir.display()
                )
            })?;
            Ok(Arc::new(store))
        }
        StoreKind::Redis => {
            if config.redis_url.is_none() && config.redis_cluster_nodes.is_empty() {
                anyhow::bail!("--store redis needs --redis-url or --redis-cluster-nodes");
            }
            // rediss:// needs a TLS provider; installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let store = RedisStore::open(RedisOptions {
                url: config.redis_url.clone(),
                cluster_nodes: config.redis_cluster_nodes.clone(),
                prefix: config.redis_prefix.clone(),
                retention_days: config.retention_days,
                stats_cache: config.stats_cache,
                edge_id: edge_id.to_owned(),
                data_dir: config.data_dir.clone(),
            })
            .context("setting up the Redis store")?;
            Ok(Arc::new(store))
        }
    }
}

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
    let store = open_store(&config, &identity.id)?;
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
        rules: IngestRules::from_config(&config),
        log: Some(log),
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
    let sync_task = {
        let edge = Arc::clone(&edge);
        let interval = config.sync_interval;
        tokio::spawn(async move { sync::run(&edge, interval, sync_stopped).await })
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
            let serve = axum::serve(metrics_listener, metrics_app(Arc::clone(&http)));
            Some(tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            }))
        }
    };

    let router = app(http);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")?;
    if let Some(task) = metrics_task {
        task.abort();
    }

    tracing::info!("shutting down: flushing pending counts");
    let _ = stop_sync.send(true);
    sync_task.await.context("the sync task panicked")?;
    sync::flush(&edge)
        .await
        .context("flushing pending counts at shutdown")?;
    edge.close_log();
    tracing::info!("all pending counts are in the store");
    drop(identity);
    Ok(())
}
