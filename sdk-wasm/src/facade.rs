//! The JavaScript API: `connectPc`, `connectDevice`, `PcSession`, `DeviceSession`.
//!
//! Bindings only: each method reads its JS arguments, calls the core through the
//! [`Driver`], and turns the outcome into a value, a callback or a Promise. Failures reject
//! with a JS `Error` whose `code` is a protocol error code, `timeout` or `disconnected`.
//!
//! Over 500 lines: the whole JavaScript API in one place (with its TypeScript declarations),
//! so the npm package's surface can be read top to bottom; the logic lives in `core` and `web`.

use crate::core::backoff::Policy;
use crate::core::history::{DEFAULT_CAP, LocalHistory};
use crate::core::json::Json;
use crate::core::outbox;
use crate::core::session::{self, Options, Session};
use crate::web::bridge::Bridge;
use crate::web::driver::Driver;
use crate::web::{device, http};
use crate::web::{from_js, js_error, load, now, random_hex128, random_seed, save, to_js};
use js_sys::{Function, Promise, Reflect};
use std::cell::RefCell;
use std::rc::Rc;
use tether_protocol::{Kind, Role};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Connection status: `linked` in the room; `reconnecting` after a drop; `unlink` when it gave up. */
export type Status = "connecting" | "linked" | "reconnecting" | "unlink";
/** Every rejection is an Error with a `code`: a protocol error code, `timeout` or `disconnected`;
 *  `eval` also rejects with the device's `not_allowed`, `eval_blocked`, `threw` (then `value` is
 *  what the code threw, as a Value) or `inspect_off`. */
export interface TetherError extends Error { code: string; value?: unknown }
export interface PcOptions {
  /** The room WebSocket, e.g. `ws://127.0.0.1:8080/ws` (an `http(s)://` base works too). */
  url: string;
  room: string;
  /** Default: the one kept in localStorage for this room, else a new random one (then kept). */
  secret?: string;
  name?: string;
  /** Retries after a lost connection before `unlink` (default 3). */
  retries?: number;
  /** First retry delay, doubled each retry, with jitter (default 500). */
  retryDelayMs?: number;
  /** Default request timeout (default 15000). */
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /** Watch the devices' pages from the start: `true` or `"live"`; `"keep"` also keeps the room's
   *  `storage`/`eval` pairs and the pages' batches in the relay's history. `onInspect` alone says `"live"`. */
  inspect?: boolean | "live" | "keep";
}
/** What the page's inspector captured, as it has it (the `filter` hook gets and returns these). */
export interface PageEvent {
  k: "console" | "error" | "network" | "storage" | "page";
  /** The phone's time, ms since the epoch. */
  at: number;
  /** Counts the device session's events: a gap means events lost on the way. */
  n: number;
  [field: string]: unknown;
}
/** A `network` event (`k: "network"` to the filter, `kind: "network"` on the PC): one of a
 *  request's or socket's events, all sharing its `id`. fetch/xhr: `start` then `end` or `error`;
 *  beacon: `start` only; ws: `start`, `open`, `message`s (`dir`), `close`, `error`; sse: `start`,
 *  `open`, `message`s (`event`), `error`, `close`. Bodies and `data` are Values: text, or
 *  `{$: "str", head, len?}` when cut, or `{$: "bin", type, len?}` when not read. */
export interface NetworkEvent extends PageEvent {
  k: "network";
  id: number;
  type: "fetch" | "xhr" | "beacon" | "ws" | "sse";
  phase: "start" | "end" | "open" | "message" | "close" | "error";
  method?: string; url?: string;
  /** The page's own headers; values of `redactHeaders` masked. */
  requestHeaders?: [string, string][]; requestBody?: unknown;
  status?: number; statusText?: string; responseHeaders?: [string, string][]; responseBody?: unknown;
  /** From the call to the response's head (fetch) or `loadend` (XHR). */
  ms?: number;
  /** A WebSocket message's direction; an EventSource message's event name. */
  dir?: "send" | "recv"; event?: string; data?: unknown;
  /** A WebSocket's close; a failed request's message. */
  code?: number; reason?: string; message?: string;
  /** `false`: the browser refused to queue the beacon. */
  queued?: false;
}
export type InspectRequest =
  | { type: "eval"; code: string }
  | { type: "storage"; op: "set" | "remove" | "clear"; area: "local" | "session" | "cookie"; key?: string; value?: string };
