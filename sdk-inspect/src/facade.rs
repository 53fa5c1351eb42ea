//! The JavaScript API the base SDK calls: `start(config, sink)` and `Inspector.stop()`.
//! Bindings only: what is recorded and how it is written is decided in
//! `tether_sdk_core::inspect`.

use crate::web::console::ConsoleHook;
use crate::web::now;
use js_sys::{Function, Reflect};
use tether_sdk_core::inspect::Recorder;
use wasm_bindgen::prelude::*;

/// Starts inspecting the page. `config` is `connectDevice`'s `inspect` option (`true`, or
/// `{console?}`, each part on unless `false`); `sink(kind, text)` gets each event as JSON text.
/// The hooks are in when this returns.
#[wasm_bindgen]
pub fn start(config: JsValue, sink: Option<Function>) -> Inspector {
    let console = part(&config, "console").then(|| {
        let mut recorder = Recorder::default();
        ConsoleHook::install(move |level| {
            let text = recorder.console(now(), &level);
            if let Some(sink) = &sink {
                // A sink that throws loses that event, not the hook.
                let _ = sink.call2(&JsValue::NULL, &"console".into(), &text.into());
            }
        })
    });
    Inspector { console }
}

/// Whether the part `name` of the config is on: it is unless the config says `false`.
fn part(config: &JsValue, name: &str) -> bool {
    !config.is_object() || Reflect::get(config, &name.into()).ok().and_then(|v| v.as_bool()) != Some(false)
}

/// A running inspector: its hooks stay in until `stop()`.
#[wasm_bindgen]
pub struct Inspector {
    console: Option<ConsoleHook>,
}

#[wasm_bindgen]
impl Inspector {
    /// Takes every hook out; the page's own functions are back (or, where another tool
    /// wrapped ours since, ours pass through). Calling it again does nothing.
    pub fn stop(&mut self) {
        drop(self.console.take());
    }
}
