//! Message kinds and member roles.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every `type` an envelope can carry.
///
/// The direction column of `docs/protocol.md` says who may send which; the relay refuses a
/// kind from the wrong side with `bad_frame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// relay → joiner: the member id, the resume token and the heartbeat interval.
    Welcome,
    /// member → relay: a name and app info, shown to everyone in `devices`.
    Hello,
    /// relay → every member: the room's member list, whenever it changes.
    Devices,
    /// pc → device: make an HTTP request through the app's native network stack.
    Post,
    /// device → pc: the reply to a `post`.
    PostCb,
    /// pc → device: invoke a native JS-API.
    Call,
    /// device → pc: the reply to a `call`.
    CallCb,
    /// device → relay → the room's watching PCs: a batch of what the page did (console,
    /// errors, network, storage writes, page info). Droppable: never buffered, never stored
    /// unless a PC keeps it, dropped rather than slowing anyone down.
    Inspect,
    /// pc → device: read or edit the page's localStorage, sessionStorage or cookies.
    Storage,
    /// device → pc: the reply to a `storage`.
    StorageCb,
    /// pc → device: run JavaScript in the page (only if the page allows it).
    Eval,
    /// device → pc: the reply to an `eval`.
    EvalCb,
    /// relay → sender: a frame could not be handled.
    Error,
    /// relay → `/alarms` subscriber: one alarm datagram.
    Alarm,
    /// relay → `/alarms` subscriber: this many alarms were not delivered to you.
    AlarmGap,
    /// relay → `/alarms` subscriber: the alarm service became unreachable, or is back.
    AlarmSource,
}

impl Kind {
    /// Every kind, in a fixed order (used to index per-kind counters).
    pub const ALL: [Kind; 16] = [
        Kind::Welcome,
        Kind::Hello,
        Kind::Devices,
        Kind::Post,
        Kind::PostCb,
        Kind::Call,
        Kind::CallCb,
        Kind::Inspect,
        Kind::Storage,
        Kind::StorageCb,
        Kind::Eval,
        Kind::EvalCb,
        Kind::Error,
        Kind::Alarm,
        Kind::AlarmGap,
        Kind::AlarmSource,
    ];

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Welcome => "welcome",
            Kind::Hello => "hello",
            Kind::Devices => "devices",
            Kind::Post => "post",
            Kind::PostCb => "postCb",
            Kind::Call => "call",
            Kind::CallCb => "callCb",
            Kind::Inspect => "inspect",
            Kind::Storage => "storage",
            Kind::StorageCb => "storageCb",
            Kind::Eval => "eval",
            Kind::EvalCb => "evalCb",
            Kind::Error => "error",
            Kind::Alarm => "alarm",
            Kind::AlarmGap => "alarmGap",
            Kind::AlarmSource => "alarmSource",
        }
    }

    /// Parses the wire spelling; `None` for a type this version does not know.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A request a PC sends to devices, whose reply comes back to that PC alone.
    pub fn is_request(self) -> bool {
        matches!(self, Kind::Post | Kind::Call | Kind::Storage | Kind::Eval)
    }

    /// A device's reply to a request.
    pub fn is_reply(self) -> bool {
        matches!(self, Kind::PostCb | Kind::CallCb | Kind::StorageCb | Kind::EvalCb)
    }

    /// The reply kind that answers this request kind.
    pub fn reply_kind(self) -> Option<Kind> {
        match self {
            Kind::Post => Some(Kind::PostCb),
            Kind::Call => Some(Kind::CallCb),
            Kind::Storage => Some(Kind::StorageCb),
            Kind::Eval => Some(Kind::EvalCb),
            _ => None,
        }
    }

    /// Inspecting the page: `inspect`, and the `storage`/`eval` requests with their replies.
    /// Their pairs are not written to history unless a PC of the room said `inspect: "keep"`.
    pub fn is_inspection(self) -> bool {
        matches!(self, Kind::Inspect | Kind::Storage | Kind::StorageCb | Kind::Eval | Kind::EvalCb)
    }

    /// Kinds only the relay may send; a client sending one gets `bad_frame`.
    pub fn is_relay_only(self) -> bool {
        matches!(
            self,
            Kind::Welcome | Kind::Devices | Kind::Error | Kind::Alarm | Kind::AlarmGap | Kind::AlarmSource
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a member is in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The developer's page: sends `post`/`call`, receives the replies.
    Pc,
    /// The phone's in-app page: receives `post`/`call`, answers them.
    Device,
}

impl Role {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Pc => "pc",
            Role::Device => "device",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "pc" => Some(Role::Pc),
            "device" => Some(Role::Device),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_wire_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(Kind::ALL[k.index()], k);
        }
        assert_eq!(Kind::parse("Post"), None);
        assert_eq!(Kind::parse("postcb"), None);
    }

    #[test]
    fn only_requests_have_replies() {
        assert_eq!(Kind::Post.reply_kind(), Some(Kind::PostCb));
        assert_eq!(Kind::Call.reply_kind(), Some(Kind::CallCb));
        assert_eq!(Kind::Storage.reply_kind(), Some(Kind::StorageCb));
        assert_eq!(Kind::Eval.reply_kind(), Some(Kind::EvalCb));
        assert_eq!(Kind::ALL.iter().filter(|k| k.is_request()).count(), 4);
        for k in Kind::ALL {
            assert_eq!(k.is_request(), k.reply_kind().is_some(), "{k}");
            assert_eq!(k.is_reply(), Kind::ALL.iter().any(|r| r.reply_kind() == Some(k)), "{k}");
        }
        assert!(Kind::Hello.reply_kind().is_none());
        assert!(Kind::Inspect.reply_kind().is_none(), "inspect is one-way");
    }

    #[test]
    fn inspection_kinds_are_the_five_new_ones_and_none_is_relay_only() {
        let inspection: Vec<&str> =
            Kind::ALL.iter().filter(|k| k.is_inspection()).map(|k| k.as_str()).collect();
        assert_eq!(inspection, ["inspect", "storage", "storageCb", "eval", "evalCb"]);
        assert!(Kind::ALL.iter().all(|k| !(k.is_inspection() && k.is_relay_only())));
    }
}
