//! The accept loop: each connection served by hyper with the limits a
//! public listener needs, which `axum::serve` does not let us set. Today
//! that is how long a request head (request line and headers) may take to
//! arrive: a client that trickles header bytes is cut off at the bound
//! instead of holding a socket and a task for as long as it likes.
//!
//! The edge speaks HTTP/1.1 only. Browsers speak HTTP/2 over TLS alone, so
//! they reach an edge through the proxy or CDN that ends TLS, and those
//! talk HTTP/1.1 to their origins; cleartext HTTP/2 (h2c) would serve no
//! client and has no bound on how long a stream's headers may take.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long the loop waits after a failed `accept` (out of file
/// descriptors, say) before it tries again, so that it does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener`, each request carrying its peer's address
/// (`ConnectInfo`), until `shutdown` resolves; then stops accepting and
/// waits for the connections to finish what they are answering.
///
/// Request heads must arrive within `header_read_timeout`, counted
/// from the first byte a request may start with: a connection that has not
/// sent a whole head by then is closed, and so is a keep-alive connection
/// idle that long between requests.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // A client that hung up or was too slow: its business.
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
