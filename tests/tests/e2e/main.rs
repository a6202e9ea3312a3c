//! End-to-end tests with real processes, one module per area.

mod bad_input;
mod crash;
mod deploy_manifests;
mod edge_process;
mod hll_vs_redis;
mod http_guarantees;
mod load;
mod redis_cluster;
mod redis_faults;
mod redis_store;
mod sdk_browser;
mod sdk_delivery;
mod www_accessibility;
mod www_demo;
