//! `glimpse-baseline`: the write-through design the edge is measured against.
//!
//! The same HTTP ingest contract as the edge (`POST /v1/impressions`, decoded
//! and validated per event with `glimpse-wire`), but with no aggregation:
//! every valid event goes straight to Redis, pipelined per request —
//! `INCR` of the (ad, day) measurable counter for a measurable event, `INCR`
//! of the impressions counter plus `PFADD` of the visitor for a viewable one.
//! This is what a "backend" that writes each impression through would run.
//! It keeps no batch-id bookkeeping (a retried batch counts twice), which
//! only makes it cheaper than a correct design.
//!
//! On a Redis Cluster (`--redis-cluster-nodes`) a pipeline must stay in one
//! slot, so a request's commands are pipelined per (ad, day), whose keys
//! share a hash tag, and those pipelines are sent at once.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use glimpse_bench::verify::baseline_keys;
use glimpse_wire::api::{IngestResponse, Rejection};
use glimpse_wire::ingest::{decode_batch, validate_event};
use glimpse_wire::{Kind, MAX_BODY_BYTES};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::Pipeline;

#[derive(Debug, Parser)]
#[command(name = "glimpse-baseline", about)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The Redis every impression is written to.
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379/",
        conflicts_with = "redis_cluster_nodes"
    )]
    redis_url: String,
    /// Redis Cluster nodes to start from instead, comma separated:
    /// `host:port` or `redis://` URLs.
    #[arg(long, value_delimiter = ',')]
    redis_cluster_nodes: Vec<String>,
}

/// Where the events are written.
#[derive(Clone)]
enum Redis {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A request's commands: one pipeline on a single Redis; on a cluster one
/// per (ad, day), keyed by its hash tag.
enum Writes {
    Single(Pipeline),
    Cluster(BTreeMap<String, Pipeline>),
}

impl Writes {
    fn for_redis(redis: &Redis) -> Self {
        match redis {
            Redis::Single(_) => Writes::Single(redis::pipe()),
            Redis::Cluster(_) => Writes::Cluster(BTreeMap::new()),
        }
    }

    /// The pipeline the commands on `(ad, day)`'s keys go into.
    fn pipe(&mut self, ad: &str, day: &str) -> &mut Pipeline {
        match self {
            Writes::Single(pipe) => pipe,
            Writes::Cluster(pipes) => pipes.entry(format!("{ad}:{day}")).or_default(),
        }
    }

    async fn send(self, redis: Redis) -> redis::RedisResult<()> {
        match (self, redis) {
            (Writes::Single(pipe), Redis::Single(mut conn)) => pipe.query_async(&mut conn).await,
            (Writes::Cluster(pipes), Redis::Cluster(conn)) => {
                let sends = pipes.into_values().map(|pipe| {
                    let mut conn = conn.clone();
                    async move { pipe.query_async::<()>(&mut conn).await }
                });
                futures_util::future::try_join_all(sends).await.map(drop)
            }
            _ => unreachable!("the writes were made for this connection"),
        }
    }
}

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

async fn ingest(
    State(redis): State<Redis>,
    body: Bytes,
) -> Result<(StatusCode, Json<IngestResponse>), (StatusCode, String)> {
    let batch = decode_batch(&body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let now = now_ms();
    let mut response = IngestResponse::default();
    let mut seen = HashSet::with_capacity(batch.events.len());
    let mut writes = Writes::for_redis(&redis);
    for (index, raw) in batch.events.iter().enumerate() {
        match validate_event(raw, now) {
            Ok(event) if seen.insert(event.id.clone()) => {
                response.accepted += 1;
                let day = event.day.to_string();
                let [impressions, measurable, visitors] = baseline_keys(&event.subject_id, &day);
                let pipe = writes.pipe(&event.subject_id, &day);
                match event.kind {
                    Kind::Measurable => {
                        pipe.cmd("INCR").arg(measurable).ignore();
                    }
                    Kind::Viewable => {
                        pipe.cmd("INCR").arg(impressions).ignore();
                        pipe.cmd("PFADD")
                            .arg(visitors)
                            .arg(event.user_id.as_ref())
                            .ignore();
                    }
                    // The baseline counts display impressions only.
                    _ => {}
                }
            }
            Ok(_) => response.duplicates += 1,
            Err(e) => response.rejected.push(Rejection {
                index,
                error: e.to_string(),
            }),
        }
    }
    writes
        .send(redis)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let redis = if args.redis_cluster_nodes.is_empty() {
        let client = redis::Client::open(args.redis_url.as_str()).context("redis url")?;
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT));
        Redis::Single(
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .context("connecting to Redis")?,
        )
    } else {
        let nodes = args.redis_cluster_nodes.iter().map(|node| {
            if node.contains("://") {
                node.clone()
            } else {
                format!("redis://{node}/")
            }
        });
        let client = ClusterClient::builder(nodes)
            .response_timeout(RESPONSE_TIMEOUT)
            .connection_timeout(CONNECTION_TIMEOUT)
            .build()
            .context("redis cluster nodes")?;
        Redis::Cluster(
            client
                .get_async_connection()
                .await
                .context("connecting to the Redis Cluster")?,
        )
    };
    let app = Router::new()
        .route("/v1/impressions", post(ingest))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(redis);
    // The same listen backlog as the edge's (4,096), so a burst of new
    // connections meets the same kernel queue on both sides.
    let socket = tokio::net::TcpSocket::new_v4().context("the baseline listens on IPv4")?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(4096)?;
    println!(
        "glimpse-baseline listening on http://{}",
        listener.local_addr()?
    );
    let shutdown = async {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
