//! The walker over a model of JS values: caps, tags, cycles, getters that throw, the event's
//! byte budget.

use super::*;
use crate::inspect::model::*;
use crate::inspect::{DEPTH, EVENT, ITEMS, KEY, KEYS, STRING};
use serde_json::{Value as J, json};
use std::cell::RefCell;

/// The event text with `x` as its field `v`.
fn event(x: &V) -> String {
    let mut w = Writer::event("t", 0, 1);
    w.field("v");
    value(&mut w, &Model, x);
    let text = w.finish().text;
    assert!(text.len() <= EVENT, "{} bytes", text.len());
    text
}

fn walk(x: &V) -> J {
    let text = event(x);
    let e: J = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    e["v"].clone()
}

#[test]
fn json_values_are_themselves() {
    let x = obj(vec![
        ("a", n(1.0)),
        ("b", s("two")),
        ("c", arr(vec![v(M::Bool(true)), v(M::Bool(false)), v(M::Null)])),
        ("d", obj(vec![("e", n(-3.0))])),
    ]);
    assert_eq!(walk(&x), json!({"a": 1, "b": "two", "c": [true, false, null], "d": {"e": -3}}));
}

#[test]
fn numbers_that_json_cannot_say_are_tagged() {
    let x = arr(vec![
        n(f64::NAN),
        n(f64::INFINITY),
        n(f64::NEG_INFINITY),
        n(-0.0),
        n(0.0),
        n(2.5),
        n(1e21),
        n(-1e-7),
    ]);
    assert_eq!(
        walk(&x),
        json!([{"$": "num", "v": "NaN"}, {"$": "num", "v": "Infinity"}, {"$": "num", "v": "-Infinity"},
            {"$": "num", "v": "-0"}, 0, 2.5, 1e21, -1e-7])
    );
}

#[test]
fn values_that_are_not_json_are_described_with_their_tag() {
    let x = arr(vec![
        v(M::Undef),
        v(M::Text(Kind::BigInt, "123".into())),
        v(M::Text(Kind::Symbol, "Symbol(x)".into())),
        v(M::Text(Kind::Function, "f".into())),
        v(M::Text(Kind::Node, "div#app.main".into())),
        v(M::Text(Kind::Win, "Window".into())),
        v(M::Text(Kind::Date, "2026-01-02T03:04:05.000Z".into())),
        v(M::Text(Kind::RegExp, "/a+/g".into())),
        v(M::Bin("Uint8Array".into(), 1024)),
        v(M::Err("TypeError".into(), "x is not a function".into(), Some("TypeError: x\n    at f".into()))),
        v(M::Err("Error".into(), "no stack".into(), None)),
    ]);
    assert_eq!(
        walk(&x),
        json!([{"$": "undefined"}, {"$": "bigint", "v": "123"}, {"$": "sym", "v": "Symbol(x)"},
            {"$": "fn", "name": "f"}, {"$": "node", "d": "div#app.main"}, {"$": "win", "class": "Window"},
            {"$": "date", "v": "2026-01-02T03:04:05.000Z"}, {"$": "regexp", "v": "/a+/g"},
            {"$": "bin", "type": "Uint8Array", "len": 1024},
            {"$": "error", "name": "TypeError", "message": "x is not a function", "stack": "TypeError: x\n    at f"},
            {"$": "error", "name": "Error", "message": "no stack"}])
    );
}

#[test]
fn instances_and_objects_with_their_own_dollar_key_are_wrapped() {
    let foo = v(M::Obj(Some("Foo".into()), RefCell::new(vec![("x".into(), P::V(n(1.0)))])));
    let dollar = obj(vec![("$", s("not a tag")), ("y", n(2.0))]);
    assert_eq!(
        walk(&arr(vec![foo, dollar])),
        json!([{"$": "obj", "class": "Foo", "v": {"x": 1}},
            {"$": "obj", "class": "Object", "v": {"$": "not a tag", "y": 2}}])
    );
}

