//! Feeds the core session from the browser and carries out what it asks.
//!
//! Every input (a socket event, a timer, an API call) goes through [`Driver::with`] or
//! [`Driver::on_socket`], which then [`pump`](Driver::pump)s: carry out the core's actions,
//! re-arm the one timer at [`Session::poll_timeout`], and dispatch its events to the page's
//! callbacks and Promises. Callbacks run with no borrow held, so they may call back in.

use super::socket::{Socket, SocketEvent};
use super::{WakeListeners, js_error, now, to_js};
use crate::core::json::Json;
use crate::core::outbox::kind_index;
use crate::core::session::{Action, Command, Event, Reply, SdkError, Session, Status};
use crate::core::watch;
use gloo_timers::callback::Timeout;
use js_sys::{Function, Reflect};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// The page's callbacks, by kind.
#[derive(Default)]
pub struct Handlers {
    /// `onStatus`.
    pub status: Vec<Function>,
    /// `onDevices`.
    pub devices: Vec<Function>,
    /// `onReply`.
    pub reply: Vec<Function>,
    /// `onError`.
    pub error: Vec<Function>,
    /// `onInspect` (a PC watching).
    pub inspect: Vec<Function>,
}

/// What the driver holds.
pub struct Inner {
    /// The core.
    pub session: Session,
    socket: Option<Socket>,
    timer: Option<Timeout>,
    /// When `timer` fires: it is re-armed only when the core's next deadline changes (an
    /// inspected page pumps on every event it captures).
    timer_at: Option<u64>,
    generation: u64,
    wake: Option<WakeListeners>,
    /// Callbacks.
    pub handlers: Handlers,
    /// Promises of pending requests: resolve, reject.
    pub promises: Vec<(String, Function, Function)>,
    /// The connect Promise until the first link: resolve, reject, and what it resolves with.
    pub connect: Option<(Function, Function, JsValue)>,
    /// The last member list, as given to `onDevices`.
    pub devices: JsValue,
    /// The last error, for a connect Promise that fails.
    pub last_error: Option<SdkError>,
    /// Device side: runs a command.
    pub on_command: Option<Rc<dyn Fn(Command)>>,
    /// Runs once, when the session first links (the PC remembers its secret only then).
    pub on_first_link: Option<Box<dyn FnOnce()>>,
    /// Device side, with `inspect`: the running inspector (the other wasm module's
    /// `Inspector`), stopped when the session ends.
    pub inspector: Option<JsValue>,
    /// The `sink(kind, text)` the inspector calls with each event; freed after `stop()`.
    pub sink: Option<Closure<dyn FnMut(String, String)>>,
}

thread_local! {
    /// Every session not yet closed: a page that drops the object `connectDevice` resolved
    /// with (`await connectDevice({...})` alone) must not have its connection closed when the
    /// garbage collector frees that object. A session leaves with `close()`.
    static OPEN: RefCell<Vec<Rc<Driver>>> = const { RefCell::new(Vec::new()) };
}

/// The shared driver of one session.
pub struct Driver {
    inner: RefCell<Inner>,
    me: Weak<Driver>,
    /// Events the inspector captured while the driver was busy (the page's code ran inside
    /// one of its calls): counted by kind, with their bytes, and reported as dropped.
    missed: Cell<([u64; 5], u64)>,
}

impl Driver {
    /// Wraps a fresh session and listens for the page coming back.
    pub fn new(session: Session) -> Rc<Driver> {
        let d = Rc::new_cyclic(|me: &Weak<Driver>| Driver {
            inner: RefCell::new(Inner {
                session,
                socket: None,
                timer: None,
                timer_at: None,
                generation: 0,
                wake: None,
                handlers: Handlers::default(),
                promises: Vec::new(),
                connect: None,
                devices: JsValue::NULL,
                last_error: None,
                on_command: None,
                on_first_link: None,
                inspector: None,
                sink: None,
            }),
            me: me.clone(),
            missed: Cell::default(),
        });
        let weak = d.me.clone();
        d.inner.borrow_mut().wake = WakeListeners::new(std::rc::Rc::new(move |back| {
            if let Some(d) = weak.upgrade() {
                d.with(|s| if back { s.handle_wake(now()) } else { s.inspect_hide(now()) });
            }
        }));
        OPEN.with(|o| o.borrow_mut().push(d.clone()));
        d
    }

