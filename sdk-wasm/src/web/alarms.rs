//! Drives an [`AlarmFeed`] from the browser: its socket, its retry timer, the page's callback.

use super::socket::{Socket, SocketEvent};
use super::{WakeListeners, now, to_js};
use crate::core::alarms::AlarmFeed;
use crate::core::session::Action;
use gloo_timers::callback::Timeout;
use js_sys::Function;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use wasm_bindgen::JsValue;

struct Inner {
    feed: AlarmFeed,
    socket: Option<Socket>,
    timer: Option<Timeout>,
    generation: u64,
    wake: Option<WakeListeners>,
    cb: Function,
}

/// One `/alarms` subscription.
pub struct AlarmDriver {
    inner: RefCell<Inner>,
    me: Weak<AlarmDriver>,
}

impl AlarmDriver {
    /// Starts the feed; `cb` gets every `{type, msg}` frame.
    pub fn start(feed: AlarmFeed, cb: Function) -> Rc<AlarmDriver> {
        let d = Rc::new_cyclic(|me: &Weak<AlarmDriver>| AlarmDriver {
            inner: RefCell::new(Inner { feed, socket: None, timer: None, generation: 0, wake: None, cb }),
            me: me.clone(),
        });
        let weak = d.me.clone();
        d.inner.borrow_mut().wake = WakeListeners::new(Rc::new(move |back| {
            if let Some(d) = weak.upgrade().filter(|_| back) {
                d.with(|f| f.handle_wake(now()));
            }
        }));
        d.pump();
        d
    }

    /// Runs `f` on the feed, then pumps.
    pub fn with<R>(&self, f: impl FnOnce(&mut AlarmFeed) -> R) -> R {
        let r = f(&mut self.inner.borrow_mut().feed);
        self.pump();
        r
    }

    fn on_socket(&self, generation: u64, ev: SocketEvent) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.generation != generation {
                return;
            }
            match ev {
                SocketEvent::Open => inner.feed.handle_open(),
                SocketEvent::Text(t) => inner.feed.handle_text(&t),
                SocketEvent::Close(_) => {
                    inner.socket = None;
                    inner.feed.handle_close(now());
                }
            }
        }
        self.pump();
    }

    fn pump(&self) {
        let (frames, cb) = {
            let mut guard = self.inner.borrow_mut();
            let inner = &mut *guard;
            while let Some(action) = inner.feed.poll_action() {
                match action {
                    Action::Open(url) => {
                        inner.socket = None;
                        inner.generation += 1;
                        let (generation, weak) = (inner.generation, self.me.clone());
                        let report = Rc::new(move |ev| {
                            if let Some(d) = weak.upgrade() {
                                d.on_socket(generation, ev);
                            }
                        });
                        match Socket::open(&url, report) {
                            Ok(s) => inner.socket = Some(s),
                            Err(_) => inner.feed.handle_close(now()),
                        }
                    }
                    Action::Close => {
                        inner.socket = None;
                        inner.wake = None;
                    }
                    Action::Send(_) => {}
                }
            }
            let frames: Vec<_> = std::iter::from_fn(|| inner.feed.poll_event()).collect();
            inner.timer = inner.feed.poll_timeout().map(|at| {
                let weak = self.me.clone();
                super::timeout(
                    at.saturating_sub(now()),
                    Box::new(move || {
                        if let Some(d) = weak.upgrade() {
                            d.with(|f| f.handle_timeout(now()));
                        }
                    }),
                )
            });
            (frames, inner.cb.clone())
        };
        for f in frames {
            let _ = cb.call1(&JsValue::NULL, &to_js(&f));
        }
    }
}
