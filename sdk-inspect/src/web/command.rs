//! A PC's `storage` and `eval` commands. The shim carries them out (`command` in hooks.js:
//! the request checked, the page's `allow`, its storage, the eval and its Promise); what an
//! eval returned or threw is written here, as a Value (`tether_sdk_core::inspect::command`).
//!
//! Why the shim does the rest: in wasm, every string of the page crosses the boundary on its
//! own and is handled again by Rust. Written here first, the request's check, the storage read
//! and the edits grew the inspector by 5.7 KB gzipped; in the shim, with only the Values
//! written here, all of increment 8 costs 2.3 KB (#18, increment 8; its budget: 2.4 KB). The
//! caps and the SDK's own keys the shim applies are the core's (`inspect::storage`; a native
//! test checks that the shim spells them the same).

use super::Js;
use tether_sdk_core::inspect::command;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/hooks.js")]
extern "C" {
    fn command(kind: &JsValue, text: &JsValue, allow: &JsValue, storage: bool, value: &Value) -> JsValue;
}

/// `value(ok, v)`: an eval's reply body, `v` its result (`ok` 1) or what it threw.
type Value = Closure<dyn FnMut(u32, JsValue) -> JsValue>;

/// A running inspector's commands.
pub struct Commands {
    /// The page's `allow(request)`, or undefined.
    allow: JsValue,
    storage: bool,
    value: Value,
}

impl Commands {
    /// Commands on a page that captures `storage` (or not) and has `allow` (a function) or not.
    pub fn new(allow: JsValue, storage: bool) -> Commands {
        let value = Closure::new(|ok, v| {
            if ok == 1 { command::result(&Js, &v) } else { command::threw(&Js, &v) }.into()
        });
        Commands { allow, storage, value }
    }

    /// Answers the command `kind` (`"storage"` or `"eval"`) whose msg is the JSON text `text`:
    /// a Promise of the reply body's JSON text, never rejected (each failure is a reply).
    pub fn handle(&self, kind: &JsValue, text: &JsValue) -> JsValue {
        command(kind, text, &self.allow, self.storage, &self.value)
    }
}
