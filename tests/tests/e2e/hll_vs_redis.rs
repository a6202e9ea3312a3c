//! `glimpse-hll` against a real redis-server: same registers as PFADD, same
//! count as PFCOUNT, and our encodings accepted and merged by Redis.

use std::time::Instant;

use glimpse_hll::{Sketch, REGISTERS};
use glimpse_tests::redis::{Conn, RedisServer, Reply};

/// Ids per PFADD: large enough to keep the 1M case to a few seconds, small
/// enough to keep each command's buffer modest.
const IDS_PER_PFADD: usize = 1000;
/// PFADDs sent before reading their replies.
const PIPELINE_DEPTH: usize = 64;

/// SplitMix64: deterministic ids and sizes, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A version-4-looking UUID string, as browsers' crypto.randomUUID gives.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// PFADDs `ids` into `key` in pipelined batches (creating the key even when
/// `ids` is empty).
fn pfadd_all(conn: &mut Conn, key: &[u8], ids: &[Vec<u8>]) {
    conn.cmd(&[b"PFADD".as_slice(), key]).not_error();
    for group in ids.chunks(IDS_PER_PFADD * PIPELINE_DEPTH) {
        let commands = group.chunks(IDS_PER_PFADD).map(|batch| {
            let mut args: Vec<&[u8]> = Vec::with_capacity(batch.len() + 2);
            args.push(b"PFADD");
            args.push(key);
            args.extend(batch.iter().map(Vec::as_slice));
            args
        });
        for reply in conn.pipeline(commands) {
            reply.not_error();
        }
    }
}

/// The sketch Redis holds at `key`, decoded strictly.
fn redis_sketch(conn: &mut Conn, key: &[u8]) -> Sketch {
    let reply = conn.cmd(&[b"GET".as_slice(), key]);
    Sketch::from_redis_bytes(reply.bytes())
        .unwrap_or_else(|e| panic!("decoding {}: {e}", String::from_utf8_lossy(key)))
}

fn pfcount(conn: &mut Conn, key: &[u8]) -> u64 {
    match conn.cmd(&[b"PFCOUNT".as_slice(), key]) {
        Reply::Int(n) => u64::try_from(n).expect("PFCOUNT is non-negative"),
        other => panic!("PFCOUNT {} answered {other}", String::from_utf8_lossy(key)),
    }
}

#[track_caller]
fn assert_same_registers(ours: &Sketch, theirs: &Sketch, what: &str) {
    for i in 0..REGISTERS {
        assert_eq!(
            ours.register(i),
            theirs.register(i),
            "{what}: register {i} differs"
        );
    }
    assert_eq!(ours, theirs, "{what}");
}

fn set(conn: &mut Conn, key: &[u8], value: &[u8]) {
    conn.cmd(&[b"SET".as_slice(), key, value]).ok();
}

/// The whole comparison for one id set.
fn check_ids(conn: &mut Conn, label: &str, ids: &[Vec<u8>]) {
    conn.cmd(&[b"FLUSHALL".as_slice()]).ok();

    let mut ours = Sketch::new();
    for id in ids {
        ours.insert(id);
    }

    // Registers and count against PFADD.
    pfadd_all(conn, b"pfadd", ids);
    let theirs = redis_sketch(conn, b"pfadd");
    assert_same_registers(&ours, &theirs, &format!("{label}: PFADD-built key"));
    let count = pfcount(conn, b"pfadd");
    assert_eq!(ours.estimate(), count, "{label}: estimate vs PFCOUNT");

    // Our chosen encoding, and both explicit encodings, are valid to Redis
    // and count the same.
    let chosen = ours.to_redis_bytes();
    set(conn, b"ours", &chosen);
    assert_eq!(
        pfcount(conn, b"ours"),
        count,
        "{label}: PFCOUNT of our bytes"
    );
    set(conn, b"ours:dense", &ours.to_dense_redis_bytes());
    assert_eq!(
        pfcount(conn, b"ours:dense"),
        count,
        "{label}: PFCOUNT of our dense bytes"
    );
    if let Some(sparse) = ours.to_sparse_redis_bytes() {
        set(conn, b"ours:sparse", &sparse);
        assert_eq!(
            pfcount(conn, b"ours:sparse"),
            count,
            "{label}: PFCOUNT of our sparse bytes"
        );
        // Redis's own sparse writer must be able to extend what we wrote.
        let extra = format!("{label}-extra");
        conn.cmd(&[b"PFADD".as_slice(), b"ours:sparse", extra.as_bytes()])
            .not_error();
        let mut extended = ours.clone();
        extended.insert(extra.as_bytes());
        assert_same_registers(
            &extended,
            &redis_sketch(conn, b"ours:sparse"),
            &format!("{label}: PFADD onto our sparse bytes"),
        );
    }

    // PFMERGE into an empty key gives our registers; into the PFADD-built
    // key changes nothing (same registers, so max is idempotent).
    let mut merged_into = |dest: &[u8], sources: &[&[u8]], what: &str| {
        let mut command = vec![b"PFMERGE".as_slice(), dest];
        command.extend_from_slice(sources);
        conn.cmd(&command).ok();
        assert_same_registers(
            &ours,
            &redis_sketch(conn, dest),
            &format!("{label}: PFMERGE into {what}"),
        );
        assert_eq!(
            pfcount(conn, dest),
            count,
            "{label}: PFCOUNT after PFMERGE into {what}"
        );
    };
    merged_into(b"merged", &[b"ours"], "empty");
    merged_into(b"pfadd", &[b"ours", b"ours:dense"], "PFADD key");
}

