use super::*;
use crate::inspect::model::{M, Model, P, V, arr, n, obj, s, v};
use crate::inspect::{EVENT, STRING};
use serde_json::json;
use std::cell::RefCell;

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn an_eval_result_is_a_value() {
    let p = &Model;
    assert_eq!(parse(&result(p, &n(2.0))), json!({"result": 2}));
    assert_eq!(parse(&result(p, &v(M::Undef))), json!({"result": {"$": "undefined"}}));
    assert_eq!(parse(&result(p, &obj(vec![("a", arr(vec![s("x")]))]))), json!({"result": {"a": ["x"]}}));
    // A getter that throws while the result is walked is written as such; a cycle as one.
    let o = v(M::Obj(None, RefCell::new(vec![("bad".into(), P::Throws)])));
    assert_eq!(parse(&result(p, &o)), json!({"result": {"bad": {"$": "threw"}}}));
    let a = arr(vec![]);
    if let M::Arr(items) = &*a {
        items.borrow_mut().push(a.clone());
    }
    assert_eq!(parse(&result(p, &a)), json!({"result": [{"$": "cycle"}]}));
}

#[test]
fn what_was_thrown_is_a_value_with_an_errors_message() {
    let p = &Model;
    let err = v(M::Err(
        "TypeError".into(),
        "x is not a function".into(),
        Some("TypeError: x\n    at <anonymous>".into()),
    ));
    assert_eq!(
        parse(&threw(p, &err)),
        json!({"error": {"code": "threw", "message": "x is not a function",
            "value": {"$": "error", "name": "TypeError", "message": "x is not a function", "stack": "TypeError: x\n    at <anonymous>"}}})
    );
    assert_eq!(
        parse(&threw(p, &obj(vec![("code", n(7.0))]))),
        json!({"error": {"code": "threw", "message": "threw (see value)", "value": {"code": 7}}})
    );
    assert_eq!(parse(&threw(p, &s("plain")))["error"]["value"], json!("plain"));
}

#[test]
fn a_huge_value_stays_within_an_events_cap() {
    let p = &Model;
    let huge = |c: &str| -> V { arr((0..100).map(|_| s(&c.repeat(STRING))).collect()) };
    let body = result(p, &huge("x"));
    assert!(body.len() <= EVENT, "{} bytes", body.len());
    let e = parse(&body);
    assert_eq!(e["result"].as_array().unwrap().last().unwrap(), &json!({"$": "cut"}));
    let body = threw(p, &huge("y"));
    assert!(body.len() <= EVENT, "{} bytes", body.len());
    assert_eq!(parse(&body)["error"]["code"], json!("threw"));
}

#[test]
fn a_body_too_large_for_any_cut_is_its_stub() {
    // The Writer cuts values as it goes, so a body never needs its stub; the stub of a body
    // is still JSON.
    let w = Writer::body();
    let d = w.finish();
    assert_eq!(d.stub(), r#"{"$":"cut"}"#);
}
