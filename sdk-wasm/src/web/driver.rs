//! Feeds the core session from the browser and carries out what it asks.
//!
//! Every input (a socket event, a timer, an API call) goes through [`Driver::with`] or
//! [`Driver::on_socket`], which then [`pump`](Driver::pump)s: carry out the core's actions,
//! re-arm the one timer at [`Session::poll_timeout`], and dispatch its events to the page's
//! callbacks and Promises. Callbacks run with no borrow held, so they may call back in.

use super::socket::{Socket, SocketEvent};
use super::{WakeListeners, js_error, now, to_js};
use crate::core::json::Json;
use crate::core::session::{Action, Command, Event, Reply, SdkError, Session, Status};
use gloo_timers::callback::Timeout;
use js_sys::Function;
use std::cell::RefCell;
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
}

/// What the driver holds.
pub struct Inner {
    /// The core.
    pub session: Session,
    socket: Option<Socket>,
    timer: Option<Timeout>,
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
}

impl Driver {
    /// Wraps a fresh session and listens for the page coming back.
    pub fn new(session: Session) -> Rc<Driver> {
        let d = Rc::new_cyclic(|me: &Weak<Driver>| Driver {
            inner: RefCell::new(Inner {
                session,
                socket: None,
                timer: None,
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
            }),
            me: me.clone(),
        });
        let weak = d.me.clone();
        d.inner.borrow_mut().wake = WakeListeners::new(std::rc::Rc::new(move || {
            if let Some(d) = weak.upgrade() {
                d.with(|s| s.handle_wake(now()));
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
                    stop = inner.inspector.take();
                    // The caller still holds this driver, so it is not dropped here.
                    let me = self.me.as_ptr();
                    OPEN.with(|o| o.borrow_mut().retain(|d| !std::ptr::eq(Rc::as_ptr(d), me)));
                }
                let events: Vec<Event> = std::iter::from_fn(|| inner.session.poll_event()).collect();
                inner.timer = inner.session.poll_timeout().map(|at| {
                    let weak = self.me.clone();
                    super::timeout(
                        at.saturating_sub(now()),
                        Box::new(move || {
                            if let Some(d) = weak.upgrade() {
                                d.with(|s| s.handle_timeout(now()));
                            }
                        }),
                    )
                });
                events
            };
            if let Some(inspector) = stop {
                // Its hooks come out with no borrow held: the page's code may run meanwhile.
                if let Ok(f) = js_sys::Reflect::get(&inspector, &"stop".into()) {
                    let _ = f.unchecked_ref::<Function>().call0(&inspector);
                }
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
                if !handlers.is_empty() {
                    call_all(&handlers, &reply_object(&r));
                }
            }
            Event::Resolved(r) => {
                let p = self.take_promise(&r.id);
                if let Some((resolve, _)) = p {
                    let _ = resolve.call1(&JsValue::NULL, &reply_object(&r));
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
