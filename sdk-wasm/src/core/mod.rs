//! The SDK's sans-IO core: plain Rust, no `web_sys`, `js_sys` or timers.
//!
//! Time comes in as milliseconds from the caller's clock ([`Millis`]); the core says when it
//! next wants to be woken ([`session::Session::poll_timeout`]) and what it wants done
//! ([`session::Action`]: open a socket, send a frame, close). The `web` layer carries those
//! out; the tests here move time by hand.
//!
//! # Layout
//! - [`backoff`]: retry delays with jitter, from a seeded generator.
//! - [`pending`]: requests awaiting replies, by id, with deadlines.
//! - [`json`]: a small JSON value (why not serde_json: size).
//! - [`history`]: the local history of URLs and methods run.
//! - [`session`]: the connection state machine both ends use.

pub mod backoff;
pub mod history;
pub mod json;
pub mod pending;
pub mod session;

/// Milliseconds on the caller's clock (the web layer uses `Date.now()`).
pub type Millis = u64;