export interface InspectOptions {
  /** Each part is on unless `false`. */
  console?: boolean; network?: boolean; storage?: boolean;
  /** Grants `eval` and storage edits from the PC (without it, they are always `not_allowed`). */
  allow?: (request: InspectRequest) => boolean | Promise<boolean>;
  /** Sees every event before it is kept: return it (edited or not), or null to drop it. */
  filter?: (event: PageEvent) => PageEvent | null | undefined;
  /** Request and response headers whose values never leave the phone (default: authorization,
   *  cookie, set-cookie, proxy-authorization). */
  redactHeaders?: string[];
  /** What the phone keeps while no PC watches, newest first (default 262144; 65536 to 4194304). */
  ringBytes?: number;
}
export interface DeviceOptions {
  url: string;
  room: string;
  /** From the QR link. */
  secret: string;
  name?: string;
  /** Sent in `hello`; default: userAgent and page URL. */
  appInfo?: unknown;
  /** The global of the app's native bridge (default "TencentNews"): the page's own setting, a plain
   *  identifier (never taken from a link); a `call` reaches only that object's own functions. */
  bridge?: string;
  /** Answers `post` instead of the native bridge: return the result or a Promise of it. */
  onPost?: (request: PostRequest) => unknown;
  /** Answers `call` instead of the native bridge. */
  onCall?: (method: string, params: unknown[]) => unknown;
  retries?: number;
  retryDelayMs?: number;
  connectTimeoutMs?: number;
  /** Loads the inspector (a second module, fetched only then): what the page does is kept on the
   *  phone and sent to the room's watching PCs; `close()` takes the hooks out. */
  inspect?: boolean | InspectOptions;
}
/** An event of a device's page, on the PC (`onInspect`): the device's member id and the kind. */
export interface InspectEvent {
  device: string;
  kind: "console" | "error" | "network" | "storage" | "page";
  at: number;
  n: number;
  [field: string]: unknown;
}
/** Said before the events of a batch when the phone let older events go (its ring was full). */
export interface InspectDropped {
  device: string;
  kind: "dropped";
  at: number;
  counts: { console?: number; error?: number; network?: number; storage?: number; page?: number };
  bytes: number;
}
export interface StorageOptions {
  /** The device (without it: every device, and the first answer wins). */
  to?: string;
  /** Default "read" (which reads all three areas); edits need the page's `allow`. */
  op?: "read" | "set" | "remove" | "clear";
  area?: "local" | "session" | "cookie";
  key?: string;
  value?: string;
  timeoutMs?: number;
}
/** The page's storage (after an edit, as it is then); `cut` when it was larger than the SDK sends. */
/** A stored key or value: the string, or, over 8,192 characters, the cut-string Value. */
export type StorageText = string | { $: "str"; head: string; len: number };
export interface StorageResult {
  device: string; ms: number;
  /** `[key, value]` in the browser's order; `null` where the page may not use that area. The
   *  SDK's own `tether.*` keys never come. */
  local?: [StorageText, StorageText][] | null; session?: [StorageText, StorageText][] | null;
  cookie?: [StorageText, StorageText][] | null;
  /** The storage was larger than a reply holds (262,144 characters of JSON): pairs were left out. */
  cut?: boolean;
}
export interface EvalOptions { to?: string; timeoutMs?: number }
/** `result` is a Value: JSON where it can be, else tagged (`{"$": "undefined"}`, …). */
export interface EvalResult { device: string; ms: number; result: unknown }
export interface Member {
  id: string; role: "pc" | "device"; name: string | null; appInfo: unknown; since: number; away: boolean;
  /** A PC: "live" or "keep" while it watches the devices' pages; a device: what its page captures. */
  inspect: "live" | "keep" | { console: boolean; network: boolean; storage: boolean; allow: boolean } | null;
}
export interface Reply {
  id: string; type: "postCb" | "callCb";
  /** The member id of the device that answered. */
  device: string;
  /** Milliseconds from sending to this reply. */
  ms: number;
  method?: string; result: unknown; cookie?: string | null; appInfo?: unknown;
  /** Set when the request failed on the device. */
  error?: unknown;
}
export interface PostOptions { to?: string; method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number }
export interface CallOptions { to?: string; timeoutMs?: number }
export interface PostRequest { url: string; method?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number }
export interface HistoryEntry { type: "post" | "call"; target: string; options: any; at: number; count: number }
export interface ServerHistoryItem {
  id: number; type: "post" | "call" | "storage" | "eval" | "inspect"; reqId: string; pc: string; device: string; deviceName: string | null;
  url?: string; method?: string; request: any; result: unknown; cookie: string | null; appInfo: unknown;
  error: unknown; sentAt: number; repliedAt: number; ms: number;
  /** Set when the relay stored this pair cut (`--history-max-record`): each cut field (`url` or
   *  `method`, `request`, `result`, `cookie`, `appInfo`, `error`) with its original size in
   *  bytes. A cut JSON field holds a string: the start of its JSON text. */
  cut?: Record<string, number>;
}
export interface AlarmOptions {
  /** The room WebSocket's URL (`ws://host:8080/ws`) or the relay's `http(s)://` base. */
  url: string;
  /** Start after this alarm seq: what the relay still holds is replayed first. */
  since?: number;
}
/** `{type: "alarm", msg: {seq, at, from, data}}`, `{type: "alarmGap", msg: {dropped}}`, or
 *  `{type: "alarmSource", msg: {state: "unreachable" | "up", service}}` when the relay's alarm
 *  service stops answering and when it is back. */
