//! The hooks into the page, through the JS shim (`hooks.js`), and the walker's questions
//! ([`Page`]) answered by it. Each adapter owns its `Closure` and takes its hooks out on drop.

use js_sys::{Function, Reflect};
use tether_sdk_core::inspect::Kind;
use tether_sdk_core::inspect::walk::{Page, Threw};
use wasm_bindgen::prelude::*;

pub mod command;
pub mod record;

/// What the shim's hooks call: `(kind, a, b)` — a console method's index in
/// `inspect::event::LEVELS` with its arguments and stack, or one of [`record`]'s kinds; its
/// answer is for the network hooks (see `record::NET_START`), 0 for the rest.
pub type Rec = Closure<dyn FnMut(u32, JsValue, JsValue) -> u32>;

#[wasm_bindgen(module = "/src/web/hooks.js")]
extern "C" {
    /// Hooks the page around `rec`; returns the function that undoes it (see hooks.js).
    fn hook(rec: &Rec, levels: &str, stacked: &str, console: bool, network: bool, storage: bool) -> Function;
    /// `u` as the browser writes it (see hooks.js).
    pub fn href(u: &str) -> String;
    fn what(v: &JsValue) -> u32;
    fn text(v: &JsValue, kind: u32, max: u32) -> String;
    fn len(v: &JsValue) -> f64;
    fn keys(v: &JsValue) -> JsValue;
    fn items(v: &JsValue, max: u32) -> JsValue;
    /// Runs the page's filter on an event (see hooks.js).
    pub fn run(filter: &JsValue, text: &str) -> JsValue;
}

/// What `v` is (the shim's answer).
pub fn kind(v: &JsValue) -> Kind {
    Kind::from_code(what(v))
}

/// Calls `f` with `a` and `b`: the one call binding the module has (a function of fewer
/// parameters ignores the rest).
pub fn call(f: &Function, a: &JsValue, b: &JsValue) {
    let _ = f.call2(&JsValue::NULL, a, b);
}

/// The page, hooked until dropped.
pub struct Hooks {
    undo: Function,
    /// Called by the shim's hooks; kept alive while they may call it.
    _rec: Rec,
}

impl Hooks {
    /// Hooks the page (the console and its errors only with `console`, its own fetch, XHR,
    /// beacons, WebSockets and EventSources only with `network`, its storage writes only with
    /// `storage`; page info always): `rec` runs before the page's own console does.
    pub fn install(
        rec: impl FnMut(u32, JsValue, JsValue) -> u32 + 'static,
        levels: &str,
        stacked: &str,
        console: bool,
        network: bool,
        storage: bool,
    ) -> Hooks {
        let rec: Rec = Closure::new(rec);
        Hooks { undo: hook(&rec, levels, stacked, console, network, storage), _rec: rec }
    }
}

impl Drop for Hooks {
    /// Takes the hooks out (or, where another tool wrapped ours since, makes ours pass
    /// through) before the closure they call is freed.
    fn drop(&mut self) {
        call(&self.undo, &JsValue::NULL, &JsValue::NULL);
    }
}

/// The walker's questions, answered in JS: one shim call each, or one `Reflect.get`.
pub struct Js;

impl Page for Js {
    type V = JsValue;

    fn what(&self, v: &JsValue) -> Kind {
        kind(v)
    }

    fn text(&self, v: &JsValue, kind: Kind, max: usize) -> String {
        text(v, kind as u32, max as u32)
    }

    fn len(&self, v: &JsValue) -> usize {
        len(v) as usize
    }

    fn keys(&self, v: &JsValue) -> Option<JsValue> {
        Some(keys(v)).filter(|k| kind(k) != Kind::Null)
    }

    fn items(&self, v: &JsValue, max: usize) -> JsValue {
        items(v, max as u32)
    }

    fn get(&self, v: &JsValue, key: &JsValue) -> Result<JsValue, Threw> {
        Reflect::get(v, key).map_err(|_| Threw)
    }

    fn index(&self, v: &JsValue, i: usize) -> Result<JsValue, Threw> {
        self.get(v, &JsValue::from(i as u32))
    }

    fn prop(&self, v: &JsValue, name: &str) -> Result<JsValue, Threw> {
        self.get(v, &JsValue::from_str(name))
    }

    fn number(&self, v: &JsValue) -> f64 {
        v.as_f64().unwrap_or(f64::NAN)
    }

    fn num_text(&self, x: f64) -> String {
        text(&JsValue::from_f64(x), Kind::Number as u32, 32)
    }

    fn same(&self, a: &JsValue, b: &JsValue) -> bool {
        a == b
    }
}

/// Milliseconds since the epoch, the core's clock.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}
