//! `fetch` for the relay's HTTP API (the room's stored history).

use super::{from_js, js_error, once, then};
use crate::core::http::relay_error;
use js_sys::Promise;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

fn reject_with(reject: &js_sys::Function, code: &str, message: &str) {
    let _ = reject.call1(&JsValue::NULL, &js_error(code, message));
}

/// `fetch(url)` with `secret` as a Bearer token, resolving with the JSON body, or rejecting
/// with the relay's `{"error": {"code", "message"}}` ([`relay_error`]), or `disconnected` when
/// the relay cannot be reached. Chained by hand: an async executor would cost the wasm several
/// KB for this one call.
pub fn fetch_json(url: &str, secret: &str) -> Promise {
    let Some(window) = web_sys::window() else {
        return Promise::reject(&js_error("internal", "no window"));
    };
    let headers = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&headers, &"Authorization".into(), &["Bearer ", secret].concat().into());
    let init = web_sys::RequestInit::new();
    init.set_headers(&headers);
    let fetched: JsValue = window.fetch_with_str_and_init(url, &init).into();
    Promise::new(&mut |resolve, reject| {
        let unreachable = reject.clone();
        let on_response = once(move |resp| {
            let resp: web_sys::Response = resp.unchecked_into();
            let (ok, status) = (resp.ok(), resp.status());
            let Ok(body) = resp.json() else {
                reject_with(&reject, "internal", "unreadable response");
                return;
            };
            let not_json = reject.clone();
            let on_body = once(move |body| {
                if ok {
                    let _ = resolve.call1(&JsValue::NULL, &body);
                    return;
                }
                let e = relay_error(status, Some(from_js(&body)));
                reject_with(&reject, &e.code, &e.message);
            });
            let on_bad = once(move |_| {
                let e = relay_error(status, None);
                reject_with(&not_json, &e.code, &e.message);
            });
            then(&body.into(), &on_body, &on_bad);
        });
        let on_unreachable =
            once(move |_| reject_with(&unreachable, "disconnected", "the relay could not be reached"));
        then(&fetched, &on_response, &on_unreachable);
    })
}
