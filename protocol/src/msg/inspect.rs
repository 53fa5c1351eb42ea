//! The bodies for inspecting the page: what a member says in `hello.inspect`
//! ([`Inspection`]), a device's `inspect` batches ([`Inspect`]), and the `storage`/`eval`
//! requests with their replies. Re-exported from [`crate::msg`].

use crate::kind::Role;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// What a member said of inspecting the page (`hello.inspect`), shown to everyone as its
/// `devices` entry's `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Inspection {
    /// A PC's: `"live"` or `"keep"` (`"off"` clears what was said, from either role).
    Mode(InspectMode),
    /// A device's: what its page captures.
    Captures(Captures),
}

/// A PC's `hello.inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InspectMode {
    /// Send me the room's devices' `inspect` batches while I am connected.
    Live,
    /// As `live`, and the room's `storage`/`eval` pairs go to history (they do not otherwise).
    Keep,
    /// Stop: the member's `inspect` becomes `null` again.
    Off,
}

/// A device's `hello.inspect`: what its page captures, so the PC greys out what cannot work.
/// Absent fields are `false`; unknown ones are ignored (and not passed on).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captures {
    /// Console messages and uncaught errors.
    #[serde(default)]
    pub console: bool,
    /// The page's own fetch, XHR, WebSocket, EventSource and sendBeacon traffic.
    #[serde(default)]
    pub network: bool,
    /// localStorage, sessionStorage and cookies: readable with `storage`.
    #[serde(default)]
    pub storage: bool,
    /// The page has an `allow` hook: `eval` and storage edits may be granted (else they are
    /// always `not_allowed`).
    #[serde(default)]
    pub allow: bool,
}

impl Inspection {
    /// The PC's mode, if this is one (and not `off`).
    pub fn watching(self) -> Option<InspectMode> {
        match self {
            Inspection::Mode(m @ (InspectMode::Live | InspectMode::Keep)) => Some(m),
            _ => None,
        }
    }

    /// Whether a member of `role` may say this: a mode (`live`, `keep`) from a PC, captures
    /// from a device, `off` from either. `Err` says what that role may say.
    pub fn check(self, role: Role) -> Result<(), &'static str> {
        match (self, role) {
            (Inspection::Mode(InspectMode::Off), _)
            | (Inspection::Mode(_), Role::Pc)
            | (Inspection::Captures(_), Role::Device) => Ok(()),
            (Inspection::Captures(_), Role::Pc) => {
                Err("a pc says inspect \"live\", \"keep\" or \"off\", not what it captures")
            }
            (Inspection::Mode(_), Role::Device) => Err(
                "a device says inspect {console, network, storage, allow} (what its page captures) or \"off\"",
            ),
        }
    }
}

/// A clear refusal for anything else (an untagged enum's error would say only that nothing
/// matched).
impl<'de> Deserialize<'de> for Inspection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        const EXPECTED: &str = "inspect must be \"live\", \"keep\" or \"off\" (a pc), or {console, network, storage, allow} (a device)";
        match Value::deserialize(d)? {
            Value::String(s) => match s.as_str() {
                "live" => Ok(Inspection::Mode(InspectMode::Live)),
                "keep" => Ok(Inspection::Mode(InspectMode::Keep)),
                "off" => Ok(Inspection::Mode(InspectMode::Off)),
                _ => Err(D::Error::custom(EXPECTED)),
            },
            v @ Value::Object(_) => serde_json::from_value(v)
                .map(Inspection::Captures)
                .map_err(|e| D::Error::custom(format!("{EXPECTED}: {e}"))),
            _ => Err(D::Error::custom(EXPECTED)),
        }
    }
}

/// `inspect`, device → the room's watching PCs: a batch of events, oldest first, with what
/// the device dropped since its last batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspect {
    /// Each one JSON object `{k, at, n, …}` (docs/protocol.md, "Events"); opaque to the relay,
    /// which checks only that this is an array.
    pub events: Vec<Box<RawValue>>,
    /// Events the device's ring let go, by kind, since its last batch (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<InspectDropped>,
    /// Their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_bytes: Option<u64>,
}

/// An `inspect` batch's `dropped`: counts by event kind (absent: none of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectDropped {
    /// `console` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<u64>,
    /// `error` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u64>,
    /// `network` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<u64>,
    /// `storage` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<u64>,
    /// `page` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
}

/// `storage`, pc → device: read the page's storage, or edit it if the page allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// `read`, `set`, `remove` or `clear` (checked by the device, not the relay).
    pub op: String,
    /// `local`, `session` or `cookie`; a `read` without it reads all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// The key to set or remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The value to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// How long the PC waits (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `storageCb`, device → pc: the page's storage (after an edit, as it is then), or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageCb {
    /// `{local: [[k, v]…], session: […], cookie: […], cut?: true}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Set when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<InspectError>,
}

/// `eval`, pc → device: run `code` in the page (indirect global eval), if the page allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Eval {
    /// The JavaScript; at most [`crate::limits::MAX_EVAL_CODE`] bytes (the relay checks).
    pub code: String,
    /// How long the PC waits (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `evalCb`, device → pc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCb {
    /// What the code evaluated to, as a Value (docs/protocol.md, "Values").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Set when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<InspectError>,
}

