//! Runs a `post` or `call` on the device: through the page's own handler (`onPost`,
//! `onCall`) or the app's native bridge, `window[bridge]` (`"TencentNews"` by default, as in
//! seed 004):
//!
//! - `post`: `bridge.post(url, body, callback, {method, headers}, {})`, else
//!   `bridge.postData(url, JSON.stringify(body), "<ok callback name>", "<error callback name>")`
//!   with global callbacks, as the seed's two native APIs take them;
//! - `call`: `bridge.invoke(method, ...params, callback)`, else `bridge[method](...params,
//!   callback)` — only with the bridge's own API (`invoke` or `method` on the bridge object or a
//!   prototype of its own, never `Object.prototype`'s), and only for a plain name
//!   ([`tether_protocol::names::plain_name`]): a PC's `call("constructor")`, `"__proto__"`,
//!   `"toString"` or `"a.b"` is refused.
//!
//! Which global is the bridge is the page's configuration (`connectDevice`'s `bridge`, checked
//! there), never something a link or a PC names.
//!
//! `storage` and `eval` go to the page's inspector, `insp.handle(kind, msgText)`, whose
//! Promise gives the reply body as JSON text.
//!
//! Exactly one outcome is reported per command: the first of the callback, a thrown error,
//! or the timeout (the request's `timeoutMs`), so a native API that never answers cannot leave
//! the PC waiting forever.

use super::{from_js, to_js};
use crate::core::json::Json;
use crate::core::num;
use crate::core::session::Command;
use js_sys::{Array, Function, Promise, Reflect};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tether_protocol::Kind;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// Where commands go.
#[derive(Clone)]
pub struct Bridge {
    /// The global object of the app's native bridge.
    pub name: String,
    /// The page's own `post` handler.
    pub on_post: Option<Function>,
    /// The page's own `call` handler.
    pub on_call: Option<Function>,
    /// The running inspector (`connectDevice({inspect})`): answers `storage` and `eval`.
    pub inspector: Option<JsValue>,
}

/// How long a command may take when its request does not say.
const DEFAULT_TIMEOUT_MS: u64 = 15_000;

thread_local! {
    static NEXT_CALLBACK: Cell<u64> = const { Cell::new(1) };
}

type Done = Rc<RefCell<Option<Box<dyn FnOnce(Result<JsValue, String>)>>>>;

fn finish(done: &Done, outcome: Result<JsValue, String>) {
    let f = done.borrow_mut().take();
    if let Some(f) = f {
        f(outcome);
    }
}

fn describe(e: &JsValue) -> String {
    if let Some(err) = e.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    e.as_string().unwrap_or_else(|| from_js(e).to_json())
}

/// A one-shot JS function that reports its first argument.
fn callback(done: &Done) -> JsValue {
    let done = done.clone();
    super::once(move |v| finish(&done, Ok(v)))
}

/// Waits for a value that may be a Promise.
fn settle(v: JsValue, done: &Done) {
    let (ok, err) = (done.clone(), done.clone());
    let on_ok = super::once(move |v| finish(&ok, Ok(v)));
    let on_err = super::once(move |e| finish(&err, Err(describe(&e))));
    super::then(&Promise::resolve(&v).into(), &on_ok, &on_err);
}

fn get_fn(obj: &JsValue, name: &str) -> Option<Function> {
    Reflect::get(obj, &name.into()).ok()?.dyn_into::<Function>().ok()
}

/// The bridge's API function `name`: a data property of the bridge object or of a prototype
/// of its own (a bridge built by a class, or injected by the webview), but nothing that comes
/// from `Object.prototype`, and no getter run.
fn api_fn(bridge: &JsValue, name: &str) -> Option<Function> {
    let base: JsValue = js_sys::Object::get_prototype_of(&js_sys::Object::new()).into();
    let mut obj: JsValue = bridge.clone();
    // A few links at most: a class hierarchy, not a crafted endless chain.
    for _ in 0..8 {
        if !obj.is_object() || js_sys::Object::is(&obj, &base) {
            return None;
        }
        let d = js_sys::Object::get_own_property_descriptor::<JsValue>(obj.unchecked_ref(), &name.into());
        if !d.is_undefined() {
            return Reflect::get(&d, &"value".into()).ok()?.dyn_into::<Function>().ok();
        }
        obj = js_sys::Object::get_prototype_of(&obj).into();
    }
    None
}

impl Bridge {
    /// Runs `cmd` and reports its outcome once: `Ok(result)` or `Err(message)`.
    pub fn run(&self, cmd: &Command, report: impl FnOnce(Result<JsValue, String>) + 'static) {
        let done: Done = Rc::new(RefCell::new(Some(Box::new(report))));
        let ms = cmd.msg["timeoutMs"].as_u64().unwrap_or(DEFAULT_TIMEOUT_MS);
        let d = done.clone();
        super::timeout(
            ms,
            Box::new(move || {
                finish(
                    &d,
                    Err(["no answer from the page or the native bridge within ", &num(ms), " ms"].concat()),
                );
            }),
        )
        .forget();
        let outcome = match cmd.kind {
            Kind::Post => self.post(cmd, &done),
            Kind::Storage | Kind::Eval => self.inspect(cmd, &done),
            _ => self.call(cmd, &done),
        };
        if let Err(e) = outcome {
            finish(&done, Err(e));
        }
    }

