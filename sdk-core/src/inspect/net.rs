//! The page's own network (#18): what the shim's hooks on `fetch`, `XMLHttpRequest`,
//! `navigator.sendBeacon`, `WebSocket` and `EventSource` report, made into `network` events
//! (docs/protocol.md, *Events*), and the decisions on the way: which bodies are read and how
//! far, which header values are masked, which traffic is the SDK's own and never recorded.
//!
//! The shim keeps nothing but what it reports; this module keeps nothing at all. A request's
//! or a socket's `info`, made at its start, travels with each of its later reports:
//!
//! | report | `a` | `b` | what it makes |
//! |---|---|---|---|
//! | start | `info` = `[id, type, method, url, headers, body]` | a beacon's queued (boolean) | `start` ([`start`]); `None` for the SDK's own URLs: the shim then follows it no further |
//! | fetch head | `info` | `[status, statusText, headers, ms]` | [`to_read`] says how many bytes of the body to read; 0: the `end` now, body described |
//! | end | `info` | `[status, statusText, headers, ms, body, cut]` | `end` ([`end`]) |
//! | fail | `info` | `[message, ms]` | `error` ([`fail`]) |
//! | socket | `info` | `[phase, data, dir or event]` | `open`, `message`, `close`, `error` ([`socket`]) |
//!
//! `type` is an index in [`TYPES`], `phase` in [`PHASES`] (the shim numbers them; keep both in
//! step); `headers` are `[[name, value]]`; `method` and `body` may be `undefined`.
//!
//! Bodies ([`body`]): a request's string body is text; a response's is text when its content
//! type is text-like ([`text_like`]), cut at [`BODY`] bytes — fetch's is read from a clone
//! and only that far, the rest never read; anything else (binary, unknown, and
//! `text/event-stream`, whose body never ends) is described as `{"$":"bin","type","len"?}`,
//! never read. Both bodies of a request never share an event (the request's is in `start`,
//! the response's in `end`), so each has most of [`EVENT`](super::EVENT) to itself.

use super::redact::{Masks, Own};
use super::walk::{self, Page};
use super::writer::{Draft, Kind, Text, Writer};
use crate::Millis;

/// A body's cap in bytes of UTF-8 (a request's in `start`, a response's in `end`): half an
/// event, so that the URL and headers beside it still fit.
pub const BODY: usize = 16_384;

/// The `type` of a network event, as the shim numbers it.
pub const TYPES: [&str; 5] = ["fetch", "xhr", "beacon", "ws", "sse"];
const WS: usize = 3;

/// The `phase` of a network event, as the shim numbers it.
pub const PHASES: [&str; 6] = ["start", "end", "open", "message", "close", "error"];
const START: usize = 0;
const END: usize = 1;
const MESSAGE: usize = 3;
const CLOSE: usize = 4;
const ERROR: usize = 5;

/// The methods fetch and XHR send in upper case whatever case the page wrote them in.
const NORMALISED: [&str; 6] = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"];

/// A request's or a socket's start: `{…,"phase":"start","method"?,"url","requestHeaders"?,
/// "requestBody"?,"queued"?}` (`queued: false`: a beacon the browser refused). `None` when
/// it is the SDK's own (or `info` is not one the shim makes).
pub fn start<P: Page>(
    p: &P,
    at: Millis,
    n: u64,
    info: &P::V,
    queued: &P::V,
    own: &Own,
    masks: &Masks,
) -> Option<Draft> {
    let url = string_at(p, info, 3)?;
    if own.contains(&url.head) {
        return None;
    }
    let (mut w, _) = event(p, at, n, info, START)?;
    if let Some(method) = string_at(p, info, 2) {
        w.field("method");
        // As the browser sends it: the six methods fetch and XHR normalise in upper case, any
        // other as the page wrote it (`patch` goes out as `patch`, a classic cause of a 405).
        let up = method.head.to_ascii_uppercase();
        let sent = if NORMALISED.contains(&up.as_str()) { up } else { method.head };
        w.plain(&sent);
    }
    w.field("url");
    w.string(&url);
    headers(&mut w, p, item(p, info, 4).as_ref(), "requestHeaders", masks);
    if let Some(b) = item(p, info, 5).filter(|b| !matches!(p.what(b), Kind::Undefined | Kind::Null)) {
        w.field("requestBody");
        body(&mut w, p, Some(&b), None, None, true);
    }
    if p.what(queued) == Kind::False {
        w.field("queued");
        w.bool(false);
    }
    Some(w.finish())
}

/// For fetch's response head `res` (`[status, statusText, headers, ms]`): how many bytes of
/// its body to read from a clone, [`BODY`] for a text-like content type; 0 for any other
/// (then the `end` is written at once, its body described, never read).
pub fn to_read<P: Page>(p: &P, res: &P::V) -> usize {
    let ct = header(p, item(p, res, 2).as_ref(), "content-type");
    if ct.is_some_and(|t| text_like(&t.head)) { BODY } else { 0 }
}

