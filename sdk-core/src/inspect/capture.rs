//! What each of the inspector's hooks reports becomes an event: the fields read from the
//! page's objects (a console call's arguments, an `ErrorEvent`, a `PromiseRejectionEvent`,
//! the window) through the walker's questions ([`Page`]), written by [`event`](super::event)'s
//! builders. Generic over the page, so that it is tested here against a model of JS values.

use super::STRING;
use super::event::{self, Failure, TIMING};
use super::redact::Own;
use super::walk::{self, Page, string_prop};
use super::writer::{Draft, Kind};
use crate::Millis;

/// A call of the console method numbered `i` in [`LEVELS`](event::LEVELS) with `args` (an
/// array) and `stack` (`new Error().stack` from the wrapper, or `undefined`). A passing
/// `console.assert` is not recorded (the browser shows nothing either); a failing one's
/// condition is not among its arguments.
pub fn console<P: Page>(p: &P, at: Millis, n: u64, i: u32, args: &P::V, stack: &P::V) -> Option<Draft> {
    let level = event::level(i)?;
    let len = p.len(args);
    let mut from = 0;
    if level == "assert" {
        if p.index(args, 0).is_ok_and(|cond| walk::truthy(p, &cond)) {
            return None;
        }
        from = 1;
    }
    let stack = (p.what(stack) == Kind::String).then(|| walk::string(p, stack));
    let mut w = event::console(at, n, level, stack.as_ref());
    walk::list(&mut w, p, args, from, len);
    w.end_list();
    Some(w.finish())
}

/// An `error` event caught on the window (capture phase): a script error (its target is the
/// window: an `ErrorEvent`) or an element that failed to load (its target is that element),
/// unless what it loaded is the SDK's own. Anything else is not recorded.
pub fn error<P: Page>(p: &P, at: Millis, n: u64, e: &P::V, own: &Own) -> Option<Draft> {
    let target = p.prop(e, "target").ok()?;
    match p.what(&target) {
        Kind::Win => {
            let [message, url] = ["message", "filename"].map(|f| string_prop(p, e, f));
            let [line, col] = ["lineno", "colno"].map(|f| whole_prop(p, e, f));
            let thrown = p.prop(e, "error").ok();
            let kind = thrown.as_ref().map_or(Kind::Undefined, |t| p.what(t));
            let stack =
                thrown.as_ref().filter(|_| kind == Kind::Error).and_then(|t| string_prop(p, t, "stack"));
            let f =
                Failure { message: message.as_ref(), stack: stack.as_ref(), url: url.as_ref(), line, col };
            let mut w = event::error(at, n, "uncaught", &f);
            // `throw {code: 1}`: what was thrown, as a Value (an Error says it all above).
            if let Some(t) = thrown.filter(|_| !matches!(kind, Kind::Undefined | Kind::Null | Kind::Error)) {
                w.field("value");
                walk::value(&mut w, p, &t);
            }
            Some(w.finish())
        }
        Kind::Node => {
            let url = ["src", "href", "currentSrc"]
                .into_iter()
                .find_map(|f| string_prop(p, &target, f).filter(|u| u.len > 0))?;
            if own.contains(&url.head) {
                return None;
            }
            Some(event::resource(at, n, &p.text(&target, Kind::Node, STRING), &url).finish())
        }
        _ => None,
    }
}

/// An `unhandledrejection` event: the reason as `value`; an Error reason's message and stack
/// as the event's.
pub fn rejection<P: Page>(p: &P, at: Millis, n: u64, e: &P::V) -> Draft {
    let reason = p.prop(e, "reason").ok();
    let error = reason.as_ref().filter(|r| p.what(r) == Kind::Error);
    let [message, stack] = ["message", "stack"].map(|f| error.and_then(|r| string_prop(p, r, f)));
    let f = Failure { message: message.as_ref(), stack: stack.as_ref(), ..Failure::default() };
    let mut w = event::error(at, n, "rejection", &f);
    if let Some(reason) = &reason {
        w.field("value");
        walk::value(&mut w, p, reason);
    }
    w.finish()
}

/// The page: read from the window `g`; `nav` is its navigation timing entry, if any.
pub fn page<P: Page>(p: &P, at: Millis, n: u64, g: &P::V, nav: Option<&P::V>) -> Draft {
    let read = |obj: &str, field: &str| p.prop(g, obj).ok().and_then(|o| string_prop(p, &o, field));
    let number =
        |v: &P::V, f: &str| p.prop(v, f).ok().filter(|x| p.what(x) == Kind::Number).map(|x| p.number(&x));
    let viewport = ["innerWidth", "innerHeight", "devicePixelRatio"].map(|f| number(g, f).unwrap_or(0.0));
    let timing = nav.map(|nav| TIMING.map(|(_, f)| number(nav, f).unwrap_or(0.0)));
    let [url, title, user_agent] =
        [("location", "href"), ("document", "title"), ("navigator", "userAgent")].map(|(o, f)| read(o, f));
    let info = event::Page {
        url: url.as_ref(),
        title: title.as_ref(),
        user_agent: user_agent.as_ref(),
        viewport,
        timing,
    };
    event::page(at, n, &info, &|x| p.num_text(x))
}

/// A property that should be a whole number ≥ 0 (a line, a column), if it is one.
fn whole_prop<P: Page>(p: &P, v: &P::V, name: &str) -> Option<u64> {
    let x = p.prop(v, name).ok()?;
    let x = (p.what(&x) == Kind::Number).then(|| p.number(&x))?;
    (x >= 0.0 && x.fract() == 0.0 && x < 9e15).then_some(x as u64)
}

#[cfg(test)]
#[path = "capture_tests.rs"]
mod tests;
