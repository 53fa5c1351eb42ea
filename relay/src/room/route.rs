//! Routing: a PC's `post`/`call` to one device or to all of them ([`Room::request`], or
//! [`Room::dispatch`] saying which devices it went to), and a
//! device's reply to the PC that asked, and only to it ([`Room::take_reply`], then
//! [`Room::forward_reply`] once the pair is in history).

use super::core::Room;
use super::peers::RemoteRequest;
use super::pending::Pending;
use super::{Delivered, Frame, Now, Refusal, unreachable_refusal};
use crate::history::Record;
use crate::metrics::Dropped as DropReason;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;
use tether_protocol::{ErrorCode, Kind, OutEnvelope, Role};

/// What became of a request given to [`Room::dispatch`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// The devices it went to, each of which owes a reply (or an `error` about it): queued
    /// toward a live one, buffered for an away one, or (cluster mode) sent to the node that
    /// holds it. Those on other nodes first, then this node's, in joining order.
    pub sent: Vec<String>,
    /// What went wrong: about one device (`Some(device)`: the others may still answer), or
    /// about the whole request (`None`: it went nowhere).
    pub refused: Vec<(Option<String>, Refusal)>,
}

impl Room {
    /// PC `pc`'s `post` or `call` with id `id`: forwarded to `to`, or to every device. Returns
    /// what went wrong per device (the PC hears of each as an `error` with this id).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        pc: &Arc<str>,
        kind: Kind,
        id: &str,
        to: Option<&str>,
        msg: &RawValue,
        target: String,
        timeout: Duration,
        now: Now,
    ) -> Vec<Refusal> {
        let d = self.dispatch(pc, kind, id, to, msg, target, timeout, now);
        d.refused.into_iter().map(|(_, r)| r).collect()
    }

    /// Like [`Room::request`], saying which devices the request went to and which refusal is
    /// about which device: what the HTTP API needs to wait for each device's answer.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &mut self,
        pc: &Arc<str>,
        kind: Kind,
        id: &str,
        to: Option<&str>,
        msg: &RawValue,
        target: String,
        timeout: Duration,
        now: Now,
    ) -> Dispatched {
        let whole = |r: Refusal| Dispatched { sent: Vec::new(), refused: vec![(None, r)] };
        // Cluster mode: devices on other nodes get the request over the bus; their node keeps
        // the pending entry and routes the reply back.
        let remote: Vec<(String, String)> = self
            .remote
            .iter()
            .filter(|r| r.info.role == Role::Device && to.is_none_or(|t| t == r.info.id))
            .map(|r| (r.info.id.clone(), r.node.clone()))
            .collect();
        let targets: Vec<Arc<str>> = match to {
            Some(to) => match self.members.iter().find(|m| &*m.id == to) {
                Some(m) if m.role == Role::Device => vec![m.id.clone()],
                Some(_) => return whole(Refusal::new(ErrorCode::NoTarget, format!("{to} is not a device"))),
                None if !remote.is_empty() => Vec::new(),
                None => {
                    return whole(Refusal::new(ErrorCode::NoTarget, format!("no device {to} in this room")));
                }
            },
            None => self.members.iter().filter(|m| m.role == Role::Device).map(|m| m.id.clone()).collect(),
        };
        if targets.is_empty() && remote.is_empty() {
            self.metrics.dropped(DropReason::NoTarget);
            return whole(Refusal::new(ErrorCode::NoTarget, "no device in this room"));
        }
        let body_bytes = msg.get().len() * targets.len();
        if self.pending.len() + targets.len() > self.limits.max_pending
            || self.pending.bytes + body_bytes > self.limits.max_pending_bytes
        {
            self.metrics.dropped(DropReason::RateLimited);
            let msg = if self.pending.len() + targets.len() > self.limits.max_pending {
                format!(
                    "{} requests are already awaiting replies in this room (--max-pending {})",
                    self.pending.len(),
                    self.limits.max_pending
                )
            } else {
                format!(
                    "the room's requests awaiting replies already hold {} bytes (--max-pending-bytes {})",
                    self.pending.bytes, self.limits.max_pending_bytes
                )
            };
            return whole(Refusal::new(ErrorCode::RateLimited, msg));
        }
        // Devices see an id unique in the room, so requests of two PCs never collide.
        let wire_id = format!("{pc}:{id}");
        let frame: Frame =
            OutEnvelope { kind, id: Some(&wire_id), to, from: Some(pc), msg: Some(msg) }.to_text().into();
        // The relay holds the body until the replies come, and a frame per device until each
        // is written: all of it must fit the relay's budget.
        if !self.pending.has_room(body_bytes + frame.len() * targets.len()) {
            self.metrics.dropped(DropReason::OverBudget);
            return whole(super::Budget::refusal());
        }
        let request: Arc<str> = msg.get().into();
        // A PC always joined with the PC secret, so its room knows the tag; an empty one (never
        // expected) would store the pair where no secret can read it.
        let history_tag = self.tag.clone().unwrap_or_else(|| Arc::from(""));
        let mut out = Dispatched::default();
        if let Some(peers) = &self.peers {
            for (dev, node) in remote {
                let req = RemoteRequest {
                    room: self.name.to_string(),
                    pc: pc.to_string(),
                    pc_node: peers.node().to_owned(),
                    pc_id: id.to_owned(),
                    device: dev.clone(),
                    wire_id: wire_id.clone(),
                    kind,
                    target: target.clone(),
                    to: to.map(str::to_owned),
                    request: request.to_string(),
                    sent_at: now.ms,
                    timeout_ms: timeout.as_millis() as u64,
                    tag: history_tag.to_string(),
                };
                if peers.send_request(&node, req) {
                    out.sent.push(dev);
                } else {
                    let r = if peers.is_up() {
                        Refusal::new(
                            ErrorCode::BufferFull,
                            format!("device {dev} is on another relay and the cluster bus is not keeping up"),
                        )
                    } else {
                        unreachable_refusal(&dev)
                    };
                    out.refused.push((Some(dev), r));
                }
            }
        }
        for dev in targets {
            let key = (dev.clone(), wire_id.clone());
            if self.pending.contains(&key) {
                let r = Refusal::new(
                    ErrorCode::BadFrame,
                    format!("request {id} is already awaiting a reply from {dev}; use a new id"),
                );
                out.refused.push((Some(dev.to_string()), r));
                continue;
            }
            let refusal = match self.deliver_payload(&dev, frame.clone(), Some(&wire_id), now) {
                Delivered::Queued | Delivered::Buffered => {
                    self.pending.insert(
                        key,
                        Pending {
                            pc: pc.clone(),
                            pc_id: id.to_owned(),
                            kind,
                            target: target.clone(),
                            request: request.clone(),
                            sent_at: now.ms,
                            deadline: now.at + timeout,
                            tag: history_tag.clone(),
                        },
                    );
                    out.sent.push(dev.to_string());
                    continue;
                }
                Delivered::Full => Refusal::new(
                    ErrorCode::SlowConsumer,
                    format!("device {dev} is not reading its messages and was disconnected"),
                ),
                Delivered::BufferFull => Refusal::new(
                    ErrorCode::BufferFull,
                    format!("device {dev} is reconnecting and its buffer is full"),
                ),
                Delivered::Gone => Refusal::new(ErrorCode::NoTarget, format!("device {dev} left")),
                outcome @ (Delivered::RoomFull | Delivered::OverBudget) => {
                    Room::budget_refusal(outcome, &format!("device {dev}"))
                }
                Delivered::Unreachable => unreachable_refusal(&dev),
            };
            out.refused.push((Some(dev.to_string()), refusal));
        }
        out
    }

    /// Device `device`'s `postCb` or `callCb` for request `id`: the request it answers leaves
    /// the pending table, and the pair to store in history is returned with the PC to forward
    /// the reply to. The reply itself goes on with [`Room::forward_reply`].
    pub(super) fn take_reply(
        &mut self,
        device: &Arc<str>,
        kind: Kind,
        id: &str,
        msg: &RawValue,
        now: Now,
    ) -> Result<(Pending, Box<Record>), Refusal> {
        let key = (device.clone(), id.to_owned());
        let Some(p) = self.pending.remove(&key) else {
            self.metrics.dropped(DropReason::NoTarget);
            return Err(Refusal::new(
                ErrorCode::NoTarget,
                format!("no request {id} is awaiting a reply from you (it may have timed out)"),
            ));
        };
        if p.kind.reply_kind() != Some(kind) {
            let expected = p.kind.reply_kind().map_or("", Kind::as_str);
            let msg = format!("request {id} was a {}; answer it with {expected}", p.kind);
            self.pending.insert(key, p);
            return Err(Refusal::new(ErrorCode::BadFrame, msg));
        }
        let device_name = self.index_of(device).and_then(|i| self.members[i].name.clone());
        let record = Box::new(Record {
            room: self.name.to_string(),
            tag: p.tag.to_string(),
            kind: p.kind,
            req_id: p.pc_id.clone(),
            pc: p.pc.to_string(),
            device: device.to_string(),
            device_name,
            target: p.target.clone(),
            request: p.request.to_string(),
            reply: msg.get().to_owned(),
            sent_at: p.sent_at,
            replied_at: now.ms,
        });
        Ok((p, record))
    }

    /// Forwards a reply `frame` to the PC `pc` that asked; when it cannot reach it, the device
    /// that answered request `id` is told why, as if it had been refused at once.
    pub fn forward_reply(&mut self, pc: &str, frame: Frame, device: &str, id: &str, now: Now) {
        let refusal = match self.deliver_payload(pc, frame, None, now) {
            Delivered::Queued | Delivered::Buffered => return,
            Delivered::Full => Refusal::new(ErrorCode::SlowConsumer, "the PC that asked is not reading"),
            Delivered::BufferFull => Refusal::new(
                ErrorCode::BufferFull,
                "the PC that asked is reconnecting and its buffer is full",
            ),
            Delivered::Gone => {
                self.metrics.dropped(DropReason::NoTarget);
                Refusal::new(ErrorCode::NoTarget, "the PC that asked has left (the reply is in history)")
            }
            Delivered::Unreachable => {
                unreachable_refusal("the PC that asked").with_note("the reply is in history")
            }
            outcome @ (Delivered::RoomFull | Delivered::OverBudget) => {
                Room::budget_refusal(outcome, "the PC that asked").with_note("the reply is in history")
            }
        };
        self.metrics.error(refusal.code);
        let frame = tether_protocol::envelope::error_frame(Some(id), refusal.code, &refusal.message);
        self.deliver(device, frame.into(), now);
    }
}