#[test]
fn maps_and_sets_with_their_entries() {
    let m = v(M::Map(vec![(s("a"), n(1.0)), (obj(vec![]), s("b"))]));
    let st = v(M::Set(vec![n(1.0), s("x")]));
    assert_eq!(
        walk(&arr(vec![m, st])),
        json!([{"$": "map", "size": 2, "v": [["a", 1], [{}, "b"]]}, {"$": "set", "size": 2, "v": [1, "x"]}])
    );
    let big = v(M::Set((0..ITEMS + 5).map(|i| n(i as f64)).collect()));
    let out = walk(&big);
    assert_eq!(out["size"], json!(ITEMS + 5));
    assert_eq!(out["v"].as_array().unwrap().len(), ITEMS + 1);
    assert_eq!(out["v"][ITEMS], json!({"$": "more", "n": 5}));
}

#[test]
fn arrays_and_objects_are_cut_at_their_caps_and_say_how_much_more() {
    let long = arr((0..ITEMS + 40).map(|i| n(i as f64)).collect());
    let out = walk(&long);
    let items = out.as_array().unwrap();
    assert_eq!(items.len(), ITEMS + 1);
    assert_eq!(items[ITEMS - 1], json!(ITEMS - 1));
    assert_eq!(items[ITEMS], json!({"$": "more", "n": 40}));

    let names: Vec<String> = (0..KEYS + 7).map(|i| ["k", &i.to_string()].concat()).collect();
    let wide = obj(names.iter().map(|k| (k.as_str(), n(1.0))).collect());
    let out = walk(&wide);
    let o = out.as_object().unwrap();
    assert_eq!(o.len(), KEYS + 1);
    assert_eq!(o["$more"], json!(7));
    assert!(o.contains_key("k0") && o.contains_key(&names[KEYS - 1]) && !o.contains_key(&names[KEYS]));
}

#[test]
fn deeper_than_the_depth_cap_is_counted_not_walked() {
    // [[[[[1, 2]]]]] and {a:{a:{a:{a:{a:1, b:2}}}}}
    let mut a = arr(vec![n(1.0), n(2.0)]);
    let mut o = obj(vec![("a", n(1.0)), ("b", n(2.0))]);
    for _ in 0..DEPTH {
        a = arr(vec![a]);
        o = obj(vec![("a", o)]);
    }
    assert_eq!(walk(&a), json!([[[[[{"$": "more", "n": 2}]]]]]));
    assert_eq!(walk(&o), json!({"a": {"a": {"a": {"a": {"$more": 2}}}}}));
    // An instance at the cap keeps its class.
    let mut i = v(M::Obj(Some("Foo".into()), RefCell::new(vec![("x".into(), P::V(n(1.0)))])));
    for _ in 0..DEPTH {
        i = arr(vec![i]);
    }
    assert_eq!(walk(&i), json!([[[[{"$": "obj", "class": "Foo", "v": {"$more": 1}}]]]]));
}

#[test]
fn cycles_are_marked_and_a_value_seen_twice_is_written_twice() {
    let a = arr(vec![n(1.0)]);
    if let M::Arr(items) = &*a {
        items.borrow_mut().push(a.clone());
    }
    assert_eq!(walk(&a), json!([1, {"$": "cycle"}]));

    let o = obj(vec![("name", s("o"))]);
    let holder = obj(vec![("o", o.clone())]);
    if let M::Obj(_, props) = &*o {
        props.borrow_mut().push(("up".into(), P::V(holder.clone())));
        props.borrow_mut().push(("me".into(), P::V(o.clone())));
    }
    assert_eq!(walk(&holder), json!({"o": {"name": "o", "up": {"$": "cycle"}, "me": {"$": "cycle"}}}));

    // Shared, not circular: both written.
    let shared = obj(vec![("x", n(1.0))]);
    assert_eq!(walk(&arr(vec![shared.clone(), shared])), json!([{"x": 1}, {"x": 1}]));
    // Break the test's Rc cycles.
    if let M::Arr(items) = &*a {
        items.borrow_mut().clear();
    }
    if let M::Obj(_, props) = &*o {
        props.borrow_mut().clear();
    }
}

