//! The routes through the real router, driven in-process with
//! `tower::ServiceExt::oneshot`, on a real embedded store in a temp directory
//! and a clock the test holds ([`support`]); one file per area, and a whole
//! edge run in-process ([`replay`]).

mod access;
mod ads_pages;
mod analytics;
mod csv;
mod ingest;
mod invalid_traffic;
mod limits;
mod metrics;
mod openapi;
mod replay;
mod routes;
mod signed_ads;
mod stats;
mod support;
mod verified;
mod video;
mod views;
