//! Rooms: membership, secrets, presence, resume buffers, and routing between members.
//!
//! [`Hub`] owns every room. Each room sits behind its own mutex, held only for short,
//! synchronous sections (never across an `.await`); frames leave through each member's
//! bounded [`Outbox`], so a slow member can never stall its room.
//!
//! **The room bus seam.** Every way a frame reaches a member goes through [`Room::deliver`]
//! and every membership change through [`Hub::join`], [`Hub::leave`], [`Hub::hello`] and
//! [`Hub::sweep`]. A member is [`Link::Live`] (a socket on this node) or [`Link::Away`]
//! (reconnecting, frames buffered); cluster mode adds a third link, a member held by another
//! node, whose `deliver` publishes on the Redis bus, without touching the WebSocket layer.

use crate::cluster::{Bus, RemoteMember, RemoteRequest};
use crate::history::{Record, Store};
use crate::metrics::{Dropped as DropReason, Metrics};
use crate::token::{Credential, Tokens, device_key, digests_match, secret_digest, tag};
use crate::util::lock;
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tether_protocol::msg::{Devices, Hello, MemberInfo, Welcome};
use tether_protocol::{ErrorCode, Kind, OutEnvelope, Role, limits};
use tokio_util::sync::CancellationToken;

/// One frame of text on its way to a member; cheap to clone for broadcasts.
pub type Frame = Utf8Bytes;

/// A refusal to tell the sender about, as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
}

impl Refusal {
    /// A refusal with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }
}

/// Tells a connection's task to end, and why.
#[derive(Default)]
pub struct Kick {
    token: CancellationToken,
    reason: OnceLock<Refusal>,
}

impl Kick {
    /// Ends the connection with this reason (the first reason given wins).
    pub fn fire(&self, code: ErrorCode, message: impl Into<String>) {
        let _ = self.reason.set(Refusal::new(code, message));
        self.token.cancel();
    }

    /// Resolves once fired.
    pub async fn fired(&self) {
        self.token.cancelled().await;
    }

    /// Why it was fired.
    pub fn reason(&self) -> Refusal {
        self.reason.get().cloned().unwrap_or_else(|| Refusal::new(ErrorCode::Internal, "connection ended"))
    }
}

/// One connection's bounded outbound queue: frames in order, at most `max_frames` of them and
/// `max_bytes` in all. A plain deque under a lock with a wake-up, rather than a channel: a
/// connection that is idle holds no more than this struct (a channel keeps a block of slots
/// allocated per connection, which thousands of idle phones pay for).
struct Queue {
    state: Mutex<QueueState>,
    ready: tokio::sync::Notify,
}

struct QueueState {
    frames: VecDeque<Frame>,
    /// Their total size.
    bytes: usize,
    /// The reading side is gone: nothing more is accepted.
    closed: bool,
}

/// The sending side of one connection's bounded outbound queue.
#[derive(Clone)]
pub struct Outbox {
    queue: Arc<Queue>,
    max_frames: usize,
    max_bytes: usize,
    /// Ends the connection that reads this queue.
    pub kick: Arc<Kick>,
    /// Identifies the connection, so a stale task cannot detach a member that resumed elsewhere.
    pub conn: u64,
}

/// The receiving side, read by the connection's task. Dropping it closes the queue (and
/// frees what it held): later pushes see [`Push::Closed`].
pub struct Inbox {
    queue: Arc<Queue>,
}

impl Inbox {
    /// The next frame to write to the socket; waits until there is one.
    pub async fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) = self.try_recv() {
                return f;
            }
            // A push after the check above leaves a permit, so this wakes at once then.
            self.queue.ready.notified().await;
        }
    }

    /// A frame already queued, if any (to batch writes).
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut state = lock(&self.queue.state);
        let f = state.frames.pop_front()?;
        state.bytes -= f.len();
        Some(f)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut state = lock(&self.queue.state);
        state.closed = true;
        state.frames = VecDeque::new();
        state.bytes = 0;
    }
}

enum Push {
    Queued,
    Full,
    Closed,
}

impl Outbox {
    fn push(&self, f: Frame) -> Push {
        let len = f.len();
        {
            let mut state = lock(&self.queue.state);
            if state.closed {
                return Push::Closed;
            }
            // One frame always fits in an empty queue, however large: the byte cap bounds a
            // queue's growth, not the largest frame (that is --max-frame's job).
            let before = state.bytes;
            if state.frames.len() >= self.max_frames || (before > 0 && before + len > self.max_bytes) {
                return Push::Full;
            }
            state.bytes += len;
            state.frames.push_back(f);
        }
        self.queue.ready.notify_one();
        Push::Queued
    }
}

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
        /// Frames addressed to it meanwhile, in order.
        buffer: VecDeque<Frame>,
        /// Their total size.
        bytes: usize,
    },
}

struct Member {
    id: Arc<str>,
    role: Role,
    name: Option<String>,
    app_info: Option<serde_json::Value>,
    since: u64,
    /// When its current connection attached (ms since the epoch): in cluster mode, of two nodes
    /// holding the same member, the later attach is the member's real place.
    attached: u64,
    /// The nonce of the resume token its last `welcome` carried: only that token resumes it.
    /// `None` for a member restored from an older relay's snapshot (any valid token, once).
    nonce: Option<u64>,
    /// The nonce of the token it resumed with, still taken until its new connection is heard
    /// from: a `welcome` lost with a connection that died at once must not strand the member.
    prev_nonce: Option<u64>,
    link: Link,
}

/// Requests awaiting replies, by (device, request id as the device sees it), with the bytes
/// their bodies hold: both are bounded per room.
#[derive(Default)]
struct PendingTable {
    map: HashMap<(Arc<str>, String), Pending>,
    bytes: usize,
}

impl PendingTable {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn contains(&self, key: &(Arc<str>, String)) -> bool {
        self.map.contains_key(key)
    }

    fn insert(&mut self, key: (Arc<str>, String), p: Pending) {
        self.bytes += p.request.len();
        if let Some(old) = self.map.insert(key, p) {
            self.bytes -= old.request.len();
        }
    }

    fn remove(&mut self, key: &(Arc<str>, String)) -> Option<Pending> {
        let p = self.map.remove(key)?;
        self.bytes -= p.request.len();
        Some(p)
    }

    fn retain(&mut self, mut keep: impl FnMut(&(Arc<str>, String), &Pending) -> bool) {
        let bytes = &mut self.bytes;
        self.map.retain(|k, p| {
            let kept = keep(k, p);
            if !kept {
                *bytes -= p.request.len();
            }
            kept
        });
    }

    fn keys_for(&self, device: &str) -> Vec<(Arc<str>, String)> {
        self.map.keys().filter(|(dev, _)| &**dev == device).cloned().collect()
    }
}

struct Pending {
    pc: Arc<str>,
    /// The id the PC gave; devices see `{pc}:{id}`, so two PCs may both use "1".
    pc_id: String,
    kind: Kind,
    target: String,
    /// The request body, shared by every device of a broadcast.
    request: Arc<str>,
    sent_at: u64,
    deadline: Instant,
    /// The history tag of the asking PC's secret: the pair is stored under it.
    tag: Arc<str>,
}

