//! Shared by the Redis tests: batches with known answers, posted
//! concurrently, and the references they are checked against.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glimpse_hll::{Sketch, REGISTERS};
use glimpse_tests::edge::post_batch_at;
use glimpse_tests::redis::{Conn, Reply};
use serde_json::{json, Value};

/// Ids per PFADD when building a reference key.
const IDS_PER_PFADD: usize = 1000;
/// Events per batch: the wire contract's maximum.
pub const BATCH_EVENTS: usize = 500;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `YYYY-MM-DD` (UTC) of an epoch-ms time.
pub fn day_of(ms: i64) -> String {
    glimpse_wire::Day::from_epoch_ms(ms).unwrap().to_string()
}

/// One (ad, day) of a load: what Redis must end up holding.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub impressions: u64,
    pub measurable: u64,
    /// Visitor ids of viewable events, in sending order (repeats allowed).
    pub visitors: Vec<String>,
    /// Events of batches sent as a driven browser's (`"webdriver":true`):
    /// invalid traffic, in none of the fields above.
    pub invalid: u64,
}

/// A set of batches and the exact answers they must produce.
#[derive(Debug, Default)]
pub struct Load {
    /// `(batch_id, body)`, in sending order.
    pub batches: Vec<(String, String)>,
    /// By `(ad_id, day)`.
    pub expected: BTreeMap<(String, String), Expected>,
}

/// One event to send.
#[derive(Clone, Debug)]
pub struct Ev {
    pub id: String,
    pub ad_id: String,
    pub user_id: String,
    pub viewable: bool,
    pub ts: i64,
}

impl Load {
    /// Adds events as batches of [`BATCH_EVENTS`] under ids `<prefix>-<n>`.
    /// Every event id must be new to the load.
    pub fn add(&mut self, batch_prefix: &str, events: impl IntoIterator<Item = Ev>) {
        self.add_batches(batch_prefix, events, false);
    }

    /// [`Load::add`], with every batch saying `"webdriver":true`: the edge
    /// counts its events as invalid traffic.
    pub fn add_invalid(&mut self, batch_prefix: &str, events: impl IntoIterator<Item = Ev>) {
        self.add_batches(batch_prefix, events, true);
    }

    fn add_batches(
        &mut self,
        batch_prefix: &str,
        events: impl IntoIterator<Item = Ev>,
        webdriver: bool,
    ) {
        let mut events = events.into_iter().peekable();
        let mut n = 0;
        while events.peek().is_some() {
            let chunk: Vec<Ev> = events.by_ref().take(BATCH_EVENTS).collect();
            let id = format!("{batch_prefix}-{n}");
            n += 1;
            let json_events: Vec<Value> = chunk
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id, "ad_id": e.ad_id, "user_id": e.user_id,
                        "kind": if e.viewable { "viewable" } else { "measurable" },
                        "ts": e.ts,
                    })
                })
                .collect();
            for e in &chunk {
                let x = self
                    .expected
                    .entry((e.ad_id.clone(), day_of(e.ts)))
                    .or_default();
                if webdriver {
                    x.invalid += 1;
                } else if e.viewable {
                    x.impressions += 1;
                    x.visitors.push(e.user_id.clone());
                } else {
                    x.measurable += 1;
                }
            }
            let mut body = json!({"batch_id": id, "events": json_events});
            if webdriver {
                body["webdriver"] = json!(true);
            }
            let body = body.to_string();
            self.batches.push((id, body));
        }
    }

    /// Impressions and measurable summed over every (ad, day).
    pub fn totals(&self) -> (u64, u64) {
        self.expected
            .values()
            .fold((0, 0), |(i, m), e| (i + e.impressions, m + e.measurable))
    }
}

/// `n` viewable events of `ad_id` by visitors `visitor-<start..start+n>`, and
/// a measurable one for every fourth, at `ts`.
pub fn visitors(ad_id: &str, tag: &str, ids: std::ops::Range<usize>, ts: i64) -> Vec<Ev> {
    ids.flat_map(|i| {
        let view = Ev {
            id: format!("{tag}-v{i}"),
            ad_id: ad_id.to_owned(),
            user_id: format!("visitor-{i:08}"),
            viewable: true,
            ts,
        };
        let meas = (i % 4 == 0).then(|| Ev {
            id: format!("{tag}-m{i}"),
            viewable: false,
            ..view.clone()
        });
        std::iter::once(view).chain(meas)
    })
    .collect()
}

/// Posts every batch with `threads` concurrent clients; batch `i` goes to
/// `route(i)`, an index into `edges` (base URLs). Every answer must be 202.
/// Returns the `accepted` and `duplicates` sums.
pub fn post_all(
    edges: &[String],
    batches: &[(String, String)],
    threads: usize,
    route: impl Fn(usize) -> Vec<usize> + Sync,
) -> (u64, u64) {
    let next = AtomicUsize::new(0);
    let sums = Mutex::new((0u64, 0u64));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, body)) = batches.get(i) else {
                    return;
                };
                for target in route(i) {
                    let (status, answer) = post_batch_at(&edges[target], body)
                        .unwrap_or_else(|e| panic!("POST batch {i} to edge {target}: {e}"));
                    assert_eq!(status, 202, "batch {i}: {answer}");
                    let mut sums = sums.lock().unwrap();
                    sums.0 += answer["accepted"].as_u64().unwrap();
                    sums.1 += answer["duplicates"].as_u64().unwrap();
                }
            });
        }
    });
    sums.into_inner().unwrap()
}