    /// Reads or changes the driver's state (no pump).
    pub fn inner(&self) -> std::cell::RefMut<'_, Inner> {
        self.inner.borrow_mut()
    }

    /// Runs `f` on the session, then pumps.
    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let r = f(&mut self.inner.borrow_mut().session);
        self.pump();
        r
    }

    /// One event from the inspector's `sink`. It may come while the driver is busy (the page's
    /// code runs inside a socket or timer call): then it is counted as dropped rather than
    /// waited for.
    pub fn inspect_push(&self, kind: &str, text: String) {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            let (mut counts, bytes) = self.missed.get();
            if let Some(k) = kind_index(kind) {
                counts[k] += 1;
                self.missed.set((counts, bytes + text.len() as u64));
            }
            return;
        };
        let (counts, bytes) = self.missed.take();
        if bytes > 0 {
            inner.session.inspect_missed(counts, bytes);
        }
        inner.session.inspect_push(now(), kind, text);
        drop(inner);
        self.pump();
    }

    fn on_socket(&self, generation: u64, ev: SocketEvent) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.generation != generation {
                return; // a socket already replaced
            }
            let t = now();
            match ev {
                SocketEvent::Open => inner.session.handle_open(t),
                SocketEvent::Text(text) => inner.session.handle_text(t, &text),
                SocketEvent::Close(code) => {
                    inner.socket = None;
                    inner.session.handle_close(t, code);
                }
            }
        }
        self.pump();
    }

    /// Carries out the core's actions and dispatches its events until it has nothing more.
    pub fn pump(&self) {
        loop {
            let mut stop = None;
            let events: Vec<Event> = {
                let mut guard = self.inner.borrow_mut();
                let inner = &mut *guard;
                while let Some(action) = inner.session.poll_action() {
                    match action {
                        Action::Open(url) => {
                            inner.socket = None;
                            inner.generation += 1;
                            let (generation, weak) = (inner.generation, self.me.clone());
                            let report = std::rc::Rc::new(move |ev| {
                                if let Some(d) = weak.upgrade() {
                                    d.on_socket(generation, ev);
                                }
                            });
                            match Socket::open(&url, report) {
                                Ok(s) => inner.socket = Some(s),
                                Err(_) => inner.session.handle_close(now(), None),
                            }
                        }
                        Action::Send(text) => {
                            if let Some(s) = &inner.socket {
                                s.send(&text);
                            }
                        }
                        Action::Close => inner.socket = None,
                    }
                }
                if inner.session.is_closed() {
                    inner.wake = None;
                    stop = inner.inspector.take().map(|i| (i, inner.sink.take()));
                    // The caller still holds this driver, so it is not dropped here.
                    let me = self.me.as_ptr();
                    OPEN.with(|o| o.borrow_mut().retain(|d| !std::ptr::eq(Rc::as_ptr(d), me)));
                }
                let events: Vec<Event> = std::iter::from_fn(|| inner.session.poll_event()).collect();
                let next = inner.session.poll_timeout();
                if next != inner.timer_at {
                    inner.timer_at = next;
                    inner.timer = next.map(|at| {
                        let weak = self.me.clone();
                        super::timeout(
                            at.saturating_sub(now()),
                            Box::new(move || {
                                if let Some(d) = weak.upgrade() {
                                    d.inner().timer_at = None;
                                    d.with(|s| s.handle_timeout(now()));
                                }
                            }),
                        )
                    });
                }
                events
            };
            if let Some((inspector, sink)) = stop {
                // Its hooks come out with no borrow held: the page's code may run meanwhile.
                // The sink is freed only then, once nothing calls it.
                if let Ok(f) = Reflect::get(&inspector, &"stop".into()) {
                    let _ = f.unchecked_ref::<Function>().call0(&inspector);
                }
                drop(sink);
            }
            if events.is_empty() {
                return;
            }
            for e in events {
                self.dispatch(e);
            }
        }
    }

    fn take_promise(&self, id: &str) -> Option<(Function, Function)> {
        let mut inner = self.inner.borrow_mut();
        let i = inner.promises.iter().position(|(k, _, _)| k == id)?;
        let (_, resolve, reject) = inner.promises.swap_remove(i);
        Some((resolve, reject))
    }

    fn dispatch(&self, e: Event) {
        match e {
            Event::Status(s) => {
                let first_link =
                    if s == Status::Linked { self.inner.borrow_mut().on_first_link.take() } else { None };
                if let Some(f) = first_link {
                    f();
                }
                let (handlers, connect) = {
                    let mut inner = self.inner.borrow_mut();
                    let connect = match s {
                        Status::Linked | Status::Unlink => inner.connect.take(),
                        _ => None,
                    };
                    (inner.handlers.status.clone(), connect.map(|c| (c, inner.last_error.clone())))
                };
                if let Some(((resolve, reject, value), err)) = connect {
                    if s == Status::Linked {
                        let _ = resolve.call1(&JsValue::NULL, &value);
                    } else {
                        let err = err.unwrap_or_else(|| SdkError::new("disconnected", "could not connect"));
                        let _ = reject.call1(&JsValue::NULL, &js_error(&err.code, &err.message));
                        // Nobody holds a session that never connected: end it, so it is freed.
                        self.with(Session::close);
                    }
                }
                call_all(&handlers, &JsValue::from_str(s.as_str()));
            }
            Event::Welcome { .. } => {}
            Event::Devices(members) => {
                let list = to_js(&members);
                let handlers = {
                    let mut inner = self.inner.borrow_mut();
                    inner.devices = list.clone();
                    inner.handlers.devices.clone()
                };
                call_all(&handlers, &list);
            }
            Event::Reply(r) => {
                let handlers = self.inner.borrow().handlers.reply.clone();
                // `onReply` is for `post` and `call`; `storage`/`eval` settle their Promise only.
                if !handlers.is_empty() && !r.kind.is_inspection() {
                    call_all(&handlers, &reply_object(&r));
                }
            }
            Event::Resolved(r) => {
                let p = self.take_promise(&r.id);
                if let Some((resolve, reject)) = p {
                    let _ = match r.kind.is_inspection().then(|| watch::settle(&r)) {
                        None => resolve.call1(&JsValue::NULL, &reply_object(&r)),
                        Some(Ok(v)) => resolve.call1(&JsValue::NULL, &to_js(&v)),
                        Some(Err((err, value))) => {
                            let e = js_error(&err.code, &err.message);
                            if let Some(v) = value {
                                let _ = Reflect::set(&e, &"value".into(), &to_js(&v));
                            }
                            reject.call1(&JsValue::NULL, &e)
                        }
                    };
                }
            }
            Event::Inspect { device, msg } => {
                let handlers = self.inner.borrow().handlers.inspect.clone();
                if !handlers.is_empty() {
                    for e in watch::events(&device, &msg, now()) {
                        call_all(&handlers, &to_js(&e));
                    }
                }
            }
            Event::Rejected(id, err) => {
                let p = self.take_promise(&id);
                if let Some((_, reject)) = p {
                    let _ = reject.call1(&JsValue::NULL, &js_error(&err.code, &err.message));
                }
            }
            Event::Command(c) => {
                let run = self.inner.borrow().on_command.clone();
                if let Some(run) = run {
                    run(c);
                }
            }
            Event::Error(err) => {
                let handlers = {
                    let mut inner = self.inner.borrow_mut();
                    inner.last_error = Some(err.clone());
                    inner.handlers.error.clone()
                };
                call_all(&handlers, &js_error(&err.code, &err.message));
            }
        }
    }
}

fn call_all(handlers: &[Function], arg: &JsValue) {
    for h in handlers {
        // A throwing callback must not stop the others or the session.
        let _ = h.call1(&JsValue::NULL, arg);
    }
}

/// `{id, type, device, ms, method, result, cookie, appInfo, error}`.
pub fn reply_object(r: &Reply) -> JsValue {
    let m = &r.msg;
    let mut o = Json::obj([
        ("id", r.id.as_str().into()),
        ("type", r.kind.as_str().into()),
        ("device", r.device.as_str().into()),
        ("ms", Json::uint(r.ms)),
    ]);
    for key in ["method", "result", "cookie", "appInfo", "error"] {
        o.set(key, m[key].clone());
    }
    to_js(&o)
}
