//! Cluster mode: a room's members on other nodes ([`Room::set_remote`]), and what arrives
//! from them: a frame for a member here, a PC's request for a device here.

use super::core::Room;
use super::member::Link;
use super::peers::{RemoteMember, RemoteRequest};
use super::pending::Pending;
use super::{Delivered, Frame, Now};
use crate::metrics::Dropped as DropReason;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tether_protocol::{ErrorCode, OutEnvelope, Role};

impl Room {
    /// The room's members as the cluster lists them (`me` is this node); this room keeps the
    /// other nodes' and hands over its own that resumed elsewhere.
    pub fn set_remote(&mut self, me: &str, members: Vec<RemoteMember>, now: Now) {
        let (mine, others): (Vec<RemoteMember>, Vec<RemoteMember>) =
            members.into_iter().partition(|m| m.node == me);
        // Members held here that another node lists with a later attach (node name breaking a
        // tie): they resumed there. Hand them over:
        // a connection still here is replaced; what was buffered for a PC (replies, errors)
        // goes to that node; requests a device had not answered fail toward their PCs with
        // `no_target` (its new node does not know them), so they are not sent on either.
        let moved: Vec<(Arc<str>, String)> = self
            .members
            .iter()
            .filter_map(|m| {
                let o = others.iter().find(|o| *o.info.id == *m.id)?;
                ((o.attached, o.node.as_str()) > (m.attached, me)).then(|| (m.id.clone(), o.node.clone()))
            })
            .collect();
        for (id, node) in moved {
            let Some(i) = self.index_of(&id) else { continue };
            let pc = self.members[i].role == Role::Pc;
            match &mut self.members[i].link {
                Link::Live(out) => out.kick.fire(ErrorCode::Replaced, "this member resumed on another relay"),
                Link::Away { buffer, .. } if pc => {
                    let frames = buffer.take_all();
                    if let Some(peers) = &self.peers {
                        for f in frames {
                            peers.send_frame(&node, &self.name, &id, f.as_str());
                        }
                    }
                }
                Link::Away { .. } => {}
            }
            self.remove(i, "moved to another relay", now);
        }
        // Members held here but missing from the shared list (a restarted Redis forgot them, or
        // another node took this one for dead): say them again. Saying one twice is harmless.
        let missing: Vec<Arc<str>> = self
            .members
            .iter()
            .filter(|m| !mine.iter().any(|x| *x.info.id == *m.id))
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.announce(&id);
        }
        // Of two nodes holding one member, the other node has not yet handed it over: this
        // node's is the live one, so it is neither listed twice nor routed away.
        let others: Vec<RemoteMember> =
            others.into_iter().filter(|o| self.index_of(&o.info.id).is_none()).collect();
        self.remote = others;
        self.broadcast_devices(now);
    }

    /// A frame from another node for member `to`: delivered only to a member held here (a
    /// frame is never sent back over the bus). Most are replies, so each must fit the budgets.
    pub fn bus_frame(&mut self, to: &str, frame: Frame, now: Now) {
        if self.index_of(to).is_some() {
            self.deliver_payload(to, frame, None, now);
        } else {
            self.metrics.dropped(DropReason::NoTarget);
        }
    }

    /// A PC on another node asks a device held here: the pending entry is kept here, so the
    /// reply is recorded and routed back from here. A refusal goes back as an `error` frame.
    pub fn bus_request(&mut self, req: RemoteRequest, now: Now) {
        let refuse = |room: &Room, code: ErrorCode, message: String| {
            let frame = tether_protocol::envelope::error_frame_about(
                Some(&req.pc_id),
                code,
                &message,
                Some(&req.device),
            );
            if let Some(peers) = &room.peers {
                peers.send_frame(&req.pc_node, &req.room, &req.pc, &frame);
            }
        };
        let Ok(msg) = RawValue::from_string(req.request.clone()) else { return };
        let key: (Arc<str>, String) = (req.device.as_str().into(), req.wire_id.clone());
        if self.pending.contains(&key) {
            let m = format!("request {} is already awaiting a reply", req.pc_id);
            return refuse(self, ErrorCode::BadFrame, m);
        }
        let frame: Frame = OutEnvelope {
            kind: req.kind,
            id: Some(&req.wire_id),
            to: req.to.as_deref(),
            from: Some(&req.pc),
            msg: Some(&*msg),
        }
        .to_text()
        .into();
        match self.deliver_payload(&req.device, frame, Some(&req.wire_id), now) {
            Delivered::Queued | Delivered::Buffered => {
                let pending = Pending {
                    pc: req.pc.as_str().into(),
                    pc_id: req.pc_id.clone(),
                    kind: req.kind,
                    target: req.target.clone(),
                    request: req.request.as_str().into(),
                    sent_at: req.sent_at,
                    deadline: now.at + Duration::from_millis(req.timeout_ms),
                    // From a relay that did not send it: the room's own (as before device keys).
                    tag: if req.tag.is_empty() {
                        self.tag.clone().unwrap_or_else(|| "".into())
                    } else {
                        req.tag.as_str().into()
                    },
                };
                self.pending.insert(key, pending);
            }
            Delivered::Full => {
                let m = format!("device {} is not reading its messages", req.device);
                refuse(self, ErrorCode::SlowConsumer, m)
            }
            Delivered::BufferFull => {
                let m = format!("device {} is reconnecting and its buffer is full", req.device);
                refuse(self, ErrorCode::BufferFull, m)
            }
            Delivered::Gone | Delivered::Unreachable => {
                refuse(self, ErrorCode::NoTarget, format!("device {} left", req.device))
            }
            outcome @ (Delivered::RoomFull | Delivered::OverBudget) => {
                let r = Room::budget_refusal(outcome, &format!("device {}", req.device));
                refuse(self, r.code, r.message)
            }
        }
    }

    /// Its remote members by node: (node, member ids).
    pub(super) fn remote_by_node(&self) -> HashMap<&str, Vec<String>> {
        let mut by_node: HashMap<&str, Vec<String>> = HashMap::new();
        for m in &self.remote {
            by_node.entry(m.node.as_str()).or_default().push(m.info.id.clone());
        }
        by_node
    }

    /// Says every member held here again (Redis came back empty).
    pub(super) fn announce_all(&self) {
        for m in &self.members {
            self.announce(&m.id);
        }
    }

    /// Every member held here leaves with this node (it is stopping).
    pub(super) fn depart(&self) {
        if let Some(peers) = &self.peers {
            for m in &self.members {
                peers.member_departed(&self.name, &m.id);
            }
        }
    }
}
