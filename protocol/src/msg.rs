//! The typed body (`msg`) of each message kind.
//!
//! Field names are camelCase on the wire. Bodies that carry app data the relay does not
//! interpret (`result`, `appInfo`, `params`, …) are `serde_json::Value` here; the relay
//! itself reads them as raw JSON and forwards them untouched. An `inspect` batch's events
//! are raw JSON (`serde_json::value::RawValue`): their shape (docs/protocol.md, "Inspecting the page") is a
//! contract between the device SDK and the PC SDK that the relay does not look into.

use crate::error::ErrorCode;
use crate::kind::Role;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod inspect;
pub use inspect::{
    Captures, Eval, EvalCb, Inspect, InspectDropped, InspectError, InspectMode, Inspection, Storage,
    StorageCb,
};

/// `welcome`, relay → joiner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    /// This member's id in the room; other members see it as `from`.
    pub member: String,
    /// The room joined.
    pub room: String,
    /// The role joined as.
    pub role: Role,
    /// Reconnect with `resume=<this>` to keep the member id and receive what was sent meanwhile.
    pub resume: String,
    /// Whether this join resumed an earlier member (the id is the old one).
    #[serde(default)]
    pub resumed: bool,
    /// The relay's ping interval; a member silent for two of these is marked away.
    pub heartbeat_ms: u64,
    /// How long an away member keeps its place and buffered frames.
    #[serde(default)]
    pub grace_ms: u64,
    /// The largest frame the relay accepts.
    #[serde(default)]
    pub max_frame: u64,
    /// To a device only: bytes of `inspect` batches per second it may send (`--inspect-rate`);
    /// the SDK paces itself below it. Absent from relays before inspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspect_rate: Option<u64>,
    /// To a PC only: the room's device key, for the QR link (`/d/{room}?secret=<deviceKey>`).
    /// It joins as a device and nothing more; the PC secret never leaves the PC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

/// `hello`, member → relay. Every field is optional; one given replaces what was said
/// before, one absent keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// A display name ("Pixel 8 / news 7.2").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whatever the app tells about itself (version, platform, user agent, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_info: Option<Value>,
    /// Inspecting the page: from a PC, whether it watches (`"live"`, `"keep"`, `"off"`);
    /// from a device, what its page captures (or `"off"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspect: Option<Inspection>,
}

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    /// Member id.
    pub id: String,
    /// `pc` or `device`.
    pub role: Role,
    /// From `hello` (or the `name` join parameter); `null` until given.
    pub name: Option<String>,
    /// From `hello`; `null` until given.
    pub app_info: Option<Value>,
    /// When the member joined, milliseconds since the Unix epoch.
    pub since: u64,
    /// The connection dropped or stopped answering pings; the member keeps its place until its
    /// grace window ends.
    pub away: bool,
    /// From `hello.inspect`; `null` until said (and after `"off"`). Absent from older relays.
    #[serde(default)]
    pub inspect: Option<Inspection>,
}

/// `devices`, relay → every member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    /// Every member of the room, PCs and devices, in joining order.
    pub members: Vec<MemberInfo>,
}

/// `post`, pc → device: a request made through the app's native network stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Post {
    /// The URL to request.
    pub url: String,
    /// HTTP method; the device's bridge decides the default (usually POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request body: a string, or JSON the bridge serializes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Value>,
    /// How long the PC waits; the relay forgets the request after this (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `postCb`, device → pc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostCb {
    /// Always `"post"` (kept from seed 004).
    #[serde(default = "post_method")]
    pub method: String,
    /// What the native request returned.
    #[serde(default)]
    pub result: Value,
    /// `document.cookie` of the page that made the request.
    #[serde(default)]
    pub cookie: Option<String>,
    /// The device's app info.
    #[serde(default)]
    pub app_info: Option<Value>,
    /// Set when the request failed on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

fn post_method() -> String {
    "post".into()
}

