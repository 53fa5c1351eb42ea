use super::*;
use serde_json::json;

fn ok(xml: &str) -> Value {
    match decode_response(xml.as_bytes()) {
        Ok(Response::Ok(v)) => v,
        other => panic!("{xml}: {other:?}"),
    }
}

fn resp(value_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><methodResponse><params><param><value>{value_xml}</value></param></params></methodResponse>"
    )
}

#[test]
fn json_round_trips_through_every_type() {
    let v = json!({
        "int": 42, "neg": -7, "big": 5_000_000_000i64, "min": i64::MIN, "double": 1.5, "tiny": 1e-300,
        "whole_double": 2.0, "string": "héllo <&> \"q\" 'a'\r\n\ttab", "empty": "", "t": true, "f": false,
        "nil": null, "array": [1, "two", [3.25, null], {}], "struct": {"nested": {"deep": [true]}},
        "b64": {"$base64": "aGVsbG8="}, "when": {"$datetime": "20261121T10:00:00"}, "unicode": "新闻 😀",
    });
    let call = encode_call("types.echo", std::slice::from_ref(&v)).unwrap();
    let (method, params) = decode_call(call.as_bytes()).unwrap();
    assert_eq!(method, "types.echo");
    assert_eq!(params, vec![v.clone()]);
    let back = ok(&encode_response(&v).unwrap());
    assert_eq!(back, v);
}

#[test]
fn integers_pick_int_or_i8_and_refuse_what_does_not_fit() {
    let x = encode_response(&json!([2147483647, 2147483648i64, -2147483648i64, -2147483649i64])).unwrap();
    assert!(x.contains("<int>2147483647</int>") && x.contains("<i8>2147483648</i8>"), "{x}");
    assert!(x.contains("<int>-2147483648</int>") && x.contains("<i8>-2147483649</i8>"), "{x}");
    assert!(matches!(encode_response(&json!(u64::MAX)), Err(CodecError::Encode(_))));
    assert_eq!(ok(&resp("<i4> 12 </i4>")), json!(12));
    assert_eq!(ok(&resp("<i8>-9223372036854775808</i8>")), json!(i64::MIN));
    assert!(decode_response(resp("<int>1.5</int>").as_bytes()).is_err());
    assert!(decode_response(resp("<int>99999999999999999999</int>").as_bytes()).is_err());
}

#[test]
fn an_untyped_value_is_a_string_with_its_whitespace() {
    assert_eq!(ok(&resp("  two  spaces \n")), json!("  two  spaces \n"));
    assert_eq!(ok(&resp("")), json!(""));
    assert_eq!(ok("<methodResponse><params><param><value/></param></params></methodResponse>"), json!(""));
    // Whitespace between elements is not part of any value.
    let spaced = "<methodResponse>\n  <params>\n    <param>\n      <value>\n        <int>1</int>\n      </value>\n    </param>\n  </params>\n</methodResponse>\n";
    assert_eq!(ok(spaced), json!(1));
    assert_eq!(ok(&resp("<string>  kept  </string>")), json!("  kept  "));
}

#[test]
fn cdata_and_references_are_decoded_and_nothing_else_is_expanded() {
    assert_eq!(ok(&resp("<string><![CDATA[<b>&amp;</b>]]></string>")), json!("<b>&amp;</b>"));
    assert_eq!(ok(&resp("<string>&lt;&gt;&amp;&quot;&apos;&#65;&#x4e2d;</string>")), json!("<>&\"'A中"));
    assert_eq!(ok(&resp("a&amp;b")), json!("a&b"));
    for bad in [
        "<!DOCTYPE r [<!ENTITY x \"boom\">]><methodResponse><params><param><value>&x;</value></param></params></methodResponse>",
        "<!DOCTYPE methodResponse SYSTEM \"file:///etc/passwd\"><methodResponse/>",
    ] {
        assert!(matches!(decode_response(bad.as_bytes()), Err(CodecError::Dtd(_))), "{bad}");
    }
    let unknown = decode_response(resp("<string>&nbsp;</string>").as_bytes()).unwrap_err();
    assert!(matches!(unknown, CodecError::Dtd(ref m) if m.contains("&nbsp;")), "{unknown}");
}

#[test]
fn faults_become_code_and_message() {
    let f = encode_fault(4, "Too many parameters");
    assert_eq!(
        decode_response(f.as_bytes()).unwrap(),
        Response::Fault { code: json!(4), message: "Too many parameters".into() }
    );
}

