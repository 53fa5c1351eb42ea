//! The page's storage as the inspector sees it: its three areas (localStorage,
//! sessionStorage, `document.cookie`), the SDK's own keys that never leave the phone, the
//! page's own writes as `storage` events, and the caps of what a PC may read and write (the
//! shim applies them as it reads and edits: `read`, `edit` and `check` in hooks.js; a native
//! test of sdk-inspect checks that it spells them as here).
//!
//! **The SDK's own keys** (`tether.`, [`OWN`]) are neither sent nor editable: a read leaves
//! them out (key and value), the page's writes to them are not recorded, and no PC command
//! may set or remove them (nor does `clear` remove them). What the SDK and its pages keep
//! there: `tether.secret.<room>` (the PC secret a PC page made, readable by every page of that
//! origin), `tether.history` (the URLs and methods a PC ran), and the device page's
//! `tether.device.guard` and `tether.device.simulate`. A PC allowed to read storage must not
//! learn another room's secret, nor one allowed to edit it rewrite the Guard that decides what
//! it may run. Left out rather than masked: a masked `tether.secret.<room>` would still name
//! the rooms this browser joined, and a PC has no use for a value it cannot see.

use super::walk::{self, Page};
use super::writer::{Draft, Kind, Writer};
use crate::Millis;

/// The prefix of the SDK's own keys (see the module's doc).
pub const OWN: &str = "tether.";

/// A storage read's reply, at most this many UTF-16 units of JSON text (so at most three
/// times as many bytes, within the relay's default 1 MiB `--max-frame`): the pairs that do
/// not fit are left out, and the reply says `cut: true`.
pub const TOTAL: usize = 262_144;

/// A cookie a PC writes: its name and value together, at most this many UTF-16 units (what
/// browsers keep, in bytes, for ASCII). It is a
/// name of visible characters without `;` or `=` and a value without `;` or control
/// characters, so that the text written cannot carry attributes of its own (a `domain`, an
/// `expires`).
pub const COOKIE: usize = 4_096;

/// Whether `key` is one of the SDK's own.
pub fn own(key: &str) -> bool {
    key.starts_with(OWN)
}

/// The page's own write to its storage as the shim's storage hook reports it: `area`
/// (`"local"`, `"session"` or `"cookie"`) and `args`, `[op, key?, value?]` as strings: `op`
/// `set` (`setItem(key, value)`), `remove` (`removeItem(key)`) or `clear`; a write of
/// `document.cookie` is `set` with the cookie's name as `key` and the rest of the text as
/// written as `value` (its attributes too: `x; path=/; max-age=0` is how a page deletes one;
/// whether the browser kept it, the next read shows). A `storage` event,
/// `{"k":"storage","at","n","area","op","key"?,"value"?}`, never for the SDK's own keys.
pub fn event<P: Page>(p: &P, at: Millis, n: u64, area: &P::V, args: &P::V) -> Option<Draft> {
    let arg = |i| p.index(args, i).ok().filter(|v| p.what(v) == Kind::String);
    if arg(1).is_some_and(|k| own(&p.text(&k, Kind::String, OWN.len()))) {
        return None;
    }
    let mut w = Writer::event("storage", at, n);
    w.field("area");
    w.string(&walk::string(p, area));
    for (i, field) in ["op", "key", "value"].into_iter().enumerate() {
        if let Some(v) = arg(i) {
            w.field(field);
            w.string(&walk::string(p, &v));
        }
    }
    Some(w.finish())
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
