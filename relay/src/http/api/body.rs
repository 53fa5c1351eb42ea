//! The body of `POST /api/rooms/{room}/post` and `/call`: checked, and turned into the `msg`
//! a device receives plus the options that are the relay's (`to`, `all`, `timeoutMs`).
//!
//! The body is read as a JSON object whose values stay raw (byte for byte: a `body` with
//! `1.50` reaches the device as `1.50`), in the order given. The relay's own fields are taken
//! out; every other field goes to the device, as a PC's would, with `timeoutMs` set to the
//! timeout in force (so the device knows it too) and a call's `params` defaulting to `[]`.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::time::Duration;
use tether_protocol::Kind;

/// How long an API request waits for its answer when it does not say (`timeoutMs`): below the
/// 60 s read timeout common proxies (nginx) default to, so the relay's own `timeout` answer
/// reaches the client rather than the proxy's.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest `timeoutMs` taken (the protocol's, ten minutes): a proxy in front must wait as
/// long (docs/deploy.md).
pub const MAX_TIMEOUT_MS: u64 = tether_protocol::limits::MAX_REQUEST_TIMEOUT_MS;
/// What the envelope around `msg` adds at most (type, the id the device sees, from), bytes.
const ENVELOPE: usize = 400;

/// One API request, ready to dispatch.
#[derive(Debug)]
pub struct ApiRequest {
    /// What the device receives as `msg`.
    pub msg: Box<RawValue>,
    /// The URL or method (what history shows).
    pub target: String,
    /// One device, by member id.
    pub to: Option<String>,
    /// Every device's answer, not the first.
    pub all: bool,
    /// How long to wait.
    pub timeout: Duration,
}

/// What is wrong with a body.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not what the route takes (`400 bad_request`).
    Bad(String),
    /// The frame the device would get is over `--max-frame` (`413 too_large`).
    TooLarge {
        /// The request's size, bytes.
        size: usize,
        /// `--max-frame`.
        max: usize,
    },
}

fn bad(message: impl Into<String>) -> BodyError {
    BodyError::Bad(message.into())
}

/// The top-level fields of a JSON object, raw, in order; `None` when the text is not one.
pub fn raw_object(text: &str) -> Option<Vec<(String, Box<RawValue>)>> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de.deserialize_map(Fields).ok()?;
    de.end().ok()?;
    Some(fields)
}

/// Writes `fields` as one JSON object.
pub fn write_object<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

