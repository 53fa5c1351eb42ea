//! The JavaScript API the base SDK calls: `start(config, sink)`, `Inspector.handle(kind,
//! msgText)` and `Inspector.stop()`.
//! Bindings only: what is recorded and how it is written is decided in
//! `tether_sdk_core::inspect`.

use crate::web::command::Commands;
use crate::web::record::Capture;
use crate::web::{Hooks, Js, href, kind};
use js_sys::Function;
use tether_sdk_core::inspect::event::{LEVELS, STACKED};
use tether_sdk_core::inspect::walk::{Page, string};
use tether_sdk_core::inspect::{Kind, Masks, Own};
use wasm_bindgen::prelude::*;

/// Starts inspecting the page. `config` is what the base builds from `connectDevice`'s
/// `inspect` option (`true`, or `{console?, network?, storage?, allow?, filter?, redactHeaders?,
/// own?, …}`; each part on unless `false`);
/// `sink(kind, text)` gets each event as one JSON text. The hooks are in when this returns,
/// and the first `page` event has been sent.
#[wasm_bindgen]
pub fn start(config: JsValue, sink: Option<Function>) -> Inspector {
    let filter = get(&config, "filter").filter(|f| kind(f) == Kind::Function);
    // The SDK's own URLs as the browser writes the URLs they are compared with: a relay named
    // `wss://Relay.Example:443` must not let its socket (and the device key in its query) pass.
    let own = Own(strings(&config, "own").unwrap_or_default().iter().map(|u| href(u)).collect());
    let masks = Masks::new(strings(&config, "redactHeaders"));
    let mut capture = Capture::new(sink, filter, own, masks);
    let storage = part(&config, "storage");
    let hooks = Hooks::install(
        move |kind, a, b| capture.on(kind, a, b),
        LEVELS,
        STACKED,
        part(&config, "console"),
        part(&config, "network"),
        storage,
    );
    let allow = get(&config, "allow").filter(|f| kind(f) == Kind::Function).unwrap_or_default();
    Inspector { hooks: Some(hooks), commands: Commands::new(allow, storage) }
}

/// `config[name]` when the config is an object and has it.
fn get(config: &JsValue, name: &str) -> Option<JsValue> {
    let v = Js.prop(config, name).ok().filter(|_| kind(config) == Kind::Object)?;
    (kind(&v) != Kind::Undefined).then_some(v)
}

/// `config[name]` when it is a list: its strings.
fn strings(config: &JsValue, name: &str) -> Option<Vec<String>> {
    let list = get(config, name).filter(|l| kind(l) == Kind::Array)?;
    let mut out = Vec::new();
    for i in 0..Js.len(&list) {
        match Js.index(&list, i) {
            Ok(x) if kind(&x) == Kind::String => out.push(string(&Js, &x).head),
            _ => {}
        }
    }
    Some(out)
}

/// Whether the part `name` of the config is on: it is unless the config says `false`.
fn part(config: &JsValue, name: &str) -> bool {
    get(config, name).is_none_or(|v| kind(&v) != Kind::False)
}

/// A running inspector: its hooks stay in until `stop()`.
#[wasm_bindgen]
pub struct Inspector {
    hooks: Option<Hooks>,
    commands: Commands,
}

#[wasm_bindgen]
impl Inspector {
    /// Takes every hook out; the page's own functions are back (or, where another tool
    /// wrapped them since, ours pass through). Calling it again does nothing.
    pub fn stop(&mut self) {
        drop(self.hooks.take());
    }

    /// Answers a PC's `storage` or `eval` command (`kind`, and its msg as JSON text): a
    /// Promise of the reply body's JSON text, never rejected (a refusal, a throw, a page that
    /// forbids eval are replies). Eval and storage edits run only if the page's `allow` says
    /// `true`.
    pub fn handle(&self, kind: JsValue, msg: JsValue) -> JsValue {
        self.commands.handle(&kind, &msg)
    }
}
