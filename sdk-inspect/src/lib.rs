//! Tether's inspector: the SDK's second WebAssembly module, loaded only when a device page
//! connects with `inspect` (the base SDK's `index.js` imports it then, and only then), so a
//! page that does not ask for it never downloads it.
//!
//! It hooks what the page does and hands each event, as JSON text, to a sink the base SDK
//! gives it; what to record and how it is written is decided in `tether-sdk-core`
//! (`core::inspect`) and tested natively. Where wasm-bindgen cannot express a hook (a function
//! that takes any number of arguments, or needs its `this`), a small JS shim does it
//! (`src/web/hooks.js`), and the string work that is much smaller there (below).
//!
//! It records every console level with its arguments (as Values, walked under the core's
//! caps), uncaught errors, unhandled rejections, resources that failed to load, page info (at
//! start and at `load`), the page's own network — fetch, XMLHttpRequest, sendBeacon,
//! WebSocket, EventSource (`core::inspect::net`: bodies, masks, the SDK's own traffic left
//! out) — and the page's own storage writes (`setItem`, `removeItem`, `clear`,
//! `document.cookie`), each put through the page's `filter`; the page's console, network and
//! storage still work as before, and `stop()` takes every hook out again. It answers a PC's
//! `storage` (read; set, remove, clear) and `eval` (`Inspector.handle`): reads need only that
//! the page captures storage, edits and eval that the page's `allow(request)` says `true`; the
//! SDK's own `tether.*` keys are never sent nor editable; eval is global code, `eval_blocked`
//! where the page's CSP forbids it.
//!
//! Where that work is done is a matter of size, measured: the shim checks a command, reads and
//! edits the storage and runs the eval, under the core's caps (done in Rust first, with a
//! string per value crossing into wasm, increment 8 cost 5.7 KB gzipped; so, 2.3 KB); the wasm
//! writes what needs the value walker (an eval's result or what it threw) and every event.
//!
//! # Layout
//! - `facade` (wasm only): the `#[wasm_bindgen]` API the base calls: `start`, `Inspector`
//!   (`handle`, `stop`).
//! - `web` (wasm only): the hooks and the walker's questions, through the shim (`hooks.js`:
//!   `hook`, `hookNet` for the network, `hookStorage` for storage writes); `web::record`: each
//!   report made an event (by the core) and handed to the sink; `web::command`: a PC's
//!   `storage` and `eval`, carried out by the shim.

/// The same small allocator as the base module (this module has its own linear memory).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[cfg(target_arch = "wasm32")]
mod facade;
#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(test)]
mod tests {
    use tether_sdk_core::inspect::{STRING, storage};

    /// The shim checks, reads and edits a page's storage under the core's caps and spells them
    /// out itself (`hooks.js`): they must be the same.
    #[test]
    fn the_shim_has_the_cores_caps() {
        let shim = include_str!("web/hooks.js");
        for line in [
            ["const OWN = \"", storage::OWN, "\";"].concat(),
            ["const MAX = ", &STRING.to_string(), ";"].concat(),
            ["const TOTAL = ", &storage::TOTAL.to_string(), ";"].concat(),
            ["const COOKIE = ", &storage::COOKIE.to_string(), ";"].concat(),
        ] {
            assert!(shim.contains(&line), "hooks.js should say {line}");
        }
    }
}