export type AlarmFrame =
  | { type: "alarm"; msg: { seq: number; at: number; from: string; data: unknown } }
  | { type: "alarmGap"; msg: { dropped: number } }
  | { type: "alarmSource"; msg: { state: "unreachable" | "up"; service: string | null } };
export interface CommandLog {
  id: string; type: "post" | "call" | "storage" | "eval"; from: string; msg: any;
  state: "running" | "done" | "failed"; result?: unknown; error?: string; ms?: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "PcOptions")]
    pub type PcOptions;
    #[wasm_bindgen(typescript_type = "DeviceOptions")]
    pub type DeviceOptions;
    #[wasm_bindgen(typescript_type = "PostOptions | undefined")]
    pub type PostOptions;
    #[wasm_bindgen(typescript_type = "CallOptions | undefined")]
    pub type CallOptions;
    #[wasm_bindgen(typescript_type = "Promise<PcSession>")]
    pub type PcSessionPromise;
    #[wasm_bindgen(typescript_type = "Promise<DeviceSession>")]
    pub type DeviceSessionPromise;
    #[wasm_bindgen(typescript_type = "Promise<Reply>")]
    pub type ReplyPromise;
    #[wasm_bindgen(typescript_type = "Promise<ServerHistoryItem[]>")]
    pub type ServerHistoryPromise;
    #[wasm_bindgen(typescript_type = "(status: Status) => void")]
    pub type StatusCallback;
    #[wasm_bindgen(typescript_type = "(members: Member[]) => void")]
    pub type DevicesCallback;
    #[wasm_bindgen(typescript_type = "(reply: Reply) => void")]
    pub type ReplyCallback;
    #[wasm_bindgen(typescript_type = "(error: TetherError) => void")]
    pub type ErrorCallback;
    #[wasm_bindgen(typescript_type = "(entry: CommandLog) => void")]
    pub type CommandCallback;
    #[wasm_bindgen(typescript_type = "(request: PostRequest) => unknown")]
    pub type PostHandler;
    #[wasm_bindgen(typescript_type = "(method: string, params: unknown[]) => unknown")]
    pub type CallHandler;
    #[wasm_bindgen(typescript_type = "HistoryEntry[]")]
    pub type HistoryEntries;
    #[wasm_bindgen(typescript_type = "Member[]")]
    pub type Members;
    #[wasm_bindgen(typescript_type = "{ limit?: number; before?: number; type?: string } | undefined")]
    pub type PageOptions;
    #[wasm_bindgen(typescript_type = "unknown")]
    pub type InspectorModule;
    #[wasm_bindgen(typescript_type = "AlarmOptions")]
    pub type AlarmOptions;
    #[wasm_bindgen(typescript_type = "(event: InspectEvent | InspectDropped) => void")]
    pub type InspectCallback;
    #[wasm_bindgen(typescript_type = "StorageOptions | undefined")]
    pub type StorageOptions;
    #[wasm_bindgen(typescript_type = "Promise<StorageResult>")]
    pub type StoragePromise;
    #[wasm_bindgen(typescript_type = "EvalOptions | undefined")]
    pub type EvalOptions;
    #[wasm_bindgen(typescript_type = "Promise<EvalResult>")]
    pub type EvalPromise;
    #[wasm_bindgen(typescript_type = "(frame: AlarmFrame) => void")]
    pub type AlarmCallback;
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// Option values are read from one `JSON.stringify` of the options object (functions, which
/// it skips, are read with [`get_fn`]): far less glue than a `Reflect.get` per field.
fn text(o: &Json, key: &str) -> Option<String> {
    o[key].as_str().map(str::to_owned)
}

