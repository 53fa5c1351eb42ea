//! Joining a room: who may join as whom ([`check`] before the room is found, [`Room::join`]
//! in it), and resuming a member under its old id with a one-use token.

use super::core::Room;
use super::member::{Link, Member, truncate};
use super::pending::PendingTable;
use super::{Frame, Now, Outbox, Refusal};
use crate::token::{Claims, Credential, Tokens, device_key, digests_match, tag};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::msg::Welcome;
use tether_protocol::{ErrorCode, Kind, OutEnvelope, Role, limits};

/// A request to join a room, from the `/ws` query.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Room name.
    pub room: String,
    /// Role.
    pub role: Role,
    /// The room's secret.
    pub secret: String,
    /// Display name.
    pub name: Option<String>,
    /// A resume token from an earlier `welcome`.
    pub resume: Option<String>,
    /// Cluster mode: the token's member is not held here but may resume here (it moved from
    /// another node, or left with its node within the grace window). Set by the caller after
    /// asking Redis ([`Hub::resume_claim`](super::Hub::resume_claim) names the member).
    pub cluster_resume: bool,
    /// The client's address: it pays for a room it creates (`--max-new-rooms-per-ip`).
    /// `None`: not counted (a restored or in-process join).
    pub from: Option<std::net::IpAddr>,
    /// Only into a room open here with members: never makes one, never sets a room's secret
    /// (the HTTP API's member joins a room, it does not open one). Refused `no_target`.
    pub existing_only: bool,
}

/// What a join needs besides the request, worked out before its room is locked.
pub struct Admission<'a> {
    /// What the secret proves.
    pub cred: Credential,
    /// The resume token's claims, when it is valid for this room and role.
    pub claims: Option<Claims>,
    /// Issues the new member's token.
    pub tokens: &'a Tokens,
    /// This process started less than a grace window ago: members of the process before a
    /// restart may come back under their old ids.
    pub restart_open: bool,
}

/// A member's place, as the room gave it.
#[derive(Debug)]
pub struct Admitted {
    /// The member id.
    pub member: Arc<str>,
    /// Whether an earlier member was resumed.
    pub resumed: bool,
    /// Set when the PC secret was first shown to this room: the history store must learn its
    /// tag.
    pub new_room_tag: Option<String>,
}

/// The refusals that need no room: a bad room name, a secret that proves nothing, a device key
/// offered by a PC.
pub fn check(req: &JoinRequest) -> Result<Credential, Refusal> {
    if !limits::valid_room(&req.room) {
        return Err(Refusal::new(
            ErrorCode::BadFrame,
            format!("room must be 1 to {} bytes with no '/' or control characters", limits::MAX_ROOM_LEN),
        ));
    }
    let cred =
        Credential::of(&req.room, &req.secret).map_err(|m| Refusal::new(ErrorCode::Unauthorized, m))?;
    if req.role == Role::Pc && cred.pc.is_none() {
        return Err(Refusal::new(
            ErrorCode::Unauthorized,
            "a device key joins as a device only: a PC joins with the room's PC secret",
        ));
    }
    Ok(cred)
}

impl Room {
    /// Joins (or resumes) a member on `outbox`'s connection. On success the member's
    /// `welcome`, any frames buffered for it, and a fresh `devices` list are already in
    /// `outbox`. An empty room takes the joiner's secret; otherwise a wrong one is refused.
    pub fn join(
        &mut self,
        req: &JoinRequest,
        outbox: Outbox,
        a: Admission<'_>,
        now: Now,
    ) -> Result<Admitted, Refusal> {
        if self.members.is_empty() {
            // A new room, or one emptied by a leave that has not yet dropped it from the hub's
            // map (a window between two locks): either way this joiner sets the secret.
            self.key = a.cred.key;
            self.tag = None;
            self.pending = PendingTable::new(self.budget.clone());
        } else if !digests_match(&self.key, &a.cred.key) {
            return Err(Refusal::new(ErrorCode::Unauthorized, "wrong secret for this room"));
        }
        // The first holder of the PC secret tells the room its history tag.
        let new_room_tag = match (&self.tag, a.cred.pc) {
            (None, Some(pc)) => {
                let t = tag(&pc);
                self.tag = Some(t.as_str().into());
                Some(t)
            }
            _ => None,
        };
        let key_for_pc = (req.role == Role::Pc).then(|| a.cred.pc.as_ref().map(device_key)).flatten();
        let (member, resumed) = self.attach(req, outbox, &a, key_for_pc, now)?;
        Ok(Admitted { member, resumed, new_room_tag })
    }