/// What became of a frame given to [`Room::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// In the member's outbound queue.
    Queued,
    /// In the away member's resume buffer.
    Buffered,
    /// The member's queue was full: it is being disconnected as a slow consumer.
    Full,
    /// The away member's buffer was full.
    BufferFull,
    /// The member is on another node and the bus between nodes is down.
    Unreachable,
    /// No such member.
    Gone,
}

/// One room.
pub struct Room {
    name: Arc<str>,
    /// The digest of the room's device key: every join is checked against it (a PC secret
    /// after deriving its device key).
    key: [u8; 32],
    /// The history tag of the PC secret, once someone who holds it joined (a room opened by
    /// a device with the device key does not know it until its PC comes).
    tag: Option<Arc<str>>,
    members: Vec<Member>,
    /// Requests awaiting replies, by (device, request id).
    pending: PendingTable,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Cluster mode: the room's members on other nodes, and the bus that reaches them.
    remote: Vec<RemoteMember>,
    bus: Option<Arc<Bus>>,
}

/// The per-room limits, from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Ping interval.
    pub heartbeat: Duration,
    /// Away grace window.
    pub grace: Duration,
    /// Frames kept for an away member.
    pub resume_buffer: usize,
    /// Bytes kept for an away member (and queued toward a live one).
    pub queue_bytes: usize,
    /// Frames queued toward a live member.
    pub queue_frames: usize,
    /// Members per room.
    pub max_members: usize,
    /// Requests awaiting replies per room.
    pub max_pending: usize,
    /// Bytes of request bodies held per room while their replies are awaited (each device of
    /// a broadcast counts the body once).
    pub max_pending_bytes: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// Frames per second one connection may send.
    pub rate: u32,
    /// Burst above the rate.
    pub burst: u32,
}

impl Limits {
    /// From the relay's config.
    pub fn from_config(c: &crate::Config) -> Limits {
        Limits {
            heartbeat: c.heartbeat(),
            grace: c.grace(),
            resume_buffer: c.resume_buffer,
            queue_bytes: c.queue_bytes,
            // The queue must take the welcome, every buffered frame and a devices list at once.
            queue_frames: (c.queue_frames as usize).max(c.resume_buffer + 8),
            max_members: c.max_room_members.max(1),
            max_pending: c.max_pending.max(1),
            max_pending_bytes: c.max_pending_bytes,
            max_frame: c.max_frame,
            rate: c.rate_limit,
            burst: c.rate_burst,
        }
    }
}

impl Room {
    fn index_of(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.id == id)
    }

    /// Gives `frame` to member `to`: queued if live, buffered if away. A live member whose
    /// queue is full is kicked as a slow consumer.
    pub fn deliver(&mut self, to: &str, frame: Frame) -> Delivered {
        let Some(i) = self.index_of(to) else {
            // Cluster mode: a member held by another node is reached over the bus.
            if let (Some(bus), Some(r)) = (&self.bus, self.remote.iter().find(|r| r.info.id == to)) {
                return if bus.send_frame(&r.node, &self.name, to, &frame) {
                    self.metrics.frames_out.fetch_add(1, Relaxed);
                    Delivered::Queued
                } else if bus.is_up() {
                    self.metrics.dropped(DropReason::BufferFull);
                    Delivered::BufferFull
                } else {
                    self.metrics.dropped(DropReason::NoTarget);
                    Delivered::Unreachable
                };
            }
            return Delivered::Gone;
        };
        let m = &mut self.members[i];
        let outcome = match &mut m.link {
            Link::Live(out) => match out.push(frame.clone()) {
                Push::Queued => Delivered::Queued,
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
                        until: Instant::now() + self.limits.grace,
                        buffer: VecDeque::new(),
                        bytes: 0,
                    };
                    self.metrics.away.fetch_add(1, Relaxed);
                    return self.deliver(to, frame);
                }
            },
            Link::Away { buffer, bytes, .. } => {
                if buffer.len() >= self.limits.resume_buffer || *bytes + frame.len() > self.limits.queue_bytes
                {
                    Delivered::BufferFull
                } else {
                    *bytes += frame.len();
                    buffer.push_back(frame);
                    Delivered::Buffered
                }
            }
        };
        match outcome {
            Delivered::Queued => {
                self.metrics.frames_out.fetch_add(1, Relaxed);
            }
            Delivered::Full => self.metrics.dropped(DropReason::SlowConsumer),
            Delivered::BufferFull => self.metrics.dropped(DropReason::BufferFull),
            _ => {}
        }
        outcome
    }

    fn info(m: &Member) -> MemberInfo {
        MemberInfo {
            id: m.id.to_string(),
            role: m.role,
            name: m.name.clone(),
            app_info: m.app_info.clone(),
            since: m.since,
            away: matches!(m.link, Link::Away { .. }),
        }
    }

    fn devices_frame(&self) -> Frame {
        let mut members: Vec<MemberInfo> = self.members.iter().map(Room::info).collect();
        if !self.remote.is_empty() {
            members.extend(self.remote.iter().map(|r| r.info.clone()));
            members.sort_by_key(|m| m.since);
        }
        OutEnvelope::new(Kind::Devices, Devices { members }).to_text().into()
    }

    /// Cluster mode: tells the other nodes that this node's member `id` changed (or is gone).
    fn announce(&self, id: &str) {
        if let Some(bus) = &self.bus {
            let info = self.index_of(id).map(|i| {
                let m = &self.members[i];
                (Room::info(m), m.attached, m.nonce.into_iter().chain(m.prev_nonce).collect())
            });
            bus.member_changed(&self.name, id, info);
        }
    }

    /// Pushes the member list to every live member.
    fn broadcast_devices(&mut self) {
        let frame = self.devices_frame();
        let live: Vec<Arc<str>> =
            self.members.iter().filter(|m| matches!(m.link, Link::Live(_))).map(|m| m.id.clone()).collect();
        for id in live {
            self.deliver(&id, frame.clone());
        }
    }

    /// Removes member `i`; requests it had not answered fail toward their PCs.
    fn remove(&mut self, i: usize, why: &str) {
        let m = self.members.remove(i);
        if matches!(m.link, Link::Away { .. }) {
            self.metrics.away.fetch_sub(1, Relaxed);
        }
        let orphaned = self.pending.keys_for(&m.id);
        for key in orphaned {
            if let Some(p) = self.pending.remove(&key) {
                let msg = format!("device {} {why} before replying", m.id);
                let frame = tether_protocol::envelope::error_frame(Some(&p.pc_id), ErrorCode::NoTarget, &msg);
                self.metrics.error(ErrorCode::NoTarget);
                self.deliver(&p.pc, frame.into());
            }
        }
        // Replies to a PC that left have nowhere to go; the device is told when it answers.
        self.pending.retain(|_, p| p.pc != m.id);
    }
}

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
    /// asking Redis ([`Hub::resume_claim`] names the member).
    pub cluster_resume: bool,
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

/// What a relay stopping on SIGTERM leaves in its store for the next process: see
/// [`Hub::snapshot`] and [`Hub::restore`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, ms since the epoch.
    saved_at: u64,
    rooms: Vec<SnapRoom>,
}

