//! Stored sketch bytes, sparse or dense, from a store that may hold anything:
//! decoding must never panic, and a decoded sketch must survive its own
//! encodings unchanged.
#![no_main]

use glimpse_hll::Sketch;
use libfuzzer_sys::fuzz_target;

/// Register-wise equality (`PartialEq` compares across representations).
fn same_registers(a: &Sketch, b: &Sketch) -> bool {
    a == b
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(sketch) = Sketch::from_redis_bytes(bytes) else {
        return;
    };
    assert!((0..glimpse_hll::REGISTERS).all(|i| sketch.register(i) <= 51));
    let _ = sketch.estimate();
    let dense = Sketch::from_redis_bytes(&sketch.to_dense_redis_bytes()).unwrap();
    assert!(same_registers(&sketch, &dense));
    if let Some(sparse) = sketch.to_sparse_redis_bytes() {
        let sparse = Sketch::from_redis_bytes(&sparse).unwrap();
        assert!(same_registers(&sketch, &sparse));
    }
    let preferred = Sketch::from_redis_bytes(&sketch.to_redis_bytes()).unwrap();
    assert!(same_registers(&sketch, &preferred));
    assert_eq!(preferred.estimate(), sketch.estimate());
    let mut merged = Sketch::new();
    merged.merge(&sketch);
    merged.merge(&dense);
    assert!(same_registers(&sketch, &merged));
});