    fn attach(
        &mut self,
        req: &JoinRequest,
        outbox: Outbox,
        a: &Admission<'_>,
        device_key: Option<String>,
        now: Now,
    ) -> Result<(Arc<str>, bool), Refusal> {
        let claims = a.claims.as_ref().filter(|c| c.room == req.room && c.role == req.role);
        let mut index = None;
        if let Some(c) = claims {
            if let Some(i) = self.index_of(&c.member) {
                // Only the token of the member's latest welcome: one seen before is spent.
                let m = &self.members[i];
                if m.role == req.role
                    && (m.nonce.is_none_or(|n| n == c.nonce) || m.prev_nonce == Some(c.nonce))
                {
                    index = Some(i);
                } else {
                    self.metrics.error(ErrorCode::Unauthorized);
                    return Err(Refusal::new(
                        ErrorCode::Unauthorized,
                        "this resume token was already used: join without it for a new member id",
                    ));
                }
            } else if (req.cluster_resume || (c.instance != a.tokens.instance() && a.restart_open))
                && self.members.len() < self.limits.max_members
            {
                // Issued by the relay process before a restart, which is still inside its
                // grace window, or (cluster mode) by another node the member comes from:
                // restore the member under its old id.
                self.members.push(Member::new(c.member.as_str().into(), req.role, &outbox, now));
                index = Some(self.members.len() - 1);
            }
        }
        let resumed = index.is_some();
        let i = match index {
            Some(i) => i,
            None => {
                if self.members.len() >= self.limits.max_members {
                    return Err(Refusal::new(
                        ErrorCode::RoomFull,
                        format!("room already has {} members", self.members.len()),
                    ));
                }
                let id = loop {
                    let prefix = if req.role == Role::Pc { "p" } else { "d" };
                    let id = format!("{prefix}-{:08x}", rand::random::<u32>());
                    if self.index_of(&id).is_none() {
                        break id;
                    }
                };
                self.members.push(Member::new(id.into(), req.role, &outbox, now));
                self.members.len() - 1
            }
        };
        let conn = outbox.conn;
        let m = &mut self.members[i];
        if let Some(name) = &req.name {
            m.name = Some(truncate(name, limits::MAX_NAME_LEN));
        }
        let old = std::mem::replace(&mut m.link, Link::Live(outbox));
        m.attached = now.ms;
        // A new token for every join: the one just used (if any) is spent.
        let nonce: u64 = rand::random();
        m.nonce = Some(nonce);
        m.prev_nonce = claims.filter(|_| resumed).map(|c| c.nonce);
        let buffered = match old {
            Link::Live(prev) if prev.conn != conn => {
                prev.kick.fire(ErrorCode::Replaced, "this member resumed on another connection");
                VecDeque::new()
            }
            Link::Live(_) => VecDeque::new(),
            Link::Away { mut buffer, .. } => {
                self.metrics.away.fetch_sub(1, Relaxed);
                // Given back to the budget here and taken again by the queue just below.
                buffer.take_all().into()
            }
        };
        if resumed {
            self.metrics.resumes.fetch_add(1, Relaxed);
        }
        let member = m.id.clone();
        let welcome = Welcome {
            member: member.to_string(),
            room: self.name.to_string(),
            role: req.role,
            resume: a.tokens.issue(&req.room, &member, req.role, nonce),
            resumed,
            heartbeat_ms: self.limits.heartbeat.as_millis() as u64,
            grace_ms: self.limits.grace.as_millis() as u64,
            max_frame: self.limits.max_frame as u64,
            inspect_rate: (req.role == Role::Device).then_some(u64::from(self.limits.inspect_rate)),
            device_key,
        };
        let welcome: Frame = OutEnvelope::new(Kind::Welcome, welcome).to_text().into();
        // The queue is fresh and sized for the welcome plus a full resume buffer, so these
        // cannot be refused.
        self.deliver(&member, welcome, now);
        for f in buffered {
            self.deliver(&member, f, now);
        }
        self.announce(&member);
        self.broadcast_devices(now);
        Ok((member, resumed))
    }
}
