//! The glimpse browser SDK: viewable impressions by IntersectionObserver,
//! delivered in batches without loss.
//!
//! The logic lives in pure modules tested natively ([`engine`], [`queue`],
//! [`options`]); the browser glue (`web`) exists only on `wasm32`.
//!
//! In the wasm the crate is `no_std` (with `alloc`): a panic aborts through
//! the handler below, so none of std's panic and formatting machinery is
//! linked, and the wire limits come from [`limits`], not `glimpse-wire`.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod engine;
pub mod limits;
pub mod options;
pub mod queue;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod web;

// The SDK is single-threaded (no `atomics` target feature), so the lock
// is never contended; it keeps the allocator's statics free of `unsafe`.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

/// A panic (a bug: the hot paths have none by construction) traps: the call
/// from JavaScript throws a `RuntimeError`, which the wrapper's methods
/// catch; nothing formats a message.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
