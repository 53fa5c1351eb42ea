//! The envelope: the frame around every message.

use crate::error::ErrorCode;
use crate::kind::Kind;
use crate::msg::ErrorMsg;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// An incoming frame, parsed without copying its body.
///
/// `msg` stays raw JSON: the relay forwards most bodies untouched, and parses only the ones it
/// must look into (`hello`, `post`, `call` and the replies). Unknown envelope fields are
/// ignored so that newer clients can add some.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// The message kind, as sent; see [`Kind::parse`].
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    /// Correlates a request with its reply and an `error` with the frame that caused it.
    #[serde(default, borrow)]
    pub id: Option<std::borrow::Cow<'a, str>>,
    /// A member id to deliver to; absent means "every device" for requests.
    #[serde(default, borrow)]
    pub to: Option<std::borrow::Cow<'a, str>>,
    /// Ignored on input: the relay always sets `from` itself.
    #[serde(default, borrow)]
    pub from: Option<std::borrow::Cow<'a, str>>,
    /// The body, kept as raw JSON.
    #[serde(default, borrow)]
    pub msg: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a str) -> Result<Envelope<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// An outgoing frame. `M` is the body: a typed message, or a `&RawValue` being forwarded.
#[derive(Debug, Serialize)]
pub struct OutEnvelope<'a, M: Serialize> {
    /// The message kind.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// See [`Envelope::id`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// See [`Envelope::to`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
    /// The sender's member id, set by the relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<&'a str>,
    /// The body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<M>,
}

impl<'a, M: Serialize> OutEnvelope<'a, M> {
    /// A frame with just a kind and a body.
    pub fn new(kind: Kind, msg: M) -> Self {
        OutEnvelope { kind, id: None, to: None, from: None, msg: Some(msg) }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: Option<&'a str>) -> Self {
        self.id = id;
        self
    }

    /// Serializes to the text of one WebSocket frame.
    pub fn to_text(&self) -> String {
        // Serializing a struct of strings and serde-derived bodies cannot fail.
        serde_json::to_string(self).expect("envelope serializes")
    }
}

/// The text of an `error` frame.
pub fn error_frame(id: Option<&str>, code: ErrorCode, message: &str) -> String {
    error_frame_about(id, code, message, None)
}

/// The text of an `error` frame about request `id` that concerns one of its devices,
/// `device` (`msg.device`): that device left before replying, or could not be reached.
pub fn error_frame_about(id: Option<&str>, code: ErrorCode, message: &str, device: Option<&str>) -> String {
    let msg = ErrorMsg { code, message: message.into(), device: device.map(str::to_owned) };
    OutEnvelope::new(Kind::Error, msg).with_id(id).to_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_envelope_and_keeps_msg_raw() {
        let text =
            r#"{"type":"post","id":"7","to":"m-1","from":"forged","msg":{"url":"https://x/y","n":1.50}}"#;
        let env = Envelope::parse(text).unwrap();
        assert_eq!(env.kind, "post");
        assert_eq!(env.id.as_deref(), Some("7"));
        assert_eq!(env.to.as_deref(), Some("m-1"));
        // The raw body is byte-for-byte what was sent, so forwarding never alters numbers.
        assert_eq!(env.msg.unwrap().get(), r#"{"url":"https://x/y","n":1.50}"#);
    }

    #[test]
    fn escaped_strings_still_parse() {
        let env = Envelope::parse(r#"{"type":"p\u006fst","id":"a\"b"}"#).unwrap();
        assert_eq!(env.kind, "post");
        assert_eq!(env.id.as_deref(), Some("a\"b"));
        assert!(env.msg.is_none());
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        for bad in ["", "null", "[]", "{}", r#"{"type":5}"#, r#"{"type":"post""#, "{\"type\":\"post\"} x"] {
            assert!(Envelope::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let env = Envelope::parse(r#"{"type":"hello","v":2,"msg":{}}"#).unwrap();
        assert_eq!(env.kind, "hello");
    }

    #[test]
    fn error_frames_echo_the_id() {
        let text = error_frame(Some("x1"), ErrorCode::NoTarget, "no device in room");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["id"], "x1");
        assert_eq!(v["msg"]["code"], "no_target");
        assert_eq!(v["msg"]["message"], "no device in room");
        assert!(v.get("to").is_none());
        assert!(v["msg"].get("device").is_none(), "said only about one device of a request");
        let text = error_frame_about(Some("x1"), ErrorCode::NoTarget, "d-1 left", Some("d-1"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!((v["id"].as_str(), v["msg"]["device"].as_str()), (Some("x1"), Some("d-1")));
    }
}