fn get_fn(obj: &JsValue, key: &str) -> Option<Function> {
    get(obj, key).dyn_into::<Function>().ok()
}

fn rejected(code: &str, message: &str) -> Promise {
    Promise::reject(&js_error(code, message))
}

const HISTORY_KEY: &str = "tether.history";

fn secret_key(room: &str) -> String {
    ["tether.secret.", room].concat()
}

/// Reads the options both ends share and starts the session.
fn start(options: &Json, role: Role, secret: String) -> Result<Rc<Driver>, JsValue> {
    let url = text(options, "url").ok_or_else(|| js_error("bad_frame", "options.url is required"))?;
    let room = text(options, "room")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| js_error("bad_frame", "options.room is required"))?;
    let defaults = Policy::default();
    let policy = Policy {
        retries: options["retries"].as_u64().map_or(defaults.retries, |r| r.min(100) as u32),
        base_ms: options["retryDelayMs"].as_u64().unwrap_or(defaults.base_ms),
        max_ms: defaults.max_ms.max(options["retryDelayMs"].as_u64().unwrap_or(0)),
    };
    let opts = Options {
        url,
        room,
        secret,
        role,
        name: text(options, "name"),
        policy,
        timeout_ms: options["timeoutMs"].as_u64().unwrap_or(15_000),
        connect_timeout_ms: options["connectTimeoutMs"].as_u64().unwrap_or(10_000),
    };
    let session = Session::new(opts, now(), random_seed()).map_err(|e| js_error(&e.code, &e.message))?;
    Ok(Driver::new(session))
}

/// Starts the connection; the Promise resolves with `value` once linked.
fn connect_promise(driver: &Rc<Driver>, value: JsValue) -> Promise {
    let promise = Promise::new(&mut |resolve, reject| {
        driver.inner().connect = Some((resolve, reject, value.clone()));
    });
    driver.pump();
    promise
}