impl Snapshot {
    /// How many rooms it holds.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapRoom {
    name: String,
    /// The PC secret's digest: what relays before device keys saved (still restored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    digest: Vec<u8>,
    /// The device key's digest.
    #[serde(default)]
    key: Vec<u8>,
    /// The PC secret's history tag, when the room knows it.
    #[serde(default)]
    tag: Option<String>,
    members: Vec<SnapMember>,
    pending: Vec<SnapPending>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapMember {
    id: String,
    role: Role,
    name: Option<String>,
    app_info: Option<serde_json::Value>,
    since: u64,
    buffer: Vec<String>,
    /// The nonces of the tokens it may resume with (see `Member::nonce`).
    #[serde(default)]
    nonce: Option<u64>,
    #[serde(default)]
    prev_nonce: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapPending {
    device: String,
    id: String,
    pc: String,
    pc_id: String,
    kind: Kind,
    target: String,
    request: String,
    sent_at: u64,
    left_ms: u64,
    /// The asking PC's history tag; the room's when absent.
    #[serde(default)]
    tag: Option<String>,
}

/// Every room on this node.
pub struct Hub {
    rooms: Mutex<HashMap<Arc<str>, Arc<Mutex<Room>>>>,
    limits: Limits,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The history store.
    pub store: Store,
    tokens: Tokens,
    started: Instant,
    next_conn: AtomicU64,
    next_req: AtomicU64,
    bus: Option<Arc<Bus>>,
}

impl Hub {
    /// A hub with no rooms.
    pub fn new(
        limits: Limits,
        store: Store,
        resume_key: [u8; 32],
        metrics: Arc<Metrics>,
        bus: Option<Arc<Bus>>,
    ) -> Hub {
        Hub {
            bus,
            rooms: Mutex::new(HashMap::new()),
            limits,
            metrics,
            store,
            tokens: Tokens::new(resume_key, rand::random()),
            started: Instant::now(),
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
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState { frames: VecDeque::new(), bytes: 0, closed: false }),
            ready: tokio::sync::Notify::new(),
        });
        let out = Outbox {
            queue: queue.clone(),
            max_frames: self.limits.queue_frames,
            max_bytes: self.limits.queue_bytes,
            kick: Arc::new(Kick::default()),
            conn: self.next_conn.fetch_add(1, Relaxed),
        };
        (out, Inbox { queue })
    }

    /// Rooms with at least one member.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Whether `room` is open right now with the PC secret whose digest is `digest`.
    pub fn live_secret_matches(&self, room: &str, digest: &[u8; 32]) -> Option<bool> {
        let r = lock(&self.rooms).get(room).cloned()?;
        let key = secret_digest(room, &device_key(digest));
        let r = lock(&r);
        Some(digests_match(&r.key, &key))
    }

    /// Joins (or resumes) a member. On success the member's `welcome`, any frames buffered
    /// for it, and a fresh `devices` list are already in `outbox`.
    pub fn join(&self, req: JoinRequest, outbox: Outbox) -> Result<Joined, Refusal> {
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
        let conn = outbox.conn;
        let mut rooms = lock(&self.rooms);
        let (room_arc, mut created) = match rooms.get(req.room.as_str()) {
            Some(r) => (r.clone(), false),
            None => {
                let name: Arc<str> = req.room.as_str().into();
                let room = Arc::new(Mutex::new(Room {
                    name: name.clone(),
                    key: cred.key,
                    tag: None,
                    // A PC and a phone, most often: room for two, not the four a first push reserves.
                    members: Vec::with_capacity(2),
                    pending: PendingTable::default(),
                    limits: self.limits.clone(),
                    metrics: self.metrics.clone(),
                    remote: Vec::new(),
                    bus: self.bus.clone(),
                }));
                rooms.insert(name, room.clone());
                self.metrics.rooms.store(rooms.len() as i64, Relaxed);
                (room, true)
            }
        };
        let mut room = lock(&room_arc);
        if !created && room.members.is_empty() {
            // Emptied by a leave that has not yet dropped it from the map (a window between two
            // locks): it is an empty room, so this joiner sets the secret.
            room.key = cred.key;
            room.tag = None;
            room.pending = PendingTable::default();
            created = true;
        }
        if !created && !digests_match(&room.key, &cred.key) {
            return Err(Refusal::new(ErrorCode::Unauthorized, "wrong secret for this room"));
        }
        // The first holder of the PC secret tells the room its history tag.
        let new_room_tag = match (&room.tag, cred.pc) {
            (None, Some(pc)) => {
                let t = tag(&pc);
                room.tag = Some(t.as_str().into());
                Some(t)
            }
            _ => None,
        };
        let key_for_pc = (req.role == Role::Pc).then(|| cred.pc.as_ref().map(device_key)).flatten();
        let result = self.attach(&mut room, &req, outbox, key_for_pc);
        let empty = room.members.is_empty();
        drop(room);
        if empty {
            // Only a refused join into a room it just created leaves it empty.
            rooms.remove(req.room.as_str());
            self.metrics.rooms.store(rooms.len() as i64, Relaxed);
        }
        let (member, resumed) = result?;
        Ok(Joined {
            room_name: req.room.as_str().into(),
            room: room_arc.clone(),
            member,
            role: req.role,
            conn,
            resumed,
            new_room_tag,
        })
    }

    fn attach(
        &self,
        room: &mut Room,
        req: &JoinRequest,
        outbox: Outbox,
        device_key: Option<String>,
    ) -> Result<(Arc<str>, bool), Refusal> {
        let claims = req
            .resume
            .as_deref()
            .and_then(|t| self.tokens.verify(t))
            .filter(|c| c.room == req.room && c.role == req.role);
        let mut index = None;
        if let Some(c) = &claims {
            if let Some(i) = room.index_of(&c.member) {
                // Only the token of the member's latest welcome: one seen before is spent.
                let m = &room.members[i];
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
            } else if (req.cluster_resume
                || (c.instance != self.tokens.instance() && self.started.elapsed() < self.limits.grace))
                && room.members.len() < self.limits.max_members
            {
                // Issued by the relay process before a restart, which is still inside its
                // grace window, or (cluster mode) by another node the member comes from:
                // restore the member under its old id.
                room.members.push(self.new_member(c.member.as_str().into(), req, &outbox));
                index = Some(room.members.len() - 1);
            }
        }
        let resumed = index.is_some();
        let i = match index {
            Some(i) => i,
            None => {
                if room.members.len() >= self.limits.max_members {
                    return Err(Refusal::new(
                        ErrorCode::RoomFull,
                        format!("room already has {} members", room.members.len()),
                    ));
                }
                let id = loop {
                    let prefix = if req.role == Role::Pc { "p" } else { "d" };
                    let id = format!("{prefix}-{:08x}", rand::random::<u32>());
                    if room.index_of(&id).is_none() {
                        break id;
                    }
                };
                room.members.push(self.new_member(id.into(), req, &outbox));
                room.members.len() - 1
            }
        };
        let conn = outbox.conn;
        let m = &mut room.members[i];
        if let Some(name) = &req.name {
            m.name = Some(truncate(name, limits::MAX_NAME_LEN));
        }
        let old = std::mem::replace(&mut m.link, Link::Live(outbox.clone()));
        m.attached = crate::now_ms();
        // A new token for every join: the one just used (if any) is spent.
        let nonce: u64 = rand::random();
        m.nonce = Some(nonce);
        m.prev_nonce = claims.as_ref().filter(|_| resumed).map(|c| c.nonce);
        let buffered = match old {
            Link::Live(prev) if prev.conn != conn => {
                prev.kick.fire(ErrorCode::Replaced, "this member resumed on another connection");
                VecDeque::new()
            }
            Link::Live(_) => VecDeque::new(),
            Link::Away { buffer, .. } => {
                self.metrics.away.fetch_sub(1, Relaxed);
                buffer
            }
        };
        if resumed {
            self.metrics.resumes.fetch_add(1, Relaxed);
        }
        let member = m.id.clone();
        let welcome = Welcome {
            member: member.to_string(),
            room: room.name.to_string(),
            role: req.role,
            resume: self.tokens.issue(&req.room, &member, req.role, nonce),
            resumed,
            heartbeat_ms: self.limits.heartbeat.as_millis() as u64,
            grace_ms: self.limits.grace.as_millis() as u64,
            max_frame: self.limits.max_frame as u64,
            device_key,
        };
        let welcome: Frame = OutEnvelope::new(Kind::Welcome, welcome).to_text().into();
        // The queue is fresh and sized for the welcome plus a full resume buffer, so these
        // cannot be refused.
        room.deliver(&member, welcome);
        for f in buffered {
            room.deliver(&member, f);
        }
        room.announce(&member);
        room.broadcast_devices();
        Ok((member, resumed))
    }