/// A request's end, its response `res` (`[status, statusText, headers, ms, body, cut]`; `cut`:
/// fetch read the body only up to [`BODY`]): `{…,"phase":"end","status","statusText",
/// "responseHeaders"?,"ms","responseBody"}`.
pub fn end<P: Page>(p: &P, at: Millis, n: u64, info: &P::V, res: &P::V, masks: &Masks) -> Option<Draft> {
    let (mut w, _) = event(p, at, n, info, END)?;
    w.field("status");
    w.uint(whole_at(p, res, 0).unwrap_or(0));
    w.field("statusText");
    match string_at(p, res, 1) {
        Some(t) => w.string(&t),
        None => w.plain(""),
    }
    let list = item(p, res, 2);
    headers(&mut w, p, list.as_ref(), "responseHeaders", masks);
    ms(&mut w, p, res, 3);
    let ct = header(p, list.as_ref(), "content-type").map_or_else(String::new, |t| t.head);
    let len = header(p, list.as_ref(), "content-length").and_then(|t| digits(&t.head));
    w.field("responseBody");
    let whole = kind_at(p, res, 5) != Kind::True;
    body(&mut w, p, item(p, res, 4).as_ref(), Some(&ct), len, whole);
    Some(w.finish())
}

/// A request that failed (`b` = `[message, ms]`: a network error, an abort, a timeout):
/// `{…,"phase":"error","message","ms"}`.
pub fn fail<P: Page>(p: &P, at: Millis, n: u64, info: &P::V, b: &P::V) -> Option<Draft> {
    let (mut w, _) = event(p, at, n, info, ERROR)?;
    w.field("message");
    match string_at(p, b, 0) {
        Some(t) => w.string(&t),
        None => w.plain(""),
    }
    ms(&mut w, p, b, 1);
    Some(w.finish())
}

/// What a socket did (`b` = `[phase, data, dir or event]`): `open`; `message` with `data` (a
/// Value) and, for a WebSocket, `dir` (`b[2]` true: `recv`, else `send`), for an EventSource,
/// `event` (its name); `close` with `code` and `reason` (when not empty); `error`.
pub fn socket<P: Page>(p: &P, at: Millis, n: u64, info: &P::V, b: &P::V) -> Option<Draft> {
    let phase = whole_at(p, b, 0).filter(|&i| i > END as u64 && i <= ERROR as u64)? as usize;
    let (mut w, ty) = event(p, at, n, info, phase)?;
    if phase == MESSAGE {
        if ty == WS {
            w.field("dir");
            w.plain(if kind_at(p, b, 2) == Kind::True { "recv" } else { "send" });
        } else if let Some(name) = string_at(p, b, 2) {
            w.field("event");
            w.string(&name);
        }
        w.field("data");
        match item(p, b, 1) {
            Some(data) => walk::value(&mut w, p, &data),
            None => w.mark("threw"),
        }
    } else if phase == CLOSE {
        if let Some(code) = whole_at(p, b, 1) {
            w.field("code");
            w.uint(code);
        }
        if let Some(reason) = string_at(p, b, 2).filter(|t| t.len > 0) {
            w.field("reason");
            w.string(&reason);
        }
    }
    Some(w.finish())
}

/// Whether a body of this content type is read as text: `text/*` (but `text/event-stream`,
/// whose body never ends), JSON, XML, JavaScript, and forms (`application/x-www-form-urlencoded`),
/// parameters (`; charset=…`) and case aside. The value is as the browser gives it: without
/// surrounding blanks (fetch's `Headers` and the shim's XHR headers are trimmed).
pub fn text_like(content_type: &str) -> bool {
    let b = content_type.as_bytes();
    let t = &b[..b.iter().position(|&c| c == b';').unwrap_or(b.len())];
    // No lower-case copy: every comparison ignores case.
    let is = |word: &[u8]| t.eq_ignore_ascii_case(word);
    let has = |word: &[u8]| t.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    (t.len() > 5 && t[..5].eq_ignore_ascii_case(b"text/") && !is(b"text/event-stream"))
        || has(b"json")
        || has(b"xml")
        || has(b"javascript")
        || is(b"application/x-www-form-urlencoded")
}

