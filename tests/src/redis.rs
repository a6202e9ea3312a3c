//! A private `redis-server` for a test, and a small synchronous RESP client.
//!
//! The client speaks just enough RESP2 for tests (commands as byte-string
//! arrays, every reply type) and lets a test pipeline thousands of commands
//! without a dependency or an async runtime.

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a fresh server may take to answer PING before we give up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at starting a server: a port picked free can be taken by someone
/// else before redis-server binds it.
const START_ATTEMPTS: usize = 5;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK` and the like.
    Status(String),
    /// `-ERR ...`: the full message, error code included.
    Error(String),
    Int(i64),
    /// A bulk string; `None` is the nil bulk (`$-1`).
    Bulk(Option<Vec<u8>>),
    /// An array; `None` is the nil array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer, panicking with the reply if it is anything else.
    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Reply::Int(n) => *n,
            other => panic!("expected an integer reply, got {other}"),
        }
    }

    /// The bulk string bytes, panicking if nil or another type.
    #[track_caller]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Reply::Bulk(Some(b)) => b,
            other => panic!("expected a bulk string reply, got {other}"),
        }
    }

    /// Panics unless the reply is `+OK`.
    #[track_caller]
    pub fn ok(&self) {
        assert_eq!(self, &Reply::Status("OK".into()), "expected +OK");
    }

    /// Panics if the reply is an error.
    #[track_caller]
    pub fn not_error(&self) -> &Self {
        if let Reply::Error(e) = self {
            panic!("redis answered an error: {e}");
        }
        self
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) if b.len() > 64 => write!(f, "<{} bytes>", b.len()),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// A RESP connection. Commands can be queued with [`Conn::send`] and their
/// replies read later with [`Conn::recv`] (pipelining).
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    /// Commands sent whose replies have not been read yet.
    pending: usize,
}

impl Conn {
    pub fn connect(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_nodelay(true)?;
        // Generous, but a hung server fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?),
            writer: BufWriter::with_capacity(64 * 1024, stream),
            pending: 0,
        })
    }

    /// Queues one command (buffered; flushed by [`Conn::recv`] or when the
    /// buffer fills).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        write!(self.writer, "*{}\r\n", args.len())?;
        for arg in args {
            let arg = arg.as_ref();
            write!(self.writer, "${}\r\n", arg.len())?;
            self.writer.write_all(arg)?;
            self.writer.write_all(b"\r\n")?;
        }
        self.pending += 1;
        Ok(())
    }

    /// Reads the reply to the oldest unanswered command.
    pub fn recv(&mut self) -> io::Result<Reply> {
        self.writer.flush()?;
        let reply = read_reply(&mut self.reader)?;
        self.pending = self.pending.saturating_sub(1);
        Ok(reply)
    }

    /// Sends one command and waits for its reply. Panics on I/O errors, which
    /// in a test mean the server is gone.
    #[track_caller]
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        assert_eq!(self.pending, 0, "cmd() with pipelined replies still unread");
        self.send(args).expect("write to redis");
        self.recv().expect("read from redis")
    }

    /// Sends every command, then reads every reply, in order.
    #[track_caller]
    pub fn pipeline<C, A>(&mut self, commands: impl IntoIterator<Item = C>) -> Vec<Reply>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        let mut n = 0;
        for c in commands {
            self.send(c.as_ref()).expect("write to redis");
            n += 1;
        }
        (0..n)
            .map(|_| self.recv().expect("read from redis"))
            .collect()
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    if !line.ends_with("\r\n") {
        return Err(bad_data(format!("unterminated RESP line {line:?}")));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_len(s: &str) -> io::Result<i64> {
    s.parse()
        .map_err(|_| bad_data(format!("bad RESP length {s:?}")))
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
    Ok(match kind {
        "+" => Reply::Status(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(parse_len(rest)?),
        "$" => match parse_len(rest)? {
            -1 => Reply::Bulk(None),
            n if n >= 0 => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
            n => return Err(bad_data(format!("bad bulk length {n}"))),
        },
        "*" => match parse_len(rest)? {
            -1 => Reply::Array(None),
            n if n >= 0 => Reply::Array(Some(
                (0..n).map(|_| read_reply(r)).collect::<io::Result<_>>()?,
            )),
            n => return Err(bad_data(format!("bad array length {n}"))),
        },
        _ => return Err(bad_data(format!("unknown RESP reply {line:?}"))),
    })
}

/// How to start a [`RedisServer`]; [`RedisServer::start`] is the default.
#[derive(Clone, Debug, Default)]
pub struct RedisBuilder {
    appendonly: bool,
    cluster: bool,
    port: Option<u16>,
}

impl RedisBuilder {
    /// AOF on, fsync before every reply: a SIGKILL loses nothing Redis
    /// acknowledged, so a test can kill it and start it again.
    pub fn durable(mut self) -> Self {
        self.appendonly = true;
        self
    }

    /// Listen on this port (e.g. one an edge was already told about) instead
    /// of a free one picked at start.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--cluster-enabled yes` (see [`RedisCluster`]).
    pub fn cluster_node(mut self) -> Self {
        self.cluster = true;
        self
    }

    /// The command line, less `--port`. A cluster node's bus gets a free
    /// port of its own: Redis would otherwise take port + 10000, which does
    /// not exist for ports above 55535, a fifth of the ephemeral range.
    fn args(&self) -> io::Result<Vec<String>> {
        let mut args: Vec<String> = ["--save", "", "--bind", "127.0.0.1"]
            .map(String::from)
            .to_vec();
        if self.appendonly {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        if self.cluster {
            args.extend(
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                ]
                .map(String::from),
            );
            args.push(free_port()?.to_string());
        }
        Ok(args)
    }

    /// Starts a server and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not on `PATH` (run `cargo xtask test`, which
    /// installs it), or if no server became ready after a few attempts.
    pub fn start(self) -> RedisServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let attempt = self
                .port
                .map_or_else(free_port, Ok)
                .map_err(|e| format!("picking a free port: {e}"))
                .and_then(|port| {
                    let dir = tempfile::Builder::new()
                        .prefix("glimpse-redis-")
                        .tempdir()
                        .map_err(|e| format!("creating a temp dir: {e}"))?;
                    let args = self
                        .args()
                        .map_err(|e| format!("picking a free cluster bus port: {e}"))?;
                    let child = spawn_and_wait(&args, port, dir.path())?;
                    Ok(RedisServer {
                        conn: Mutex::new(Some(ping(port).expect("answered PING just now"))),
                        child: Some(child),
                        port,
                        args,
                        _dir: dir,
                    })
                });
            match attempt {
                Ok(server) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("redis-server did not start after {START_ATTEMPTS} attempts: {failures:?}");
    }
}

