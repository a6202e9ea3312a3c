//! The glimpse edge server.
//!
//! Data flows through the modules in this order:
//!
//! - [`http`]: routes, limits, auth and static files; the only module that
//!   speaks HTTP. Ingest validates a batch with `glimpse_wire`, claims its id
//!   ([`claims`]) and records its events in the [`aggregate::Aggregator`].
//! - [`aggregate`]: per-(ad, day) deltas in memory; no I/O.
//! - [`sync`]: the background task that hands deltas to the store.
//! - [`store`]: the [`store::Store`] trait and its implementations (the
//!   embedded redb store, the default, and the Redis / Redis Cluster store,
//!   whose key schema and sync protocol are in `docs/redis.md`); the only
//!   module that touches persistent state.
//! - [`stats`]: stored days merged with pending deltas; no I/O.
//!
//! [`run`] ties them together on a listener the caller owns and stops when the
//! caller's shutdown future resolves, so tests can run a whole edge in-process.

pub mod aggregate;
pub mod claims;
pub mod clock;
pub mod config;
pub mod http;
pub mod stats;
pub mod store;
pub mod sync;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;
pub use http::{app, Access, Edge};

use crate::clock::SystemClock;
use crate::config::StoreKind;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::Store;

/// Opens the store the configuration names. The Redis store does not wait
/// for Redis: it connects on first use and reconnects on its own.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
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
                data_dir: config.data_dir.clone(),
            })
            .context("setting up the Redis store")?;
            Ok(Arc::new(store))
        }
    }
}

/// Runs an edge on `listener` until `shutdown` resolves, then flushes every
/// pending count to the store before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let access = Access::from_keys(&config.api_keys);
    if matches!(access, Access::LoopbackOnly) {
        tracing::warn!(
            "no API keys configured (--api-keys): stats routes answer loopback clients only"
        );
    }
    let mut edge = Edge::new(store, Arc::new(SystemClock), access);
    edge.max_pending_bytes = usize::try_from(config.max_pending_bytes).unwrap_or(usize::MAX);
    edge.www_dir = Some(config.www_dir.clone());
    edge.sdk_dir = Some(config.sdk_dir.clone());
    for (what, dir) in [("demo site", &config.www_dir), ("SDK", &config.sdk_dir)] {
        if !dir.is_dir() {
            tracing::info!(dir = %dir.display(), "{what} directory not found; not serving it");
        }
    }
    let edge = Arc::new(edge);

    let (stop_sync, sync_stopped) = tokio::sync::watch::channel(false);
    let sync_task = {
        let edge = Arc::clone(&edge);
        let interval = config.sync_interval;
        tokio::spawn(async move { sync::run(&edge, interval, sync_stopped).await })
    };

    let router = app(Arc::clone(&edge));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")?;

    tracing::info!("shutting down: flushing pending counts");
    let _ = stop_sync.send(true);
    sync_task.await.context("the sync task panicked")?;
    sync::flush(&edge)
        .await
        .context("flushing pending counts at shutdown")?;
    tracing::info!("all pending counts are in the store");
    Ok(())
}
