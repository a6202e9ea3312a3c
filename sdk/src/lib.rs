//! The glimpse browser SDK: viewable impressions by IntersectionObserver,
//! delivered in batches without loss.
//!
//! The logic lives in pure modules tested natively ([`engine`], [`queue`],
//! [`options`]); the browser glue (`web`) exists only on `wasm32`.

pub mod engine;
pub mod options;
pub mod queue;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod web;

// The SDK is single-threaded (no `atomics` target feature).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