    fn new_member(&self, id: Arc<str>, req: &JoinRequest, outbox: &Outbox) -> Member {
        Member {
            nonce: None,
            prev_nonce: None,
            id,
            role: req.role,
            name: None,
            app_info: None,
            since: crate::now_ms(),
            attached: crate::now_ms(),
            link: Link::Live(outbox.clone()),
        }
    }

    /// The connection of `j` ended.
    pub fn leave(&self, j: &Joined, conn: u64, how: Leave) {
        self.leave_with(j, conn, how, VecDeque::new());
    }

    /// Like [`Hub::leave`]; for a member now away, `unsent` (frames its connection had queued
    /// but not written, in order) starts its resume buffer.
    pub fn leave_with(&self, j: &Joined, conn: u64, how: Leave, unsent: VecDeque<Frame>) {
        let mut room = lock(&j.room);
        let Some(i) = room.index_of(&j.member) else {
            return;
        };
        let mine = match &room.members[i].link {
            Link::Live(o) => o.conn == conn,
            Link::Away { conn: c, .. } => *c == conn,
        };
        if !mine {
            return; // resumed on another connection meanwhile
        }
        match how {
            Leave::Lost => {
                if let Link::Live(_) = room.members[i].link {
                    let bytes = unsent.iter().map(|f| f.len()).sum();
                    room.members[i].link =
                        Link::Away { conn, until: Instant::now() + self.limits.grace, buffer: unsent, bytes };
                    self.metrics.away.fetch_add(1, Relaxed);
                }
                room.announce(&j.member);
                room.broadcast_devices();
            }
            Leave::Clean | Leave::Kicked => {
                room.remove(i, "left");
                room.announce(&j.member);
                room.broadcast_devices();
            }
        }
        let empty = room.members.is_empty();
        drop(room);
        if empty {
            self.drop_if_empty(&j.room_name);
        }
    }

    fn drop_if_empty(&self, name: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get(name) {
            if lock(r).members.is_empty() {
                rooms.remove(name);
            }
        }
        self.metrics.rooms.store(rooms.len() as i64, Relaxed);
    }

    /// The member's new connection was heard from (its first frame, a pong included), so the
    /// `welcome` before it arrived: the token it resumed with is spent now.
    pub fn confirm(&self, j: &Joined) {
        let mut room = lock(&j.room);
        if let Some(i) = room.index_of(&j.member) {
            let m = &mut room.members[i];
            if matches!(&m.link, Link::Live(out) if out.conn == j.conn) && m.prev_nonce.take().is_some() {
                // Cluster mode: other nodes learn that the old token is spent too.
                room.announce(&j.member);
            }
        }
    }

    /// A member said `hello`: its name and app info change, and everyone hears of it.
    pub fn hello(&self, j: &Joined, hello: Hello) {
        let mut room = lock(&j.room);
        let Some(i) = room.index_of(&j.member) else {
            return;
        };
        let m = &mut room.members[i];
        if let Some(name) = hello.name {
            m.name = Some(truncate(&name, limits::MAX_NAME_LEN));
        }
        if hello.app_info.is_some() {
            m.app_info = hello.app_info;
        }
        room.announce(&j.member);
        room.broadcast_devices();
    }

