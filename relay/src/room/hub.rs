//! The [`Hub`]: every room on this node, by name. It finds (or makes) a room, locks it and lets
//! the room decide; it also hands out connection ids, request ids and outbound queues. Like
//! the rooms, it is given the time and never reads the clock.

use super::core::{Leave, Room};
use super::join::{Admission, JoinRequest, check};
use super::peers::{Peers, RemoteMember, RemoteRequest};
use super::queue::{self, Inbox, Outbox};
use super::{Frame, Limits, Now, Refusal};
use crate::history::Store;
use crate::metrics::Metrics;
use crate::token::{Tokens, device_key, digests_match, secret_digest};
use crate::util::lock;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_protocol::msg::Hello;
use tether_protocol::{ErrorCode, Kind, OutEnvelope, Role};

/// Every room on this node.
pub struct Hub {
    pub(super) rooms: Mutex<HashMap<Arc<str>, Arc<Mutex<Room>>>>,
    pub(super) limits: Limits,
    /// Counters for `/metrics` (the relay hands them to whoever else counts).
    pub(super) metrics: Arc<Metrics>,
    tokens: Tokens,
    /// When this process started: members of the process before a restart may resume for a
    /// grace window after it.
    started: Instant,
    next_conn: AtomicU64,
    next_req: AtomicU64,
    /// Cluster mode: the other nodes.
    peers: Option<Arc<dyn Peers>>,
    /// Rooms made per address per minute (`--max-new-rooms-per-ip`).
    creations: crate::per_minute::PerMinute,
}

/// A member's place in a room, held by its connection task.
pub struct Joined {
    /// The room.
    pub room: Arc<Mutex<Room>>,
    /// Its name.
    pub room_name: Arc<str>,
    /// The member id.
    pub member: Arc<str>,
    /// The role.
    pub role: Role,
    /// This connection.
    pub conn: u64,
    /// Whether an earlier member was resumed.
    pub resumed: bool,
    /// Set when this join created the room: the history store must learn its secret tag.
    pub new_room_tag: Option<String>,
}

impl Hub {
    /// A hub with no rooms, started at `now`; resume tokens are signed with `resume_key`.
    pub fn new(
        limits: Limits,
        resume_key: [u8; 32],
        metrics: Arc<Metrics>,
        peers: Option<Arc<dyn Peers>>,
        now: Now,
    ) -> Hub {
        Hub {
            peers,
            creations: crate::per_minute::PerMinute::new(limits.new_rooms_per_ip),
            rooms: Mutex::new(HashMap::new()),
            limits,
            metrics,
            tokens: Tokens::new(resume_key, rand::random()),
            started: now.at,
            next_conn: AtomicU64::new(1),
            next_req: AtomicU64::new(1),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A fresh bounded queue for a new connection.
    pub fn outbox(&self) -> (Outbox, Inbox) {
        let conn = self.next_conn.fetch_add(1, Relaxed);
        let budget = super::Budget::new(self.limits.max_buffered_bytes, self.metrics.clone());
        queue::channel(self.limits.queue_frames, self.limits.queue_bytes, conn, budget)
    }

    /// Rooms with at least one member.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    fn room(&self, name: &str) -> Option<Arc<Mutex<Room>>> {
        lock(&self.rooms).get(name).cloned()
    }

    /// Whether `room` is open right now with the PC secret whose digest is `digest`.
    pub fn live_secret_matches(&self, room: &str, digest: &[u8; 32]) -> Option<bool> {
        let r = self.room(room)?;
        let key = secret_digest(room, &device_key(digest));
        let r = lock(&r);
        Some(digests_match(&r.key, &key))
    }

    /// Joins (or resumes) a member at `now`. On success the member's `welcome`, any frames
    /// buffered for it, and a fresh `devices` list are already in `outbox`.
    pub fn join(&self, req: JoinRequest, outbox: Outbox, now: Now) -> Result<Joined, Refusal> {
        let cred = check(&req)?;
        let claims = req.resume.as_deref().and_then(|t| self.tokens.verify(t));
        let restart_open = now.at.saturating_duration_since(self.started) < self.limits.grace;
        let admission = Admission { cred, claims, tokens: &self.tokens, restart_open };
        let conn = outbox.conn;
        loop {
            // The map's lock is held only to find (or make) the room: the welcome and the
            // member list are built under the room's own lock, so joins to other rooms wait
            // for neither.
            let room_arc = if req.existing_only {
                self.room(&req.room).ok_or_else(not_open)?
            } else {
                self.find_or_make(&req.room, cred.key, req.from, now)?
            };
            let mut room = lock(&room_arc);
            if room.closed {
                // Emptied and dropped from the map between the two locks: look again.
                continue;
            }
            if req.existing_only && room.is_empty() {
                // Emptying, between a leave and its drop from the map: this joiner would set
                // the room's secret.
                return Err(not_open());
            }
            let result = room.join(&req, outbox, admission, now);
            let empty = room.is_empty();
            drop(room);
            if empty {
                // Only a refused join into a room it just made leaves it empty.
                self.drop_if_empty(&req.room);
            }
            let a = result?;
            return Ok(Joined {
                room_name: req.room.as_str().into(),
                room: room_arc,
                member: a.member,
                role: req.role,
                conn,
                resumed: a.resumed,
                new_room_tag: a.new_room_tag,
            });
        }
    }

    /// Like [`Hub::request`], saying which devices the request went to and which refusal is
    /// about which device ([`Room::dispatch`]): the HTTP API waits for each of them. The id is
    /// the relay's own (`rN`), unique on this relay.
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &self,
        j: &Joined,
        kind: Kind,
        to: Option<&str>,
        msg: &RawValue,
        target: String,
        timeout: Duration,
        now: Now,
    ) -> (String, super::route::Dispatched) {
        let id = format!("r{}", self.next_req.fetch_add(1, Relaxed));
        let d = lock(&j.room).dispatch(&j.member, kind, &id, to, msg, target, timeout, now);
        (id, d)
    }

