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

use std::collections::HashSet;
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

#[derive(Debug, Parser)]
#[command(name = "glimpse-baseline", about)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The Redis every impression is written to.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

async fn ingest(
    State(redis): State<MultiplexedConnection>,
    body: Bytes,
) -> Result<(StatusCode, Json<IngestResponse>), (StatusCode, String)> {
    let batch = decode_batch(&body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let now = now_ms();
    let mut response = IngestResponse::default();
    let mut seen = HashSet::with_capacity(batch.events.len());
    let mut pipe = redis::pipe();
    for (index, raw) in batch.events.iter().enumerate() {
        match validate_event(raw, now) {
            Ok(event) if seen.insert(event.id.clone()) => {
                response.accepted += 1;
                let [impressions, measurable, visitors] =
                    baseline_keys(&event.subject_id, &event.day.to_string());
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
    let mut conn = redis;
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(response)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = redis::Client::open(args.redis_url.as_str()).context("redis url")?;
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    let redis = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("connecting to Redis")?;
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