const CARDINALITIES: [usize; 10] = [0, 1, 2, 10, 100, 1000, 3000, 10_000, 100_000, 1_000_000];

#[test]
fn registers_and_counts_match_pfadd_for_visitor_ids() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    for n in CARDINALITIES {
        let started = Instant::now();
        let ids: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("visitor-{i}").into_bytes())
            .collect();
        check_ids(&mut conn, &format!("visitor x{n}"), &ids);
        eprintln!("visitor ids x{n}: {:?}", started.elapsed());
    }
}

#[test]
fn registers_and_counts_match_pfadd_for_uuids() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for n in CARDINALITIES {
        let started = Instant::now();
        let ids: Vec<Vec<u8>> = (0..n).map(|_| rng.uuid().into_bytes()).collect();
        check_ids(&mut conn, &format!("uuid x{n}"), &ids);
        eprintln!("uuid ids x{n}: {:?}", started.elapsed());
    }
}

/// Many sketches of random sizes (log-uniform, mostly small): our estimate
/// equals PFCOUNT of our bytes. Registers were checked against PFADD above;
/// this exercises the estimator over many register histograms cheaply.
#[test]
fn random_sketches_estimate_equals_pfcount() {
    const SKETCHES: usize = 3000;
    const BATCH: usize = 100;
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut rng = Rng(42);
    let mut checked = 0;
    while checked < SKETCHES {
        let mut expected = Vec::with_capacity(BATCH);
        let mut commands: Vec<Vec<Vec<u8>>> = Vec::with_capacity(2 * BATCH);
        for k in 0..BATCH {
            // Log-uniform size in 0..20_000.
            let size = (20_000f64.powf(rng.below(1_000_000) as f64 / 1e6) - 1.0) as u64;
            let mut s = Sketch::new();
            for _ in 0..size {
                s.insert(&rng.next_u64().to_le_bytes());
            }
            let key = format!("r{k}").into_bytes();
            commands.push(vec![b"SET".to_vec(), key.clone(), s.to_redis_bytes()]);
            commands.push(vec![b"PFCOUNT".to_vec(), key]);
            expected.push((size, s.estimate()));
        }
        let replies = conn.pipeline(&commands);
        for (k, (size, estimate)) in expected.into_iter().enumerate() {
            replies[2 * k].ok();
            assert_eq!(
                replies[2 * k + 1],
                Reply::Int(estimate as i64),
                "sketch {} ({size} random items)",
                checked + k
            );
        }
        checked += BATCH;
    }
}

/// Register values above 32 exist only in dense values (PFADD needs about
/// 2^32 ids to make one, so we craft them): Redis must count our dense bytes
/// with such registers exactly as we estimate them.
#[test]
fn high_registers_in_dense_values_count_the_same() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut rng = Rng(7);
    for round in 0..200 {
        let mut dense = Sketch::new().to_dense_redis_bytes();
        let registers = 1 + rng.below(if round % 2 == 0 { 50 } else { 16_000 });
        for _ in 0..registers {
            let index = rng.below(REGISTERS as u64) as usize;
            let value = 1 + rng.below(51) as u8;
            set_dense_register(&mut dense, index, value);
        }
        let ours = Sketch::from_redis_bytes(&dense).expect("crafted dense value decodes");
        assert_eq!(
            ours.to_dense_redis_bytes(),
            dense,
            "dense re-encoding is byte-identical"
        );
        set(&mut conn, b"crafted", &ours.to_redis_bytes());
        assert_eq!(
            pfcount(&mut conn, b"crafted"),
            ours.estimate(),
            "round {round}"
        );
        conn.cmd(&[b"DEL".as_slice(), b"merged"]);
        conn.cmd(&[b"PFMERGE".as_slice(), b"merged", b"crafted"])
            .ok();
        assert_same_registers(
            &ours,
            &redis_sketch(&mut conn, b"merged"),
            &format!("round {round}"),
        );
    }
}

/// Writes 6-bit register `index` of a dense value (LSB-first packing),
/// independently of the crate's encoder.
fn set_dense_register(value: &mut [u8], index: usize, register: u8) {
    let bit = index * 6;
    let byte = 16 + bit / 8;
    let shift = bit % 8;
    let mut word = u16::from(value[byte]) | value.get(byte + 1).map_or(0, |&b| u16::from(b) << 8);
    word &= !(0x3f << shift);
    word |= u16::from(register) << shift;
    value[byte] = word as u8;
    if let Some(b) = value.get_mut(byte + 1) {
        *b = (word >> 8) as u8;
    }
}