/// A `redis-server` child process on a free loopback port, with persistence
/// off (unless [`RedisBuilder::durable`]) and a throwaway working directory;
/// killed (by pid) on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
    conn: Mutex<Option<Conn>>,
    // Dropped after the child is killed (fields drop in order after Drop).
    _dir: tempfile::TempDir,
}

fn spawn_and_wait(args: &[String], port: u16, dir: &std::path::Path) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .map_err(|e| format!("creating the log file: {e}"))?;
    let spawned = Command::new("redis-server")
        .args(args)
        .arg("--port")
        .arg(port.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "redis-server was not found on PATH. The end-to-end tests need a real \
             redis-server: run `cargo xtask test`, which installs it, or install it \
             yourself (e.g. `apt-get install -y redis-server`)."
        ),
        Err(e) => return Err(format!("spawning redis-server: {e}")),
    };
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
            return Err(format!(
                "redis-server on port {port} exited with {status}: {log}"
            ));
        }
        if ping(port).is_some() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "redis-server on port {port} not ready after {STARTUP_TIMEOUT:?}"
            ));
        }
        // Polling interval, not a wait for readiness: we stop as soon as
        // PING succeeds.
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl RedisServer {
    /// A default server: [`RedisBuilder::start`].
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    pub fn builder() -> RedisBuilder {
        RedisBuilder::default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:PORT/`, for clients configured by URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGKILLs the server (its own pid) and waits for it to exit.
    pub fn kill(&mut self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (so a durable
    /// server comes back with its data) and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() of a running server");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match spawn_and_wait(&self.args, self.port, self._dir.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = ping(self.port);
                    return;
                }
                // The port may be held a moment longer by the old process.
                Err(e) => failures.push(e),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "redis-server did not restart on port {}: {failures:?}",
            self.port
        );
    }

    /// Runs one command on the server's shared connection.
    #[track_caller]
    pub fn cmd(&self, args: &[&[u8]]) -> Reply {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            *conn = Some(self.connect());
        }
        conn.as_mut().expect("connected").cmd(args)
    }

    /// A new connection of its own, e.g. for pipelining.
    #[track_caller]
    pub fn connect(&self) -> Conn {
        Conn::connect(self.port).expect("connect to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Child::kill signals this child's pid (SIGKILL): nothing else.
        self.kill();
    }
}

/// A Redis Cluster of `n` masters, no replicas, each a [`RedisServer`] of
/// its own, with slots assigned by `redis-cli --cluster create`.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::builder().cluster_node().start())
            .collect();
        Self::create(nodes)
    }

    /// [`RedisCluster::start`] with one master on each of `ports`.
    pub fn start_on(ports: &[u16]) -> RedisCluster {
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|&p| RedisServer::builder().cluster_node().port(p).start())
            .collect();
        Self::create(nodes)
    }

    fn create(nodes: Vec<RedisServer>) -> RedisCluster {
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| {
            let info = n.cmd(&[b"CLUSTER", b"INFO"]);
            let text = String::from_utf8_lossy(info.bytes()).into_owned();
            text.contains("cluster_state:ok") && text.contains("cluster_slots_ok:16384")
        }) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,...` for `--redis-cluster-nodes`.
    pub fn nodes_arg(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node serving `key`'s slot, found by following `MOVED`.
    pub fn node_for(&self, key: &[u8]) -> &RedisServer {
        let first = &self.nodes[0];
        match first.cmd(&[b"EXISTS", key]) {
            Reply::Error(e) if e.starts_with("MOVED ") => {
                let port: u16 = e
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected redirection {e}"));
                self.nodes
                    .iter()
                    .find(|n| n.port() == port)
                    .unwrap_or_else(|| panic!("{e} names a node outside the cluster"))
            }
            Reply::Error(e) => panic!("EXISTS answered {e}"),
            _ => first,
        }
    }

    /// Runs a command whose keys share `key`'s slot on the node serving it.
    #[track_caller]
    pub fn cmd(&self, key: &[u8], args: &[&[u8]]) -> Reply {
        self.node_for(key).cmd(args)
    }
}

/// A port that was free a moment ago: bind port 0, read it, release it.
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A connection if the server answers PING with PONG.
fn ping(port: u16) -> Option<Conn> {
    let mut conn = Conn::connect(port).ok()?;
    conn.send(&[b"PING"]).ok()?;
    match conn.recv().ok()? {
        Reply::Status(s) if s == "PONG" => Some(conn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reply_type() {
        let raw = b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n";
        let mut r = BufReader::new(&raw[..]);
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Status("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR bad".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(42));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Bulk(Some(b"a\r\n".to_vec()))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(Some(vec![Reply::Int(1), Reply::Bulk(Some(vec![]))]))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(None));
        assert!(read_reply(&mut r).is_err());
    }
}
