//! Error codes carried by `error` frames, and the close codes the relay ends a socket with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The `code` of an `error` frame (`{"type":"error","id"?,"msg":{"code","message"}}`).
///
/// The first ten are fixed by the contract; the rest are Tether's additions. A bad frame gets
/// an `error` and the connection stays open; only [`ErrorCode::closes_connection`] codes end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an envelope, a binary frame, a missing or malformed field, or a kind sent
    /// from the wrong side.
    BadFrame,
    /// Larger than `--max-frame`.
    TooLarge,
    /// A `type` this relay does not know.
    UnknownType,
    /// No member to deliver to: `to` names nobody (or a member of the wrong role), the room has
    /// no device, a reply's request is unknown or expired, or its target left.
    NoTarget,
    /// Missing or wrong secret, or a bad resume token for this room. Closes the socket.
    Unauthorized,
    /// Too many frames too fast, or too many requests awaiting replies. A sustained flood
    /// closes the socket.
    RateLimited,
    /// The member could not keep up with what was sent to it; it is disconnected. Its sender
    /// receives this code for the frame that could not be queued.
    SlowConsumer,
    /// The legacy upstream closed (CS gateway).
    UpstreamClosed,
    /// The legacy session is gone (CS gateway).
    SessionLost,
    /// A fault inside the relay; nothing the client did.
    Internal,
    /// The target is away (reconnecting) and its resume buffer is full; the frame was not kept.
    BufferFull,
    /// The room has as many members as `--max-room-members` allows.
    RoomFull,
    /// Another connection resumed this member; this one is closed.
    Replaced,
    /// The relay is shutting down; reconnect (with the resume token) shortly.
    ShuttingDown,
    /// The legacy server answered something that is not XML-RPC (CS gateway, HTTP 502).
    BadUpstream,
    /// Cluster mode: the target is on another relay and the bus between relays (Redis) is down.
    ClusterUnavailable,
    /// The device's page refused a `storage` edit or an `eval` (its `allow` hook said no, or
    /// it has none). Never sent by the relay: the device puts it in its `storageCb`/`evalCb`
    /// `error`, and the PC SDK rejects with it.
    NotAllowed,
}

impl ErrorCode {
    /// Every code, in a fixed order (used to index per-code counters).
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadFrame,
        ErrorCode::TooLarge,
        ErrorCode::UnknownType,
        ErrorCode::NoTarget,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::UpstreamClosed,
        ErrorCode::SessionLost,
        ErrorCode::Internal,
        ErrorCode::BufferFull,
        ErrorCode::RoomFull,
        ErrorCode::Replaced,
        ErrorCode::ShuttingDown,
        ErrorCode::BadUpstream,
        ErrorCode::ClusterUnavailable,
        ErrorCode::NotAllowed,
    ];

    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NoTarget => "no_target",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::UpstreamClosed => "upstream_closed",
            ErrorCode::SessionLost => "session_lost",
            ErrorCode::Internal => "internal",
            ErrorCode::BufferFull => "buffer_full",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::Replaced => "replaced",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::BadUpstream => "bad_upstream",
            ErrorCode::ClusterUnavailable => "cluster_unavailable",
            ErrorCode::NotAllowed => "not_allowed",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The WebSocket close code used when this error ends a connection.
    pub fn close_code(self) -> CloseCode {
        match self {
            ErrorCode::Unauthorized => CloseCode::UNAUTHORIZED,
            ErrorCode::RateLimited => CloseCode::RATE_LIMITED,
            ErrorCode::SlowConsumer => CloseCode::SLOW_CONSUMER,
            ErrorCode::TooLarge => CloseCode::TOO_LARGE,
            ErrorCode::RoomFull => CloseCode::ROOM_FULL,
            ErrorCode::Replaced => CloseCode::REPLACED,
            ErrorCode::ShuttingDown => CloseCode::GOING_AWAY,
            ErrorCode::Internal => CloseCode::INTERNAL,
            _ => CloseCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WebSocket close code. The relay closes with the reason text set to the [`ErrorCode`].
///
/// 4xxx codes are application codes (RFC 6455 §7.4.2); the last three digits echo the HTTP
/// status they resemble, so a client can tell "do not retry" (4400, 4401, 4409) from "retry
/// later" (1001, 1012, 4408, 4429).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The relay is restarting or shutting down; reconnect with the resume token.
    pub const GOING_AWAY: CloseCode = CloseCode(1012);
    /// The join was malformed (no room, bad role, bad name).
    pub const BAD_REQUEST: CloseCode = CloseCode(4400);
    /// Wrong or missing secret.
    pub const UNAUTHORIZED: CloseCode = CloseCode(4401);
    /// The member did not read what was sent to it fast enough.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4408);
    /// Another connection resumed this member.
    pub const REPLACED: CloseCode = CloseCode(4409);
    /// A frame far beyond `--max-frame`: the stream cannot be read past it.
    pub const TOO_LARGE: CloseCode = CloseCode(4413);
    /// The room is full.
    pub const ROOM_FULL: CloseCode = CloseCode(4403);
    /// A sustained flood.
    pub const RATE_LIMITED: CloseCode = CloseCode(4429);
    /// A fault inside the relay.
    pub const INTERNAL: CloseCode = CloseCode(4500);

    /// Whether a client should reconnect after this close.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::BAD_REQUEST
                | CloseCode::UNAUTHORIZED
                | CloseCode::ROOM_FULL
                | CloseCode::REPLACED
                | CloseCode::TOO_LARGE
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_names() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
            assert_eq!(ErrorCode::ALL[c.index()], c);
        }
    }

    #[test]
    fn the_contract_codes_are_spelled_as_fixed() {
        let fixed = [
            "bad_frame",
            "too_large",
            "unknown_type",
            "no_target",
            "unauthorized",
            "rate_limited",
            "slow_consumer",
            "upstream_closed",
            "session_lost",
            "internal",
        ];
        for s in fixed {
            assert!(ErrorCode::parse(s).is_some(), "{s} missing");
        }
    }

    #[test]
    fn auth_failures_say_do_not_retry() {
        assert!(!ErrorCode::Unauthorized.close_code().should_reconnect());
        assert!(ErrorCode::ShuttingDown.close_code().should_reconnect());
        assert!(ErrorCode::SlowConsumer.close_code().should_reconnect());
    }
}