/// Connects a PC page to a room. Resolves once linked; rejects if the relay refuses or cannot
/// be reached after the retries.
#[wasm_bindgen(js_name = connectPc)]
pub fn connect_pc(options: PcOptions) -> PcSessionPromise {
    let options = from_js(&options.into());
    let room = text(&options, "room").unwrap_or_default();
    let Some(secret) = text(&options, "secret")
        .filter(|s| !s.is_empty())
        .or_else(|| load(&secret_key(&room)))
        .or_else(random_hex128)
    else {
        return rejected("internal", "no crypto.getRandomValues: pass options.secret").unchecked_into();
    };
    let driver = match start(&options, Role::Pc, secret.clone()) {
        Ok(d) => d,
        Err(e) => return Promise::reject(&e).unchecked_into(),
    };
    // Remembered only once the relay accepted it: a mistyped secret must not replace a good one.
    driver.inner().on_first_link = Some(Box::new(move || save(&secret_key(&room), &secret)));
    let mode = match &options["inspect"] {
        Json::Bool(true) => Some("live"),
        m if *m == "live" || *m == "keep" => m.as_str(),
        _ => None,
    };
    if let Some(mode) = mode {
        driver.inner().session.watch(mode);
    }
    let history = LocalHistory::from_json(load(HISTORY_KEY).as_deref(), DEFAULT_CAP);
    let pc = PcSession { driver: driver.clone(), history: Rc::new(RefCell::new(history)) };
    connect_promise(&driver, pc.into()).unchecked_into()
}

/// A PC page's session in a room.
#[wasm_bindgen]
pub struct PcSession {
    driver: Rc<Driver>,
    history: Rc<RefCell<LocalHistory>>,
}