/// Why a `storage` or `eval` failed on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectError {
    /// `not_allowed` (the page's `allow` said no, or it has none), `eval_blocked` (the page's
    /// CSP forbids eval), `threw` (the code threw: see `value`), `inspect_off` (the page did
    /// not turn inspection on), `bad_frame` (a malformed request).
    pub code: String,
    /// For a person.
    #[serde(default)]
    pub message: String,
    /// `threw`: what was thrown, as a Value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::msg::Hello;
    use serde_json::json;

    #[test]
    fn hello_inspect_is_a_pcs_mode_or_a_devices_captures_and_anything_else_says_what_it_may_be() {
        let h: Hello = serde_json::from_value(json!({"inspect": "keep"})).unwrap();
        assert_eq!(h.inspect, Some(Inspection::Mode(InspectMode::Keep)));
        assert_eq!(h.inspect.unwrap().watching(), Some(InspectMode::Keep));
        assert!(h.name.is_none(), "absent fields stay absent");
        let h: Hello = serde_json::from_value(json!({"inspect": "off"})).unwrap();
        assert_eq!(h.inspect.unwrap().watching(), None);
        // A device's: absent flags are false, unknown ones are dropped.
        let h: Hello = serde_json::from_value(
            json!({"name": "p", "inspect": {"console": true, "allow": true, "future": [1, 2]}}),
        )
        .unwrap();
        let caps = Captures { console: true, allow: true, ..Captures::default() };
        assert_eq!(h.inspect, Some(Inspection::Captures(caps)));
        assert_eq!(
            serde_json::to_value(h.inspect).unwrap(),
            json!({"console": true, "network": false, "storage": false, "allow": true})
        );
        for bad in [json!("record"), json!(3), json!(true), json!({"console": "yes"}), json!(["live"])] {
            let e = serde_json::from_value::<Hello>(json!({"inspect": bad})).unwrap_err().to_string();
            assert!(e.contains("inspect must be \"live\", \"keep\" or \"off\""), "{bad}: {e}");
        }
        // An older client's hello has none; `null` is none too.
        assert_eq!(serde_json::from_value::<Hello>(json!({"inspect": null})).unwrap().inspect, None);
        // Who may say what.
        let live = Inspection::Mode(InspectMode::Live);
        let off = Inspection::Mode(InspectMode::Off);
        assert!(
            live.check(Role::Pc).is_ok() && off.check(Role::Pc).is_ok() && off.check(Role::Device).is_ok()
        );
        assert!(Inspection::Captures(caps).check(Role::Device).is_ok());
        assert!(live.check(Role::Device).unwrap_err().contains("what its page captures"));
        assert!(Inspection::Captures(caps).check(Role::Pc).unwrap_err().contains("\"live\""));
    }

    #[test]
    fn inspection_bodies_have_their_documented_shape() {
        // An inspect batch: events kept byte for byte.
        let text = r#"{"events":[{"k":"console","at":1,"n":7,"level":"log","args":[1.50,{"$":"undefined"}]}],"dropped":{"console":3},"droppedBytes":120}"#;
        let b: Inspect = serde_json::from_str(text).unwrap();
        assert_eq!(
            b.events[0].get(),
            r#"{"k":"console","at":1,"n":7,"level":"log","args":[1.50,{"$":"undefined"}]}"#
        );
        let dropped = b.dropped.unwrap();
        assert_eq!((dropped.console, dropped.network, b.dropped_bytes), (Some(3), None, Some(120)));
        assert_eq!(serde_json::to_string(&b).unwrap(), text);
        assert!(serde_json::from_str::<Inspect>(r#"{"events": {}}"#).is_err(), "events is an array");
        assert!(serde_json::from_str::<Inspect>(r#"{"dropped": {}}"#).is_err(), "events is needed");
        // storage and eval, and their replies.
        let st: Storage = serde_json::from_value(
            json!({"op": "set", "area": "local", "key": "k", "value": "v", "timeoutMs": 5}),
        )
        .unwrap();
        assert_eq!((st.op.as_str(), st.area.as_deref(), st.timeout_ms), ("set", Some("local"), Some(5)));
        assert!(serde_json::from_value::<Storage>(json!({"area": "local"})).is_err(), "op is needed");
        assert!(
            serde_json::from_value::<Storage>(json!({"op": "set", "value": 1})).is_err(),
            "values are strings"
        );
        let ev: Eval = serde_json::from_value(json!({"code": "1 + 1"})).unwrap();
        assert_eq!((ev.code.as_str(), ev.timeout_ms), ("1 + 1", None));
        assert!(serde_json::from_value::<Eval>(json!({"timeoutMs": 1})).is_err(), "code is needed");
        let cb: EvalCb = serde_json::from_value(
            json!({"error": {"code": "threw", "message": "boom", "value": {"$": "error", "name": "Error"}}}),
        )
        .unwrap();
        let err = cb.error.unwrap();
        assert_eq!((err.code.as_str(), err.value.unwrap()["$"].as_str()), ("threw", Some("error")));
        let cb: StorageCb =
            serde_json::from_value(json!({"result": {"local": [["k", "v"]], "session": [], "cookie": []}}))
                .unwrap();
        assert_eq!(cb.result.unwrap()["local"][0][1], "v");
        assert_eq!(ErrorCode::NotAllowed.as_str(), "not_allowed");
    }
}