    /// The members of `room` as its `devices` list shows them (those on other nodes too, in
    /// cluster mode); `None` when the room is not open here.
    pub fn members(&self, room: &str) -> Option<Vec<tether_protocol::msg::MemberInfo>> {
        let r = self.room(room)?;
        let r = lock(&r);
        (!r.is_empty()).then(|| r.member_list())
    }

    /// The room called `name`, made (with `key`) when there is none — if `from` may make
    /// one now.
    fn find_or_make(
        &self,
        name: &str,
        key: [u8; 32],
        from: Option<std::net::IpAddr>,
        now: Now,
    ) -> Result<Arc<Mutex<Room>>, Refusal> {
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get(name) {
            return Ok(r.clone());
        }
        if let Some(Err(wait)) = from.map(|ip| self.creations.take(ip, now.at)) {
            self.metrics.refused_rooms.fetch_add(1, Relaxed);
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "this address created {} rooms in the last minute (--max-new-rooms-per-ip): join a room that exists, or try again in {} s",
                    self.limits.new_rooms_per_ip,
                    wait.as_secs().max(1)
                ),
            ));
        }
        let name: Arc<str> = name.into();
        let room =
            Room::new(name.clone(), key, self.limits.clone(), self.metrics.clone(), self.peers.clone());
        let room = Arc::new(Mutex::new(room));
        rooms.insert(name, room.clone());
        self.metrics.rooms.store(rooms.len() as i64, Relaxed);
        Ok(room)
    }

    /// The connection of `j` ended.
    pub fn leave(&self, j: &Joined, conn: u64, how: Leave, now: Now) {
        self.leave_with(j, conn, how, VecDeque::new(), None, now);
    }

    /// Like [`Hub::leave`]; for a member now away, `unsent` (frames its connection had queued
    /// but not written, in order) starts its resume buffer, and `slot` (its address's
    /// connection slot) is held until it resumes or its grace window ends.
    pub fn leave_with(
        &self,
        j: &Joined,
        conn: u64,
        how: Leave,
        unsent: VecDeque<Frame>,
        slot: Option<super::Holding>,
        now: Now,
    ) {
        let mut room = lock(&j.room);
        room.leave(&j.member, conn, how, unsent, slot, now);
        let empty = room.is_empty();
        drop(room);
        if empty {
            self.drop_if_empty(&j.room_name);
        }
    }

    fn drop_if_empty(&self, name: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get(name) {
            let mut room = lock(r);
            if room.is_empty() {
                // A join holding this room's Arc from a moment ago sees this and looks again.
                room.closed = true;
                drop(room);
                rooms.remove(name);
            }
        }
        self.metrics.rooms.store(rooms.len() as i64, Relaxed);
    }

    /// The member's new connection was heard from (see [`Room::confirm`]).
    pub fn confirm(&self, j: &Joined) {
        lock(&j.room).confirm(&j.member, j.conn);
    }

    /// A member said `hello` (see [`Room::hello`]).
    pub fn hello(&self, j: &Joined, hello: Hello, now: Now) -> Result<(), Refusal> {
        lock(&j.room).hello(&j.member, hello, now)
    }

    /// A device's `inspect` batch (see [`Room::inspect`]); and, while the room keeps
    /// inspection, offered to `store` as a history row ([`Room::kept_batch`]): if the write
    /// queue is full it is not kept (`tether_drops_total{reason="inspect_history"}`), rather
    /// than the device be slowed down.
    pub fn inspect(
        &self,
        store: &Store,
        j: &Joined,
        msg: &RawValue,
        to: Option<&str>,
        now: Now,
    ) -> Result<super::Spread, Refusal> {
        let (spread, kept) = {
            let mut room = lock(&j.room);
            let spread = room.inspect(&j.member, msg, to)?;
            (spread, room.kept_batch(&j.member, msg, now))
        };
        if let Some(record) = kept {
            // Written and failed records are counted by the store.
            let then = |outcome: Result<(), String>| {
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "history write of an inspect batch failed");
                }
            };
            if !store.offer(*record, Box::new(then)) {
                self.metrics.dropped(crate::metrics::Dropped::InspectHistory);
            }
        }
        Ok(spread)
    }

    /// A PC's `post`, `call`, `storage` or `eval`: forwarded to `to`, or to every device.
    /// Returns the request id used and what went wrong per device (the PC hears of each as an
    /// `error`).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        j: &Joined,
        kind: Kind,
        id: Option<&str>,
        to: Option<&str>,
        msg: &RawValue,
        target: String,
        timeout: Duration,
        now: Now,
    ) -> (String, Vec<Refusal>) {
        let id = match id {
            Some(id) => id.to_owned(),
            None => format!("r{}", self.next_req.fetch_add(1, Relaxed)),
        };
        let refusals = lock(&j.room).request(&j.member, kind, &id, to, msg, target, timeout, now);
        (id, refusals)
    }

    /// A device's reply (`postCb`, `callCb`, `storageCb`, `evalCb`): queued for history in
    /// `store` and forwarded to the PC that asked (and only to it) once its pair is safe from a
    /// crash of the relay ([`Store::record_then`]).
    /// Returns when it is queued; what goes wrong after that (the PC left, say) reaches the
    /// device as an `error` then. A `storageCb`/`evalCb` while no PC of the room keeps
    /// inspection ([`Room::keeps_inspection`]) is not stored: it is forwarded at once.
    pub async fn reply(
        &self,
        store: &Store,
        j: &Joined,
        kind: Kind,
        id: Option<&str>,
        msg: &RawValue,
        now: Now,
    ) -> Result<(), Refusal> {
        let Some(id) = id else {
            return Err(Refusal::new(
                ErrorCode::BadFrame,
                format!("{kind} needs the id of the request it answers"),
            ));
        };
        let (pending, record, frame) = {
            let mut room = lock(&j.room);
            let (pending, record) = room.take_reply(&j.member, kind, id, msg, now)?;
            let frame: Frame = OutEnvelope {
                kind,
                id: Some(&pending.pc_id),
                to: Some(&pending.pc),
                from: Some(&j.member),
                msg: Some(msg),
            }
            .to_text()
            .into();
            // A `storageCb`/`evalCb` is stored only while a PC of the room keeps inspection;
            // otherwise it goes to its PC at once and is not written anywhere.
            if kind.is_inspection() && !room.keeps_inspection() {
                room.forward_reply(&pending.pc, frame, &j.member, id, now);
                return Ok(());
            }
            (pending, record, frame)
        };
        // The reply goes to the PC once its pair is safe from a crash of the relay: in the
        // reply log (at once, on this task) or committed (from the history writer; this
        // connection goes on reading meanwhile, so one device's replies share commits). It is
        // delivered as of `now`, the reply's arrival (only a PC found gone meanwhile notices:
        // its grace window counts from then).
        let (room, device, id) = (j.room.clone(), j.member.clone(), id.to_owned());
        let then = move |outcome: Result<(), String>| {
            if let Err(e) = outcome {
                // Losing the reply would be worse than losing its history row (counted by the
                // store).
                tracing::error!(error = %e, "history write failed; reply forwarded anyway");
            }
            lock(&room).forward_reply(&pending.pc, frame, &device, &id, now);
        };
        store.record_then(record, Box::new(then)).await;
        Ok(())
    }

    /// The member a valid resume token for `room` and `role` names, with the token's nonce,
    /// when it is not held here.
    pub fn resume_claim(&self, token: &str, room: &str, role: Role) -> Option<(String, u64)> {
        let c = self.tokens.verify(token).filter(|c| c.room == room && c.role == role)?;
        let held = self.room(room).is_some_and(|r| lock(&r).index_of(&c.member).is_some());
        (!held).then_some((c.member, c.nonce))
    }

    /// Whether `token` resumes a member of `room` in `role` that is away here: coming back,
    /// it gives back the connection slot its away self holds.
    pub fn resumes_away(&self, token: &str, room: &str, role: Role) -> bool {
        let Some(c) = self.tokens.verify(token).filter(|c| c.room == room && c.role == role) else {
            return false;
        };
        self.room(room).is_some_and(|r| {
            let r = lock(&r);
            r.index_of(&c.member).is_some_and(|i| r.members[i].is_away())
        })
    }

    /// Cluster mode: whether this node has members in `room`.
    pub fn has_room(&self, room: &str) -> bool {
        lock(&self.rooms).contains_key(room)
    }
}

