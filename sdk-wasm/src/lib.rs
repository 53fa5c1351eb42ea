//! Tether's SDK: joins a Tether room from a PC page or from an H5 page inside a mobile app.
//!
//! The same package serves both ends: `connectPc` for the developer's page (send `post` and
//! `call` to devices, get replies, device list, history, the QR link) and `connectDevice` for
//! the app's page (answer through the app's native bridge). Built for `wasm32-unknown-unknown`
//! and shipped as the npm package `tether-sdk`; the core is plain Rust and is tested natively.
//!
//! # Layout
//! - [`core`]: the sans-IO core (the `tether-sdk-core` crate, `sdk-core/`): session state
//!   machine, reconnect backoff, pending requests, local history. No `web_sys`, `js_sys` or
//!   timers; its tests run natively (`cargo test -p tether-sdk-core`).
//! - `web` (wasm only): the adapters: WebSocket, timers, localStorage, the native bridge,
//!   `fetch`, and the driver that feeds the core.
//! - `facade` (wasm only): the `#[wasm_bindgen]` API: `connectPc`, `connectDevice`,
//!   `PcSession`, `DeviceSession`.

pub use tether_sdk_core as core;

/// A free-list allocator (sorted, coalescing) a few KB smaller than the default dlmalloc;
/// the SDK allocates little and briefly, so its simplicity costs nothing here.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[cfg(target_arch = "wasm32")]
mod facade;
#[cfg(target_arch = "wasm32")]
mod web;