/// A body (see the module's doc). `ct` is the response's content type (`None` for a
/// request's body); `len` its Content-Length; `whole`: false when fetch read it only up to
/// the cap.
fn body<P: Page>(w: &mut Writer, p: &P, v: Option<&P::V>, ct: Option<&str>, len: Option<u64>, whole: bool) {
    match (v, v.map_or(Kind::Undefined, |v| p.what(v))) {
        (Some(v), Kind::String) if ct.is_none_or(text_like) => {
            let t = Text::new(p.text(v, Kind::String, BODY), || p.len(v));
            w.text(&t, BODY, whole);
        }
        // A JSON response already parsed (XHR's `responseType = "json"`), a document, null, …
        (Some(v), kind) if !matches!(kind, Kind::String | Kind::Undefined | Kind::Bin) => {
            walk::value(w, p, v)
        }
        // Binary, or not read: described.
        (v, kind) => {
            let bin = v.filter(|_| kind == Kind::Bin);
            w.tag("bin");
            w.field("type");
            match (ct, bin) {
                (Some(ct), None) => w.plain(ct),
                (Some(ct), Some(_)) if !ct.is_empty() => w.plain(ct),
                (_, Some(v)) => w.plain(&p.text(v, Kind::Bin, super::KEY)),
                (None, None) => w.plain(""),
            }
            if let Some(len) = bin.map(|v| p.len(v) as u64).or(len) {
                w.field("len");
                w.uint(len);
            }
            w.end();
        }
    }
}

/// `{"k":"network","at","n","id","type","phase"` for the request or socket `info`, and its
/// type's index.
fn event<P: Page>(p: &P, at: Millis, n: u64, info: &P::V, phase: usize) -> Option<(Writer, usize)> {
    let id = whole_at(p, info, 0)?;
    let ty = whole_at(p, info, 1).filter(|&t| t < TYPES.len() as u64)? as usize;
    let mut w = Writer::event("network", at, n);
    w.field("id");
    w.uint(id);
    w.field("type");
    w.plain(TYPES[ty]);
    w.field("phase");
    w.plain(PHASES[phase]);
    Some((w, ty))
}

/// `name: [[k, v], …]` from the page's list of pairs, each value masked where `masks` says;
/// nothing when the list is empty or not a list.
fn headers<P: Page>(w: &mut Writer, p: &P, list: Option<&P::V>, name: &str, masks: &Masks) {
    let Some((list, len)) = pairs(p, list) else { return };
    w.list(name);
    for i in 0..len {
        if !w.item(i, len) || !w.open_arr(2) {
            break;
        }
        let pair = item(p, list, i);
        let [k, v] =
            [0, 1].map(|j| pair.as_ref().and_then(|x| string_at(p, x, j)).unwrap_or_else(|| Text::from("")));
        w.plain(&k.head);
        match masks.header(&k.head, &v.head) {
            std::borrow::Cow::Borrowed(_) => w.string(&v),
            masked => w.plain(&masked),
        }
        w.close_arr();
    }
    w.end_list();
}

/// The value of the header `name` (any case) in the page's list of pairs.
fn header<P: Page>(p: &P, list: Option<&P::V>, name: &str) -> Option<Text> {
    let (list, len) = pairs(p, list)?;
    (0..len).find_map(|i| {
        let pair = item(p, list, i)?;
        string_at(p, &pair, 0).filter(|k| k.head.eq_ignore_ascii_case(name))?;
        string_at(p, &pair, 1)
    })
}

/// A non-empty list of header pairs, and its length.
fn pairs<'a, P: Page>(p: &P, list: Option<&'a P::V>) -> Option<(&'a P::V, usize)> {
    let list = list.filter(|l| p.what(l) == Kind::Array)?;
    Some((list, p.len(list))).filter(|&(_, len)| len > 0)
}

/// `"ms"` from item `i` of `b`, when it is a whole number.
fn ms<P: Page>(w: &mut Writer, p: &P, b: &P::V, i: usize) {
    if let Some(ms) = whole_at(p, b, i) {
        w.field("ms");
        w.uint(ms);
    }
}

/// Item `i` of the page's array `v` (`None` if reading it threw: the shim's own arrays never do).
fn item<P: Page>(p: &P, v: &P::V, i: usize) -> Option<P::V> {
    p.index(v, i).ok()
}

/// What item `i` of `v` is (`Undefined` if reading it threw).
fn kind_at<P: Page>(p: &P, v: &P::V, i: usize) -> Kind {
    item(p, v, i).map_or(Kind::Undefined, |x| p.what(&x))
}

/// Item `i` of the page's array `v`, if it is a string.
fn string_at<P: Page>(p: &P, v: &P::V, i: usize) -> Option<Text> {
    let x = item(p, v, i)?;
    (p.what(&x) == Kind::String).then(|| walk::string(p, &x))
}

/// Item `i` of the page's array `v`, if it is a whole number ≥ 0.
fn whole_at<P: Page>(p: &P, v: &P::V, i: usize) -> Option<u64> {
    let x = item(p, v, i).filter(|x| p.what(x) == Kind::Number).map(|x| p.number(&x))?;
    (x >= 0.0 && x.fract() == 0.0 && x < 9e15).then_some(x as u64)
}

/// A header's decimal digits as a number (`Content-Length`, trimmed as [`text_like`]'s value).
fn digits(t: &str) -> Option<u64> {
    if t.is_empty() {
        return None;
    }
    t.bytes().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
