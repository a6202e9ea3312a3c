//! A TCP proxy on loopback that can lose a reply on purpose.
//!
//! It forwards bytes both ways between its clients and one upstream port.
//! Once armed, the next connection whose client sends a chunk containing the
//! trigger bytes (e.g. `EVALSHA`) has that chunk forwarded, then every reply
//! the server sends is read and thrown away until the server has been quiet
//! for a moment (so the command has surely run), and then both sides are cut.
//! The client sees its command vanish without an answer: exactly the case a
//! retry must not count twice.
//!
//! While *holding* ([`CuttingProxy::hold`]), a chunk containing the trigger
//! is not forwarded at all, and nothing more from that client is: the command
//! never runs and the client waits for an answer that never comes. With the
//! trigger `EVALSHA`, an edge's sync stops after its batch claims and before
//! any step, for as long as the test likes (e.g. to kill the edge there).
//!
//! Everything is bounded: one thread pair per connection, all ending when
//! the sockets close, and the proxy shuts every socket down on drop.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Quiet time after which the server is taken to have answered everything.
const QUIET: Duration = Duration::from_millis(150);
/// Longest time spent swallowing replies before cutting anyway.
const SWALLOW_AT_MOST: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    /// Connections still to cut.
    armed: AtomicUsize,
    /// Connections cut after forwarding the trigger.
    cuts: AtomicUsize,
    /// Reply bytes thrown away in those cuts.
    swallowed: AtomicUsize,
    /// Withhold the trigger instead of forwarding it.
    holding: AtomicBool,
    /// Trigger chunks withheld.
    held: AtomicUsize,
    /// Every socket, to shut down on drop.
    sockets: Mutex<Vec<TcpStream>>,
}

/// See the module docs.
#[derive(Debug)]
pub struct CuttingProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl CuttingProxy {
    /// Listens on a free loopback port and forwards to `upstream_port`.
    pub fn start(upstream_port: u16, trigger: &[u8]) -> CuttingProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let shared = Arc::new(Shared::default());
        let trigger = trigger.to_vec();
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                while !shared.stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            if let Ok(server) =
                                TcpStream::connect((Ipv4Addr::LOCALHOST, upstream_port))
                            {
                                relay(client, server, &shared, &trigger);
                            }
                        }
                        // Polling the stop flag between accepts.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        CuttingProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/` through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Cut the next `n` connections that send the trigger.
    pub fn arm(&self, n: usize) {
        self.shared.armed.store(n, Ordering::Release);
    }

    /// From now on, withhold every chunk that holds the trigger (and all
    /// that follows on its connection) instead of forwarding it.
    pub fn hold(&self) {
        self.shared.holding.store(true, Ordering::Release);
    }

    /// Trigger chunks withheld so far.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::Acquire)
    }

    /// Reply bytes the cuts threw away.
    pub fn swallowed_bytes(&self) -> usize {
        self.shared.swallowed.load(Ordering::Acquire)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for s in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn relay(client: TcpStream, server: TcpStream, shared: &Arc<Shared>, trigger: &[u8]) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    {
        let mut sockets = shared.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.push(c3);
        sockets.push(s3);
    }
    let cutting = Arc::new(AtomicBool::new(false));

    // Client to server: watch for the trigger.
    {
        let shared = Arc::clone(shared);
        let cutting = Arc::clone(&cutting);
        let trigger = trigger.to_vec();
        let (mut from, mut to) = (client, server);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                if shared.holding.load(Ordering::Acquire) && contains(chunk, &trigger) {
                    shared.held.fetch_add(1, Ordering::AcqRel);
                    // Read and drop the rest of this client's bytes until it
                    // hangs up (or the proxy is dropped).
                    while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
                    break;
                }
                let cut_now = contains(chunk, &trigger)
                    && shared
                        .armed
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| a.checked_sub(1))
                        .is_ok();
                if cut_now {
                    // Swallowing starts before the command goes out, so its
                    // reply can never slip through.
                    cutting.store(true, Ordering::Release);
                }
                if to.write_all(chunk).is_err() {
                    break;
                }
                if cut_now {
                    // Nothing more from this client reaches the server.
                    break;
                }
            }
            if !cutting.load(Ordering::Acquire) {
                let _ = to.shutdown(Shutdown::Write);
            }
        });
    }

    // Server to client: forward, or swallow and cut.
    {
        let shared = Arc::clone(shared);
        let (mut from, mut to) = (s2, c2);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if cutting.load(Ordering::Acquire) {
                    swallow_then_cut(&mut from, &to, &shared);
                    return;
                }
                // Short timeouts so a cut starts even while the server is quiet.
                let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if cutting.load(Ordering::Acquire) {
                            shared.swallowed.fetch_add(n, Ordering::AcqRel);
                            swallow_then_cut(&mut from, &to, &shared);
                            return;
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    }
}

fn swallow_then_cut(server: &mut TcpStream, client: &TcpStream, shared: &Shared) {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let _ = server.set_read_timeout(Some(QUIET));
    while started.elapsed() < SWALLOW_AT_MOST {
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                shared.swallowed.fetch_add(n, Ordering::AcqRel);
            }
            // Quiet for QUIET: the server has answered all it was sent.
            Err(_) => break,
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    shared.cuts.fetch_add(1, Ordering::AcqRel);
}
