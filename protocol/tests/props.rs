//! Property tests: any text a client can send is parsed or refused, never a panic, and every
//! well-formed envelope reads back what was written. `PROPTEST_CASES=N` runs more cases.

use proptest::prelude::*;
use serde_json::{Value, json};
use tether_protocol::Kind;
use tether_protocol::envelope::Envelope;
use tether_protocol::msg::{Call, CallCb, Eval, EvalCb, Hello, Inspect, Post, PostCb, Storage, StorageCb};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z$@_]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Parses `text` the way the relay does: the envelope, then the body by its kind.
fn read(text: &str) {
    let Ok(env) = Envelope::parse(text) else { return };
    let Some(raw) = env.msg else { return };
    match Kind::parse(&env.kind) {
        Some(Kind::Hello) => drop(serde_json::from_str::<Hello>(raw.get())),
        Some(Kind::Post) => drop(serde_json::from_str::<Post>(raw.get())),
        Some(Kind::PostCb) => drop(serde_json::from_str::<PostCb>(raw.get())),
        Some(Kind::Call) => drop(serde_json::from_str::<Call>(raw.get())),
        Some(Kind::CallCb) => drop(serde_json::from_str::<CallCb>(raw.get())),
        Some(Kind::Inspect) => drop(serde_json::from_str::<Inspect>(raw.get())),
        Some(Kind::Storage) => drop(serde_json::from_str::<Storage>(raw.get())),
        Some(Kind::StorageCb) => drop(serde_json::from_str::<StorageCb>(raw.get())),
        Some(Kind::Eval) => drop(serde_json::from_str::<Eval>(raw.get())),
        Some(Kind::EvalCb) => drop(serde_json::from_str::<EvalCb>(raw.get())),
        _ => {}
    }
}

proptest! {
    #[test]
    fn any_text_is_parsed_or_refused(text in ".{0,256}") {
        read(&text);
    }

    #[test]
    fn any_json_is_parsed_or_refused(v in any_json()) {
        read(&v.to_string());
    }

    #[test]
    fn envelopes_of_every_kind_with_any_body_are_read(
        kind in prop::sample::select(Kind::ALL.to_vec()),
        id in proptest::option::of(".{0,16}"),
        to in proptest::option::of("[a-z0-9-]{0,12}"),
        body in any_json(),
        noise in any_json(),
    ) {
        let mut frame = json!({"type": kind.as_str(), "msg": body, "x-future-field": noise});
        if let Some(id) = &id { frame["id"] = json!(id); }
        if let Some(to) = &to { frame["to"] = json!(to); }
        let text = frame.to_string();
        let env = Envelope::parse(&text).expect("a well-formed envelope parses");
        prop_assert_eq!(Kind::parse(&env.kind), Some(kind));
        prop_assert_eq!(env.id.as_deref(), id.as_deref());
        prop_assert_eq!(env.to.as_deref(), to.as_deref());
        // The body is kept as sent, byte for byte (the relay forwards it untouched).
        // (`"msg": null` reads as no body.)
        prop_assert_eq!(env.msg.map(|m| m.get().to_owned()), (!body.is_null()).then(|| body.to_string()));
        read(&text);
    }

    #[test]
    fn truncated_and_spliced_frames_are_parsed_or_refused(v in any_json(), cut in 0usize..512, at in 0usize..512) {
        let text = json!({"type": "post", "id": "1", "msg": v}).to_string();
        let cut = cut.min(text.len());
        let mut t = String::from_utf8_lossy(&text.as_bytes()[..cut]).into_owned();
        let at = at.min(t.len());
        if t.is_char_boundary(at) { t.insert_str(at, "\"}]{,:"); }
        read(&t);
    }
}
