//! Support for the end-to-end tests: starting and stopping real processes.
//!
//! Each module wraps one kind of process so tests can start a private,
//! throwaway instance on a free loopback port and have it killed when the
//! handle drops:
//!
//! - [`redis`]: a `redis-server` (from `PATH`) with persistence off, and a
//!   minimal synchronous RESP client with pipelining.
//!
//! The tests themselves live in `tests/e2e/` (one integration-test binary,
//! one module per area).

pub mod redis;