#[wasm_bindgen]
impl PcSession {
    /// Calls `cb` with the status now and on every change.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, cb: StatusCallback) {
        on_status(&self.driver, cb.unchecked_into());
    }

    /// Calls `cb` with the member list now (once known) and on every change.
    #[wasm_bindgen(js_name = onDevices)]
    pub fn on_devices(&self, cb: DevicesCallback) {
        let cb: Function = cb.unchecked_into();
        let current = {
            let mut inner = self.driver.inner();
            inner.handlers.devices.push(cb.clone());
            inner.devices.clone()
        };
        if !current.is_null() {
            let _ = cb.call1(&JsValue::NULL, &current);
        }
    }

    /// Calls `cb` with every reply, including the later ones of a request sent to all devices.
    #[wasm_bindgen(js_name = onReply)]
    pub fn on_reply(&self, cb: ReplyCallback) {
        self.driver.inner().handlers.reply.push(cb.unchecked_into());
    }

    /// Calls `cb` with errors not tied to one request (and the reason for `unlink`).
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(&self, cb: ErrorCallback) {
        self.driver.inner().handlers.error.push(cb.unchecked_into());
    }

    /// Calls `cb` with each event of the devices' pages (`{device, kind, at, n, …}`), and with a
    /// `{device, kind: "dropped", at, counts, bytes}` notice when a phone had to let older ones
    /// go. The first call tells the relay this PC watches (`hello.inspect: "live"`).
    #[wasm_bindgen(js_name = onInspect)]
    pub fn on_inspect(&self, cb: InspectCallback) {
        self.driver.inner().handlers.inspect.push(cb.unchecked_into());
        self.driver.with(|s| s.watch("live"));
    }

    /// Reads a device page's localStorage, sessionStorage and cookies, or edits them if the
    /// page allows it. Rejects with the device's code (`not_allowed`, `inspect_off`, …).
    pub fn storage(&self, options: StorageOptions) -> StoragePromise {
        let o = from_js(&options.into());
        let mut msg = if o.is_object() { o.clone() } else { Json::obj([]) };
        msg.take("to");
        if msg["op"].is_null() {
            msg.set("op", "read".into());
        }
        self.request(Kind::Storage, msg, &o).unchecked_into()
    }

    /// Runs `code` in a device's page, if the page allows it; resolves with its value. Rejects
    /// with the device's code: `not_allowed`, `eval_blocked`, `threw` (`err.value`), `inspect_off`.
    pub fn eval(&self, code: String, options: EvalOptions) -> EvalPromise {
        let o = from_js(&options.into());
        self.request(Kind::Eval, Json::obj([("code", code.into())]), &o).unchecked_into()
    }

    /// Makes a request through a device's native network stack. Resolves with the first reply.
    pub fn post(&self, url: String, options: PostOptions) -> ReplyPromise {
        let o = from_js(&options.into());
        let mut msg = Json::obj([("url", url.as_str().into())]);
        let mut kept = Json::obj([]);
        for key in ["method", "body", "headers"] {
            if let Some(v) = o.get(key) {
                msg.set(key, v.clone());
                kept.set(key, v.clone());
            }
        }
        self.remember("post", &url, kept);
        self.request(Kind::Post, msg, &o).unchecked_into()
    }

    /// Invokes a device's native JS-API. Resolves with the first reply.
    pub fn call(&self, method: String, params: JsValue, options: CallOptions) -> ReplyPromise {
        let o = from_js(&options.into());
        let params = match from_js(&params) {
            Json::Null => Json::Arr(Vec::new()),
            Json::Arr(a) => Json::Arr(a),
            one => Json::Arr(vec![one]),
        };
        self.remember("call", &method, Json::obj([("params", params.clone())]));
        let msg = Json::obj([("method", method.as_str().into()), ("params", params)]);
        self.request(Kind::Call, msg, &o).unchecked_into()
    }

    fn remember(&self, kind: &str, target: &str, options: Json) {
        let mut h = self.history.borrow_mut();
        h.record(kind, target, options, now());
        save(HISTORY_KEY, &h.to_json().to_json());
    }

    fn request(&self, kind: Kind, msg: Json, o: &Json) -> Promise {
        let to = text(o, "to");
        let timeout = o["timeoutMs"].as_u64();
        let driver = self.driver.clone();
        Promise::new(&mut |resolve, reject| {
            let sent = driver.with(|s| s.request(now(), kind, to.as_deref(), msg.clone(), timeout));
            match sent {
                Ok(id) => {
                    driver.inner().promises.push((id, resolve, reject));
                }
                Err(e) => {
                    let _ = reject.call1(&JsValue::NULL, &js_error(&e.code, &e.message));
                }
            }
        })
    }

    /// The URLs and methods recently run, newest first (kept in localStorage).
    pub fn history(&self) -> HistoryEntries {
        to_js(&self.history.borrow().to_json()).unchecked_into()
    }

    /// Forgets the local history.
    #[wasm_bindgen(js_name = clearHistory)]
    pub fn clear_history(&self) {
        self.history.borrow_mut().clear();
        save(HISTORY_KEY, "[]");
    }

    /// The relay's stored history of this room, newest first: its request/reply pairs, or
    /// with `type` the row types asked for (`"inspect"`: the batches kept while a PC said
    /// `inspect: "keep"`).
    #[wasm_bindgen(js_name = serverHistory)]
    pub fn server_history(&self, options: PageOptions) -> ServerHistoryPromise {
        let o = from_js(&options.into());
        let (base, room, secret) =
            self.driver.with(|s| (session::http_base(s.url()), s.room().to_owned(), s.secret().to_owned()));
        let limit = o["limit"].as_u64().map(|l| l.min(500) as u32);
        let before = o["before"].as_u64().map(|b| b.min(i64::MAX as u64) as i64);
        let url = session::history_url(&base, &room, limit, before, o["type"].as_str());
        http::fetch_json(&url, &secret).unchecked_into()
    }

    /// The link for the QR code: `{base}/d/{room}?secret=<device key>`; `base` defaults to
    /// the relay. The device key joins as a device only; the PC secret stays here.
    #[wasm_bindgen(js_name = deviceLink)]
    pub fn device_link(&self, base: Option<String>) -> String {
        self.driver.with(|s| {
            let base = base.filter(|b| !b.is_empty()).unwrap_or_else(|| session::http_base(s.url()));
            session::device_link(&base, s.room(), s.device_secret())
        })
    }

    /// The room's device key (what the QR link carries): joins as a device, nothing more.
    #[wasm_bindgen(getter, js_name = deviceKey)]
    pub fn device_key(&self) -> String {
        self.driver.with(|s| s.device_secret().to_owned())
    }

    /// The room's secret.
    #[wasm_bindgen(getter)]
    pub fn secret(&self) -> String {
        self.driver.with(|s| s.secret().to_owned())
    }

    /// This member's id.
    #[wasm_bindgen(getter)]
    pub fn member(&self) -> Option<String> {
        self.driver.with(|s| s.member().map(str::to_owned))
    }

    /// The status now.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> String {
        self.driver.with(|s| s.status().as_str().to_owned())
    }

    /// The last member list.
    #[wasm_bindgen(getter)]
    pub fn devices(&self) -> Members {
        let d = self.driver.inner().devices.clone();
        (if d.is_null() { js_sys::Array::new().into() } else { d }).unchecked_into()
    }

    /// After `unlink`: try again now, with a fresh round of retries.
    pub fn reconnect(&self) {
        self.driver.with(|s| s.reconnect(now()));
    }

    /// Leaves the room for good; pending requests reject with `disconnected`.
    pub fn close(&self) {
        self.driver.with(Session::close);
    }
}

