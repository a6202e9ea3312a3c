//! `glimpse-server`: parses flags, binds, runs until SIGINT or SIGTERM.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use glimpse_server::config::SignAd;
use glimpse_server::signing::SigningSecrets;
use glimpse_server::Config;
use tokio::net::{TcpListener, TcpSocket};
use tracing_subscriber::EnvFilter;

/// Ingest allocates and frees a few small buffers per request on every
/// worker thread (the body, the parsed events, the answer); glibc's malloc
/// spent about a fifth of the edge's CPU on them at the browsers' batch
/// shape (docs/BENCHMARKS.md, the profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "sign-ad") {
        return sign_ad(SignAd::parse_from(std::env::args_os().skip(1)));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    if let Err(e) = config.validate() {
        Config::command()
            .error(ErrorKind::ValueValidation, e)
            .exit();
    }
    let shutdown = shutdown_signal()?;
    let listener = bind(config.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    // Printed on stdout, unlike the logs, so scripts and tests can read the
    // port that `--listen 127.0.0.1:0` picked.
    println!("glimpse-server listening on http://{addr}");
    glimpse_server::run(config, listener, shutdown).await
}

/// The kernel's queue of connections not yet accepted. tokio's `bind` asks
/// for 1,024; beacons from a burst of closing pages arrive as that many new
/// connections at once, and a connection the full queue drops waits a second
/// for its SYN to be sent again (1,000 one-batch connections at a time gave a
/// p99 over 1.2 s, docs/BENCHMARKS.md). The kernel caps it at
/// `net.core.somaxconn` (4,096 by default).
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's `bind` does: a restarted edge can bind while old
    // connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Prints a token for `data-ad-token`: see `glimpse_server::signing`.
fn sign_ad(args: SignAd) -> anyhow::Result<()> {
    glimpse_wire::ingest::check_id(&args.ad_id, glimpse_wire::ingest::MAX_AD_OR_USER_ID_BYTES)
        .map_err(|why| anyhow::anyhow!("--ad-id {why}"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let expiry = now.saturating_add(args.ttl).as_secs();
    let secrets = SigningSecrets::new(args.secret).unwrap_or_else(|e| {
        SignAd::command()
            .error(ErrorKind::ValueValidation, format!("--secret: {e}"))
            .exit()
    });
    let token =
        glimpse_server::signing::issue(secrets.signing().expose().as_bytes(), &args.ad_id, expiry);
    println!("{token}");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed here, before
/// the listener serves anything: a signal that arrives once the edge answers
/// requests always means a graceful shutdown, never the default exit.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