/// An API member's join into a room that is not open here.
fn not_open() -> Refusal {
    Refusal::new(ErrorCode::NoTarget, "no device in this room: nobody has it open")
}

/// History retention never forgets the row of a room open here.
impl crate::history::OpenRooms for Hub {
    fn is_open(&self, room: &str) -> bool {
        self.has_room(room)
    }
}

impl Hub {
    fn all_rooms(&self) -> Vec<Arc<Mutex<Room>>> {
        lock(&self.rooms).values().cloned().collect()
    }

    /// Cluster mode: for each room with members here, the other nodes its remote members are
    /// on, with their member ids.
    pub fn remote_by_node(&self) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for r in self.all_rooms() {
            let room = lock(&r);
            for (node, ids) in room.remote_by_node() {
                out.push((room.name.to_string(), node.to_owned(), ids));
            }
        }
        out
    }

    /// Cluster mode: the room's members as Redis has them; this node keeps the others'.
    pub fn set_remote(&self, room: &str, members: Vec<RemoteMember>, now: Now) {
        let Some(r) = self.room(room) else { return };
        let Some(peers) = &self.peers else { return };
        lock(&r).set_remote(peers.node(), members, now);
    }

    /// Cluster mode: a frame from another node for a member held here; `droppable`: an
    /// `inspect` batch, dropped rather than queued past half its member's queue.
    pub fn bus_frame(&self, room: &str, to: &str, frame: String, droppable: bool, now: Now) {
        let Some(r) = self.room(room) else {
            if droppable {
                self.metrics.dropped(crate::metrics::Dropped::InspectNobody);
            }
            return;
        };
        let mut r = lock(&r);
        if droppable {
            r.deliver_droppable(to, frame.into());
        } else {
            r.bus_frame(to, frame.into(), now);
        }
    }

    /// Cluster mode: a PC on another node asks a device held here.
    pub fn bus_request(&self, req: RemoteRequest, now: Now) {
        let Some(r) = self.room(&req.room) else {
            let msg = format!("device {} left", req.device);
            let frame = tether_protocol::envelope::error_frame_about(
                Some(&req.pc_id),
                ErrorCode::NoTarget,
                &msg,
                Some(&req.device),
            );
            if let Some(peers) = &self.peers {
                peers.send_frame(&req.pc_node, &req.room, &req.pc, &frame);
            }
            return;
        };
        lock(&r).bus_request(req, now);
    }

    /// Cluster mode, after Redis came back: this node's members are written and announced again
    /// (a restarted Redis forgot them).
    pub fn announce_all(&self) {
        for r in self.all_rooms() {
            lock(&r).announce_all();
        }
    }

    /// Cluster mode, at shutdown: this node's members leave every other node's lists (they come
    /// back, with their ids, when they reconnect).
    pub fn announce_departure(&self) {
        for r in self.all_rooms() {
            lock(&r).depart();
        }
    }

    /// Periodic upkeep at `now`: away members whose grace ended are removed, requests past
    /// their deadline are forgotten, empty rooms are dropped.
    pub fn sweep(&self, now: Now) {
        let rooms: Vec<(Arc<str>, Arc<Mutex<Room>>)> =
            lock(&self.rooms).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, r) in rooms {
            let mut room = lock(&r);
            room.expire(now);
            let empty = room.is_empty();
            drop(room);
            if empty {
                self.drop_if_empty(&name);
            }
        }
    }

    /// How often [`Hub::sweep`] should run: fine enough that grace windows end on time.
    pub fn sweep_every(&self) -> Duration {
        (self.limits.grace / 20).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }
}
