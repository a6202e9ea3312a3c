//! End-to-end tests with real processes, one module per area.

mod edge_process;
mod sdk_browser;
mod hll_vs_redis;
