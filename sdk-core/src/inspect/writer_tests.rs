//! The Writer alone: numbers, cuts, the caps' markers, the stub.

use super::*;

fn js(x: f64) -> String {
    x.to_string()
}

fn one(f: impl FnOnce(&mut Writer)) -> String {
    let mut w = Writer::event("t", 0, 1);
    w.field("v");
    f(&mut w);
    let text = w.finish().text;
    let prefix = r#"{"k":"t","at":0,"n":1,"v":"#;
    assert!(text.starts_with(prefix), "{text}");
    text[prefix.len()..text.len() - 1].to_owned()
}

#[test]
fn numbers_whole_ones_here_others_as_js_says() {
    assert_eq!(one(|w| w.number(0.0, &js)), "0");
    assert_eq!(one(|w| w.number(-42.0, &js)), "-42");
    assert_eq!(one(|w| w.number(9_007_199_254_740_991.0, &js)), "9007199254740991");
    // No float formatting here: JS's own text is asked for, and used when it is JSON.
    assert_eq!(one(|w| w.number(0.1, &|_| "0.1".into())), "0.1");
    assert_eq!(one(|w| w.number(1e300, &|_| "1e+300".into())), "1e+300");
    assert_eq!(one(|w| w.number(2.5, &|_| "garbage".into())), r#"{"$":"num","v":"garbage"}"#);
    assert_eq!(one(|w| w.number(-0.0, &js)), r#"{"$":"num","v":"-0"}"#);
    assert_eq!(one(|w| w.number(f64::NAN, &js)), r#"{"$":"num","v":"NaN"}"#);
}

#[test]
fn what_js_writes_for_numbers_is_recognised() {
    for ok in ["0", "-1", "1.5", "1e21", "1e+21", "-2.5e-7", "123456789", "5e-324"] {
        assert!(is_json_number(ok), "{ok}");
    }
    for bad in ["", "-", "1e", "NaN", "Infinity", "1_0", "0x1", "1 ", "\"1", &"1".repeat(33)] {
        assert!(!is_json_number(bad), "{bad}");
    }
}

#[test]
fn utf16_lengths() {
    for s in ["", "abc", "héllo", "日本", "😀x😀", "\u{10ffff}"] {
        assert_eq!(utf16_len(s), s.encode_utf16().count(), "{s}");
    }
}

#[test]
fn cut_keeps_whole_chars() {
    assert_eq!(cut("héllo", 2), "h");
    assert_eq!(cut("héllo", 3), "hé");
    assert_eq!(cut("😀", 3), "");
    assert_eq!(cut("abc", 10), "abc");
}

#[test]
fn a_texts_length_is_asked_only_when_its_head_may_be_cut() {
    let t = Text::new("short".into(), || panic!("not asked"));
    assert_eq!(t.len, 5);
    let t = Text::new("a".repeat(STRING), || 50_000);
    assert_eq!(t.len, 50_000);
}

#[test]
fn marks_and_kinds() {
    assert_eq!(one(|w| w.mark("undefined")), r#"{"$":"undefined"}"#);
    assert_eq!(one(|w| w.described(Kind::Bin, "image/png", 3)), r#"{"$":"bin","type":"image/png","len":3}"#);
    assert_eq!(one(|w| w.described(Kind::Array, "x", 0)), r#"{"$":"undefined"}"#);
    assert_eq!(Kind::from_code(0), Kind::Undefined);
    assert_eq!(Kind::from_code(19), Kind::Bin);
    assert_eq!(Kind::from_code(999), Kind::Object);
}

#[test]
fn an_event_that_cannot_fit_is_its_stub() {
    // The walker's fields are checked; an event's own fields past the budget still end
    // within EVENT (the stub at worst).
    let mut w = Writer::event("console", 5, 9);
    for _ in 0..20 {
        w.field("f");
        w.string(&Text::from("\u{1}".repeat(STRING).as_str()));
    }
    let d = w.finish();
    assert!(d.text.len() <= EVENT);
    serde_json::from_str::<serde_json::Value>(&d.text).unwrap();
    assert_eq!(d.stub(), r#"{"k":"console","at":5,"n":9,"$":"cut"}"#);
}

#[test]
fn a_key_that_does_not_fit_the_budget_counts_the_rest() {
    let mut w = Writer::event("t", 0, 1);
    w.field("v");
    assert!(w.open_obj(5));
    assert!(w.key(0, 5, "a"));
    // Values that leave about 100 bytes below the budget (EVENT - SLACK = 32,512): the head
    // and `"a":` take 30, each `"x…"` its length + 2, each `,"b":` 5.
    w.string(&Text::from("x".repeat(STRING).as_str()));
    for i in 1..4 {
        assert!(w.key(i, 5, "b"));
        w.string(&Text::from("x".repeat(STRING - 137).as_str()));
    }
    assert!(!w.is_full());
    assert!(!w.key(4, 5, &"k".repeat(KEY)), "the key does not fit");
    assert!(w.is_full());
    w.close_obj();
    let text = w.finish().text;
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["v"]["$more"], 1, "{text}");
}
