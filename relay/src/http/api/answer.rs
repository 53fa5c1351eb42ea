//! The HTTP API's answers: a device's reply in the SDK's reply shape, every device's with
//! `all`, and the status each error is answered with.
//!
//! A reply is `{id, type, device, deviceName, ms, …}` followed by the fields of the device's
//! `msg` as it sent them (`method`, `result`, `cookie`, `appInfo`, `error`, …), the SDK's
//! `Reply` plus the device's name. A device's own error (`error` in its reply: the native
//! request failed, the page's Guard refused) is such a reply, answered `200`: the relay did
//! its part and the device answered; the HTTP status says what became of the request on its
//! way, `error` says what the device made of it. An entry of `all` for a device that did not
//! answer is `{type: "error", device, deviceName, error: {code, message}}`.

use super::super::AppError;
use crate::room::collect::{Answer, Entry, Outcome};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_protocol::ErrorCode;

use super::body::{raw_object, write_object};

/// The status an error with this code is answered with (the codes are the protocol's, plus
/// `bad_request`, `forbidden` and `timeout`).
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_request" | "bad_frame" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        // No device in the room, a `to` naming nobody (or a PC), a device that left.
        "no_target" => StatusCode::NOT_FOUND,
        "room_full" => StatusCode::CONFLICT,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        // Could not reach the device now (reconnecting with a full buffer, not reading, on a
        // relay the bus cannot reach, the relay's budget or shutdown): try again.
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An error of the API, with the status its code takes.
pub fn error(code: &str, message: impl Into<String>) -> AppError {
    let code: &'static str = match code {
        "bad_request" => "bad_request",
        "forbidden" => "forbidden",
        "timeout" => "timeout",
        other => ErrorCode::parse(other).map_or("internal", ErrorCode::as_str),
    };
    AppError::new(status_of(code), code, message)
}

/// One entry as JSON text: a reply in the SDK's shape, or an error entry.
pub fn entry_json(id: &str, e: &Entry) -> String {
    let head = |kind: &str| {
        vec![
            ("id", json!(id).to_string()),
            ("type", json!(kind).to_string()),
            ("device", json!(e.device).to_string()),
            ("deviceName", json!(e.name).to_string()),
        ]
    };
    match &e.outcome {
        Some(Outcome::Replied { kind, msg, ms }) => {
            let mut fields = head(kind.as_str());
            fields.push(("ms", ms.to_string()));
            let ours: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            let mut out: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let theirs = raw_object(msg);
            match &theirs {
                // The device's fields, as it sent them, but for any that would hide ours.
                Some(theirs) => out.extend(
                    theirs
                        .iter()
                        .filter(|(k, _)| !ours.contains(&k.as_str()))
                        .map(|(k, v)| (k.as_str(), v.get())),
                ),
                // Not an object (never from the SDK): the whole body as `result`.
                None => out.push(("result", msg.as_str())),
            }
            write_object(out)
        }
        Some(Outcome::Failed { code, message }) => {
            let mut fields = head("error");
            fields.push(("error", json!({"code": code, "message": message}).to_string()));
            write_object(fields.iter().map(|(k, v)| (*k, v.as_str())))
        }
        None => {
            let mut fields = head("error");
            fields.push(("error", json!({"code": "timeout", "message": "no reply"}).to_string()));
            write_object(fields.iter().map(|(k, v)| (*k, v.as_str())))
        }
    }
}

/// `200` with `text` (JSON), not to be kept by any cache: replies carry cookies.
pub fn json_response(text: String) -> Response {
    let mut resp = (StatusCode::OK, text).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The HTTP answer to a request whose [`Answer`] is ready; `timeout_ms` for the message.
pub fn respond(id: &str, answer: Answer<'_>, timeout_ms: u128) -> Result<Response, AppError> {
    match answer {
        Answer::Reply(e) => Ok(json_response(entry_json(id, e))),
        Answer::All(entries) => {
            let list: Vec<String> = entries.iter().map(|e| entry_json(id, e)).collect();
            Ok(json_response(format!("{{\"replies\":[{}]}}", list.join(","))))
        }
        Answer::Failed(e) => match &e.outcome {
            Some(Outcome::Failed { code, message }) => Err(error(code, message.clone())),
            _ => Err(error("internal", "no answer")),
        },
        Answer::TimedOut => {
            Err(error("timeout", format!("no device replied within {timeout_ms} ms (timeoutMs)")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tether_protocol::Kind;

    fn entry(outcome: Option<Outcome>) -> Entry {
        Entry { device: "d-1".into(), name: Some("Pixel".into()), outcome }
    }

    #[test]
    fn a_reply_is_the_sdks_reply_shape_with_the_devices_fields_byte_for_byte() {
        let msg = r#"{"method":"post","result":{"n":1.50},"cookie":"uid=42","appInfo":{"v":"7"},"device":"forged","ms":-1}"#;
        let e = entry(Some(Outcome::Replied { kind: Kind::PostCb, msg: msg.into(), ms: 38 }));
        let text = entry_json("r7", &e);
        assert_eq!(
            text,
            r#"{"id":"r7","type":"postCb","device":"d-1","deviceName":"Pixel","ms":38,"method":"post","result":{"n":1.50},"cookie":"uid=42","appInfo":{"v":"7"}}"#
        );
        // A device's own error is its reply, passed through.
        let msg = r#"{"method":"post","result":null,"error":"refused: not in the allowlist"}"#;
        let e = entry(Some(Outcome::Replied { kind: Kind::PostCb, msg: msg.into(), ms: 1 }));
        let v: Value = serde_json::from_str(&entry_json("r8", &e)).unwrap();
        assert_eq!(v["error"], "refused: not in the allowlist");
        let e = entry(Some(Outcome::Replied { kind: Kind::CallCb, msg: "true".into(), ms: 1 }));
        let v: Value = serde_json::from_str(&entry_json("r9", &e)).unwrap();
        assert_eq!((v["type"].as_str(), v["result"].as_bool()), (Some("callCb"), Some(true)));
    }

    #[test]
    fn a_device_that_did_not_answer_is_an_error_entry() {
        let e = entry(Some(Outcome::Failed { code: "no_target".into(), message: "d-1 left".into() }));
        let v: Value = serde_json::from_str(&entry_json("r1", &e)).unwrap();
        assert_eq!(
            v,
            json!({"id": "r1", "type": "error", "device": "d-1", "deviceName": "Pixel",
                   "error": {"code": "no_target", "message": "d-1 left"}})
        );
        let answer = Answer::All(std::slice::from_ref(&e));
        let resp = respond("r1", answer, 10).unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn each_code_has_its_status() {
        for (code, status) in [
            ("bad_request", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("no_target", 404),
            ("room_full", 409),
            ("too_large", 413),
            ("rate_limited", 429),
            ("internal", 500),
            ("buffer_full", 503),
            ("slow_consumer", 503),
            ("cluster_unavailable", 503),
            ("shutting_down", 503),
            ("timeout", 504),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
            assert_eq!(error(code, "m").code, code, "the code is kept");
        }
        let e = respond("r1", Answer::TimedOut, 1500).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (504, "timeout"));
        assert!(e.message.contains("1500 ms"), "{}", e.message);
    }
}
