//! A `web_sys::WebSocket` that reports to one callback and cleans up after itself.

use super::listener;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What a socket reports.
pub enum SocketEvent {
    /// Opened.
    Open,
    /// A text frame.
    Text(String),
    /// Closed (or failed to open); the close code when one came.
    Close(Option<u16>),
}

/// An open (or opening) socket. Dropping it removes its handlers and closes it.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(JsValue)>,
    _on_message: Closure<dyn FnMut(JsValue)>,
    _on_close: Closure<dyn FnMut(JsValue)>,
}

impl Socket {
    /// Opens `url`, reporting every event to `report` (one `dyn` type for every caller, so the
    /// wasm carries one copy of this glue).
    pub fn open(url: &str, report: std::rc::Rc<dyn Fn(SocketEvent)>) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        let r = report.clone();
        let on_open = listener(move |_| r(SocketEvent::Open));
        let r = report.clone();
        let on_message = listener(move |e: JsValue| {
            let e: MessageEvent = e.unchecked_into();
            // The relay only sends text; anything else is ignored.
            if let Some(text) = e.data().as_string() {
                r(SocketEvent::Text(text));
            }
        });
        let on_close = listener(move |e: JsValue| {
            let e: CloseEvent = e.unchecked_into();
            // 1005 ("no status") and 1006 ("abnormal") are the browser's, not the relay's.
            let code = e.code();
            report(SocketEvent::Close((code != 1005 && code != 1006).then_some(code)));
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket { ws, _on_open: on_open, _on_message: on_message, _on_close: on_close })
    }

    /// Sends a text frame; a failure shows up as a close event.
    pub fn send(&self, text: &str) {
        let _ = self.ws.send_with_str(text);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close_with_code_and_reason(1000, "bye");
    }
}