fn on_status(driver: &Rc<Driver>, cb: Function) {
    driver.inner().handlers.status.push(cb.clone());
    let status = driver.with(|s| s.status().as_str());
    let _ = cb.call1(&JsValue::NULL, &status.into());
}

/// Connects an app's H5 page to a room as a device. Resolves once linked. `inspector` is the
/// inspector's module (`tether_inspect.js`, initialised), which `index.js` passes when
/// `options.inspect` is set: it is started here, before the first await, and stopped when
/// the session ends.
#[wasm_bindgen(js_name = connectDevice)]
pub fn connect_device(options: DeviceOptions, inspector: InspectorModule) -> DeviceSessionPromise {
    let js_options: JsValue = options.into();
    let options = from_js(&js_options);
    let Some(secret) = text(&options, "secret").filter(|s| !s.is_empty()) else {
        return rejected("unauthorized", "options.secret is required (it is in the QR link)")
            .unchecked_into();
    };
    // The page's configuration, never a link's: a plain global name, not `window` or `eval`.
    let bridge_name = text(&options, "bridge").unwrap_or_else(|| "TencentNews".into());
    if !tether_protocol::names::plain_name(&bridge_name) {
        return rejected("bad_option", "options.bridge must be the plain name of the app's bridge global")
            .unchecked_into();
    }
    let driver = match start(&options, Role::Device, secret) {
        Ok(d) => d,
        Err(e) => return Promise::reject(&e).unchecked_into(),
    };
    let bridge = Rc::new(RefCell::new(Bridge {
        name: bridge_name,
        on_post: get_fn(&js_options, "onPost"),
        on_call: get_fn(&js_options, "onCall"),
        inspector: None,
    }));
    let app_info = options.get("appInfo").cloned().unwrap_or_else(device::default_app_info);
    let name = text(&options, "name");
    let log: Rc<RefCell<Vec<Function>>> = Rc::default();
    let runner =
        device::command_runner(Rc::downgrade(&driver), bridge.clone(), log.clone(), app_info.clone());
    driver.inner().on_command = Some(Rc::new(runner));
    if let Some(start) = get_fn(&inspector, "start") {
        // The ring first, so that what the inspector captures as it starts is kept.
        let js_inspect = get(&js_options, "inspect");
        let ws = driver.inner().session.url().to_owned();
        let setup = outbox::setup(&options["inspect"], &ws, get_fn(&js_inspect, "allow").is_some());
        let config = to_js(&setup.config);
        for key in ["allow", "filter"] {
            if let Some(f) = get_fn(&js_inspect, key) {
                let _ = Reflect::set(&config, &key.into(), &f);
            }
        }
        driver.inner().session.inspect_start(now(), setup.ring_bytes, setup.captures);
        let weak = Rc::downgrade(&driver);
        let sink = Closure::<dyn FnMut(String, String)>::new(move |kind: String, text: String| {
            if let Some(d) = weak.upgrade() {
                d.inspect_push(&kind, text);
            }
        });
        let started = start.call2(&JsValue::NULL, &config, sink.as_ref());
        driver.inner().sink = Some(sink);
        match started {
            Ok(running) => {
                bridge.borrow_mut().inspector = Some(running.clone());
                driver.inner().inspector = Some(running);
            }
            Err(e) => {
                driver.with(Session::close);
                return Promise::reject(&e).unchecked_into();
            }
        }
    }
    driver.with(|s| s.hello(name, Some(app_info)));
    let device = DeviceSession { driver: driver.clone(), bridge, log };
    connect_promise(&driver, device.into()).unchecked_into()
}

