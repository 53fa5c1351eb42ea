//! The adapters between the sans-IO core and the browser: the WebSocket, timers, storage,
//! page-lifecycle listeners, the native bridge and the device's command runner, `fetch`, and
//! the [`driver::Driver`] that feeds the core and carries out what it asks. Each adapter owns
//! its `Closure`s and removes its listeners on drop.

pub mod alarms;
pub mod bridge;
pub mod device;
pub mod driver;
pub mod http;
pub mod socket;

use crate::core::json::Json;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// Milliseconds since the epoch, the core's clock.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// A seed for retry jitter.
pub fn random_seed() -> u64 {
    (js_sys::Math::random() * (u64::MAX as f64)) as u64 | 1
}

/// 128 random bits as hex, from `crypto.getRandomValues`; `None` where there is none (a secret
/// from `Math.random` could be guessed, so there is no fallback).
pub fn random_hex128() -> Option<String> {
    let bytes = Uint8Array::new_with_length(16);
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).ok()?;
    let f = Reflect::get(&crypto, &"getRandomValues".into()).ok()?.dyn_into::<js_sys::Function>().ok()?;
    f.call1(&crypto, &bytes).ok()?;
    let mut out = String::with_capacity(32);
    for i in 0..16 {
        out.extend(crate::core::hex2(bytes.get_index(i), false));
    }
    Some(out)
}

/// `localStorage`, when the page may use it.
pub fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// Reads a localStorage item.
pub fn load(key: &str) -> Option<String> {
    storage()?.get_item(key).ok().flatten()
}

/// Writes a localStorage item (quietly does nothing where storage is unavailable or full).
pub fn save(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// A JS `Error` whose `code` is a protocol error code, `timeout` or `disconnected`.
pub fn js_error(code: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    let _ = Reflect::set(&err, &"code".into(), &code.into());
    err.into()
}

/// Converts a JSON value to a plain JS value through the browser's own `JSON.parse` (much
/// smaller in wasm than a serde bridge such as serde-wasm-bindgen, and fast enough for
/// messages of this size).
pub fn to_js(v: &Json) -> JsValue {
    js_sys::JSON::parse(&v.to_json()).unwrap_or(JsValue::NULL)
}

/// Reads a JS value through `JSON.stringify` (`undefined` and functions become null).
pub fn from_js(v: &JsValue) -> Json {
    if v.is_undefined() {
        return Json::Null;
    }
    js_sys::JSON::stringify(v)
        .ok()
        .and_then(|s| s.as_string())
        .and_then(|s| Json::parse(&s).ok())
        .unwrap_or_default()
}

/// Calls `f` after `ms` (a `dyn` callback: one copy of the timer glue for every caller).
pub fn timeout(ms: u64, f: Box<dyn FnOnce()>) -> gloo_timers::callback::Timeout {
    gloo_timers::callback::Timeout::new(ms.min(u32::MAX as u64) as u32, f)
}

/// A one-shot JS function. Every one-shot callback goes through this one closure type, so the
/// wasm and its JS glue carry a single set of closure shims rather than one per call site.
pub fn once(f: impl FnOnce(JsValue) + 'static) -> JsValue {
    once_boxed(Box::new(f))
}

fn once_boxed(f: Box<dyn FnOnce(JsValue)>) -> JsValue {
    Closure::once_into_js(move |v: JsValue| f(v))
}

/// A long-lived JS function; like [`once`], one closure type for every listener.
pub fn listener(f: impl FnMut(JsValue) + 'static) -> Closure<dyn FnMut(JsValue)> {
    Closure::new(f)
}

/// `promise.then(on_ok, on_err)` with plain JS functions.
pub fn then(promise: &JsValue, on_ok: &JsValue, on_err: &JsValue) {
    if let Ok(f) = Reflect::get(promise, &"then".into()).and_then(|f| f.dyn_into::<js_sys::Function>()) {
        let _ = f.call2(promise, on_ok, on_err);
    }
}

/// Listens for the page coming back (visible again, network back) and going away (hidden,
/// `pagehide`: the webview may freeze it next) until dropped.
pub struct WakeListeners {
    on_visible: Closure<dyn FnMut(JsValue)>,
    on_online: Closure<dyn FnMut(JsValue)>,
    on_hide: Closure<dyn FnMut(JsValue)>,
}

impl WakeListeners {
    /// Calls `wake(true)` whenever the page becomes visible or the browser goes online, and
    /// `wake(false)` when the page is hidden or being left.
    pub fn new(wake: std::rc::Rc<dyn Fn(bool)>) -> Option<WakeListeners> {
        let window = web_sys::window()?;
        let document = window.document()?;
        let doc = document.clone();
        let (w, h) = (wake.clone(), wake.clone());
        let on_visible = listener(move |_| w(doc.visibility_state() == web_sys::VisibilityState::Visible));
        let on_online = listener(move |_| wake(true));
        let on_hide = listener(move |_| h(false));
        let _ = document
            .add_event_listener_with_callback("visibilitychange", on_visible.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("online", on_online.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
        Some(WakeListeners { on_visible, on_online, on_hide })
    }
}

impl Drop for WakeListeners {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            if let Some(document) = window.document() {
                let _ = document.remove_event_listener_with_callback(
                    "visibilitychange",
                    self.on_visible.as_ref().unchecked_ref(),
                );
            }
            let _ =
                window.remove_event_listener_with_callback("online", self.on_online.as_ref().unchecked_ref());
            let _ =
                window.remove_event_listener_with_callback("pagehide", self.on_hide.as_ref().unchecked_ref());
        }
    }
}