#[test]
fn empty_forms_and_comments() {
    assert_eq!(ok(&resp("<array><data/></array>")), json!([]));
    assert_eq!(ok(&resp("<array><data></data></array>")), json!([]));
    assert_eq!(ok(&resp("<struct/>")), json!({}));
    assert_eq!(ok(&resp("<nil/>")), json!(null));
    assert_eq!(ok(&resp("<string/>")), json!(""));
    assert_eq!(ok(&resp("<!-- c --><boolean>1</boolean>")), json!(true));
    assert_eq!(ok("<methodResponse><params/></methodResponse>"), json!(null));
    let (m, p) = decode_call(b"<methodCall><methodName>ping</methodName></methodCall>").unwrap();
    assert_eq!((m.as_str(), p.len()), ("ping", 0));
}

#[test]
fn malformed_or_foreign_documents_are_errors_not_panics() {
    for bad in [
        "",
        "not xml",
        "<methodResponse>",
        "<methodResponse><params><param><value><int>1</int></value></param></params>",
        "<methodResponse><params><param><value><int>1</value></param></params></methodResponse>",
        "<methodResponse><oops/></methodResponse>",
        &resp("<boolean>yes</boolean>"),
        &resp("<double>NaN</double>"),
        &resp("<double>1e999</double>"),
        &resp("<unknownType>1</unknownType>"),
        &resp("text<int>1</int>"),
        &resp("<struct><member><value><int>1</int></value></member></struct>"),
        "<methodResponse><params><param><value>1</value></param></params></methodResponse><extra/>",
    ] {
        assert!(decode_response(bad.as_bytes()).is_err(), "{bad:?} should not decode");
    }
    assert!(decode_response(&[0xff, 0xfe, 0x00]).is_err());
}

#[test]
fn depth_and_size_are_limited() {
    let deep =
        "<array><data><value>".repeat(MAX_DEPTH + 2) + &"</value></data></array>".repeat(MAX_DEPTH + 2);
    assert!(matches!(decode_response(resp(&deep).as_bytes()), Err(CodecError::Limit(_))));
    let mut v = json!(1);
    for _ in 0..MAX_DEPTH + 2 {
        v = json!([v]);
    }
    assert!(matches!(encode_response(&v), Err(CodecError::Limit(_))));
    let huge = vec![b' '; MAX_INPUT + 1];
    assert!(matches!(decode_response(&huge), Err(CodecError::Limit(_))));
}

#[test]
fn declared_encodings() {
    let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodResponse><params><param><value>caf\xe9</value></param></params></methodResponse>";
    assert_eq!(decode_response(latin1).unwrap(), Response::Ok(json!("café")));
    let utf8 = "<?xml version='1.0' encoding='UTF-8'?><methodResponse><params><param><value>café</value></param></params></methodResponse>";
    assert_eq!(decode_response(utf8.as_bytes()).unwrap(), Response::Ok(json!("café")));
    let gbk = b"<?xml version=\"1.0\" encoding=\"GBK\"?><methodResponse/>";
    let err = decode_response(gbk).unwrap_err();
    assert!(matches!(err, CodecError::Encoding(ref e) if e == "gbk"), "{err}");
    assert!(err.to_string().contains("UTF-8"));
}

#[test]
fn integers_beyond_64_bits_are_refused_not_turned_into_doubles() {
    // serde_json reads these as the nearest double: sent on, they would be other numbers.
    for body in [
        r#"{"method": "m", "params": [123456789012345678901234567890]}"#,
        r#"{"method": "m", "params": [-9223372036854775809]}"#,
        r#"{"method": "m", "params": [18446744073709551615]}"#,
        r#"{"method": "m", "params": [{"deep": [1, {"n": 9223372036854775808}]}]}"#,
    ] {
        let err = call_from_json(body.as_bytes()).unwrap_err();
        assert!(matches!(err, CodecError::Encode(ref m) if m.contains("64-bit")), "{body}: {err}");
    }
    // What fits, fractions, exponents and digits inside strings are carried as they are.
    let ok = r#"{"method": "m", "params": [9223372036854775807, -9223372036854775808, 1e30, 2.5, -0,
        "123456789012345678901234567890", {"k\"1e99999999999999999999": 1}]}"#;
    let (_, params) = decode_call(call_from_json(ok.as_bytes()).unwrap().as_bytes()).unwrap();
    assert_eq!(params[0], json!(i64::MAX));
    assert_eq!(params[1], json!(i64::MIN));
    assert_eq!(params[2], json!(1e30));
    assert_eq!(params[5], json!("123456789012345678901234567890"));
}

