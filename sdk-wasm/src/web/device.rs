//! The device's side of a command: log it, run it through the [`Bridge`] (`storage` and
//! `eval`: the page's inspector, or `inspect_off` without one), reply, log the outcome. What
//! the log entries and the reply say is decided in [`crate::core::device`].

use super::bridge::Bridge;
use super::driver::Driver;
use super::{from_js, now, to_js};
use crate::core::device::{CommandLog, Outcome, inspection_outcome, inspection_reply, reply};
use crate::core::json::Json;
use crate::core::session::Command;
use js_sys::{Function, Reflect};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;

/// The `appInfo` a device sends when the page gives none: its user agent and URL.
pub fn default_app_info() -> Json {
    let Some(w) = web_sys::window() else { return Json::Null };
    let nav = w.navigator();
    Json::obj([("userAgent", nav.user_agent().ok().into()), ("url", w.location().href().ok().into())])
}

/// The page's `document.cookie` (what a `post` reply carries), null where there is none.
fn cookie() -> Json {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| Reflect::get(&d, &"cookie".into()).ok())
        .and_then(|c| c.as_string())
        .into()
}

/// What the device does with each command: log it, run it, reply, log the outcome. `log`
/// holds the page's `onCommand` handlers.
pub fn command_runner(
    driver: Weak<Driver>,
    bridge: Rc<RefCell<Bridge>>,
    log: Rc<RefCell<Vec<Function>>>,
    app_info: Json,
) -> impl Fn(Command) {
    move |cmd: Command| {
        let mut entry = CommandLog::start(&cmd, now());
        emit(&log, entry.entry());
        let (driver, log, app_info) = (driver.clone(), log.clone(), app_info.clone());
        let c = cmd.clone();
        let b = bridge.borrow().clone();
        let inspection = cmd.kind.is_inspection();
        let mut answer = move |outcome: Option<Outcome>| {
            let (kind, body) = if inspection {
                let body = inspection_reply(outcome);
                entry.finish(&inspection_outcome(&body), now());
                (c.kind.reply_kind().unwrap_or(c.kind), body)
            } else {
                let outcome = outcome.unwrap_or(Ok(Json::Null));
                entry.finish(&outcome, now());
                reply(&c, outcome, cookie, &app_info)
            };
            if let Some(d) = driver.upgrade() {
                if let Err(e) = d.with(|s| s.reply(&c.id, kind, body)) {
                    entry.reply_failed(&e.message);
                }
            }
            emit(&log, entry.entry());
        };
        if inspection && b.handler().is_none() {
            return answer(None);
        }
        b.run(&cmd, move |outcome| answer(Some(outcome.map(|r| from_js(&r)))));
    }
}

fn emit(log: &Rc<RefCell<Vec<Function>>>, entry: &Json) {
    let handlers = log.borrow().clone();
    let v = to_js(entry);
    for h in handlers {
        let _ = h.call1(&JsValue::NULL, &v);
    }
}
