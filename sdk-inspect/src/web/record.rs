//! The recorder: what the shim's hooks report, made into events by the core
//! (`inspect::capture`), put through the redaction order (`inspect::Recorder`: the page's
//! filter among it) and handed to the base SDK's sink.

use super::{Js, call, kind, now, run};
use js_sys::Function;
use tether_sdk_core::inspect::walk::Page;
use tether_sdk_core::inspect::{EVENT, Filtered, Kind, Masks, Own, Recorder, capture, net, storage};
use wasm_bindgen::prelude::*;

/// The shim's kinds besides console calls (which are their level's index).
pub const ERROR: u32 = 100;
pub const REJECTION: u32 = 101;
pub const PAGE: u32 = 102;
/// The network hooks' reports (`inspect::net` says what each carries). `NET_START` is
/// answered 1 when the request or socket is followed (0: the SDK's own, never followed);
/// `NET_HEAD` (fetch's response head) with how many bytes of its body to read (0: none, and
/// its `end` is already written); the shim then reports `NET_END` with what it read.
pub const NET_START: u32 = 110;
pub const NET_HEAD: u32 = 111;
pub const NET_END: u32 = 112;
pub const NET_FAIL: u32 = 113;
pub const NET_SOCKET: u32 = 114;
/// The page's storage writes, with the area and `[op, key?, value?]`
/// (`inspect::storage::event`); 120–129 are storage's.
pub const STORAGE: u32 = 120;

/// One inspector session's recording.
pub struct Capture {
    rec: Recorder,
    /// The base SDK's `sink(kind, text)`.
    sink: Option<Function>,
    /// The page's `filter(event)`.
    filter: Option<JsValue>,
    /// The SDK's own URLs, never recorded.
    own: Own,
    /// The headers whose values are masked (`redactHeaders`).
    masks: Masks,
    /// The sink's kinds, made JS strings once (each event's own text crosses anyway).
    kinds: [JsValue; 5],
}

impl Capture {
    /// A recording for `sink`, through the page's `filter` if it has one.
    pub fn new(sink: Option<Function>, filter: Option<JsValue>, own: Own, masks: Masks) -> Capture {
        let kinds = ["console", "error", "page", "network", "storage"].map(JsValue::from_str);
        Capture { rec: Recorder::default(), sink, filter, own, masks, kinds }
    }

    /// One report of the shim (see hooks.js): at most one event to the sink. The answer is
    /// for the network hooks (see [`NET_START`]).
    pub fn on(&mut self, report: u32, a: JsValue, b: JsValue) -> u32 {
        let (p, at, n) = (&Js, now(), self.rec.next());
        let mut answer = 0;
        let (k, draft) = match report {
            ERROR => (1, capture::error(p, at, n, &a, &self.own)),
            REJECTION => (1, Some(capture::rejection(p, at, n, &a))),
            PAGE => (2, Some(capture::page(p, at, n, &a, Some(&b).filter(|b| kind(b) == Kind::Instance)))),
            NET_START => {
                let draft = net::start(p, at, n, &a, &b, &self.own, &self.masks);
                answer = u32::from(draft.is_some());
                (3, draft)
            }
            NET_HEAD => {
                answer = net::to_read(p, &b) as u32;
                (3, if answer > 0 { None } else { net::end(p, at, n, &a, &b, &self.masks) })
            }
            NET_END => (3, net::end(p, at, n, &a, &b, &self.masks)),
            NET_FAIL => (3, net::fail(p, at, n, &a, &b)),
            NET_SOCKET => (3, net::socket(p, at, n, &a, &b)),
            STORAGE..=129 => (4, storage::event(p, at, n, &a, &b)),
            i => (0, capture::console(p, at, n, i, &a, &b)),
        };
        let Some(draft) = draft else { return answer };
        let text = match &self.filter {
            Some(f) => self.rec.finish(draft, Some(&mut |t: &str| filter(f, t))),
            None => self.rec.finish(draft, None),
        };
        if let (Some(text), Some(sink)) = (text, &self.sink) {
            // A sink that throws loses that event, not the hook.
            call(sink, &self.kinds[k], &text.into());
        }
        answer
    }
}

/// Runs the page's filter on an event: it gets a plain object (`JSON.parse`) and what it
/// returns is written back with `JSON.stringify` (in the shim). An output longer than an event
/// may be is cut as it is copied: it will be sent as the event's stub anyway.
fn filter(f: &JsValue, text: &str) -> Filtered {
    let out = run(f, text);
    match kind(&out) {
        Kind::String => Filtered::Keep(Js.text(&out, Kind::String, EVENT + 1)),
        Kind::False => Filtered::Threw,
        _ => Filtered::Drop,
    }
}
