//! The events' shapes (docs/protocol.md, *Events*): each builder writes an event's fixed
//! fields with a [`Writer`]; what comes from the page's values (console arguments, a
//! rejection's reason) the walker writes after.

use super::writer::{Draft, Text, Writer};
use crate::Millis;

/// The console methods the inspector wraps, in the order the shim numbers them (a console
/// event's kind is the index here). `groupCollapsed` is recorded as `group`.
pub const LEVELS: &str =
    "log info warn error debug trace assert dir table group groupCollapsed groupEnd clear";

/// The methods whose events carry the caller's stack (the browser shows one for them).
pub const STACKED: &str = "error trace assert";

/// The level on the wire of the console method numbered `i` in [`LEVELS`].
pub fn level(i: u32) -> Option<&'static str> {
    // Word `i` of LEVELS, by bytes (str::split would bring its searcher into the wasm).
    let (mut start, mut k) = (0, 0);
    for (j, b) in LEVELS.bytes().chain([b' ']).enumerate() {
        if b == b' ' {
            if k == i {
                let l = &LEVELS[start..j];
                return Some(if l == "groupCollapsed" { "group" } else { l });
            }
            k += 1;
            start = j + 1;
        }
    }
    None
}

/// The fields of the navigation timing entry (`performance.getEntriesByType("navigation")`)
/// that a `page` event carries, and their names in `timing`, in ms from the navigation's start.
pub const TIMING: [(&str, &str); 3] =
    [("ttfb", "responseStart"), ("domContentLoaded", "domContentLoadedEventEnd"), ("load", "loadEventStart")];

/// A console call of `level`: `{"k":"console","at","n","level","stack"?,"args":[` — the walker
/// writes the arguments as the list's items, then `end_list()` and `finish()`. `stack` is
/// what `new Error().stack` said inside the console's wrapper ([`caller_stack`] takes the
/// wrapper out).
pub fn console(at: Millis, n: u64, level: &str, stack: Option<&Text>) -> Writer {
    let mut w = Writer::event("console", at, n);
    w.field("level");
    w.plain(level);
    if let Some(stack) = stack.and_then(caller_stack) {
        w.field("stack");
        w.string(&stack);
    }
    w.list("args");
    w
}

/// What an `error` event says besides its source.
#[derive(Debug, Default)]
pub struct Failure<'a> {
    pub message: Option<&'a Text>,
    pub stack: Option<&'a Text>,
    pub url: Option<&'a Text>,
    pub line: Option<u64>,
    pub col: Option<u64>,
}

/// What an unhandled rejection says when its reason is not an Error (Chromium's words).
pub const IN_PROMISE: &str = "Uncaught (in promise)";

/// `{"k":"error","at","n","source","message","stack"?,"url"?,"line"?,"col"?` — `source` is
/// `uncaught`, `rejection` or `resource`; a `value` (a thrown non-Error, a rejection's
/// reason) is the walker's to add as the last field. Without a message: `""`, or for a
/// rejection [`IN_PROMISE`].
pub fn error(at: Millis, n: u64, source: &str, f: &Failure) -> Writer {
    let mut w = Writer::event("error", at, n);
    w.field("source");
    w.plain(source);
    w.field("message");
    match f.message {
        Some(m) => w.string(m),
        None => w.plain(if source == "rejection" { IN_PROMISE } else { "" }),
    }
    for (name, t) in [("stack", f.stack), ("url", f.url)] {
        if let Some(t) = t.filter(|t| t.len > 0) {
            w.field(name);
            w.string(t);
        }
    }
    for (name, v) in [("line", f.line), ("col", f.col)] {
        if let Some(v) = v {
            w.field(name);
            w.uint(v);
        }
    }
    w
}

/// A resource that failed to load (`<img>`, `<script>`, `<link>`, …): `node` is the
/// element's description (`img#logo`), `url` what it loaded.
pub fn resource(at: Millis, n: u64, node: &str, url: &Text) -> Writer {
    let message = Text::from([node, " failed to load"].concat().as_str());
    error(at, n, "resource", &Failure { message: Some(&message), url: Some(url), ..Failure::default() })
}

