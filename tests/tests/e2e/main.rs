//! End-to-end tests with real processes, one module per area.

mod bad_input;
mod edge_process;
mod hll_vs_redis;