/// `call`, pc → device: invoke a native JS-API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// The JS-API name, e.g. `login`.
    pub method: String,
    /// Positional arguments; the device appends its callback.
    #[serde(default)]
    pub params: Vec<Value>,
    /// How long the PC waits (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `callCb`, device → pc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCb {
    /// The JS-API that was invoked.
    pub method: String,
    /// What its callback received.
    #[serde(default)]
    pub result: Value,
    /// Set when the call failed on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// `error`, relay → sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// What went wrong, machine-readable.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The device the failure is about, when a request went to several and one of them failed
    /// (it left before replying, or could not be reached): the other devices' replies may
    /// still come. Absent otherwise (and from relays before the HTTP API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// `alarm`, relay → `/alarms` subscriber: one datagram of the legacy alarm service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Increasing per relay process; `?since=` replays what is still held after it.
    pub seq: u64,
    /// When the relay received it, ms since the Unix epoch.
    pub at: u64,
    /// The sender's address (`host:port`).
    pub from: String,
    /// The payload: JSON as is, XML as JSON (`{root: …}`, attributes `@name`), other text as a
    /// string, bytes that are not UTF-8 as `{"$base64": "…"}`.
    pub data: Value,
}

/// `alarmGap`, relay → `/alarms` subscriber: alarms it will not receive (it fell behind, or
/// they were no longer held for `?since=`). Loss is always said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmGap {
    /// How many.
    pub dropped: u64,
}

/// `alarmSource`, relay → `/alarms` subscriber: what is known of the `--alarm-udp` service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmSource {
    /// `"up"` or `"unreachable"` (`"unknown"` before the first word from it).
    pub state: String,
    /// The service's address, when known.
    pub service: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn welcome_is_camel_case() {
        let w = Welcome {
            member: "m1".into(),
            room: "r".into(),
            role: Role::Device,
            resume: "t".into(),
            resumed: false,
            heartbeat_ms: 2000,
            grace_ms: 30000,
            max_frame: 1 << 20,
            inspect_rate: Some(524_288),
            device_key: None,
        };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["heartbeatMs"], 2000);
        assert!(v.get("deviceKey").is_none(), "a device is never told the key");
        assert_eq!(v["role"], "device");
        assert_eq!(v["inspectRate"], 524_288);
        assert_eq!(serde_json::from_value::<Welcome>(v).unwrap(), w);
    }

    #[test]
    fn alarm_bodies_have_their_documented_shape() {
        let a = Alarm { seq: 7, at: 1, from: "10.0.0.9:9002".into(), data: json!({"zone": 3}) };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"seq": 7, "at": 1, "from": "10.0.0.9:9002", "data": {"zone": 3}})
        );
        assert_eq!(serde_json::to_value(AlarmGap { dropped: 2 }).unwrap(), json!({"dropped": 2}));
        let s = AlarmSource { state: "unreachable".into(), service: None };
        assert_eq!(serde_json::to_value(&s).unwrap(), json!({"state": "unreachable", "service": null}));
    }

    #[test]
    fn seed_shaped_bodies_parse() {
        // Seed 004's own postCb: method, result, cookie, appInfo.
        let cb: PostCb = serde_json::from_value(json!({
            "method": "post", "result": {"code": 0}, "cookie": "a=b", "appInfo": {"v": "7"}
        }))
        .unwrap();
        assert_eq!(cb.cookie.as_deref(), Some("a=b"));
        // And its call: method plus positional params.
        let call: Call =
            serde_json::from_value(json!({"method": "login", "params": ["qqorweixin"]})).unwrap();
        assert_eq!(call.params, vec![json!("qqorweixin")]);
        let post: Post = serde_json::from_value(json!({"url": "https://x/?q=1"})).unwrap();
        assert!(post.method.is_none());
    }

    #[test]
    fn a_members_inspect_is_null_until_said_and_absent_from_older_relays_reads_as_null() {
        let older =
            json!({"id": "p-1", "role": "pc", "name": null, "appInfo": null, "since": 1, "away": false});
        let m: MemberInfo = serde_json::from_value(older).unwrap();
        assert_eq!(m.inspect, None);
        assert_eq!(serde_json::to_value(&m).unwrap()["inspect"], Value::Null, "always said");
        let m = MemberInfo { inspect: Some(Inspection::Mode(InspectMode::Live)), ..m };
        assert_eq!(serde_json::to_value(&m).unwrap()["inspect"], "live");
    }

    #[test]
    fn a_post_needs_a_url() {
        assert!(serde_json::from_value::<Post>(json!({"method": "GET"})).is_err());
        assert!(serde_json::from_value::<Call>(json!({"params": []})).is_err());
    }
}