/// Reads a `post` or `call` body for a relay whose `--max-frame` is `max_frame`.
pub fn parse(kind: Kind, body: &[u8], max_frame: usize) -> Result<ApiRequest, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8 JSON"))?;
    let shape = match kind {
        Kind::Call => "{method, params?, to?, timeoutMs?, all?}",
        _ => "{url, method?, body?, headers?, to?, timeoutMs?, all?}",
    };
    let fields = raw_object(text).ok_or_else(|| bad(format!("the body must be a JSON object: {shape}")))?;
    for (i, (k, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(j, _)| j == k) {
            return Err(bad(format!("{k:?} is given twice")));
        }
    }
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.get());
    let present = |name: &str| field(name).filter(|v| *v != "null");
    let string = |name: &str| -> Result<Option<String>, BodyError> {
        present(name)
            .map(|v| serde_json::from_str::<String>(v).map_err(|_| bad(format!("{name} must be a string"))))
            .transpose()
    };
    let to = string("to")?;
    if to.as_deref() == Some("") {
        return Err(bad("to must be a member id (see GET …/devices), or left out for every device"));
    }
    let all = match present("all") {
        None => false,
        Some(v) => serde_json::from_str::<bool>(v).map_err(|_| bad("all must be true or false"))?,
    };
    let timeout_ms = match present("timeoutMs") {
        None => DEFAULT_TIMEOUT_MS,
        Some(v) => {
            serde_json::from_str::<u64>(v).ok().filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms)).ok_or_else(
                || bad(format!("timeoutMs must be a whole number of milliseconds, 1 to {MAX_TIMEOUT_MS}")),
            )?
        }
    };
    let target = match kind {
        Kind::Call => {
            let method =
                string("method")?.filter(|m| !m.is_empty()).ok_or_else(|| bad("a call needs method"))?;
            if present("params").is_some_and(|p| !p.starts_with('[')) {
                return Err(bad("params must be an array (the JS-API's arguments)"));
            }
            method
        }
        _ => {
            let url = string("url")?.filter(|u| !u.is_empty()).ok_or_else(|| bad("a post needs url"))?;
            string("method")?;
            if let Some(h) = present("headers") {
                serde_json::from_str::<std::collections::BTreeMap<String, String>>(h)
                    .map_err(|_| bad("headers must be an object of strings: {\"Name\": \"value\"}"))?;
            }
            url
        }
    };
    // The device's `msg`: every field but the relay's own, then the timeout in force.
    let timeout_text = timeout_ms.to_string();
    let mut msg: Vec<(&str, &str)> = fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "to" | "all" | "timeoutMs"))
        .map(|(k, v)| (k.as_str(), v.get()))
        .collect();
    if kind == Kind::Call && present("params").is_none() {
        msg.retain(|(k, _)| *k != "params");
        msg.push(("params", "[]"));
    }
    msg.push(("timeoutMs", &timeout_text));
    let msg = write_object(msg);
    if msg.len() + ENVELOPE > max_frame {
        return Err(BodyError::TooLarge { size: msg.len() + ENVELOPE, max: max_frame });
    }
    let msg = RawValue::from_string(msg).map_err(|e| bad(format!("not JSON: {e}")))?;
    Ok(ApiRequest { msg, target, to, all, timeout: Duration::from_millis(timeout_ms) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: Kind, body: &str) -> ApiRequest {
        parse(kind, body.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn refused(kind: Kind, body: &str) -> String {
        match parse(kind, body.as_bytes(), 1 << 20) {
            Err(BodyError::Bad(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_post_becomes_the_devices_msg_byte_for_byte_without_the_relays_own_fields() {
        let r = ok(
            Kind::Post,
            r#"{"url":"https://api.example/v1?q=1","to":"d-1","method":"PUT","body":{"n":1.50,"z":[]},"headers":{"X-A":"1"},"all":false,"extra":true}"#,
        );
        assert_eq!(r.target, "https://api.example/v1?q=1");
        assert_eq!((r.to.as_deref(), r.all, r.timeout), (Some("d-1"), false, Duration::from_millis(30_000)));
        assert_eq!(
            r.msg.get(),
            r#"{"url":"https://api.example/v1?q=1","method":"PUT","body":{"n":1.50,"z":[]},"headers":{"X-A":"1"},"extra":true,"timeoutMs":30000}"#
        );
    }

    #[test]
    fn a_call_gets_its_params_and_the_timeout_in_force() {
        let r = ok(Kind::Call, r#"{"method":"login","all":true,"timeoutMs":5000}"#);
        assert_eq!((r.target.as_str(), r.all, r.timeout), ("login", true, Duration::from_secs(5)));
        assert_eq!(r.msg.get(), r#"{"method":"login","params":[],"timeoutMs":5000}"#);
        let r = ok(Kind::Call, r#"{"method":"share","params":["qq",{"a":1}],"to":null}"#);
        assert_eq!(r.to, None);
        assert_eq!(r.msg.get(), r#"{"method":"share","params":["qq",{"a":1}],"timeoutMs":30000}"#);
    }

    #[test]
    fn every_mistake_is_named() {
        for (kind, body, says) in [
            (Kind::Post, "", "JSON object"),
            (Kind::Post, "[1]", "JSON object"),
            (Kind::Post, "{\"url\":\"x\"} trailing", "JSON object"),
            (Kind::Post, "{}", "needs url"),
            (Kind::Post, r#"{"url":""}"#, "needs url"),
            (Kind::Post, r#"{"url":3}"#, "url must be a string"),
            (Kind::Post, r#"{"url":"u","url":"v"}"#, "twice"),
            (Kind::Post, r#"{"url":"u","method":1}"#, "method must be a string"),
            (Kind::Post, r#"{"url":"u","headers":["a"]}"#, "headers must be"),
            (Kind::Post, r#"{"url":"u","headers":{"a":1}}"#, "headers must be"),
            (Kind::Post, r#"{"url":"u","to":""}"#, "member id"),
            (Kind::Post, r#"{"url":"u","to":7}"#, "to must be a string"),
            (Kind::Post, r#"{"url":"u","all":"yes"}"#, "all must be"),
            (Kind::Post, r#"{"url":"u","timeoutMs":0}"#, "timeoutMs"),
            (Kind::Post, r#"{"url":"u","timeoutMs":-5}"#, "timeoutMs"),
            (Kind::Post, r#"{"url":"u","timeoutMs":1.5}"#, "timeoutMs"),
            (Kind::Post, r#"{"url":"u","timeoutMs":"100"}"#, "timeoutMs"),
            (Kind::Post, r#"{"url":"u","timeoutMs":600001}"#, "timeoutMs"),
            (Kind::Call, r#"{"params":[]}"#, "needs method"),
            (Kind::Call, r#"{"method":"m","params":"x"}"#, "params must be an array"),
        ] {
            let m = refused(kind, body);
            assert!(m.contains(says), "{body}: {m}");
        }
        assert!(parse(Kind::Post, b"\xff", 1 << 20).is_err());
        assert_eq!(ok(Kind::Post, r#"{"url":"u","timeoutMs":600000}"#).timeout, Duration::from_secs(600));
    }

    #[test]
    fn a_request_whose_frame_would_pass_max_frame_is_too_large() {
        let body = format!(r#"{{"url":"u","body":"{}"}}"#, "x".repeat(2000));
        assert!(matches!(
            parse(Kind::Post, body.as_bytes(), 2048),
            Err(BodyError::TooLarge { max: 2048, .. })
        ));
        assert!(parse(Kind::Post, body.as_bytes(), 4096).is_ok());
    }

    #[test]
    fn raw_objects_keep_their_order_and_bytes() {
        let f = raw_object(r#" {"b": 1.50, "a": {"x" : [1]}} "#).unwrap();
        let got: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
        assert_eq!(got, [("b", "1.50"), ("a", r#"{"x" : [1]}"#)]);
        assert!(raw_object("null").is_none());
        assert_eq!(write_object([("a\"b", "1"), ("c", "[]")]), r#"{"a\"b":1,"c":[]}"#);
    }
}
