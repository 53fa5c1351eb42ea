//! The console hook: every level of `console` wrapped by the shim (`hooks.js`), each call
//! reported to a Rust closure with its level.

use js_sys::Function;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/web/hooks.js")]
extern "C" {
    /// Wraps the console's levels around `rec`; returns the function that undoes it.
    #[wasm_bindgen(js_name = hookConsole)]
    fn hook_console(rec: &Closure<dyn FnMut(String)>) -> Function;
}

/// The console, hooked until dropped.
pub struct ConsoleHook {
    undo: Function,
    /// Called by the shim's wrappers; kept alive while they may call it.
    _rec: Closure<dyn FnMut(String)>,
}

impl ConsoleHook {
    /// Hooks every console level: `rec(level)` runs before the page's own console does.
    pub fn install(rec: impl FnMut(String) + 'static) -> ConsoleHook {
        let rec: Closure<dyn FnMut(String)> = Closure::new(rec);
        ConsoleHook { undo: hook_console(&rec), _rec: rec }
    }
}

impl Drop for ConsoleHook {
    /// Takes the wrappers out (or, where another tool wrapped ours since, makes ours pass
    /// through) before the closure they call is freed.
    fn drop(&mut self) {
        let _ = self.undo.call0(&JsValue::NULL);
    }
}
