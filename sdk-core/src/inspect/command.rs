//! The replies to a PC's `eval` that carry a value of the page (docs/protocol.md, *Inspecting
//! the page*): what the code returned, or what it (or the page's storage, on an edit) threw,
//! written as Values under an event's caps.
//!
//! The rest of a `storage` or `eval` command is the shim's (`command` in hooks.js): whether the
//! request may go ahead (malformed: `bad_frame`; storage not captured: `inspect_off`; one of
//! the SDK's own keys: `not_allowed`; otherwise edits and eval only if the page's `allow` says
//! `true`), the storage read and edits under [`storage`](super::storage)'s caps, the eval and
//! its Promise. In wasm, each string of the page would cross on its own: written here first,
//! the same work made increment 8 cost 5.7 KB gzipped, against 2.3 KB in the shim.

use super::walk::{self, Page};
use super::writer::{Kind, Writer};

/// An eval's reply: `{"result": Value}`, walked under an event's caps.
pub fn result<P: Page>(p: &P, v: &P::V) -> String {
    let mut w = Writer::body();
    w.field("result");
    walk::value(&mut w, p, v);
    w.finish().text
}

/// The reply when the code (or the page's storage, on an edit) threw `v`, or the Promise it
/// returned rejected with it: `{"error":{"code":"threw","message","value": Value}}`, the
/// message an Error's own.
pub fn threw<P: Page>(p: &P, v: &P::V) -> String {
    let mut w = Writer::body();
    w.field("error");
    w.object();
    w.field("code");
    w.plain("threw");
    w.field("message");
    match (p.what(v) == Kind::Error).then(|| walk::string_prop(p, v, "message")).flatten() {
        Some(m) => w.string(&m),
        None => w.plain("threw (see value)"),
    }
    w.field("value");
    walk::value(&mut w, p, v);
    w.end();
    w.finish().text
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
