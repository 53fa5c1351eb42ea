//! Property tests of the decoders that read what outsiders send: the XML-RPC codec (a legacy
//! server's answers, a browser's raw XML) and alarm payloads (any UDP datagram). Whatever the
//! input, they answer or refuse, never panic; and JSON → XML-RPC → JSON gives back what went
//! in. `PROPTEST_CASES=N` runs more cases.

use proptest::prelude::*;
use serde_json::Value;
use tether_relay::alarm;
use tether_relay::cs::xmlrpc;

/// JSON as the gateway carries it: no `$`-keys (those are the `$base64`/`$datetime` forms).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_ ]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn json_to_xmlrpc_and_back_is_the_same(method in "[a-zA-Z][a-zA-Z0-9_.]{0,20}", params in prop::collection::vec(json_value(), 0..4)) {
        let xml = xmlrpc::encode_call(&method, &params).expect("encodes");
        let (m, p) = xmlrpc::decode_call(xml.as_bytes()).expect("decodes what it encoded");
        prop_assert_eq!(m, method);
        prop_assert_eq!(p, params);
        let answer = xmlrpc::encode_response(&Value::Array(vec![])).expect("encodes");
        prop_assert!(xmlrpc::decode_response(answer.as_bytes()).is_ok());
    }

    #[test]
    fn any_bytes_are_decoded_or_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = xmlrpc::decode_response(&bytes);
        let _ = xmlrpc::decode_call(&bytes);
        let _ = alarm::decode(&bytes);
    }

    #[test]
    fn damaged_xmlrpc_is_decoded_or_refused(
        params in prop::collection::vec(json_value(), 0..3),
        cut in 0usize..4096,
        at in 0usize..4096,
        junk in prop::sample::select(vec!["<", ">", "&", "&#x0;", "&amp", "<![CDATA[", "]]>", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "</value>", "<value>", "\u{0}", "\u{feff}", "&#99999999;"]),
    ) {
        let xml = xmlrpc::encode_call("m", &params).expect("encodes");
        let response = xmlrpc::encode_response(&Value::Array(params)).expect("encodes");
        for doc in [xml, response] {
            let mut d = doc.into_bytes();
            d.truncate(cut.max(1).min(d.len()));
            let at = at.min(d.len());
            d.splice(at..at, junk.bytes());
            let _ = xmlrpc::decode_call(&d);
            let _ = xmlrpc::decode_response(&d);
            let _ = alarm::decode(&d);
        }
    }

    #[test]
    fn any_text_alarm_is_decoded(text in "\\PC{0,300}") {
        let v = alarm::decode(text.as_bytes());
        prop_assert!(!v.is_null() || text.trim() == "null", "{}", v);
        let _ = alarm::xml_to_json(&text);
    }
}