/// What a `page` event says.
#[derive(Debug)]
pub struct Page<'a> {
    pub url: Option<&'a Text>,
    pub title: Option<&'a Text>,
    pub user_agent: Option<&'a Text>,
    /// `innerWidth`, `innerHeight`, `devicePixelRatio`.
    pub viewport: [f64; 3],
    /// The [`TIMING`] fields as read (ms), when the browser has a navigation entry.
    pub timing: Option<[f64; 3]>,
}

/// `{"k":"page","at","n","url","title","viewport":[w,h,dpr],"userAgent","timing"?}`; a timing
/// field is written (in whole ms) once it has happened, i.e. is above 0. `js` is JS's text
/// of a number that is not a whole one (a device pixel ratio of 2.625).
pub fn page(at: Millis, n: u64, p: &Page, js: &dyn Fn(f64) -> String) -> Draft {
    let mut w = Writer::event("page", at, n);
    let string = |w: &mut Writer, name, t: Option<&Text>| {
        w.field(name);
        match t {
            Some(t) => w.string(t),
            None => w.plain(""),
        }
    };
    string(&mut w, "url", p.url);
    string(&mut w, "title", p.title);
    w.list("viewport");
    for x in p.viewport {
        w.number(x, js);
    }
    w.end_list();
    string(&mut w, "userAgent", p.user_agent);
    if let Some(timing) = p.timing {
        w.field("timing");
        w.object();
        for ((name, _), ms) in TIMING.iter().zip(timing) {
            if ms > 0.0 {
                w.field(name);
                w.uint((ms + 0.5) as u64);
            }
        }
        w.end();
    }
    w.finish()
}

