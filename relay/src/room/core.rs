//! One room: its members, delivering a frame to one of them, the member list (`devices`),
//! presence (a lost member is away, then gone when its grace window ends) and expiry.
//!
//! Every method takes the time it runs at; frames go into the members' bounded outboxes (or to
//! [`Peers`]), never to a socket. Joining is in `join.rs`, routing in `route.rs`, cluster mode
//! in `remote.rs`: each adds methods to [`Room`].

use super::member::{Holding, Link, Member, ResumeBuffer, truncate};
use super::peers::{Peers, RemoteMember};
use super::pending::PendingTable;
use super::queue::Push;
use super::{Budget, Delivered, Frame, Limits, Now, Refusal};
use crate::metrics::{Dropped as DropReason, Metrics};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::msg::{Devices, Hello, InspectMode, Inspection, MemberInfo};
use tether_protocol::{ErrorCode, Kind, OutEnvelope, limits};

/// One room.
pub struct Room {
    pub(super) name: Arc<str>,
    /// The digest of the room's device key: every join is checked against it (a PC secret
    /// after deriving its device key).
    pub(super) key: [u8; 32],
    /// The history tag of the PC secret, once someone who holds it joined (a room opened by
    /// a device with the device key does not know it until its PC comes).
    pub(super) tag: Option<Arc<str>>,
    pub(super) members: Vec<Member>,
    /// Requests awaiting replies, by (device, request id).
    pub(super) pending: PendingTable,
    pub(super) limits: Limits,
    pub(super) metrics: Arc<Metrics>,
    /// The relay's budget of bytes held for members, shared by every room.
    pub(super) budget: Budget,
    /// Cluster mode: the room's members on other nodes, and the bus that reaches them.
    pub(super) remote: Vec<RemoteMember>,
    pub(super) peers: Option<Arc<dyn Peers>>,
    /// Dropped from the hub's map (it was empty): a join that found it there a moment before
    /// looks again rather than join a room nobody can find.
    pub(super) closed: bool,
}

/// How a connection ended, as far as its member's place is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// A close frame: gone at once.
    Clean,
    /// Dropped, or dead (no pong): away until the grace window ends.
    Lost,
    /// Closed by the relay (slow consumer, flood, oversize): gone at once.
    Kicked,
}

/// What a frame given to [`Room::deliver_as`] carries.
#[derive(Clone, Copy)]
enum Carries<'a> {
    /// The relay's own words: always taken.
    Relays,
    /// What a member sent: it must fit the budgets. `request` names the request it carries.
    Payload { request: Option<&'a str> },
}

