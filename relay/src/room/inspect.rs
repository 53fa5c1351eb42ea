//! Inspecting the page, the relay's part. A device's `inspect` batches go to the room's PCs
//! that watch (their `hello` said `inspect: "live"` or `"keep"`) and are connected now, as
//! frames that may be dropped ([`Room::inspect`]): they are the page's console and network, a
//! stream the device keeps sending whether or not anyone keeps up, so they must never cost a
//! PC its connection, nor crowd out what must not be lost:
//!
//! - queued only while the PC's queue holds less than half its caps (`--queue-frames`,
//!   `--queue-bytes`) and the relay's budget (`--max-buffered-bytes`) has room; else dropped,
//!   never `slow_consumer`;
//! - never kept for an away PC (no resume buffer): a PC that comes back sees what the device
//!   sends from then on;
//! - never an `error` back to the device per frame: a drop is counted
//!   (`tether_drops_total{reason="inspect_…"}`), and the PC sees a gap in the events' `n`.
//!
//! The device's byte rate (`--inspect-rate`) is checked before, by its connection (`ws.rs`).
//! The `storage` and `eval` requests take the request path (`route.rs`) like `post` and
//! `call`. Whether their pairs, and the batches, are written to history is
//! [`Room::keeps_inspection`]: a batch kept is one history row ([`Room::kept_batch`]), offered
//! to the store without waiting, so that keeping never slows the device down.

use super::core::Room;
use super::member::Link;
use super::queue::Push;
use super::{Frame, Now, Refusal};
use crate::history::Record;
use crate::metrics::Dropped as DropReason;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::msg::{InspectMode, Inspection};
use tether_protocol::{ErrorCode, Kind, OutEnvelope, Role};

/// Whether `frame` is an `inspect` batch as [`Room::inspect`] writes it (`type` first): such a
/// frame is never carried into a resume buffer, also not at shutdown.
pub fn is_inspect_frame(frame: &Frame) -> bool {
    frame.as_str().starts_with(r#"{"type":"inspect","#)
}

/// What became of one `inspect` batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Queued toward this many watching PCs (on the bus, for those on other relays).
    pub sent: usize,
    /// Dropped for this many watching PCs (their queues over half full, the relay's budget,
    /// the bus).
    pub dropped: usize,
}

impl Room {
    /// Device `device`'s `inspect` batch `msg`: to every watching PC connected now, or only
    /// to `to` if it is one. Nothing is ever refused to the device for a drop; only a member
    /// that is not a device is refused (`bad_frame`).
    pub fn inspect(&mut self, device: &str, msg: &RawValue, to: Option<&str>) -> Result<Spread, Refusal> {
        if !self.index_of(device).is_some_and(|i| self.members[i].role == Role::Device) {
            return Err(Refusal::new(ErrorCode::BadFrame, "only a device sends inspect"));
        }
        let wanted = |id: &str| to.is_none_or(|t| t == id);
        let local: Vec<Arc<str>> = self
            .members
            .iter()
            .filter(|m| m.watching().is_some() && matches!(m.link, Link::Live(_)) && wanted(&m.id))
            .map(|m| m.id.clone())
            .collect();
        // Cluster mode: watching PCs on other relays, unless they are away there.
        let remote: Vec<(String, String)> = self
            .remote
            .iter()
            .filter(|r| r.info.role == Role::Pc && !r.info.away && wanted(&r.info.id))
            .filter(|r| r.info.inspect.and_then(Inspection::watching).is_some())
            .map(|r| (r.node.clone(), r.info.id.clone()))
            .collect();
        if local.is_empty() && remote.is_empty() {
            self.metrics.dropped(DropReason::InspectNobody);
            return Ok(Spread::default());
        }
        let frame: Frame =
            OutEnvelope { kind: Kind::Inspect, id: None, to, from: Some(device), msg: Some(msg) }
                .to_text()
                .into();
        let mut spread = Spread::default();
        for pc in local {
            if self.deliver_droppable(&pc, frame.clone()) {
                spread.sent += 1;
            } else {
                spread.dropped += 1;
            }
        }
        if let Some(peers) = &self.peers {
            for (node, pc) in remote {
                if peers.send_droppable(&node, &self.name, &pc, &frame) {
                    self.count_sent(&frame);
                    spread.sent += 1;
                } else {
                    self.metrics.dropped(DropReason::InspectBus);
                    spread.dropped += 1;
                }
            }
        }
        Ok(spread)
    }

    /// Queues an `inspect` `frame` toward PC `to`, held here, if it still watches, is
    /// connected and its queue is less than half full (see [`super::Outbox::push_droppable`]);
    /// else drops it, counted. Whether it was queued.
    pub(super) fn deliver_droppable(&mut self, to: &str, frame: Frame) -> bool {
        let Some(i) = self.index_of(to).filter(|&i| self.members[i].watching().is_some()) else {
            // Gone, or no longer watching (a frame from another relay that had not heard yet).
            self.metrics.dropped(DropReason::InspectNobody);
            return false;
        };
        let Link::Live(out) = &self.members[i].link else {
            self.metrics.dropped(DropReason::InspectNobody);
            return false;
        };
        let len = frame.len();
        match out.push_droppable(frame) {
            Push::Queued => {
                self.count_sent_len(len);
                true
            }
            Push::Full | Push::Closed => {
                self.metrics.dropped(DropReason::InspectQueue);
                false
            }
            Push::OverBudget => {
                self.metrics.dropped(DropReason::InspectBudget);
                false
            }
        }
    }

    fn count_sent(&self, frame: &Frame) {
        self.count_sent_len(frame.len());
    }

    fn count_sent_len(&self, len: usize) {
        self.metrics.frames_out.fetch_add(1, Relaxed);
        self.metrics.inspect_frames.fetch_add(1, Relaxed);
        self.metrics.inspect_bytes.fetch_add(len as u64, Relaxed);
    }

    /// Whether the room's `storage`/`eval` pairs go to history now: while some PC of the room
    /// (on any relay, away or not) said `inspect: "keep"`. Otherwise they are forwarded and
    /// forgotten: what a developer runs in the page, and the page's storage, are not kept
    /// unless asked.
    pub fn keeps_inspection(&self) -> bool {
        let keep = Some(InspectMode::Keep);
        self.members.iter().any(|m| m.watching() == keep)
            || self
                .remote
                .iter()
                .any(|r| r.info.role == Role::Pc && r.info.inspect.and_then(Inspection::watching) == keep)
    }

    /// The history row of device `device`'s batch `msg` received `now`, while the room keeps
    /// inspection (and knows its history tag): `type: "inspect"`, the batch as its `result`,
    /// no request, no PC (it went to every watching one). `None` otherwise.
    pub fn kept_batch(&self, device: &str, msg: &RawValue, now: Now) -> Option<Box<Record>> {
        let tag = self.tag.clone().filter(|_| self.keeps_inspection())?;
        let i = self.index_of(device)?;
        Some(Box::new(Record {
            room: self.name.to_string(),
            tag: tag.to_string(),
            kind: Kind::Inspect,
            req_id: String::new(),
            pc: String::new(),
            device: device.to_owned(),
            device_name: self.members[i].name.clone(),
            target: String::new(),
            request: "null".into(),
            // As a reply body, so that the batch is the row's `result`.
            reply: [r#"{"result":"#, msg.get(), "}"].concat(),
            sent_at: now.ms,
            replied_at: now.ms,
        }))
    }
}
