//! Criterion micro-benchmark of the wire decoder: `decode_batch` and
//! `validate_event` of a 50-event batch as the SDK forms it.
//! `cargo bench -p glimpse-wire`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use glimpse_wire::ingest::{decode_batch, validate_event};

const NOW: i64 = 1_764_000_000_000;

fn batch(events: usize) -> String {
    let mut body = String::from(r#"{"batch_id":"b3f9a0c2-0-1234","events":["#);
    for i in 0..events {
        if i > 0 {
            body.push(',');
        }
        let kind = if i % 2 == 0 { "measurable" } else { "viewable" };
        let visitor = (i as u64 / 2).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        body.push_str(&format!(
            r#"{{"id":"eb3f9a0c2-0-1234-{i}","ad_id":"ad-{:04}","user_id":"{visitor:016x}{:016x}","kind":"{kind}","ts":{}}}"#,
            i / 2 % 100,
            visitor.rotate_left(9),
            NOW - i as i64
        ));
    }
    body.push_str("]}");
    body
}

fn decode(c: &mut Criterion) {
    let body = batch(50);
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(50));
    g.bench_function("decode_batch, 50 events", |b| {
        b.iter(|| black_box(decode_batch(black_box(body.as_bytes())).unwrap()))
    });
    g.bench_function("decode_batch + validate_event, 50 events", |b| {
        b.iter(|| {
            let batch = decode_batch(black_box(body.as_bytes())).unwrap();
            for raw in &batch.events {
                black_box(validate_event(raw, NOW).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
