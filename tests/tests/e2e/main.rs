//! End-to-end tests against real processes, as one test binary (one link,
//! shared helpers). One module per area.

mod hll_vs_redis;
