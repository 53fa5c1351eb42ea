//! The hooks into the page. Each adapter owns its `Closure`s and takes its hooks out on drop.

pub mod console;

/// Milliseconds since the epoch, the core's clock.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}
