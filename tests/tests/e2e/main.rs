//! End-to-end tests with real processes, one module per area.

mod deploy_manifests;
mod edge_process;
mod hll_vs_redis;
mod sdk_browser;
mod www_demo;
