//! The hooks' reports as events, over the model of JS values.

use super::*;
use crate::inspect::model::*;
use serde_json::{Value as J, json};

fn parse(d: Option<Draft>) -> J {
    let text = d.expect("an event").text;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn undef() -> V {
    v(M::Undef)
}

fn window() -> V {
    obj(vec![
        ("location", obj(vec![("href", s("http://app/page?x=1"))])),
        ("document", obj(vec![("title", s("The app"))])),
        ("navigator", obj(vec![("userAgent", s("Mozilla/5.0 (Linux; Android 14)"))])),
        ("innerWidth", n(390.0)),
        ("innerHeight", n(844.0)),
        ("devicePixelRatio", n(2.625)),
    ])
}

/// The model's window: `what` says object for `obj`, so for `target` tests a marked one.
fn win() -> V {
    v(M::Text(Kind::Win, "Window".into()))
}

#[test]
fn console_calls_with_their_arguments() {
    let args = arr(vec![s("row"), n(1.0), obj(vec![("id", n(1.0))])]);
    let e = parse(console(&Model, 10, 1, 0, &args, &undef()));
    assert_eq!(e, json!({"k": "console", "at": 10, "n": 1, "level": "log", "args": ["row", 1, {"id": 1}]}));
    // groupCollapsed (10) is a group; no arguments is an empty list.
    let e = parse(console(&Model, 10, 2, 10, &arr(vec![]), &undef()));
    assert_eq!((e["level"].clone(), e["args"].clone()), (json!("group"), json!([])));
    // A method the shim does not number is nothing.
    assert!(console(&Model, 10, 3, 99, &arr(vec![]), &undef()).is_none());
}

#[test]
fn a_stack_where_the_level_has_one() {
    let stack = s("Error\n    at console.error (hooks.js:1:1)\n    at main (app.js:9:9)");
    let e = parse(console(&Model, 1, 1, 3, &arr(vec![s("bad")]), &stack));
    assert_eq!(e["stack"], "    at main (app.js:9:9)");
    assert_eq!(e["args"], json!(["bad"]));
}

#[test]
fn assert_is_recorded_only_when_it_fails_and_without_its_condition() {
    let assert = 6;
    for passing in [v(M::Bool(true)), n(1.0), s("x"), obj(vec![]), v(M::Text(Kind::BigInt, "5".into()))] {
        assert!(console(&Model, 1, 1, assert, &arr(vec![passing, s("msg")]), &undef()).is_none());
    }
    for failing in [
        v(M::Bool(false)),
        n(0.0),
        n(f64::NAN),
        s(""),
        v(M::Null),
        undef(),
        v(M::Text(Kind::BigInt, "0".into())),
    ] {
        let e = parse(console(&Model, 1, 1, assert, &arr(vec![failing, s("msg"), n(2.0)]), &undef()));
        assert_eq!(e["args"], json!(["msg", 2]));
    }
    // console.assert() with no argument at all fails, with no arguments.
    assert_eq!(parse(console(&Model, 1, 1, assert, &arr(vec![]), &undef()))["args"], json!([]));
}

#[test]
fn an_uncaught_error_with_its_stack_url_line_and_column() {
    let thrown = v(M::Err("Error".into(), "boom".into(), Some("Error: boom\n    at f (app.js:2:3)".into())));
    let ev = obj(vec![
        ("target", win()),
        ("message", s("Uncaught Error: boom")),
        ("filename", s("http://app/app.js")),
        ("lineno", n(2.0)),
        ("colno", n(3.0)),
        ("error", thrown),
    ]);
    let e = parse(error(&Model, 5, 4, &ev, &Own::default()));
    assert_eq!(
        e,
        json!({"k": "error", "at": 5, "n": 4, "source": "uncaught", "message": "Uncaught Error: boom",
            "stack": "Error: boom\n    at f (app.js:2:3)", "url": "http://app/app.js", "line": 2, "col": 3})
    );
    // `throw {code: 1}`: no stack, the value as thrown.
    let ev = obj(vec![
        ("target", win()),
        ("message", s("Uncaught [object Object]")),
        ("error", obj(vec![("code", n(1.0))])),
    ]);
    let e = parse(error(&Model, 5, 5, &ev, &Own::default()));
    assert_eq!(e["value"], json!({"code": 1}));
    assert!(e.get("stack").is_none() && e.get("line").is_none());
}

#[test]
fn a_resource_that_failed_to_load_unless_it_is_the_sdks_own() {
    // An element (described, never walked) whose `src` is read.
    let el = v(M::NodeWith("img#logo".into(), vec![("src".into(), s("http://app/missing.png"))]));
    let ev = obj(vec![("target", el)]);
    let e = parse(error(&Model, 7, 1, &ev, &Own::default()));
    assert_eq!(
        e,
        json!({"k": "error", "at": 7, "n": 1, "source": "resource", "message": "img#logo failed to load",
            "url": "http://app/missing.png"})
    );
    // <link href>: the first URL it has.
    let link =
        v(M::NodeWith("link".into(), vec![("src".into(), undef()), ("href".into(), s("http://app/a.css"))]));
    assert_eq!(
        parse(error(&Model, 7, 2, &obj(vec![("target", link)]), &Own::default()))["url"],
        "http://app/a.css"
    );
    // The SDK's own files are never recorded; nor is an element with no URL, nor any other target.
    let own = Own(vec!["http://relay/sdk/".into()]);
    let sdk = v(M::NodeWith("script".into(), vec![("src".into(), s("http://relay/sdk/tether.js"))]));
    assert!(error(&Model, 7, 3, &obj(vec![("target", sdk)]), &own).is_none());
    let bare = v(M::NodeWith("img".into(), vec![("src".into(), s(""))]));
    assert!(error(&Model, 7, 3, &obj(vec![("target", bare)]), &own).is_none());
    assert!(error(&Model, 7, 3, &obj(vec![("target", obj(vec![]))]), &own).is_none());
    assert!(error(&Model, 7, 3, &obj(vec![]), &own).is_none());
}

#[test]
fn a_rejection_with_its_reason() {
    let reason = v(M::Err("TypeError".into(), "nope".into(), Some("TypeError: nope\n    at g".into())));
    let e = parse(Some(rejection(&Model, 8, 1, &obj(vec![("reason", reason)]))));
    assert_eq!(
        e,
        json!({"k": "error", "at": 8, "n": 1, "source": "rejection", "message": "nope", "stack": "TypeError: nope\n    at g",
            "value": {"$": "error", "name": "TypeError", "message": "nope", "stack": "TypeError: nope\n    at g"}})
    );
    let e = parse(Some(rejection(&Model, 8, 2, &obj(vec![("reason", obj(vec![("why", s("x"))]))]))));
    assert_eq!(e["message"], event::IN_PROMISE);
    assert_eq!(e["value"], json!({"why": "x"}));
    let e = parse(Some(rejection(&Model, 8, 3, &obj(vec![("reason", undef())]))));
    assert_eq!(e["value"], json!({"$": "undefined"}));
}

#[test]
fn page_info() {
    let e = parse(Some(page(&Model, 9, 1, &window(), None)));
    assert_eq!(
        e,
        json!({"k": "page", "at": 9, "n": 1, "url": "http://app/page?x=1", "title": "The app",
            "viewport": [390, 844, 2.625], "userAgent": "Mozilla/5.0 (Linux; Android 14)"})
    );
    let nav = obj(vec![
        ("responseStart", n(35.2)),
        ("domContentLoadedEventEnd", n(120.7)),
        ("loadEventStart", n(0.0)),
    ]);
    let e = parse(Some(page(&Model, 9, 2, &window(), Some(&nav))));
    assert_eq!(e["timing"], json!({"ttfb": 35, "domContentLoaded": 121}));
    // A page missing all of it still makes an event.
    let e = parse(Some(page(&Model, 9, 3, &obj(vec![]), None)));
    assert_eq!((e["url"].clone(), e["viewport"].clone()), (json!(""), json!([0, 0, 0])));
}