#[test]
fn request_bodies_of_the_wrong_shape_are_request_errors() {
    for body in
        ["{not json", r#"{"params": []}"#, r#"{"method": ""}"#, r#"{"method": "m", "params": {"a": 1}}"#]
    {
        assert!(matches!(call_from_json(body.as_bytes()), Err(CodecError::Request(_))), "{body}");
    }
    let xml = call_from_json(br#"{"method": "ping"}"#).unwrap();
    assert_eq!(decode_call(xml.as_bytes()).unwrap(), ("ping".into(), vec![]));
}

#[test]
fn characters_xml_cannot_carry_are_refused_wherever_they_are() {
    let bad = ['\u{0}', '\u{1}', '\u{8}', '\u{b}', '\u{c}', '\u{e}', '\u{1f}', '\u{fffe}', '\u{ffff}'];
    for c in bad {
        let s = format!("a{c}b");
        for (what, result) in [
            ("method", encode_call(&s, &[])),
            ("string", encode_call("m", &[json!(s)])),
            ("key", encode_call("m", &[Value::Object(Map::from_iter([(s.clone(), json!(1))]))])),
            ("nested", encode_call("m", &[json!([{"k": [s]}])])),
            ("base64", encode_call("m", &[json!({"$base64": s})])),
        ] {
            let err = result.expect_err(&format!("{what} with U+{:04X}", u32::from(c)));
            assert!(err.to_string().contains(&format!("U+{:04X}", u32::from(c))), "{what}: {err}");
        }
    }
    // Tab, newline, carriage return and everything from U+0020 on (but those two) are fine.
    let fine = "\t\n\r \u{7f}\u{fffd}\u{10000}😀";
    let (_, params) = decode_call(encode_call("m", &[json!(fine)]).unwrap().as_bytes()).unwrap();
    assert_eq!(params, vec![json!(fine)]);
    // And a fault this side writes drops them rather than writing what cannot be read.
    assert_eq!(
        decode_response(encode_fault(1, "a\u{0}b").as_bytes()).unwrap(),
        Response::Fault { code: json!(1), message: "ab".into() }
    );
}

#[test]
fn decoding_refuses_characters_xml_forbids_raw_or_referenced() {
    for bad in
        [resp("<string>&#0;</string>"), resp("<string>&#x1;</string>"), resp("a\u{1}b"), resp("&#xFFFE;")]
    {
        assert!(decode_response(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert_eq!(ok(&resp("&#9;&#10;&#13;")), json!("\t\n\r"));
}

#[test]
fn raw_xml_with_a_doctype_or_an_entity_is_refused_before_it_is_passed_on() {
    let call = "<methodCall><methodName>m</methodName><params/></methodCall>";
    for bad in [
        format!("<!DOCTYPE methodCall SYSTEM \"http://evil.example/x.dtd\">{call}"),
        format!(
            "<?xml version=\"1.0\"?>\n<!doctype methodCall [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{call}"
        ),
        format!("<?xml version=\"1.0\"?><!-- hi --><!DocType m>{call}"),
        format!("<! DOCTYPE m>{call}"),
        format!("<!ENTITY x \"y\">{call}"),
        "<methodCall><methodName>m</methodName><!DOCTYPE x></methodCall>".into(),
        format!("{call}<!entity x 'y'>"),
    ] {
        assert!(matches!(check_passthrough(bad.as_bytes()), Err(CodecError::Dtd(_))), "{bad}");
    }
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(call.encode_utf16().flat_map(u16::to_le_bytes));
    assert!(check_passthrough(&utf16).is_err(), "UTF-16");
    assert!(check_passthrough(format!("{call}\0").as_bytes()).is_err(), "NUL");
    // The words inside CDATA, comments or text are not declarations.
    for fine in [
        call.to_owned(),
        "<methodCall><methodName>m</methodName><params><param><value><string><![CDATA[<!DOCTYPE html><p>]]></string></value></param></params></methodCall>".into(),
        format!("<!-- <!DOCTYPE x> -->{call}"),
        "<methodCall><methodName>m</methodName><params><param><value>&lt;!DOCTYPE x&gt;</value></param></params></methodCall>".into(),
    ] {
        assert_eq!(check_passthrough(fine.as_bytes()), Ok(()), "{fine}");
    }
}