/// The H5 page's session in a room.
#[wasm_bindgen]
pub struct DeviceSession {
    driver: Rc<Driver>,
    bridge: Rc<RefCell<Bridge>>,
    log: Rc<RefCell<Vec<Function>>>,
}

#[wasm_bindgen]
impl DeviceSession {
    /// Calls `cb` with the status now and on every change.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(&self, cb: StatusCallback) {
        on_status(&self.driver, cb.unchecked_into());
    }

    /// Calls `cb` when a command starts and when it finishes (for a log on the page).
    #[wasm_bindgen(js_name = onCommand)]
    pub fn on_command(&self, cb: CommandCallback) {
        self.log.borrow_mut().push(cb.unchecked_into());
    }

    /// Calls `cb` with errors not tied to a command (and the reason for `unlink`).
    #[wasm_bindgen(js_name = onError)]
    pub fn on_error(&self, cb: ErrorCallback) {
        self.driver.inner().handlers.error.push(cb.unchecked_into());
    }

    /// Answers `post` with `handler` instead of the native bridge.
    #[wasm_bindgen(js_name = onPost)]
    pub fn on_post(&self, handler: PostHandler) {
        self.bridge.borrow_mut().on_post = Some(handler.unchecked_into());
    }

    /// Answers `call` with `handler` instead of the native bridge.
    #[wasm_bindgen(js_name = onCall)]
    pub fn on_call(&self, handler: CallHandler) {
        self.bridge.borrow_mut().on_call = Some(handler.unchecked_into());
    }

    /// This member's id.
    #[wasm_bindgen(getter)]
    pub fn member(&self) -> Option<String> {
        self.driver.with(|s| s.member().map(str::to_owned))
    }

    /// The status now.
    #[wasm_bindgen(getter)]
    pub fn status(&self) -> String {
        self.driver.with(|s| s.status().as_str().to_owned())
    }

    /// After `unlink`: try again now.
    pub fn reconnect(&self) {
        self.driver.with(|s| s.reconnect(now()));
    }

    /// Leaves the room for good.
    pub fn close(&self) {
        self.driver.with(Session::close);
    }
}

/// Subscribes to the relay's alarms: `cb` gets every `alarm`, `alarmGap` and `alarmSource` frame. The feed
/// reconnects by itself, resuming after the last alarm it saw, until `close()`.
#[wasm_bindgen(js_name = subscribeAlarms)]
pub fn subscribe_alarms(options: AlarmOptions, cb: AlarmCallback) -> Result<AlarmSubscription, JsValue> {
    let o = from_js(&options.into());
    let url = text(&o, "url").ok_or_else(|| js_error("bad_frame", "options.url is required"))?;
    let feed = crate::core::alarms::AlarmFeed::new(&url, o["since"].as_u64(), now(), random_seed())
        .map_err(|e| js_error(&e.code, &e.message))?;
    Ok(AlarmSubscription { driver: crate::web::alarms::AlarmDriver::start(feed, cb.unchecked_into()) })
}

/// A running `/alarms` subscription.
#[wasm_bindgen]
pub struct AlarmSubscription {
    driver: Rc<crate::web::alarms::AlarmDriver>,
}

#[wasm_bindgen]
impl AlarmSubscription {
    /// The last alarm seq received.
    #[wasm_bindgen(getter, js_name = lastSeq)]
    pub fn last_seq(&self) -> Option<f64> {
        self.driver.with(|f| f.last_seq().map(|s| s as f64))
    }

    /// Stops the feed.
    pub fn close(&self) {
        self.driver.with(crate::core::alarms::AlarmFeed::close);
    }
}
