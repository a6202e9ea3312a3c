//! Sketches built from arbitrary items (each input split on 0xff bytes):
//! every encoding decodes back to the same registers and estimate, and the
//! sparse and dense forms merge to the same sketch.
#![no_main]

use glimpse_hll::Sketch;
use libfuzzer_sys::fuzz_target;

/// Register-wise equality (`PartialEq` compares across representations).
fn same_registers(a: &Sketch, b: &Sketch) -> bool {
    a == b
}

fuzz_target!(|data: &[u8]| {
    let mut sketch = Sketch::new();
    let mut dense_built = Sketch::from_redis_bytes(&Sketch::new().to_dense_redis_bytes()).unwrap();
    for item in data.split(|&b| b == 0xff) {
        sketch.insert(item);
        dense_built.insert(item);
    }
    assert!(same_registers(&sketch, &dense_built));
    assert_eq!(sketch.estimate(), dense_built.estimate());
    for bytes in [
        Some(sketch.to_redis_bytes()),
        Some(sketch.to_dense_redis_bytes()),
        sketch.to_sparse_redis_bytes(),
    ]
    .into_iter()
    .flatten()
    {
        let back = Sketch::from_redis_bytes(&bytes).unwrap();
        assert!(same_registers(&sketch, &back));
        assert_eq!(back.estimate(), sketch.estimate());
    }
});
