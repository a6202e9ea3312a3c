//! The glimpse wire contract, version 1.
//!
//! Everything a client and the edge must agree on, with no I/O:
//!
//! - [`ingest`]: decoding and validating `POST /v1/impressions` bodies, the
//!   limits, and the id alphabet;
//! - [`day`]: UTC day buckets and day ranges;
//! - [`api`]: the JSON bodies the edge answers with.
//!
//! The server, the tests and the load generator build on these types; the SDK
//! uses the same limits so a batch it forms is one the edge accepts.

pub mod api;
pub mod day;
pub mod ingest;

pub use day::{Day, DayRange};
pub use ingest::{Kind, Subject, MAX_BODY_BYTES, MAX_EVENTS_PER_BATCH};
