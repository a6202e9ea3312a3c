//! End-to-end tests with real processes, one module per area.

mod bad_input;
mod browser_engines;
mod crash;
mod dedup_state;
mod deploy_manifests;
mod edge_process;
mod hll_vs_redis;
mod http_guarantees;
mod load;
mod log_bound;
mod openapi;
mod pending_bound;
mod posts_video;
mod redis_cluster;
mod redis_exactness;
mod redis_faults;
mod redis_store;
mod same_copy;
mod sdk_browser;
mod sdk_counting;
mod sdk_delivery;
mod sdk_video;
mod stats_consistency;
mod www_accessibility;
mod www_dashboard;
mod www_demo;
