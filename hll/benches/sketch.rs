//! Criterion micro-benchmarks of the sketch: insert, sparse and dense encode,
//! merge, estimate. `cargo bench -p glimpse-hll`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use glimpse_hll::Sketch;

/// 32-hex-character visitor ids, like a browser's random id.
fn ids(n: usize, salt: u64) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| {
            let x = (i ^ salt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            format!("{x:016x}{:016x}", x.rotate_left(17) ^ salt).into_bytes()
        })
        .collect()
}

fn sketch_of(n: usize, salt: u64) -> Sketch {
    let mut s = Sketch::new();
    for id in ids(n, salt) {
        s.insert(&id);
    }
    s
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert");
    for (name, base) in [("sparse (100 ids)", 100), ("dense (100k ids)", 100_000)] {
        let items = ids(1000, 7);
        let start = sketch_of(base, 1);
        g.throughput(Throughput::Elements(items.len() as u64));
        g.bench_function(format!("1000 ids into {name}"), |b| {
            b.iter_batched_ref(
                || start.clone(),
                |s| {
                    for id in &items {
                        black_box(s.insert(id));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for n in [10, 100, 1000] {
        let s = sketch_of(n, 3);
        g.bench_function(format!("sparse, {n} ids"), |b| {
            b.iter(|| black_box(s.to_redis_bytes()))
        });
    }
    let dense = sketch_of(100_000, 3);
    g.bench_function("dense, 100k ids", |b| {
        b.iter(|| black_box(dense.to_redis_bytes()))
    });
    let bytes = dense.to_redis_bytes();
    g.bench_function("decode dense, 100k ids", |b| {
        b.iter(|| black_box(Sketch::from_redis_bytes(&bytes).unwrap()))
    });
    g.finish();
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    let cases = [
        (
            "sparse into sparse (100 + 100)",
            sketch_of(100, 1),
            sketch_of(100, 2),
        ),
        (
            "sparse into dense (100 into 100k)",
            sketch_of(100_000, 1),
            sketch_of(100, 2),
        ),
        (
            "dense into dense (100k + 100k)",
            sketch_of(100_000, 1),
            sketch_of(100_000, 2),
        ),
    ];
    for (name, into, from) in cases {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || into.clone(),
                |s| s.merge(black_box(&from)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn estimate(c: &mut Criterion) {
    let mut g = c.benchmark_group("estimate");
    for (name, n) in [("sparse, 100 ids", 100), ("dense, 100k ids", 100_000)] {
        let s = sketch_of(n, 5);
        g.bench_function(name, |b| b.iter(|| black_box(s.estimate())));
    }
    g.finish();
}

criterion_group!(benches, insert, encode, merge, estimate);
criterion_main!(benches);