impl Room {
    /// An empty room whose device key's digest is `key`.
    pub fn new(
        name: Arc<str>,
        key: [u8; 32],
        limits: Limits,
        metrics: Arc<Metrics>,
        peers: Option<Arc<dyn Peers>>,
    ) -> Room {
        Room {
            name,
            key,
            tag: None,
            // A PC and a phone, most often: room for two, not the four a first push reserves.
            members: Vec::with_capacity(2),
            pending: PendingTable::new(Budget::new(limits.max_buffered_bytes, metrics.clone())),
            budget: Budget::new(limits.max_buffered_bytes, metrics.clone()),
            limits,
            metrics,
            remote: Vec::new(),
            peers,
            closed: false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether no member is held here.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(super) fn index_of(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.id == id)
    }

    /// Gives the relay's own `frame` (a welcome, a member list, an error) to member `to`:
    /// queued if live, buffered if away. A live member whose queue is full is kicked as a slow
    /// consumer. Such frames are small and always taken from the relay's budget.
    pub fn deliver(&mut self, to: &str, frame: Frame, now: Now) -> Delivered {
        self.deliver_as(to, frame, Carries::Relays, now)
    }

    /// Gives `frame`, which carries what a member sent (a request, or with `request: None` a
    /// reply), to member `to`, as [`Room::deliver`] does; but it must fit the relay's budget
    /// ([`Delivered::OverBudget`]) and, for an away member, the room's
    /// ([`Delivered::RoomFull`]). A request's frame held for an away device names the request
    /// (the id its device sees), so the frame goes when the request is forgotten.
    pub fn deliver_payload(&mut self, to: &str, frame: Frame, request: Option<&str>, now: Now) -> Delivered {
        self.deliver_as(to, frame, Carries::Payload { request }, now)
    }

    fn deliver_as(&mut self, to: &str, frame: Frame, carries: Carries<'_>, now: Now) -> Delivered {
        let Some(i) = self.index_of(to) else {
            // Cluster mode: a member held by another node is reached over the bus.
            if let (Some(peers), Some(r)) = (&self.peers, self.remote.iter().find(|r| r.info.id == to)) {
                return if peers.send_frame(&r.node, &self.name, to, &frame) {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                    Delivered::Queued
                } else if peers.is_up() {
                    self.metrics.dropped(DropReason::BufferFull);
                    Delivered::BufferFull
                } else {
                    self.metrics.dropped(DropReason::NoTarget);
                    Delivered::Unreachable
                };
            }
            return Delivered::Gone;
        };
        let payload = matches!(carries, Carries::Payload { .. });
        // What the room's away members hold, besides this one: only needed for a payload
        // frame to an away member.
        let others_away = if payload && self.members[i].is_away() {
            self.members.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, m)| m.buffered()).sum()
        } else {
            0
        };
        let m = &mut self.members[i];
        let outcome = match &mut m.link {
            Link::Live(out) => match out.push(frame.clone(), payload) {
                Push::Queued => Delivered::Queued,
                Push::OverBudget => Delivered::OverBudget,
                Push::Full => {
                    out.kick
                        .fire(ErrorCode::SlowConsumer, "you did not read fast enough; reconnect to catch up");
                    Delivered::Full
                }
                // The socket's task has ended and will report how; until it does, treat the
                // member as away so the frame is kept.
                Push::Closed => {
                    let conn = out.conn;
                    m.link = Link::Away {
                        conn,
                        until: now.at + self.limits.grace,
                        buffer: ResumeBuffer::new(self.budget.clone()),
                        slot: None,
                    };
                    self.metrics.away.fetch_add(1, Relaxed);
                    return self.deliver_as(to, frame, carries, now);
                }
            },
            Link::Away { buffer, .. } => {
                let request = match carries {
                    Carries::Payload { request } => request,
                    Carries::Relays => None,
                };
                if buffer.len() >= self.limits.resume_buffer
                    || buffer.bytes() + frame.len() > self.limits.queue_bytes
                {
                    Delivered::BufferFull
                } else if payload
                    && others_away + buffer.bytes() + frame.len() > self.limits.room_buffered_bytes
                {
                    Delivered::RoomFull
                } else if buffer.push(frame, request, payload) {
                    Delivered::Buffered
                } else {
                    Delivered::OverBudget
                }
            }
        };
        match outcome {
            Delivered::Queued => {
                self.metrics.frames_out.fetch_add(1, Relaxed);
            }
            Delivered::Full => self.metrics.dropped(DropReason::SlowConsumer),
            Delivered::BufferFull => self.metrics.dropped(DropReason::BufferFull),
            Delivered::RoomFull | Delivered::OverBudget => self.metrics.dropped(DropReason::OverBudget),
            _ => {}
        }
        outcome
    }

    /// The refusal a sender gets when its frame to `who` was refused for a budget.
    pub(super) fn budget_refusal(outcome: Delivered, who: &str) -> Refusal {
        match outcome {
            Delivered::RoomFull => Refusal::new(
                ErrorCode::BufferFull,
                format!(
                    "{who} is reconnecting, and this room holds all it may for its reconnecting members \
                     (--max-room-buffered-bytes)"
                ),
            ),
            _ => Budget::refusal(),
        }
    }

    /// Requests forgotten before their devices answered (expired, or their PC left): a frame
    /// still held for an away device goes with its request.
    pub(super) fn forget_frames(&mut self, forgotten: Vec<super::pending::Key>) {
        for (device, request) in forgotten {
            if let Some(i) = self.index_of(&device) {
                if let Link::Away { buffer, .. } = &mut self.members[i].link {
                    buffer.forget_request(&request);
                }
            }
        }
    }

    /// Every member, here and (cluster mode) on other nodes, in joining order.
    pub(super) fn member_list(&self) -> Vec<MemberInfo> {
        let mut members: Vec<_> = self.members.iter().map(Member::info).collect();
        if !self.remote.is_empty() {
            members.extend(self.remote.iter().map(|r| r.info.clone()));
            members.sort_by_key(|m| m.since);
        }
        members
    }

    /// The `devices` frame: [`Room::member_list`].
    pub(super) fn devices_frame(&self) -> Frame {
        OutEnvelope::new(Kind::Devices, Devices { members: self.member_list() }).to_text().into()
    }

    /// Cluster mode: tells the other nodes that this node's member `id` changed (or is gone).
    pub(super) fn announce(&self, id: &str) {
        if let Some(peers) = &self.peers {
            let info = self.index_of(id).map(|i| {
                let m = &self.members[i];
                (m.info(), m.attached, m.nonce.into_iter().chain(m.prev_nonce).collect())
            });
            peers.member_changed(&self.name, id, info);
        }
    }

    /// Pushes the member list to every live member.
    pub(super) fn broadcast_devices(&mut self, now: Now) {
        let frame = self.devices_frame();
        let live: Vec<Arc<str>> =
            self.members.iter().filter(|m| matches!(m.link, Link::Live(_))).map(|m| m.id.clone()).collect();
        for id in live {
            self.deliver(&id, frame.clone(), now);
        }
    }

    /// Removes member `i`; requests it had not answered fail toward their PCs.
    pub(super) fn remove(&mut self, i: usize, why: &str, now: Now) {
        let m = self.members.remove(i);
        if m.is_away() {
            self.metrics.away.fetch_sub(1, Relaxed);
        }
        let orphaned = self.pending.keys_for(&m.id);
        for key in orphaned {
            if let Some(p) = self.pending.remove(&key) {
                let msg = format!("device {} {why} before replying", m.id);
                let frame = tether_protocol::envelope::error_frame_about(
                    Some(&p.pc_id),
                    ErrorCode::NoTarget,
                    &msg,
                    Some(&m.id),
                );
                self.metrics.error(ErrorCode::NoTarget);
                self.deliver(&p.pc, frame.into(), now);
            }
        }
        // Replies to a PC that left have nowhere to go; the device is told when it answers. Its
        // requests' frames still held for away devices go now.
        let forgotten = self.pending.retain(|_, p| p.pc != m.id);
        self.forget_frames(forgotten);
    }

    /// Connection `conn` of `member` ended. A lost one leaves the member away until its grace
    /// window ends, with `unsent` (what its connection had queued but not written, in order)
    /// starting its resume buffer, and `slot` (its address's connection slot) held until then;
    /// a clean or kicked one removes it at once. A connection the member has already left
    /// behind (it resumed elsewhere) changes nothing.
    pub fn leave(
        &mut self,
        member: &str,
        conn: u64,
        how: Leave,
        unsent: VecDeque<Frame>,
        slot: Option<Holding>,
        now: Now,
    ) {
        let Some(i) = self.index_of(member) else {
            return;
        };
        let mine = match &self.members[i].link {
            Link::Live(o) => o.conn == conn,
            Link::Away { conn: c, .. } => *c == conn,
        };
        if !mine {
            return; // resumed on another connection meanwhile
        }
        match how {
            Leave::Lost => match &mut self.members[i].link {
                Link::Live(_) => {
                    let buffer = ResumeBuffer::holding(unsent, self.budget.clone());
                    self.members[i].link =
                        Link::Away { conn, until: now.at + self.limits.grace, buffer, slot };
                    self.metrics.away.fetch_add(1, Relaxed);
                }
                // Already away: a frame found its queue closed before this report came.
                Link::Away { slot: held, .. } => {
                    if held.is_none() {
                        *held = slot;
                    }
                }
            },
            Leave::Clean | Leave::Kicked => self.remove(i, "left", now),
        }
        self.announce(member);
        self.broadcast_devices(now);
    }

    /// The member's new connection `conn` was heard from (its first frame, a pong included), so
    /// the `welcome` before it arrived: the token it resumed with is spent now.
    pub fn confirm(&mut self, member: &str, conn: u64) {
        if let Some(i) = self.index_of(member) {
            let m = &mut self.members[i];
            if matches!(&m.link, Link::Live(out) if out.conn == conn) && m.prev_nonce.take().is_some() {
                // Cluster mode: other nodes learn that the old token is spent too.
                self.announce(member);
            }
        }
    }

    /// A member said `hello`: what it gave (name, app info, inspect) replaces what it said
    /// before, and everyone hears of it. An `inspect` its role may not say refuses the whole
    /// `hello` (`bad_frame`), changing nothing.
    pub fn hello(&mut self, member: &str, hello: Hello, now: Now) -> Result<(), Refusal> {
        let Some(i) = self.index_of(member) else {
            return Ok(());
        };
        let m = &mut self.members[i];
        if let Some(inspect) = hello.inspect {
            inspect
                .check(m.role)
                .map_err(|e| Refusal::new(ErrorCode::BadFrame, format!("bad hello: {e}")))?;
            m.inspect = (inspect != Inspection::Mode(InspectMode::Off)).then_some(inspect);
        }
        if let Some(name) = hello.name {
            m.name = Some(truncate(&name, limits::MAX_NAME_LEN));
        }
        if hello.app_info.is_some() {
            m.app_info = hello.app_info;
        }
        self.announce(member);
        self.broadcast_devices(now);
        Ok(())
    }

    /// Upkeep at `now`: away members whose grace window has ended are removed (requests they
    /// had not answered fail toward their PCs) and everyone hears of it; requests past their
    /// deadline are forgotten.
    pub fn expire(&mut self, now: Now) {
        let mut changed = false;
        while let Some(i) =
            self.members.iter().position(|m| matches!(m.link, Link::Away { until, .. } if until <= now.at))
        {
            let id = self.members[i].id.clone();
            self.remove(i, "did not come back", now);
            self.announce(&id);
            changed = true;
        }
        if changed {
            self.broadcast_devices(now);
        }
        let expired = self.pending.expire(now.at);
        self.forget_frames(expired);
    }
}