/// PFADDs `ids` into `key` (creating it even when `ids` is empty).
pub fn pfadd_reference(conn: &mut Conn, key: &str, ids: &[String]) {
    conn.cmd(&[b"DEL".as_slice(), key.as_bytes()]).not_error();
    conn.cmd(&[b"PFADD".as_slice(), key.as_bytes()]).not_error();
    for group in ids.chunks(IDS_PER_PFADD * 64) {
        let commands = group.chunks(IDS_PER_PFADD).map(|batch| {
            let mut args: Vec<&[u8]> = Vec::with_capacity(batch.len() + 2);
            args.push(b"PFADD");
            args.push(key.as_bytes());
            args.extend(batch.iter().map(|s| s.as_bytes()));
            args
        });
        for reply in conn.pipeline(commands) {
            reply.not_error();
        }
    }
}

/// The registers of an HLL string; all zeros for a missing key.
pub fn sketch_at(conn: &mut Conn, key: &str) -> Sketch {
    match conn.cmd(&[b"GET".as_slice(), key.as_bytes()]) {
        Reply::Bulk(None) => Sketch::new(),
        reply => Sketch::from_redis_bytes(reply.bytes())
            .unwrap_or_else(|e| panic!("{key} is not a valid HLL: {e}")),
    }
}

#[track_caller]
pub fn assert_same_registers(ours: &Sketch, reference: &Sketch, what: &str) {
    for i in 0..REGISTERS {
        assert_eq!(
            ours.register(i),
            reference.register(i),
            "{what}: register {i} differs from the PFADD reference"
        );
    }
}

pub fn pfcount(conn: &mut Conn, keys: &[&str]) -> u64 {
    let mut args: Vec<&[u8]> = vec![b"PFCOUNT"];
    args.extend(keys.iter().map(|k| k.as_bytes()));
    conn.cmd(&args).int() as u64
}

/// `(imp, meas)` of a counters hash (zeros when missing).
pub fn counters(conn: &mut Conn, key: &str) -> (u64, u64) {
    match conn.cmd(&[b"HMGET".as_slice(), key.as_bytes(), b"imp", b"meas"]) {
        Reply::Array(Some(items)) => {
            let n = |r: &Reply| match r {
                Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).parse().unwrap(),
                _ => 0,
            };
            (n(&items[0]), n(&items[1]))
        }
        other => panic!("HMGET {key}: {other}"),
    }
}

/// One field of a counters hash, e.g. `invalid` (0 when absent).
pub fn counter_field(conn: &mut Conn, key: &str, field: &str) -> u64 {
    match conn.cmd(&[b"HGET".as_slice(), key.as_bytes(), field.as_bytes()]) {
        Reply::Bulk(Some(b)) => String::from_utf8_lossy(&b).parse().unwrap(),
        Reply::Bulk(None) => 0,
        other => panic!("HGET {key} {field}: {other}"),
    }
}

/// The documented key names (`docs/redis.md`), default prefix.
pub fn uv_key(ad_id: &str, day: &str) -> String {
    format!("glimpse:uv:{{{ad_id}:{day}}}")
}

/// Every batch claim in Redis, `batch_id -> <edge_id>:<seq>`, with the
/// claim hash that holds it (`glimpse:claims:{c<shard>}:<window>`).
pub fn batch_claims(conn: &mut Conn) -> BTreeMap<String, (String, String)> {
    let keys = match conn.cmd(&["KEYS", "glimpse:claims:*"]) {
        Reply::Array(Some(keys)) => keys,
        other => panic!("KEYS: {other}"),
    };
    let mut claims = BTreeMap::new();
    for key in keys {
        let key = String::from_utf8_lossy(key.bytes()).into_owned();
        let Reply::Array(Some(fields)) = conn.cmd(&["HGETALL", &key]) else {
            panic!("HGETALL {key}: not a hash");
        };
        for pair in fields.chunks(2) {
            let text = |r: &Reply| String::from_utf8_lossy(r.bytes()).into_owned();
            claims.insert(text(&pair[0]), (text(&pair[1]), key.clone()));
        }
    }
    claims
}

pub fn counters_key(ad_id: &str, day: &str) -> String {
    format!("glimpse:n:{{{ad_id}:{day}}}")
}

/// Polls `done` every 25 ms until it holds, failing at `deadline`, with the
/// last `state` in the message.
pub fn wait_for<T: std::fmt::Debug>(
    deadline: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let started = Instant::now();
    loop {
        let state = probe();
        if done(&state) {
            return state;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting until {what}; last state: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
