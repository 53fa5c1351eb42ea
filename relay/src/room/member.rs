//! A member of a room: who it is, what it told the room, and how it is reached ([`Link`]).

use super::{Frame, Now, Outbox};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tether_protocol::Role;
use tether_protocol::msg::MemberInfo;

/// How a member is reached.
pub enum Link {
    /// Connected to this node.
    Live(Outbox),
    /// Disconnected without saying goodbye; kept until `until`, frames buffered meanwhile.
    Away {
        /// The connection that was lost (its late `leave` still counts).
        conn: u64,
        /// When the grace window ends.
        until: Instant,
        /// Frames addressed to it meanwhile, in order. Paid for by the member's room: at most
        /// `Limits::resume_buffer` frames and `Limits::queue_bytes` bytes, then frames are
        /// refused to their senders (`buffer_full`).
        buffer: VecDeque<Frame>,
        /// Their total size.
        bytes: usize,
    },
}

/// One member of a room, held on this node.
pub(super) struct Member {
    pub(super) id: Arc<str>,
    pub(super) role: Role,
    pub(super) name: Option<String>,
    pub(super) app_info: Option<serde_json::Value>,
    /// When it first joined (ms since the epoch), shown in `devices`.
    pub(super) since: u64,
    /// When its current connection attached (ms since the epoch): in cluster mode, of two nodes
    /// holding the same member, the later attach is the member's real place.
    pub(super) attached: u64,
    /// The nonce of the resume token its last `welcome` carried: only that token resumes it.
    /// `None` for a member restored from an older relay's snapshot (any valid token, once).
    pub(super) nonce: Option<u64>,
    /// The nonce of the token it resumed with, still taken until its new connection is heard
    /// from: a `welcome` lost with a connection that died at once must not strand the member.
    pub(super) prev_nonce: Option<u64>,
    pub(super) link: Link,
}

impl Member {
    /// A member joining now on `outbox`'s connection.
    pub(super) fn new(id: Arc<str>, role: Role, outbox: &Outbox, now: Now) -> Member {
        Member {
            nonce: None,
            prev_nonce: None,
            id,
            role,
            name: None,
            app_info: None,
            since: now.ms,
            attached: now.ms,
            link: Link::Live(outbox.clone()),
        }
    }

    pub(super) fn is_away(&self) -> bool {
        matches!(self.link, Link::Away { .. })
    }

    /// Its entry in `devices`.
    pub(super) fn info(&self) -> MemberInfo {
        MemberInfo {
            id: self.id.to_string(),
            role: self.role,
            name: self.name.clone(),
            app_info: self.app_info.clone(),
            since: self.since,
            away: self.is_away(),
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
