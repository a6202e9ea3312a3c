//! Support for the end-to-end tests: starting and stopping real processes.
//!
//! Each module wraps one kind of process so a test can start a private,
//! throwaway instance on a free loopback port and have it killed when the
//! handle drops:
//!
//! - [`edge`]: a `glimpse-server` built by the same `cargo test` run, with a
//!   small blocking HTTP client for its API;
//! - [`redis`]: a `redis-server` (from `PATH`) with persistence off, and a
//!   minimal synchronous RESP client with pipelining;
//! - [`browser`]: a headless Chromium driven through `chromedriver`
//!   (WebDriver), and the SDK built into `sdk/pkg`.
//!
//! The tests themselves live in `tests/e2e/` (one integration-test binary,
//! one module per area).

pub mod browser;
pub mod edge;
pub mod redis;