#[test]
fn getters_that_throw_and_objects_that_cannot_be_listed() {
    let x = v(M::Obj(
        None,
        RefCell::new(vec![
            ("ok".into(), P::V(n(1.0))),
            ("bad".into(), P::Throws),
            ("after".into(), P::V(n(2.0))),
        ]),
    ));
    assert_eq!(walk(&x), json!({"ok": 1, "bad": {"$": "threw"}, "after": 2}));
    assert_eq!(walk(&arr(vec![v(M::Hostile), n(3.0)])), json!([{"$": "threw"}, 3]));
}

#[test]
fn long_strings_are_cut_on_a_char_boundary_and_say_their_length() {
    // Short: as is.
    assert_eq!(walk(&s("héllo")), json!("héllo"));
    // Long ASCII: JS keeps STRING units, the head is STRING bytes.
    let out = walk(&s(&"a".repeat(100_000)));
    assert_eq!(out["$"], "str");
    assert_eq!(out["len"], 100_000);
    assert_eq!(out["head"].as_str().unwrap().len(), STRING);
    // Two-byte chars: under STRING units but over STRING bytes; cut between chars.
    let out = walk(&s(&"é".repeat(5_000)));
    assert_eq!(out["len"], 5_000);
    assert_eq!(out["head"].as_str().unwrap(), "é".repeat(STRING / 2));
    // Astral chars: JS's cut splits a pair (it arrives as U+FFFD); the Writer's cut drops it.
    let out = walk(&s(&["x", &"😀".repeat(STRING)].concat()));
    assert_eq!(out["len"], 1 + 2 * STRING);
    let head = out["head"].as_str().unwrap();
    assert!(head.len() <= STRING && !head.contains('\u{fffd}'), "{} bytes", head.len());
    assert_eq!(head, ["x", &"😀".repeat((STRING - 1) / 4)].concat());
}

#[test]
fn the_events_byte_budget_cuts_the_rest_and_is_never_exceeded() {
    // 100 strings of 8 KiB: about four fit, then {"$":"cut"} and nothing more.
    let many = arr((0..ITEMS).map(|_| s(&"z".repeat(STRING))).collect());
    let out = walk(&many);
    let items = out.as_array().unwrap();
    assert!((2..ITEMS / 4).contains(&items.len()), "{} items", items.len());
    assert_eq!(items.last().unwrap(), &json!({"$": "cut"}));
    assert!(items[..items.len() - 1].iter().all(|x| x.as_str().is_some_and(|t| t.len() == STRING)));

    // Control characters escape to six bytes each: still within the budget.
    let ctl = arr((0..ITEMS).map(|_| s(&"\u{1}".repeat(STRING))).collect());
    assert_eq!(walk(&ctl).as_array().unwrap().last().unwrap(), &json!({"$": "cut"}));

    // 100^4 numbers, were nothing cut: the walk stops at the budget, quickly.
    let mut x = arr((0..ITEMS).map(|i| n(i as f64 + 0.5)).collect());
    for _ in 0..3 {
        x = arr((0..ITEMS).map(|_| x.clone()).collect());
    }
    let text = event(&x);
    assert!(text.len() > EVENT / 2, "{} bytes", text.len());
    assert!(text.contains(r#"{"$":"cut"}"#));

    // In an object: the value that does not fit is the cut, and no more keys follow.
    let names: Vec<String> = (0..KEYS).map(|i| ["k", &i.to_string()].concat()).collect();
    let big = s(&"v".repeat(STRING - 100));
    let wide = obj(names.iter().map(|k| (k.as_str(), big.clone())).collect());
    let out = walk(&wide);
    let o = out.as_object().unwrap();
    assert!(o.len() < 10, "{} keys", o.len());
    assert_eq!(o[&names[o.len() - 1]], json!({"$": "cut"}));
}

#[test]
fn long_keys_are_cut_to_their_cap() {
    let long = ["k", &"é".repeat(KEY * 4)].concat();
    let out = walk(&obj(vec![(long.as_str(), n(1.0))]));
    let (key, value) = out.as_object().unwrap().iter().next().unwrap();
    assert_eq!(key.len(), KEY - 1, "cut on a char boundary: é is two bytes");
    assert!(long.starts_with(key.as_str()));
    assert_eq!(value, &json!(1));
}
