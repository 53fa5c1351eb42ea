//! A member of a room: who it is, what it told the room, and how it is reached ([`Link`]).

use super::{Budget, Frame, Now, Outbox};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tether_protocol::Role;
use tether_protocol::msg::{InspectMode, Inspection, MemberInfo};

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
        /// Frames addressed to it meanwhile, in order: at most `Limits::resume_buffer` frames
        /// and `Limits::queue_bytes` bytes, within the room's `Limits::room_buffered_bytes`
        /// and the relay's [`Budget`]; past any of them frames are refused to their senders
        /// (`buffer_full`).
        buffer: ResumeBuffer,
        /// What the lost connection held that lasts until the grace window ends: its
        /// address's connection slot, so an away member still counts against
        /// `--max-conns-per-ip` (dropped when the member resumes or is removed).
        slot: Option<Holding>,
    },
}

/// Something held for as long as a member is away (see [`Link::Away`]'s `slot`).
pub type Holding = Box<dyn Send>;

/// The frames kept for an away member, in order, each with the request id (as its device
/// sees it) when it carries a request: a request forgotten before its device came back takes
/// its frame with it. Their bytes are taken from the relay's [`Budget`] and given back when
/// they leave the buffer, or with it.
pub struct ResumeBuffer {
    frames: VecDeque<(Frame, Option<Box<str>>)>,
    bytes: usize,
    budget: Budget,
}

impl ResumeBuffer {
    /// An empty buffer paid for from `budget`.
    pub(super) fn new(budget: Budget) -> ResumeBuffer {
        ResumeBuffer { frames: VecDeque::new(), bytes: 0, budget }
    }

    /// A buffer starting with `frames` already held (what a lost connection had queued but
    /// not written, or what a snapshot carried over): taken from the budget whether or not
    /// they fit, as they are held already.
    pub(super) fn holding(frames: impl IntoIterator<Item = Frame>, budget: Budget) -> ResumeBuffer {
        let mut b = ResumeBuffer::new(budget);
        for f in frames {
            b.budget.take(f.len());
            b.bytes += f.len();
            b.frames.push_back((f, None));
        }
        b
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `f` (carrying request `request`, if any); a `payload` frame only if it fits the
    /// relay's budget (`false` when it does not), the relay's own frames always.
    pub(super) fn push(&mut self, f: Frame, request: Option<&str>, payload: bool) -> bool {
        if !payload {
            self.budget.take(f.len());
        } else if !self.budget.try_take(f.len()) {
            return false;
        }
        self.bytes += f.len();
        self.frames.push_back((f, request.map(Into::into)));
        true
    }

    /// Drops the frame carrying request `request`, if it is still held.
    pub(super) fn forget_request(&mut self, request: &str) {
        if let Some(i) = self.frames.iter().position(|(_, r)| r.as_deref() == Some(request)) {
            if let Some((f, _)) = self.frames.remove(i) {
                self.bytes -= f.len();
                self.budget.give(f.len());
            }
        }
    }

    /// Every frame, in order, leaving the buffer (and the budget) empty.
    pub(super) fn take_all(&mut self) -> Vec<Frame> {
        self.budget.give(std::mem::take(&mut self.bytes));
        self.frames.drain(..).map(|(f, _)| f).collect()
    }

    /// The frames, in order, left in place.
    pub(super) fn frames(&self) -> impl Iterator<Item = &Frame> {
        self.frames.iter().map(|(f, _)| f)
    }
}

impl Drop for ResumeBuffer {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// One member of a room, held on this node.
pub(super) struct Member {
    pub(super) id: Arc<str>,
    pub(super) role: Role,
    pub(super) name: Option<String>,
    pub(super) app_info: Option<serde_json::Value>,
    /// From `hello.inspect`: a PC that watches (`live`, `keep`) is sent the room's `inspect`
    /// batches; a device's says what its page captures.
    pub(super) inspect: Option<Inspection>,
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
            inspect: None,
            since: now.ms,
            attached: now.ms,
            link: Link::Live(outbox.clone()),
        }
    }

    pub(super) fn is_away(&self) -> bool {
        matches!(self.link, Link::Away { .. })
    }

    /// A PC's `hello.inspect` mode, when it watches (`live` or `keep`).
    pub(super) fn watching(&self) -> Option<InspectMode> {
        self.inspect.and_then(Inspection::watching).filter(|_| self.role == Role::Pc)
    }

    /// Bytes held in its resume buffer (0 when live).
    pub(super) fn buffered(&self) -> usize {
        match &self.link {
            Link::Away { buffer, .. } => buffer.bytes(),
            Link::Live(_) => 0,
        }
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
            inspect: self.inspect,
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(super) fn truncate(s: &str, max: usize) -> String {
    crate::util::cut(s, max).to_owned()
}
