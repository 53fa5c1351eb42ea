//! Tether's inspector: the SDK's second WebAssembly module, loaded only when a device page
//! connects with `inspect` (the base SDK's `index.js` imports it then, and only then), so a
//! page that does not ask for it never downloads it.
//!
//! It hooks what the page does and hands each event, as JSON text, to a sink the base SDK
//! gives it; what to record and how it is written is decided in `tether-sdk-core`
//! (`core::inspect`) and tested natively. Where wasm-bindgen cannot express a hook (a function
//! that takes any number of arguments, or needs its `this`), a small JS shim does only that
//! (`src/web/hooks.js`).
//!
//! So far (#18, increment 2) it hooks the console: each call is recorded (its level, time and
//! number) and still reaches the page's own console; `stop()` takes the hooks out again.
//!
//! # Layout
//! - `facade` (wasm only): the `#[wasm_bindgen]` API the base calls: `start`, `Inspector`.
//! - `web` (wasm only): the hooks, through the shim.

/// The same small allocator as the base module (this module has its own linear memory).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[cfg(target_arch = "wasm32")]
mod facade;
#[cfg(target_arch = "wasm32")]
mod web;
