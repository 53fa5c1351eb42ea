//! The SDK's sans-IO core: plain Rust, no `web_sys`, `js_sys` or timers.
//!
//! Its own crate so that each of the SDK's WebAssembly modules (`tether-sdk`, the base, and
//! `tether-sdk-inspect`, loaded only with `inspect`) can link it: a cdylib that depended on
//! another cdylib's rlib would export all of that one's `#[wasm_bindgen]` functions too.
//! `tether-sdk` re-exports it as `tether_sdk::core`.
//!
//! Time comes in as milliseconds from the caller's clock ([`Millis`]); the core says when it
//! next wants to be woken ([`session::Session::poll_timeout`]) and what it wants done
//! ([`session::Action`]: open a socket, send a frame, close). The `web` layer carries those
//! out; the tests here move time by hand.
//!
//! # Layout
//! - [`alarms`]: the `/alarms` feed, resuming from the last seq.
//! - [`backoff`]: retry delays with jitter, from a seeded generator.
//! - [`device`]: a device's command log entries and reply bodies.
//! - [`pending`]: requests awaiting replies, by id, with deadlines.
//! - [`json`]: a small JSON value (why not serde_json: size).
//! - [`outbox`]: a device's inspector ring: what it keeps while no PC watches, the batches and
//!   their pace.
//! - [`history`]: the local history of URLs and methods run.
//! - [`http`]: what a failed answer of the relay's HTTP API means.
//! - [`inspect`]: the inspector's events, as the second wasm module writes them.
//! - [`session`]: the connection state machine both ends use.
//! - [`watch`]: a PC watching: `inspect` batches as `onInspect` gets them, `storage`/`eval`
//!   replies as their Promises settle.

pub mod alarms;
pub mod backoff;
pub mod device;
pub mod history;
pub mod http;
pub mod inspect;
pub mod json;
pub mod outbox;
pub mod pending;
pub mod session;
pub mod watch;

/// Milliseconds on the caller's clock (the web layer uses `Date.now()`).
pub type Millis = u64;

/// A number as decimal text. The SDK builds its strings with this and `concat` rather than
/// `format!`, which keeps core's formatting machinery (about 4 KB) out of the wasm.
pub fn num(mut n: u64) -> String {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| char::from(d)).collect()
}

/// Two hex digits.
pub fn hex2(b: u8, upper: bool) -> [char; 2] {
    let digits: &[u8; 16] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    [digits[usize::from(b >> 4)] as char, digits[usize::from(b & 15)] as char]
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_and_hex() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(super::num(n), n.to_string());
        }
        assert_eq!(super::hex2(0xaf, false), ['a', 'f']);
        assert_eq!(super::hex2(0x0c, true), ['0', 'C']);
    }
}