    /// A PC's `post` or `call`: forwarded to `to`, or to every device. Returns the request id
    /// used and what went wrong per device (the PC hears of each as an `error`).
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
    ) -> (String, Vec<Refusal>) {
        let id = match id {
            Some(id) => id.to_owned(),
            None => format!("r{}", self.next_req.fetch_add(1, Relaxed)),
        };
        let mut room = lock(&j.room);
        // Cluster mode: devices on other nodes get the request over the bus; their node keeps
        // the pending entry and routes the reply back.
        let remote: Vec<(String, String)> = room
            .remote
            .iter()
            .filter(|r| r.info.role == Role::Device && to.is_none_or(|t| t == r.info.id))
            .map(|r| (r.info.id.clone(), r.node.clone()))
            .collect();
        let targets: Vec<Arc<str>> = match to {
            Some(to) => match room.members.iter().find(|m| &*m.id == to) {
                Some(m) if m.role == Role::Device => vec![m.id.clone()],
                Some(_) => {
                    return (id, vec![Refusal::new(ErrorCode::NoTarget, format!("{to} is not a device"))]);
                }
                None if !remote.is_empty() => Vec::new(),
                None => {
                    return (
                        id,
                        vec![Refusal::new(ErrorCode::NoTarget, format!("no device {to} in this room"))],
                    );
                }
            },
            None => room.members.iter().filter(|m| m.role == Role::Device).map(|m| m.id.clone()).collect(),
        };
        if targets.is_empty() && remote.is_empty() {
            self.metrics.dropped(DropReason::NoTarget);
            return (id, vec![Refusal::new(ErrorCode::NoTarget, "no device in this room")]);
        }
        let body_bytes = msg.get().len() * targets.len();
        if room.pending.len() + targets.len() > self.limits.max_pending
            || room.pending.bytes + body_bytes > self.limits.max_pending_bytes
        {
            self.metrics.dropped(DropReason::RateLimited);
            let msg = format!("{} requests are already awaiting replies in this room", room.pending.len());
            return (id, vec![Refusal::new(ErrorCode::RateLimited, msg)]);
        }
        // Devices see an id unique in the room, so requests of two PCs never collide.
        let wire_id = format!("{}:{id}", j.member);
        let frame: Frame =
            OutEnvelope { kind, id: Some(&wire_id), to, from: Some(&j.member), msg: Some(msg) }
                .to_text()
                .into();
        let now = Instant::now();
        let sent_at = crate::now_ms();
        let request: Arc<str> = msg.get().into();
        // A PC always joined with the PC secret, so its room knows the tag; an empty one (never
        // expected) would store the pair where no secret can read it.
        let history_tag = room.tag.clone().unwrap_or_else(|| Arc::from(""));
        let mut refusals = Vec::new();
        if let Some(bus) = &self.bus {
            for (dev, node) in remote {
                let req = RemoteRequest {
                    room: room.name.to_string(),
                    pc: j.member.to_string(),
                    pc_node: bus.node().to_owned(),
                    pc_id: id.clone(),
                    device: dev.clone(),
                    wire_id: wire_id.clone(),
                    kind,
                    target: target.clone(),
                    to: to.map(str::to_owned),
                    request: request.to_string(),
                    sent_at,
                    timeout_ms: timeout.as_millis() as u64,
                    tag: history_tag.to_string(),
                };
                if !bus.send_request(&node, req) {
                    refusals.push(if bus.is_up() {
                        Refusal::new(
                            ErrorCode::BufferFull,
                            format!("device {dev} is on another relay and the cluster bus is not keeping up"),
                        )
                    } else {
                        unreachable_refusal(&dev)
                    });
                }
            }
        }
        for dev in targets {
            let key = (dev.clone(), wire_id.clone());
            if room.pending.contains(&key) {
                refusals.push(Refusal::new(
                    ErrorCode::BadFrame,
                    format!("request {id} is already awaiting a reply from {dev}; use a new id"),
                ));
                continue;
            }
            match room.deliver(&dev, frame.clone()) {
                Delivered::Queued | Delivered::Buffered => {
                    room.pending.insert(
                        key,
                        Pending {
                            pc: j.member.clone(),
                            pc_id: id.clone(),
                            kind,
                            target: target.clone(),
                            request: request.clone(),
                            sent_at,
                            deadline: now + timeout,
                            tag: history_tag.clone(),
                        },
                    );
                }
                Delivered::Full => refusals.push(Refusal::new(
                    ErrorCode::SlowConsumer,
                    format!("device {dev} is not reading its messages and was disconnected"),
                )),
                Delivered::BufferFull => refusals.push(Refusal::new(
                    ErrorCode::BufferFull,
                    format!("device {dev} is reconnecting and its buffer is full"),
                )),
                Delivered::Gone => {
                    refusals.push(Refusal::new(ErrorCode::NoTarget, format!("device {dev} left")))
                }
                Delivered::Unreachable => refusals.push(unreachable_refusal(&dev)),
            }
        }
        (id, refusals)
    }

    /// A device's `postCb` or `callCb`: queued for history and forwarded to the PC that asked
    /// (and only to it) once its pair is committed. Returns when it is queued; what goes wrong
    /// after that (the PC left, say) reaches the device as an `error` then.
    pub async fn reply(
        &self,
        j: &Joined,
        kind: Kind,
        id: Option<&str>,
        msg: &RawValue,
    ) -> Result<(), Refusal> {
        let Some(id) = id else {
            return Err(Refusal::new(
                ErrorCode::BadFrame,
                format!("{kind} needs the id of the request it answers"),
            ));
        };
        let (pending, record) = {
            let mut room = lock(&j.room);
            let key = (j.member.clone(), id.to_owned());
            let Some(p) = room.pending.remove(&key) else {
                self.metrics.dropped(DropReason::NoTarget);
                return Err(Refusal::new(
                    ErrorCode::NoTarget,
                    format!("no request {id} is awaiting a reply from you (it may have timed out)"),
                ));
            };
            if p.kind.reply_kind() != Some(kind) {
                let expected = p.kind.reply_kind().map_or("", Kind::as_str);
                let msg = format!("request {id} was a {}; answer it with {expected}", p.kind);
                room.pending.insert(key, p);
                return Err(Refusal::new(ErrorCode::BadFrame, msg));
            }
            let device_name = room.index_of(&j.member).and_then(|i| room.members[i].name.clone());
            let record = Box::new(Record {
                room: room.name.to_string(),
                tag: p.tag.to_string(),
                kind: p.kind,
                req_id: p.pc_id.clone(),
                pc: p.pc.to_string(),
                device: j.member.to_string(),
                device_name,
                target: p.target.clone(),
                request: p.request.to_string(),
                reply: msg.get().to_owned(),
                sent_at: p.sent_at,
                replied_at: crate::now_ms(),
            });
            (p, record)
        };
        let frame: Frame = OutEnvelope {
            kind,
            id: Some(&pending.pc_id),
            to: Some(&pending.pc),
            from: Some(&j.member),
            msg: Some(msg),
        }
        .to_text()
        .into();
        // The reply goes to the PC once its pair is committed, from the history writer; this
        // connection goes on reading meanwhile, so one device's replies share commits.
        let (room, metrics, device, id) =
            (j.room.clone(), self.metrics.clone(), j.member.clone(), id.to_owned());
        let then = move |outcome: Result<(), String>| {
            match outcome {
                Ok(()) => {
                    metrics.history_writes.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    // Losing the reply would be worse than losing its history row.
                    metrics.history_failures.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "history write failed; reply forwarded anyway");
                }
            }
            let mut room = lock(&room);
            let refusal = match room.deliver(&pending.pc, frame) {
                Delivered::Queued | Delivered::Buffered => return,
                Delivered::Full => Refusal::new(ErrorCode::SlowConsumer, "the PC that asked is not reading"),
                Delivered::BufferFull => Refusal::new(
                    ErrorCode::BufferFull,
                    "the PC that asked is reconnecting and its buffer is full",
                ),
                Delivered::Gone => {
                    metrics.dropped(DropReason::NoTarget);
                    Refusal::new(ErrorCode::NoTarget, "the PC that asked has left (the reply is in history)")
                }
                Delivered::Unreachable => {
                    unreachable_refusal("the PC that asked").with_note("the reply is in history")
                }
            };
            // The device hears why, as if it had been refused at once.
            metrics.error(refusal.code);
            let frame = tether_protocol::envelope::error_frame(Some(&id), refusal.code, &refusal.message);
            room.deliver(&device, frame.into());
        };
        self.store.record_then(record, Box::new(then)).await;
        Ok(())
    }

    /// The member a valid resume token for `room` and `role` names, with the token's nonce,
    /// when it is not held here.
    pub fn resume_claim(&self, token: &str, room: &str, role: Role) -> Option<(String, u64)> {
        let c = self.tokens.verify(token).filter(|c| c.room == room && c.role == role)?;
        let r = lock(&self.rooms).get(room).cloned();
        let held = r.is_some_and(|r| lock(&r).index_of(&c.member).is_some());
        (!held).then_some((c.member, c.nonce))
    }

    /// Cluster mode: whether this node has members in `room`.
    pub fn has_room(&self, room: &str) -> bool {
        lock(&self.rooms).contains_key(room)
    }

    /// Cluster mode: for each room with members here, the other nodes its remote members are
    /// on, with their member ids.
    pub fn remote_by_node(&self) -> Vec<(String, String, Vec<String>)> {
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        let mut out = Vec::new();
        for r in rooms {
            let room = lock(&r);
            let mut by_node: HashMap<&str, Vec<String>> = HashMap::new();
            for m in &room.remote {
                by_node.entry(m.node.as_str()).or_default().push(m.info.id.clone());
            }
            for (node, ids) in by_node {
                out.push((room.name.to_string(), node.to_owned(), ids));
            }
        }
        out
    }

    /// Cluster mode: the room's members as Redis has them; this node keeps the others'.
    pub fn set_remote(&self, room: &str, members: Vec<RemoteMember>) {
        let Some(r) = lock(&self.rooms).get(room).cloned() else { return };
        let Some(me) = self.bus.as_ref().map(|b| b.node().to_owned()) else { return };
        let mut room = lock(&r);
        let (mine, others): (Vec<RemoteMember>, Vec<RemoteMember>) =
            members.into_iter().partition(|m| m.node == me);
        // Members held here that another node lists with a later attach (node name breaking a
        // tie): they resumed there. Hand them over:
        // a connection still here is replaced; what was buffered for a PC (replies, errors)
        // goes to that node; requests a device had not answered fail toward their PCs with
        // `no_target` (its new node does not know them), so they are not sent on either.
        let moved: Vec<(Arc<str>, String)> = room
            .members
            .iter()
            .filter_map(|m| {
                let o = others.iter().find(|o| *o.info.id == *m.id)?;
                ((o.attached, o.node.as_str()) > (m.attached, me.as_str()))
                    .then(|| (m.id.clone(), o.node.clone()))
            })
            .collect();
        for (id, node) in moved {
            let Some(i) = room.index_of(&id) else { continue };
            let pc = room.members[i].role == Role::Pc;
            match &mut room.members[i].link {
                Link::Live(out) => out.kick.fire(ErrorCode::Replaced, "this member resumed on another relay"),
                Link::Away { buffer, .. } if pc => {
                    let frames: Vec<Frame> = buffer.drain(..).collect();
                    if let Some(bus) = &room.bus {
                        for f in frames {
                            bus.send_frame(&node, &room.name, &id, f.as_str());
                        }
                    }
                }
                Link::Away { .. } => {}
            }
            room.remove(i, "moved to another relay");
        }
        // Members held here but missing from the shared list (a restarted Redis forgot them, or
        // another node took this one for dead): say them again. Saying one twice is harmless.
        let missing: Vec<Arc<str>> = room
            .members
            .iter()
            .filter(|m| !mine.iter().any(|x| *x.info.id == *m.id))
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            room.announce(&id);
        }
        // Of two nodes holding one member, the other node has not yet handed it over: this
        // node's is the live one, so it is neither listed twice nor routed away.
        let others: Vec<RemoteMember> =
            others.into_iter().filter(|o| room.index_of(&o.info.id).is_none()).collect();
        room.remote = others;
        room.broadcast_devices();
    }

    /// Cluster mode: a frame from another node for a member held here.
    pub fn bus_frame(&self, room: &str, to: &str, frame: String) {
        let Some(r) = lock(&self.rooms).get(room).cloned() else { return };
        let mut room = lock(&r);
        // Only to members held here: a frame is never sent back over the bus.
        if room.index_of(to).is_some() {
            room.deliver(to, frame.into());
        } else {
            self.metrics.dropped(DropReason::NoTarget);
        }
    }

    /// Cluster mode: a PC on another node asks a device held here.
    pub fn bus_request(&self, req: RemoteRequest) {
        let refuse = |code: ErrorCode, message: String| {
            let frame = tether_protocol::envelope::error_frame(Some(&req.pc_id), code, &message);
            if let Some(bus) = &self.bus {
                bus.send_frame(&req.pc_node, &req.room, &req.pc, &frame);
            }
        };
        let Ok(msg) = RawValue::from_string(req.request.clone()) else { return };
        let room_arc = lock(&self.rooms).get(req.room.as_str()).cloned();
        let Some(r) = room_arc else {
            return refuse(ErrorCode::NoTarget, format!("device {} left", req.device));
        };
        let mut room = lock(&r);
        let key: (Arc<str>, String) = (req.device.as_str().into(), req.wire_id.clone());
        if room.pending.contains(&key) {
            return refuse(ErrorCode::BadFrame, format!("request {} is already awaiting a reply", req.pc_id));
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
        match room.deliver(&req.device, frame) {
            Delivered::Queued | Delivered::Buffered => {
                let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
                let pending = Pending {
                    pc: req.pc.as_str().into(),
                    pc_id: req.pc_id.clone(),
                    kind: req.kind,
                    target: req.target.clone(),
                    request: req.request.as_str().into(),
                    sent_at: req.sent_at,
                    deadline,
                    // From a relay that did not send it: the room's own (as before device keys).
                    tag: if req.tag.is_empty() {
                        room.tag.clone().unwrap_or_else(|| "".into())
                    } else {
                        req.tag.as_str().into()
                    },
                };
                room.pending.insert(key, pending);
            }
            Delivered::Full => {
                refuse(ErrorCode::SlowConsumer, format!("device {} is not reading its messages", req.device))
            }
            Delivered::BufferFull => refuse(
                ErrorCode::BufferFull,
                format!("device {} is reconnecting and its buffer is full", req.device),
            ),
            Delivered::Gone | Delivered::Unreachable => {
                refuse(ErrorCode::NoTarget, format!("device {} left", req.device))
            }
        }
    }

    /// Cluster mode, after Redis came back: this node's members are written and announced again
    /// (a restarted Redis forgot them).
    pub fn announce_all(&self) {
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        for r in rooms {
            let room = lock(&r);
            for m in &room.members {
                room.announce(&m.id);
            }
        }
    }

    /// Cluster mode, at shutdown: this node's members leave every other node's lists (they come
    /// back, with their ids, when they reconnect).
    pub fn announce_departure(&self) {
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        for r in rooms {
            let room = lock(&r);
            if let Some(bus) = &room.bus {
                for m in &room.members {
                    bus.member_departed(&room.name, &m.id);
                }
            }
        }
    }

    /// Periodic upkeep: away members whose grace ended are removed, requests past their
    /// deadline are forgotten, empty rooms are dropped.
    pub fn sweep(&self, now: Instant) {
        let rooms: Vec<(Arc<str>, Arc<Mutex<Room>>)> =
            lock(&self.rooms).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (name, r) in rooms {
            let mut room = lock(&r);
            let mut changed = false;
            while let Some(i) =
                room.members.iter().position(|m| matches!(m.link, Link::Away { until, .. } if until <= now))
            {
                let id = room.members[i].id.clone();
                room.remove(i, "did not come back");
                room.announce(&id);
                changed = true;
            }
            if changed {
                room.broadcast_devices();
            }
            room.pending.retain(|_, p| p.deadline > now);
            let empty = room.members.is_empty();
            drop(room);
            if empty {
                self.drop_if_empty(&name);
            }
        }
    }

    /// Everything a member resuming after a restart needs: every room with its secret's digest,
    /// its members (with the frames buffered for them) and the requests awaiting replies.
    /// Taken on SIGTERM once every socket has closed (every member is then away).
    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        let rooms = rooms
            .iter()
            .map(|r| {
                let room = lock(r);
                let members = room
                    .members
                    .iter()
                    .map(|m| SnapMember {
                        id: m.id.to_string(),
                        role: m.role,
                        name: m.name.clone(),
                        app_info: m.app_info.clone(),
                        since: m.since,
                        buffer: match &m.link {
                            Link::Away { buffer, .. } => {
                                buffer.iter().map(|f| f.as_str().to_owned()).collect()
                            }
                            Link::Live(_) => Vec::new(),
                        },
                        nonce: m.nonce,
                        prev_nonce: m.prev_nonce,
                    })
                    .collect();
                let pending = room
                    .pending
                    .map
                    .iter()
                    .map(|((device, id), p)| SnapPending {
                        device: device.to_string(),
                        id: id.clone(),
                        pc: p.pc.to_string(),
                        pc_id: p.pc_id.clone(),
                        kind: p.kind,
                        target: p.target.clone(),
                        request: p.request.to_string(),
                        sent_at: p.sent_at,
                        left_ms: p.deadline.saturating_duration_since(now).as_millis() as u64,
                        tag: Some(p.tag.to_string()),
                    })
                    .collect();
                SnapRoom {
                    name: room.name.to_string(),
                    digest: Vec::new(),
                    key: room.key.to_vec(),
                    tag: room.tag.as_deref().map(str::to_owned),
                    members,
                    pending,
                }
            })
            .filter(|r| !r.members.is_empty())
            .collect();
        Snapshot { saved_at: crate::now_ms(), rooms }
    }

    /// Restores what [`Hub::snapshot`] saved: every member away for what is left of its grace
    /// window (the time the relay was down counts), with its buffer; requests keep what is
    /// left of their timeouts. Gives how many members came back; none once the window is over.
    pub fn restore(&self, snap: Snapshot) -> usize {
        let down = crate::now_ms().saturating_sub(snap.saved_at);
        let Some(grace_left) = self.limits.grace.checked_sub(Duration::from_millis(down)) else { return 0 };
        let now = Instant::now();
        let mut restored = 0;
        let mut rooms = lock(&self.rooms);
        for r in snap.rooms {
            let (key, room_tag) = if let Ok(key) = <[u8; 32]>::try_from(r.key.as_slice()) {
                (key, r.tag.map(Arc::<str>::from))
            } else if let Ok(pc) = <[u8; 32]>::try_from(r.digest.as_slice()) {
                (secret_digest(&r.name, &device_key(&pc)), Some(tag(&pc).into()))
            } else {
                continue;
            };
            if !limits::valid_room(&r.name) || rooms.contains_key(r.name.as_str()) {
                continue;
            }
            let members: Vec<Member> = r
                .members
                .into_iter()
                .take(self.limits.max_members)
                .map(|m| {
                    let buffer: VecDeque<Frame> = m.buffer.into_iter().map(Frame::from).collect();
                    let bytes = buffer.iter().map(|f| f.len()).sum();
                    Member {
                        nonce: m.nonce,
                        prev_nonce: m.prev_nonce,
                        id: m.id.into(),
                        role: m.role,
                        name: m.name,
                        app_info: m.app_info,
                        since: m.since,
                        attached: m.since,
                        // conn 0 is never a live connection's: no late leave applies to it.
                        link: Link::Away { conn: 0, until: now + grace_left, buffer, bytes },
                    }
                })
                .collect();
            let mut pending = PendingTable::default();
            for p in r.pending {
                if p.left_ms <= down || !members.iter().any(|m| *m.id == *p.device) {
                    continue;
                }
                let deadline = now + Duration::from_millis(p.left_ms - down);
                let entry = Pending {
                    pc: p.pc.into(),
                    pc_id: p.pc_id,
                    kind: p.kind,
                    target: p.target,
                    request: p.request.into(),
                    sent_at: p.sent_at,
                    deadline,
                    tag: p.tag.map(Arc::from).or_else(|| room_tag.clone()).unwrap_or_else(|| "".into()),
                };
                pending.insert((p.device.into(), p.id), entry);
            }
            restored += members.len();
            self.metrics.away.fetch_add(members.len() as i64, Relaxed);
            let name: Arc<str> = r.name.into();
            let room = Room {
                name: name.clone(),
                key,
                tag: room_tag,
                members,
                pending,
                limits: self.limits.clone(),
                metrics: self.metrics.clone(),
                remote: Vec::new(),
                bus: None,
            };
            rooms.insert(name, Arc::new(Mutex::new(room)));
        }
        self.metrics.rooms.store(rooms.len() as i64, Relaxed);
        restored
    }

    /// How often [`Hub::sweep`] should run: fine enough that grace windows end on time.
    pub fn sweep_every(&self) -> Duration {
        (self.limits.grace / 20).clamp(Duration::from_millis(20), Duration::from_millis(500))
    }
}

