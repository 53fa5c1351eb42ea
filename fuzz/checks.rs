//! What the fuzz targets check, one function per target. Shared by the fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, nightly) and by `relay/tests/fuzz_regressions.rs`, which runs
//! every saved input under `fuzz/regressions/` through the same checks on stable.
//!
//! Beyond "never panics": what the relay itself writes from a decoded input must decode again
//! to the same thing, because that is what the other side will read.
#![allow(dead_code)] // each fuzz target uses one of these

use serde_json::Value;
use tether_protocol::Kind;
use tether_protocol::envelope::{Envelope, OutEnvelope};
use tether_protocol::msg::{Call, CallCb, Eval, EvalCb, Hello, Inspect, Post, PostCb, Storage, StorageCb};
use tether_relay::alarm;
use tether_relay::cs::xmlrpc::{self, Response};

/// A WebSocket text frame from a client: parsed the way the relay does (the envelope, then
/// the body by its kind); a frame the relay would forward is written back out the way the
/// relay writes it and must read back the same, body byte for byte.
pub fn envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(env) = Envelope::parse(text) else { return };
    let Some(kind) = Kind::parse(&env.kind) else { return }; // unknown_type: nothing forwarded
    if let Some(raw) = env.msg {
        match kind {
            Kind::Hello => drop(serde_json::from_str::<Hello>(raw.get())),
            Kind::Post => drop(serde_json::from_str::<Post>(raw.get())),
            Kind::PostCb => drop(serde_json::from_str::<PostCb>(raw.get())),
            Kind::Call => drop(serde_json::from_str::<Call>(raw.get())),
            Kind::CallCb => drop(serde_json::from_str::<CallCb>(raw.get())),
            Kind::Inspect => drop(serde_json::from_str::<Inspect>(raw.get())),
            Kind::Storage => drop(serde_json::from_str::<Storage>(raw.get())),
            Kind::StorageCb => drop(serde_json::from_str::<StorageCb>(raw.get())),
            Kind::Eval => drop(serde_json::from_str::<Eval>(raw.get())),
            Kind::EvalCb => drop(serde_json::from_str::<EvalCb>(raw.get())),
            _ => {}
        }
    }
    let out =
        OutEnvelope { kind, id: env.id.as_deref(), to: env.to.as_deref(), from: Some("m-1"), msg: env.msg }
            .to_text();
    let back = Envelope::parse(&out).expect("a frame the relay writes parses");
    assert_eq!(back.kind, env.kind);
    assert_eq!(back.id, env.id);
    assert_eq!(back.to, env.to);
    assert_eq!(back.from.as_deref(), Some("m-1"));
    assert_eq!(back.msg.map(|m| m.get()), env.msg.map(|m| m.get()), "body forwarded byte for byte");
}

/// Bytes from a legacy server or a browser's raw XML: decoded as a call and as a response, and
/// whatever decodes is encoded again (the gateway's other direction) and decodes the same.
pub fn xmlrpc(data: &[u8]) {
    if let Ok((method, params)) = xmlrpc::decode_call(data)
        && let Ok(xml) = xmlrpc::encode_call(&method, &params)
    {
        let again = xmlrpc::decode_call(xml.as_bytes()).expect("re-decodes its own call");
        assert_eq!(again, (method, params), "call changed on a round trip: {xml}");
    }
    match xmlrpc::decode_response(data) {
        Ok(Response::Ok(value)) => {
            if let Ok(xml) = xmlrpc::encode_response(&value) {
                let again = xmlrpc::decode_response(xml.as_bytes()).expect("re-decodes its own response");
                assert_eq!(again, Response::Ok(value), "response changed on a round trip: {xml}");
            }
        }
        Ok(Response::Fault { code, message }) => {
            if let Some(n) = code.as_i64() {
                let xml = xmlrpc::encode_fault(n, &message);
                let again = xmlrpc::decode_response(xml.as_bytes()).expect("re-decodes its own fault");
                assert_eq!(again, Response::Fault { code, message }, "fault changed: {xml}");
            }
        }
        Err(_) => {}
    }
}

/// Any UDP datagram: always some JSON for the alarm's `data`, which serializes, and reads
/// back the same. Well-formed XML becomes an object with one key, its root element.
pub fn alarm(data: &[u8]) {
    let value = alarm::decode(data);
    let text = serde_json::to_string(&value).expect("alarm data serializes");
    let back: Value = serde_json::from_str(&text).expect("alarm data reads back");
    assert_eq!(back, value, "alarm data changed on a round trip: {text}");
    if let Ok(s) = std::str::from_utf8(data)
        && let Some(v) = alarm::xml_to_json(s)
    {
        assert!(v.as_object().is_some_and(|o| o.len() == 1), "XML maps to {{root: …}}: {v}");
    }
}