    fn native(&self) -> Option<JsValue> {
        Reflect::get(&js_sys::global(), &self.name.as_str().into()).ok().filter(|b| b.is_object())
    }

    fn post(&self, cmd: &Command, done: &Done) -> Result<(), String> {
        let msg = &cmd.msg;
        if let Some(f) = &self.on_post {
            let v = f.call1(&JsValue::NULL, &to_js(msg)).map_err(|e| describe(&e))?;
            settle(v, done);
            return Ok(());
        }
        let url = msg["url"].as_str().unwrap_or_default();
        let body = if msg["body"].is_null() { Json::obj([]) } else { msg["body"].clone() };
        let missing = || {
            [
                "no native bridge: window.",
                &self.name,
                ".post or .postData not found; pass onPost to connectDevice",
            ]
            .concat()
        };
        let bridge = self.native().ok_or_else(missing)?;
        if let Some(post) = get_fn(&bridge, "post") {
            let options = Json::obj([("method", msg["method"].clone()), ("headers", msg["headers"].clone())]);
            let args = Array::of5(
                &url.into(),
                &to_js(&body),
                &callback(done),
                &to_js(&options),
                &js_sys::Object::new(),
            );
            post.apply(&bridge, &args).map_err(|e| describe(&e))?;
            return Ok(());
        }
        if let Some(post_data) = get_fn(&bridge, "postData") {
            let n = NEXT_CALLBACK.with(|c| c.replace(c.get() + 1));
            let (ok_name, err_name) =
                (["__tether_ok_", &num(n)].concat(), ["__tether_err_", &num(n)].concat());
            let global = js_sys::global();
            let cleanup = {
                let (global, ok_name, err_name) = (global.clone(), ok_name.clone(), err_name.clone());
                move || {
                    let _ =
                        Reflect::delete_property(global.unchecked_ref::<js_sys::Object>(), &ok_name.into());
                    let _ =
                        Reflect::delete_property(global.unchecked_ref::<js_sys::Object>(), &err_name.into());
                }
            };
            let (d_ok, d_err, c_ok) = (done.clone(), done.clone(), cleanup.clone());
            let on_ok = super::once(move |v| {
                c_ok();
                finish(&d_ok, Ok(v));
            });
            let on_err = super::once(move |e| {
                cleanup();
                finish(&d_err, Err(describe(&e)));
            });
            let _ = Reflect::set(&global, &ok_name.as_str().into(), &on_ok);
            let _ = Reflect::set(&global, &err_name.as_str().into(), &on_err);
            let body = match &body {
                Json::Str(s) => s.clone(),
                other => other.to_json(),
            };
            let args = Array::of4(&url.into(), &body.into(), &ok_name.into(), &err_name.into());
            post_data.apply(&bridge, &args).map_err(|e| describe(&e))?;
            return Ok(());
        }
        Err(missing())
    }

    /// The inspector's `handle` for `storage` and `eval`, if the page has one.
    pub fn handler(&self) -> Option<Function> {
        get_fn(self.inspector.as_ref()?, "handle")
    }

    fn inspect(&self, cmd: &Command, done: &Done) -> Result<(), String> {
        let handle = self.handler().ok_or_else(String::new)?;
        let this = self.inspector.clone().unwrap_or_default();
        let v = handle
            .call2(&this, &cmd.kind.as_str().into(), &cmd.msg.to_json().into())
            .map_err(|e| describe(&e))?;
        settle(v, done);
        Ok(())
    }

    fn call(&self, cmd: &Command, done: &Done) -> Result<(), String> {
        let method = cmd.msg["method"].as_str().unwrap_or_default().to_owned();
        let params = cmd.msg["params"].as_array().map(<[Json]>::to_vec).unwrap_or_default();
        if let Some(f) = &self.on_call {
            let v = f
                .call2(&JsValue::NULL, &method.as_str().into(), &to_js(&Json::Arr(params.clone())))
                .map_err(|e| describe(&e))?;
            settle(v, done);
            return Ok(());
        }
        let missing = || {
            ["no native bridge: window.", &self.name, ".invoke not found; pass onCall to connectDevice"]
                .concat()
        };
        let bridge = self.native().ok_or_else(missing)?;
        if !tether_protocol::names::plain_name(&method) {
            return Err(["refused: \"", &method, "\" is not a JS-API name"].concat());
        }
        let args = Array::new();
        let (f, this) = if let Some(invoke) = api_fn(&bridge, "invoke") {
            args.push(&method.as_str().into());
            (invoke, bridge)
        } else if let Some(direct) = api_fn(&bridge, &method) {
            (direct, bridge)
        } else {
            return Err(["refused: window.", &self.name, " has neither invoke nor ", &method].concat());
        };
        for p in &params {
            args.push(&to_js(p));
        }
        args.push(&callback(done));
        f.apply(&this, &args).map_err(|e| describe(&e))?;
        Ok(())
    }
}