/// The target is on another relay and the bus between relays is down.
fn unreachable_refusal(who: &str) -> Refusal {
    Refusal::new(
        ErrorCode::ClusterUnavailable,
        format!(
            "{who} is on another relay and the bus between relays (Redis) is down; try again when it is back"
        ),
    )
}

impl Refusal {
    fn with_note(mut self, note: &str) -> Refusal {
        self.message = format!("{} ({note})", self.message);
        self
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn hub() -> Hub {
        let (store, key) = Store::open("sqlite::memory:").await.unwrap();
        let limits = Limits::from_config(&crate::Config::defaults());
        Hub::new(limits, store, key, Arc::default(), None)
    }

    #[tokio::test]
    async fn an_outbound_queue_is_bounded_in_frames_and_bytes_keeps_order_and_closes_with_its_reader() {
        let mut limits = Limits::from_config(&crate::Config::defaults());
        (limits.queue_frames, limits.queue_bytes) = (3, 100);
        let (store, key) = Store::open("sqlite::memory:").await.unwrap();
        let h = Hub::new(limits, store, key, Arc::default(), None);
        let (out, mut inbox) = h.outbox();
        let frame = |n: usize| Frame::from("x".repeat(n));
        // One frame always fits in an empty queue, however large.
        assert!(matches!(out.push(frame(500)), Push::Queued));
        assert!(matches!(out.push(frame(1)), Push::Full), "over the byte cap");
        assert_eq!(inbox.recv().await.len(), 500);
        for n in [10, 20, 30] {
            assert!(matches!(out.push(frame(n)), Push::Queued));
        }
        assert!(matches!(out.push(frame(1)), Push::Full), "over the frame cap");
        assert_eq!([10, 20, 30].map(|_| inbox.try_recv().unwrap().len()), [10, 20, 30]);
        assert!(inbox.try_recv().is_none());
        // A reader waiting on an empty queue wakes for the next push.
        let waiting = tokio::spawn(async move {
            let f = inbox.recv().await;
            (f, inbox)
        });
        tokio::task::yield_now().await;
        assert!(matches!(out.push(frame(7)), Push::Queued));
        let (f, inbox) = waiting.await.unwrap();
        assert_eq!(f.len(), 7);
        drop(inbox);
        assert!(matches!(out.push(frame(1)), Push::Closed), "its reader is gone");
    }

    fn saved(ms_ago: u64, left_ms: u64) -> Snapshot {
        serde_json::from_value(json!({
            "saved_at": crate::now_ms() - ms_ago,
            "rooms": [{
                "name": "r", "digest": secret_digest("r", "s").to_vec(),
                "members": [
                    {"id": "p-1", "role": "pc", "name": null, "app_info": null, "since": 1, "buffer": ["{\"type\":\"x\"}"]},
                    {"id": "d-1", "role": "device", "name": "phone", "app_info": {"v": 1}, "since": 1, "buffer": []}
                ],
                "pending": [{"device": "d-1", "id": "p-1:7", "pc": "p-1", "pc_id": "7", "kind": "post",
                             "target": "https://x/", "request": "{}", "sent_at": 1, "left_ms": left_ms}]
            }]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_snapshot_restores_away_members_their_buffers_and_what_is_left_of_timeouts() {
        let h = hub().await;
        assert_eq!(h.restore(saved(1_000, 60_000)), 2);
        assert_eq!(h.metrics.away.load(Relaxed), 2);
        let room = lock(&h.rooms).get("r").cloned().unwrap();
        let room = lock(&room);
        // An older relay's snapshot: the PC secret's digest becomes the room's key and tag.
        let pc_digest = secret_digest("r", "s");
        assert!(digests_match(&room.key, &secret_digest("r", &device_key(&pc_digest))));
        assert_eq!(room.tag.as_deref(), Some(tag(&pc_digest).as_str()));
        let pc = &room.members[room.index_of("p-1").unwrap()];
        assert!(matches!(&pc.link, Link::Away { buffer, conn: 0, .. } if buffer.len() == 1));
        let key = (Arc::<str>::from("d-1"), "p-1:7".to_owned());
        let p = room.pending.map.get(&key).expect("the request still awaits its reply");
        let left = p.deadline.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_millis(59_000), "the time down counts: {left:?}");
        // And it saves the same way.
        drop(room);
        let again = serde_json::to_value(h.snapshot()).unwrap();
        assert_eq!(again["rooms"][0]["members"].as_array().unwrap().len(), 2);
        assert_eq!(again["rooms"][0]["pending"][0]["pc_id"], "7");
        assert_eq!(again["rooms"][0]["key"].as_array().unwrap().len(), 32);
        assert_eq!(again["rooms"][0]["pending"][0]["tag"], tag(&pc_digest));
        assert!(again["rooms"][0].get("digest").is_none(), "the PC secret's digest is not saved");
    }

    const SECRET: &str = "0123456789abcdef-room-secret";

    fn join(h: &Hub, role: Role, secret: &str, resume: Option<&str>) -> Result<(Joined, Inbox), Refusal> {
        let (out, inbox) = h.outbox();
        let req = JoinRequest {
            room: "r".into(),
            role,
            secret: secret.into(),
            name: None,
            resume: resume.map(str::to_owned),
            cluster_resume: false,
        };
        h.join(req, out).map(|j| (j, inbox))
    }

    /// The `welcome` at the head of a fresh connection's queue.
    fn welcome(inbox: &mut Inbox) -> serde_json::Value {
        let f = inbox.try_recv().expect("a welcome");
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["type"], "welcome");
        v["msg"].clone()
    }

    #[tokio::test]
    async fn the_device_key_joins_as_a_device_only_and_only_a_pc_is_told_it() {
        let h = hub().await;
        let (_pc, mut inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
        let w = welcome(&mut inbox);
        let key = w["deviceKey"].as_str().expect("a PC is told the device key").to_owned();
        assert_eq!(key, device_key(&secret_digest("r", SECRET)));
        let (_dev, mut inbox) = join(&h, Role::Device, &key, None).unwrap();
        assert!(welcome(&mut inbox).get("deviceKey").is_none(), "a device is not told it");
        // Never as a PC, not even with a PC's resume token.
        let e = join(&h, Role::Pc, &key, w["resume"].as_str()).err().unwrap();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(e.message.contains("device only"), "{}", e.message);
        // The PC secret still works for a device (old links), and a wrong key does not.
        assert!(join(&h, Role::Device, SECRET, None).is_ok());
        let wrong = device_key(&secret_digest("r", "another-secret-of-16+"));
        assert_eq!(join(&h, Role::Device, &wrong, None).err().unwrap().code, ErrorCode::Unauthorized);
        // Too short a secret is refused, and says why.
        let e = join(&h, Role::Device, "s3cret", None).err().unwrap();
        assert!(e.message.contains("16 to 256 bytes"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_room_opened_by_its_device_key_takes_its_pc_and_learns_the_history_tag_then() {
        let h = hub().await;
        let key = device_key(&secret_digest("r", SECRET));
        let (dev, _inbox) = join(&h, Role::Device, &key, None).unwrap();
        assert!(dev.new_room_tag.is_none(), "a device key tells no history tag");
        assert_eq!(
            join(&h, Role::Pc, "wrong-secret-but-long-enough", None).err().unwrap().code,
            ErrorCode::Unauthorized
        );
        let (pc, _inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
        assert_eq!(pc.new_room_tag, Some(tag(&secret_digest("r", SECRET))));
        assert_eq!(h.live_secret_matches("r", &secret_digest("r", SECRET)), Some(true));
        assert_eq!(h.live_secret_matches("r", &secret_digest("r", &key)), Some(false));
    }

    #[tokio::test]
    async fn a_resume_token_works_once_and_for_its_role_only() {
        let h = hub().await;
        let (_pc, _pc_inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
        let (dev, mut inbox) = join(&h, Role::Device, SECRET, None).unwrap();
        let t1 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
        h.leave(&dev, dev.conn, Leave::Lost);
        // Not as a PC: a device's token never resumes a PC (a new PC joins instead).
        let (other, _i) = join(&h, Role::Pc, SECRET, Some(&t1)).unwrap();
        assert!(!other.resumed && *other.member != *dev.member);
        // Resumed with t1: the welcome carries t2 ...
        let (again, mut inbox) = join(&h, Role::Device, SECRET, Some(&t1)).unwrap();
        assert!(again.resumed && again.member == dev.member);
        let t2 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
        assert_ne!(t1, t2);
        // ... and once the new connection is heard from, t1 is spent.
        h.confirm(&again);
        let e = join(&h, Role::Device, SECRET, Some(&t1)).err().unwrap();
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert!(e.message.contains("already used"), "{}", e.message);
        // t2 still resumes (and replaces the live connection).
        let (third, mut inbox) = join(&h, Role::Device, SECRET, Some(&t2)).unwrap();
        assert!(third.resumed && third.member == dev.member);
        let t3 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
        // A welcome lost with a connection that died before saying anything: the token the
        // member resumed with (t2) still works, once.
        h.leave(&third, third.conn, Leave::Lost);
        let (fourth, _i) = join(&h, Role::Device, SECRET, Some(&t2)).unwrap();
        assert!(fourth.resumed);
        h.confirm(&fourth);
        assert!(join(&h, Role::Device, SECRET, Some(&t2)).is_err());
        assert!(join(&h, Role::Device, SECRET, Some(&t3)).is_err(), "t3 was never used and is replaced");
    }

    #[tokio::test]
    async fn nothing_comes_back_once_the_grace_window_is_over_and_spent_requests_stay_gone() {
        let h = hub().await;
        let grace = h.limits.grace.as_millis() as u64;
        assert_eq!(h.restore(saved(grace + 1, 60_000)), 0);
        assert_eq!(h.room_count(), 0);
        let h = hub().await;
        assert_eq!(h.restore(saved(2_000, 1_500)), 2, "members come back");
        let room = lock(&h.rooms).get("r").cloned().unwrap();
        assert_eq!(lock(&room).pending.len(), 0, "a request whose timeout passed while down does not");
    }
}