/// The caller's stack from `new Error().stack` taken inside the console's wrapper: without
/// V8's `Error` line and without the wrapper's own frame (the first). `None` when nothing is
/// left (`Error.stackTraceLimit = 0`).
pub fn caller_stack(raw: &Text) -> Option<Text> {
    let s = raw.head.as_str();
    // Lines by bytes (str::lines and trim would bring Unicode tables into the wasm).
    let line_end = |t: &str| t.bytes().position(|b| b == b'\n');
    let first = &s[..line_end(s).unwrap_or(s.len())];
    let header = first.starts_with("Error") && !first.bytes().any(|b| b == b'@');
    let mut rest = s;
    for _ in 0..1 + usize::from(header) {
        rest = &rest[line_end(rest)? + 1..];
    }
    if rest.bytes().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let dropped = super::writer::utf16_len(&s[..s.len() - rest.len()]);
    Some(Text { head: rest.to_owned(), len: raw.len.saturating_sub(dropped) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(x: f64) -> String {
        x.to_string()
    }

    fn parse(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    #[test]
    fn levels_are_numbered_as_the_shim_numbers_them() {
        let names: Vec<_> = (0..13).map(|i| level(i).unwrap()).collect();
        assert_eq!(
            names,
            [
                "log", "info", "warn", "error", "debug", "trace", "assert", "dir", "table", "group", "group",
                "groupEnd", "clear"
            ]
        );
        assert_eq!(level(13), None);
        for l in STACKED.split(' ') {
            assert!(LEVELS.split(' ').any(|x| x == l), "{l} is a level");
        }
    }

    #[test]
    fn a_console_event_with_its_arguments_and_the_callers_stack() {
        let stack = Text::from(
            "Error\n    at console.trace (http://a/hooks.js:9:5)\n    at main (http://a/app.js:3:9)",
        );
        let mut w = console(1_700_000_000_123, 7, "trace", Some(&stack));
        for (i, s) in ["a", "b"].iter().enumerate() {
            assert!(w.item(i, 2));
            w.string(&Text::from(*s));
        }
        w.end_list();
        let e = parse(&w.finish().text);
        assert_eq!(
            e,
            serde_json::json!({"k": "console", "at": 1_700_000_000_123u64, "n": 7, "level": "trace",
                "stack": "    at main (http://a/app.js:3:9)", "args": ["a", "b"]})
        );
    }

    #[test]
    fn the_wrappers_frame_is_taken_out_of_each_browsers_stack() {
        // V8: a header line, then frames.
        let v8 = Text::from(
            "Error\n    at console.error (x.js:1:1)\n    at f (app.js:2:3)\n    at g (app.js:4:5)",
        );
        assert_eq!(caller_stack(&v8).unwrap().head, "    at f (app.js:2:3)\n    at g (app.js:4:5)");
        // SpiderMonkey and JavaScriptCore: frames only.
        let gecko = Text::from("wrap@x.js:1:1\nf@app.js:2:3\n");
        assert_eq!(caller_stack(&gecko).unwrap().head, "f@app.js:2:3\n");
        // A frame that happens to start with "Error" is a frame in those browsers.
        let named = Text::from("Error@x.js:1:1\nf@app.js:2:3");
        assert_eq!(caller_stack(&named).unwrap().head, "f@app.js:2:3");
        // Nothing but the wrapper (stackTraceLimit 1) or nothing at all: no stack.
        assert_eq!(caller_stack(&Text::from("Error\n    at console.error (x.js:1:1)")), None);
        assert_eq!(caller_stack(&Text::from("Error")), None);
        assert_eq!(caller_stack(&Text::from("")), None);
        // A cut stack keeps its whole length, less what was taken out.
        let long = Text { head: "Error\n    at w (x)\n    at f (y)".into(), len: 50_000 };
        let kept = caller_stack(&long).unwrap();
        assert_eq!((kept.head.as_str(), kept.len), ("    at f (y)", 50_000 - 19));
    }

    #[test]
    fn error_events() {
        let msg = Text::from("Uncaught Error: boom");
        let stack = Text::from("Error: boom\n    at f (app.js:2:3)");
        let url = Text::from("http://app/app.js");
        let f = Failure {
            message: Some(&msg),
            stack: Some(&stack),
            url: Some(&url),
            line: Some(2),
            col: Some(3),
        };
        let e = parse(&error(5, 1, "uncaught", &f).finish().text);
        assert_eq!(
            e,
            serde_json::json!({"k": "error", "at": 5, "n": 1, "source": "uncaught", "message": "Uncaught Error: boom",
                "stack": "Error: boom\n    at f (app.js:2:3)", "url": "http://app/app.js", "line": 2, "col": 3})
        );

        // A rejection whose reason is not an Error: Chromium's words, and the reason as `value`.
        let mut w = error(6, 2, "rejection", &Failure::default());
        w.field("value");
        w.number(42.0, &js);
        let e = parse(&w.finish().text);
        assert_eq!(
            e,
            serde_json::json!({"k": "error", "at": 6, "n": 2, "source": "rejection", "message": IN_PROMISE, "value": 42})
        );

        let e = parse(&resource(7, 3, "img#logo", &Text::from("http://app/logo.png")).finish().text);
        assert_eq!(
            e,
            serde_json::json!({"k": "error", "at": 7, "n": 3, "source": "resource", "message": "img#logo failed to load",
                "url": "http://app/logo.png"})
        );
    }

    #[test]
    fn page_events() {
        let (url, title, ua) = (Text::from("http://app/"), Text::from("App"), Text::from("Mozilla/5.0"));
        let p = Page {
            url: Some(&url),
            title: Some(&title),
            user_agent: Some(&ua),
            viewport: [390.0, 844.0, 2.625],
            timing: None,
        };
        let e = parse(&page(1, 1, &p, &js).text);
        assert_eq!(
            e,
            serde_json::json!({"k": "page", "at": 1, "n": 1, "url": "http://app/", "title": "App",
                "viewport": [390, 844, 2.625], "userAgent": "Mozilla/5.0"})
        );
        // Timing: whole ms; what has not happened yet (0) is left out.
        let p = Page { timing: Some([12.4, 80.5, 0.0]), ..p };
        let e = parse(&page(2, 2, &p, &js).text);
        assert_eq!(e["timing"], serde_json::json!({"ttfb": 12, "domContentLoaded": 81}));
    }
}
