//! Support for the end-to-end tests: starting and stopping real processes.
//!
//! Each module wraps one kind of process so a test can start a private,
//! throwaway instance on a free loopback port and have it killed when the
//! handle drops:
//!
//! - [`edge`]: a `glimpse-server` built by the same `cargo test` run, with a
//!   small blocking HTTP client for its API;
//! - [`redis`]: a `redis-server` (from `PATH`) with persistence off (or AOF
//!   on, to kill and restart it), a Redis Cluster built of several, and a
//!   minimal synchronous RESP client with pipelining;
//! - [`proxy`]: a loopback TCP proxy that can drop a reply after forwarding
//!   the command, to provoke retries;
//! - [`browser`]: real browsers of three engines (Chromium, Firefox,
//!   WebKit) driven over WebDriver, [`in_every_engine!`] to run a test in
//!   each, and the SDK built into `sdk/pkg`;
//! - [`sdk_page`]: an edge serving the SDK and its test pages, and the calls
//!   the SDK's browser tests make into those pages.
//!
//! The tests themselves live in `tests/e2e/` (one integration-test binary,
//! one module per area).

pub mod browser;
pub mod edge;
pub mod proxy;
pub mod redis;
pub mod sdk_page;
