use super::*;
use crate::inspect::STRING;
use crate::inspect::model::{M, arr, n, s, v};
use serde_json::json;

fn parse(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ev(area: &str, args: Vec<crate::inspect::model::V>) -> Option<serde_json::Value> {
    event(&crate::inspect::model::Model, 5, 9, &s(area), &arr(args)).map(|d| parse(&d.text))
}

#[test]
fn the_sdks_own_keys() {
    assert!(own("tether.secret.room") && own("tether."));
    assert!(!own("tether") && !own("Tether.x") && !own("app.tether.x") && !own(""));
}

#[test]
fn the_pages_own_writes_are_events() {
    assert_eq!(
        ev("local", vec![s("set"), s("theme"), s("dark")]),
        Some(
            json!({"k": "storage", "at": 5, "n": 9, "area": "local", "op": "set", "key": "theme", "value": "dark"})
        )
    );
    assert_eq!(
        ev("session", vec![s("remove"), s("theme")]),
        Some(json!({"k": "storage", "at": 5, "n": 9, "area": "session", "op": "remove", "key": "theme"}))
    );
    assert_eq!(
        ev("local", vec![s("clear")]),
        Some(json!({"k": "storage", "at": 5, "n": 9, "area": "local", "op": "clear"}))
    );
    // A cookie write: its name, and the rest of the text as written.
    assert_eq!(
        ev("cookie", vec![s("set"), s("sid"), s("abc; path=/; max-age=0")]).unwrap()["value"],
        json!("abc; path=/; max-age=0")
    );
    // What is not a string is left out (the shim hands strings).
    assert_eq!(
        ev("local", vec![s("set"), n(1.0), v(M::Undef)]),
        Some(json!({"k": "storage", "at": 5, "n": 9, "area": "local", "op": "set"}))
    );
}

#[test]
fn a_long_value_is_cut_as_any_value_is() {
    let e = ev("local", vec![s("set"), s("big"), s(&"x".repeat(STRING + 1))]).unwrap();
    assert_eq!(e["value"]["$"], json!("str"));
    assert_eq!(e["value"]["len"], json!(STRING + 1));
    assert_eq!(e["value"]["head"].as_str().unwrap().len(), STRING);
}

#[test]
fn the_sdks_own_keys_are_never_recorded() {
    for area in ["local", "session", "cookie"] {
        assert_eq!(ev(area, vec![s("set"), s("tether.secret.room"), s("the-pc-secret")]), None);
        assert_eq!(ev(area, vec![s("remove"), s("tether.history")]), None);
    }
    // Even when the key is long: only its first units are looked at.
    assert_eq!(ev("local", vec![s("set"), s(&["tether.", &"k".repeat(100_000)].concat()), s("v")]), None);
    assert!(ev("local", vec![s("set"), s("tethe"), s("v")]).is_some());
}
