//! Cluster mode (`--redis`): rooms that span relays.
//!
//! Each node writes its own members of a room into the Redis hash `tether:members:{room}` and
//! announces every change on the `tether:presence` channel; every node with members in that
//! room reads the hash again and pushes a new `devices` list. A frame for a member on another
//! node is published on that node's channel, `tether:node:{node}`. A request for a device on
//! another node travels to that node, which holds the pending entry, so the reply is recorded
//! and routed back from where it arrives. A room's secret is `tether:secret:{room}`, set by the
//! first joiner of a room empty cluster-wide.
//!
//! Liveness: each node rewrites `tether:alive:{node}` every beat; members of a node whose key
//! has expired are taken out of the lists (and marked `tether:gone:…` for a grace window, so
//! they may resume elsewhere). Resume tokens are signed with one key kept in Redis, so any node
//! accepts them; of two nodes holding one member, the later attach wins and the other hands it
//! over. CS sessions are recorded as `tether:cs:{digest}` → node, and a call landing elsewhere
//! is forwarded to that node ([`NodeMsg::Cs`]).
//!
//! The hub stays synchronous: what it wants published goes through a bounded queue (count and
//! bytes) to one publisher task ([`Bus`]); what arrives is fed back by one subscriber task.
//! When Redis is down or hangs (a liveness write unanswered for two beats), rooms whose members
//! are all on this node keep working, and a send toward another node is refused to its sender
//! with `cluster_unavailable`, as it is when the queue is full.

use crate::metrics::Metrics;
use crate::room::{Hub, Now, Peers, RemoteMember, RemoteRequest};
use futures_util::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tether_protocol::msg::MemberInfo;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Publishes waiting to go out, at most; and their bytes, at most (frames are up to
/// `--max-frame` each). Past either, a frame for another node is refused to its sender with
/// `cluster_unavailable`.
const QUEUE: usize = 65_536;
const QUEUE_BYTES: usize = 64 << 20;
const PRESENCE: &str = "tether:presence";

fn node_channel(node: &str) -> String {
    ["tether:node:", node].concat()
}

fn members_key(room: &str) -> String {
    ["tether:members:", room].concat()
}

fn secret_key(room: &str) -> String {
    ["tether:secret:", room].concat()
}

/// Set for a grace window when a member leaves with its node (stopped, or killed): it may resume
/// on another node meanwhile.
fn gone_key(room: &str, member: &str) -> String {
    ["tether:gone:", member, ":", room].concat()
}

/// The key that signs resume tokens, the same on every node.
const RESUME_KEY: &str = "tether:resume-key";

use crate::util::hex;

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Which node holds a CS session: keyed by a digest of its token (the token itself, a bearer
/// credential, never leaves the node that issued it except inside a forwarded call).
fn cs_key(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tether/cs-session/v1\0");
    h.update(token.as_bytes());
    ["tether:cs:", &hex(&h.finalize())].concat()
}

/// CS calls forwarded from this node and awaiting their answers, at most.
const CS_IN_FLIGHT: usize = 1024;

fn alive_key(node: &str) -> String {
    ["tether:alive:", node].concat()
}

/// What goes over a node's channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum NodeMsg {
    /// Deliver `frame` to member `to`.
    Frame {
        /// Room.
        room: String,
        /// Member id.
        to: String,
        /// The frame's text.
        frame: String,
    },
    /// A PC's request for a device held by the receiving node.
    Request(Box<RemoteRequest>),
    /// A `/cs/call` or `/cs/logout` for a session the receiving node holds.
    Cs(Box<CsForward>),
    /// Its answer, to the node that forwarded it.
    CsAnswer(Box<CsAnswer>),
}

/// A CS gateway call or logout that landed on a node not holding its session: the typed
/// request, run there as if it had landed there.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsForward {
    /// Matches the answer to the waiting request.
    pub id: u64,
    /// The node waiting for the answer.
    pub reply_to: String,
    /// The session token.
    pub token: String,
    /// What is asked of the session (not `op`: that is [`NodeMsg`]'s tag).
    pub action: crate::cs::Op,
}

/// The outcome of a [`CsForward`], as the holding node's gateway gave it: the forwarding
/// node's HTTP edge answers it as its own.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsAnswer {
    /// The forward's id.
    pub id: u64,
    /// The reply, or why there is none.
    pub outcome: CsOutcome,
}

/// A forwarded CS call's outcome.
pub type CsOutcome = Result<crate::cs::Done, crate::cs::CsError>;

/// Where a CS session is held.
pub enum CsOwner {
    /// Nowhere the cluster knows of (or here): the local gateway answers.
    Unknown,
    /// On this other node, alive.
    Node(String),
    /// On a node that has stopped answering.
    Dead(String),
}

enum Out {
    Member { room: String, id: String, value: Option<String> },
    Publish { channel: String, payload: String },
    Gone { room: String, id: String, ttl_ms: u64 },
    CsOwner { key: String, ttl_ms: Option<u64>, done: Option<tokio::sync::oneshot::Sender<()>> },
}

impl Out {
    /// Roughly what it holds in memory.
    fn size(&self) -> usize {
        match self {
            Out::Member { room, id, value } => room.len() + id.len() + value.as_ref().map_or(0, String::len),
            Out::Publish { channel, payload } => channel.len() + payload.len(),
            Out::Gone { room, id, .. } => room.len() + id.len(),
            Out::CsOwner { key, .. } => key.len(),
        }
    }
}

/// The hub's handle on the cluster: enqueue and return, never wait.
pub struct Bus {
    node: Arc<str>,
    tx: mpsc::Sender<Out>,
    /// Publishes that found the queue full.
    pub dropped: AtomicU64,
    /// Whether Redis answered the last liveness write and this node's subscription is live:
    /// while not, sends toward other nodes are refused with `cluster_unavailable`, not lost.
    up: AtomicBool,
    subscribed: AtomicBool,
    /// How long a member whose node went away may resume elsewhere (`--grace-ms`).
    grace_ms: u64,
    /// CS calls forwarded from here, awaiting their answers.
    cs_waiting: std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<CsOutcome>>>,
    cs_next: AtomicU64,
    /// Bytes in the publish queue.
    queued_bytes: std::sync::atomic::AtomicUsize,
}

impl Bus {
    /// Whether the bus between relays works now.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn push(&self, out: Out) -> bool {
        let size = out.size();
        if let Out::Publish { channel, .. } = &out {
            if channel.starts_with("tether:node:")
                && (!self.is_up() || self.queued_bytes.load(Relaxed) + size > QUEUE_BYTES)
            {
                // A frame for another node that cannot go now: say so, do not queue it.
                self.dropped.fetch_add(1, Relaxed);
                return false;
            }
        }
        self.queued_bytes.fetch_add(size, Relaxed);
        let ok = self.tx.try_send(out).is_ok();
        if !ok {
            self.queued_bytes.fetch_sub(size, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
        }
        ok
    }

    /// Sends `frame` to member `to` of `room`, held by `node`.
    pub fn send_frame(&self, node: &str, room: &str, to: &str, frame: &str) -> bool {
        let msg = NodeMsg::Frame { room: room.into(), to: to.into(), frame: frame.into() };
        self.publish_to(node, &msg)
    }

    /// Sends a request to the node that holds its device.
    pub fn send_request(&self, node: &str, req: RemoteRequest) -> bool {
        self.publish_to(node, &NodeMsg::Request(Box::new(req)))
    }

    fn publish_to(&self, node: &str, msg: &NodeMsg) -> bool {
        let payload = serde_json::to_string(msg).unwrap_or_default();
        self.push(Out::Publish { channel: node_channel(node), payload })
    }

    /// This node's member `id` of `room` changed (`None`: it is gone).
    pub fn member_changed(&self, room: &str, id: &str, info: Option<(MemberInfo, u64, Vec<u64>)>) {
        let value = info.map(|(info, attached, nonces)| {
            serde_json::to_string(&RemoteMember { info, node: self.node.to_string(), attached, nonces })
                .unwrap_or_default()
        });
        self.push(Out::Member { room: room.into(), id: id.into(), value });
        self.push(Out::Publish { channel: PRESENCE.into(), payload: room.into() });
    }

    /// This node holds CS session `token` (for `ttl`, renewed on use), or no longer does.
    pub fn cs_session(&self, token: &str, ttl: Option<Duration>) {
        self.push(Out::CsOwner { key: cs_key(token), ttl_ms: ttl.map(|t| t.as_millis() as u64), done: None });
    }

    /// Like [`Bus::cs_session`] for a new session, waiting (at most a second) until Redis has
    /// it, so a call right after the login finds it from any node.
    pub async fn cs_session_new(&self, token: &str, ttl: Duration) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let out = Out::CsOwner { key: cs_key(token), ttl_ms: Some(ttl.as_millis() as u64), done: Some(tx) };
        if self.push(out) {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }

    /// Sends a CS outcome back to the node that forwarded the request.
    pub fn cs_answer(&self, node: &str, id: u64, outcome: CsOutcome) {
        if !self.publish_to(node, &NodeMsg::CsAnswer(Box::new(CsAnswer { id, outcome }))) {
            // Too big for the queue now: the waiting node gets a short answer saying so rather
            // than waiting out its timeout.
            let lost = "the answer could not be sent back between relays (the bus is down or full)";
            let short = CsAnswer { id, outcome: Err(crate::cs::CsError::Cluster(lost.into())) };
            self.publish_to(node, &NodeMsg::CsAnswer(Box::new(short)));
        }
    }

    fn cs_answered(&self, answer: CsAnswer) {
        let waiting = crate::util::lock(&self.cs_waiting).remove(&answer.id);
        if let Some(tx) = waiting {
            let _ = tx.send(answer.outcome);
        }
    }

    /// This node's member leaves with the node (it is stopping): gone from every list, and
    /// resumable on another node for a grace window.
    pub fn member_departed(&self, room: &str, id: &str) {
        self.member_changed(room, id, None);
        self.push(Out::Gone { room: room.into(), id: id.into(), ttl_ms: self.grace_ms });
    }
}

/// The rooms reach other nodes through the bus.
impl Peers for Bus {
    fn node(&self) -> &str {
        Bus::node(self)
    }

    fn is_up(&self) -> bool {
        Bus::is_up(self)
    }

    fn send_frame(&self, node: &str, room: &str, to: &str, frame: &str) -> bool {
        Bus::send_frame(self, node, room, to, frame)
    }

    fn send_request(&self, node: &str, req: RemoteRequest) -> bool {
        Bus::send_request(self, node, req)
    }

    fn member_changed(&self, room: &str, id: &str, info: Option<(MemberInfo, u64, Vec<u64>)>) {
        Bus::member_changed(self, room, id, info)
    }

    fn member_departed(&self, room: &str, id: &str) {
        Bus::member_departed(self, room, id)
    }
}

/// What this node's cluster tasks serve: its rooms, its counters, its CS gateway, and the
/// tracker forwarded CS calls run on.
pub struct Local {
    /// The rooms.
    pub hub: Arc<Hub>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The CS gateway, when there is one.
    pub cs: Option<Arc<crate::cs::Gateway>>,
    /// Where forwarded CS calls run.
    pub calls: TaskTracker,
}

/// Cluster mode's Redis side.
pub struct Cluster {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    /// The handle the hub uses.
    pub bus: Arc<Bus>,
    rx: Option<mpsc::Receiver<Out>>,
    /// The shared resume key, written again when Redis comes back empty.
    resume_key: Option<String>,
}

impl Cluster {
    /// Connects to Redis.
    pub async fn connect(url: &str, node: String, grace: Duration) -> Result<Cluster, redis::RedisError> {
        let client = redis::Client::open(url)?;
        // A connection manager reconnects by itself when Redis comes back.
        let conn = client.get_connection_manager().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let bus = Arc::new(Bus {
            node: node.into(),
            tx,
            dropped: AtomicU64::new(0),
            up: AtomicBool::new(true),
            subscribed: AtomicBool::new(true),
            grace_ms: grace.as_millis() as u64,
            cs_waiting: std::sync::Mutex::default(),
            cs_next: AtomicU64::new(1),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
        });
        Ok(Cluster { client, conn, bus, rx: Some(rx), resume_key: None })
    }

    /// The key every node signs resume tokens with: the first node's (its store's) wins, so a
    /// token from one node is good on all of them.
    pub async fn shared_resume_key(&mut self, own: [u8; 32]) -> Result<[u8; 32], redis::RedisError> {
        let mut c = self.conn.clone();
        let _: bool = c.set_nx(RESUME_KEY, hex(&own)).await?;
        let current: Option<String> = c.get(RESUME_KEY).await?;
        let key = current.as_deref().and_then(unhex).unwrap_or(own);
        self.resume_key = Some(hex(&key));
        Ok(key)
    }

    /// Where the CS session `token` is held.
    pub async fn cs_owner(&self, token: &str) -> Result<CsOwner, redis::RedisError> {
        let mut c = self.conn.clone();
        let node: Option<String> = c.get(cs_key(token)).await?;
        let Some(node) = node.filter(|n| n != self.bus.node()) else { return Ok(CsOwner::Unknown) };
        let alive: bool = c.exists(alive_key(&node)).await?;
        Ok(if alive { CsOwner::Node(node) } else { CsOwner::Dead(node) })
    }

    /// Forwards a CS call or logout to the node holding its session and waits for its outcome,
    /// at most `wait`.
    pub async fn forward_cs(&self, node: &str, token: &str, op: crate::cs::Op, wait: Duration) -> CsOutcome {
        use crate::cs::CsError;
        let bus = &self.bus;
        let id = bus.cs_next.fetch_add(1, Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut waiting = crate::util::lock(&bus.cs_waiting);
            if waiting.len() >= CS_IN_FLIGHT {
                let busy = "too many CS calls are waiting on other relays; try again shortly";
                return Err(CsError::Cluster(busy.into()));
            }
            waiting.insert(id, tx);
        }
        let forget = || {
            crate::util::lock(&bus.cs_waiting).remove(&id);
        };
        let msg = CsForward { id, reply_to: bus.node().to_owned(), token: token.to_owned(), action: op };
        if !bus.publish_to(node, &NodeMsg::Cs(Box::new(msg))) {
            forget();
            let down = "the bus between relays is down: this session's relay cannot be reached";
            return Err(CsError::Cluster(down.into()));
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => outcome,
            _ => {
                forget();
                Err(CsError::NodeTimeout)
            }
        }
    }

    /// Whether `member` of `room`, not held here, may resume here under its id with a token
    /// whose nonce is `nonce`: it is listed on another node with that token (it moved: that node
    /// hands it over), or it left with its node within the grace window.
    pub async fn resumable(&self, room: &str, member: &str, nonce: u64) -> Result<bool, redis::RedisError> {
        let mut c = self.conn.clone();
        let entry: Option<String> = c.hget(members_key(room), member).await?;
        if let Some(m) = entry.and_then(|e| serde_json::from_str::<RemoteMember>(&e).ok()) {
            let token_current = m.nonces.is_empty() || m.nonces.contains(&nonce);
            return Ok(m.node != self.bus.node() && token_current);
        }
        let gone: i64 = c.del(gone_key(room, member)).await?;
        Ok(gone > 0)
    }

    /// Claims or checks `room`'s secret cluster-wide: the first joiner of a room with no member
    /// on any node sets it. `Ok(false)`: another secret holds the room.
    pub async fn claim_secret(&self, room: &str, digest: &str) -> Result<bool, redis::RedisError> {
        let mut c = self.conn.clone();
        let members: usize = c.hlen(members_key(room)).await?;
        if members == 0 {
            let _: () = c.set(secret_key(room), digest).await?;
            return Ok(true);
        }
        let _: bool = c.set_nx(secret_key(room), digest).await?;
        let current: Option<String> = c.get(secret_key(room)).await?;
        Ok(current.as_deref() == Some(digest))
    }

    /// Starts the publisher, the subscriber and the liveness keeper on `tasks`; they end with
    /// `stop` (the publisher after sending what is queued, the liveness keeper after deleting
    /// this node's key), so shutdown waits for `tasks`. CS calls forwarded here run on
    /// `local.calls` (the relay's own tracker, which shutdown waits for after closing the CS
    /// sessions).
    pub async fn start(
        &mut self,
        local: Local,
        heartbeat: Duration,
        stop: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(), redis::RedisError> {
        let Local { hub, metrics, cs, calls } = local;
        let pubsub = subscribe(&self.client, self.bus.node()).await?;
        let rx = self.rx.take().expect("started once");
        tasks.spawn(publisher(self.conn.clone(), self.bus.clone(), rx, stop.clone()));
        let sub = Subscriber {
            client: self.client.clone(),
            conn: self.conn.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
            bus: self.bus.clone(),
            resume_key: self.resume_key.clone(),
            cs,
            tasks: calls,
        };
        tasks.spawn(sub.run(pubsub, stop.clone()));
        tasks.spawn(liveness(self.conn.clone(), self.bus.clone(), hub, metrics, heartbeat, stop));
        Ok(())
    }
}

async fn publisher(
    mut conn: redis::aio::ConnectionManager,
    bus: Arc<Bus>,
    mut rx: mpsc::Receiver<Out>,
    stop: CancellationToken,
) {
    let node = bus.node().to_owned();
    loop {
        let out = tokio::select! {
            () = stop.cancelled() => {
                // Send what is still queued (the members' departures at shutdown), then stop.
                while let Ok(out) = rx.try_recv() {
                    bus.queued_bytes.fetch_sub(out.size(), Relaxed);
                    if write(&mut conn, &node, out).await.is_err() {
                        break;
                    }
                }
                return;
            }
            out = rx.recv() => match out {
                Some(o) => o,
                None => return,
            },
        };
        bus.queued_bytes.fetch_sub(out.size(), Relaxed);
        if let Err(e) = write(&mut conn, &node, out).await {
            tracing::warn!(error = %e, "cluster: Redis refused a write; cross-node delivery is degraded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn write(
    conn: &mut redis::aio::ConnectionManager,
    node: &str,
    out: Out,
) -> Result<(), redis::RedisError> {
    match out {
        Out::Member { room, id, value: Some(v) } => conn.hset(members_key(&room), id, v).await,
        Out::Member { room, id, value: None } => {
            // Only this node's own entry: a member that resumed on another node is not erased
            // by its old node forgetting it.
            let entry: Option<String> = conn.hget(members_key(&room), &id).await?;
            let mine = entry
                .and_then(|e| serde_json::from_str::<RemoteMember>(&e).ok())
                .is_some_and(|m| m.node == node);
            if mine {
                let _: () = conn.hdel(members_key(&room), id).await?;
            }
            Ok(())
        }
        Out::Publish { channel, payload } => conn.publish(channel, payload).await,
        Out::Gone { room, id, ttl_ms } => conn.pset_ex(gone_key(&room, &id), 1, ttl_ms.max(1)).await,
        Out::CsOwner { key, ttl_ms: Some(ttl), done } => {
            let written = conn.pset_ex(key, node, ttl.max(1)).await;
            if let Some(done) = done {
                let _ = done.send(());
            }
            written
        }
        Out::CsOwner { key, ttl_ms: None, .. } => {
            let owner: Option<String> = conn.get(&key).await?;
            if owner.as_deref() == Some(node) {
                let _: () = conn.del(key).await?;
            }
            Ok(())
        }
    }
}

/// Keeps this node's `tether:alive:{node}` key (three beats long) and, every beat, removes the
/// members of nodes whose key has expired (killed without a goodbye) from the rooms this node has
/// members in. A beat is the heartbeat, at most 250 ms: a dead node is noticed within about a
/// second whatever `--heartbeat-ms` is, for four small writes a second per node.
async fn liveness(
    mut conn: redis::aio::ConnectionManager,
    bus: Arc<Bus>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let node = bus.node().to_owned();
    let beat = heartbeat.min(Duration::from_millis(250));
    let ttl = (beat * 3).as_millis() as u64;
    let mut every = tokio::time::interval(beat);
    // Since when the bus has been up. Other nodes are judged only after a full key lifetime of
    // being up: right after Redis comes back (empty), every other node's key is missing until
    // its next beat, and those nodes are not dead.
    let mut up_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _: Result<(), _> = conn.del(alive_key(&node)).await;
                return;
            }
            _ = every.tick() => {}
        }
        // A Redis that hangs (stopped, or a partition without a reset) counts as down within
        // two beats: nothing waits on it unbounded, and senders are told.
        let alive = tokio::time::timeout(beat * 2, conn.pset_ex::<_, _, ()>(alive_key(&node), 1, ttl)).await;
        let up = matches!(alive, Ok(Ok(()))) && bus.subscribed.load(Relaxed);
        if bus.up.swap(up, Relaxed) != up {
            tracing::warn!(up, "cluster: the bus between relays is {}", if up { "up" } else { "down" });
        }
        metrics.cluster_up.store(i64::from(up), Relaxed);
        if !up {
            up_since = None;
            continue;
        }
        let since = *up_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < beat * 4 {
            continue;
        }
        for (room, dead_node, ids) in hub.remote_by_node() {
            let alive: Result<bool, _> = conn.exists(alive_key(&dead_node)).await;
            if alive != Ok(false) {
                continue; // alive, or Redis cannot tell: do nothing
            }
            tracing::info!(node = %dead_node, %room, members = ids.len(), "cluster: a node stopped answering; removing its members");
            for id in &ids {
                let _: Result<(), _> = conn.pset_ex(gone_key(&room, id), 1, bus.grace_ms.max(1)).await;
            }
            let _: Result<(), _> = conn.hdel(members_key(&room), ids).await;
            let _: Result<(), _> = conn.publish(PRESENCE, &room).await;
        }
    }
}

async fn subscribe(client: &redis::Client, node: &str) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(node_channel(node)).await?;
    pubsub.subscribe(PRESENCE).await?;
    Ok(pubsub)
}

struct Subscriber {
    client: redis::Client,
    conn: redis::aio::ConnectionManager,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    bus: Arc<Bus>,
    resume_key: Option<String>,
    cs: Option<Arc<crate::cs::Gateway>>,
    /// Where the forwarded CS calls run, so that shutdown waits for them.
    tasks: TaskTracker,
}

impl Subscriber {
    /// Reads the bus; when the subscription ends (Redis went away), subscribes again once Redis
    /// is back, and announces this node's members anew (a restarted Redis forgot them).
    async fn run(mut self, first: redis::aio::PubSub, stop: CancellationToken) {
        let mut pubsub = Some(first);
        loop {
            let current = match pubsub.take() {
                Some(p) => p,
                None => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    match subscribe(&self.client, self.bus.node()).await {
                        Ok(p) => {
                            tracing::info!("cluster: subscribed to Redis again");
                            self.bus.subscribed.store(true, Relaxed);
                            if let Some(key) = &self.resume_key {
                                let _: Result<bool, _> = self.conn.set_nx(RESUME_KEY, key).await;
                            }
                            self.hub.announce_all();
                            p
                        }
                        Err(_) => continue,
                    }
                }
            };
            let mut messages = current.into_on_message();
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => return,
                    m = messages.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                };
                self.handle(msg).await;
            }
            tracing::warn!("cluster: the Redis subscription ended; retrying");
            self.bus.subscribed.store(false, Relaxed);
            self.bus.up.store(false, Relaxed);
            self.metrics.cluster_up.store(0, Relaxed);
        }
    }

    async fn handle(&mut self, msg: redis::Msg) {
        let Ok(payload) = msg.get_payload::<String>() else { return };
        if msg.get_channel_name() == PRESENCE {
            // A room changed somewhere: if this node has members in it, read its members again.
            let room = payload;
            if !self.hub.has_room(&room) {
                return;
            }
            let entries: Result<Vec<(String, String)>, _> = self.conn.hgetall(members_key(&room)).await;
            if let Ok(entries) = entries {
                let members = entries
                    .into_iter()
                    .filter_map(|(_, v)| serde_json::from_str::<RemoteMember>(&v).ok())
                    .collect();
                self.hub.set_remote(&room, members, Now::read());
            }
            return;
        }
        match serde_json::from_str::<NodeMsg>(&payload) {
            Ok(NodeMsg::Frame { room, to, frame }) => self.hub.bus_frame(&room, &to, frame, Now::read()),
            Ok(NodeMsg::Request(req)) => self.hub.bus_request(*req, Now::read()),
            Ok(NodeMsg::CsAnswer(answer)) => self.bus.cs_answered(*answer),
            Ok(NodeMsg::Cs(req)) => {
                // Run on the session's own queue, in its own (tracked) task: the bus reads on.
                let (cs, bus) = (self.cs.clone(), self.bus.clone());
                self.tasks.spawn(async move {
                    let CsForward { id, reply_to, token, action } = *req;
                    let outcome = crate::cs::run_forwarded(cs.as_deref(), &token, action).await;
                    bus.cs_answer(&reply_to, id, outcome);
                });
            }
            Err(e) => tracing::warn!(error = %e, "cluster: unreadable bus message"),
        }
    }
}

impl crate::cs::SessionDirectory for Bus {
    fn holds(&self, token: &str, ttl: Option<Duration>) {
        self.cs_session(token, ttl);
    }

    fn holds_new<'a>(
        &'a self,
        token: &'a str,
        ttl: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(self.cs_session_new(token, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cs::{CsError, CsReply, CsRequest, Done, JsonReply, LoggedOut, Op, RawXml};

    fn roundtrip(msg: &NodeMsg) -> NodeMsg {
        serde_json::from_str(&serde_json::to_string(msg).unwrap()).unwrap()
    }

    #[test]
    fn a_forwarded_cs_call_and_its_outcome_cross_the_bus_typed_and_unchanged() {
        let json =
            CsRequest::Json { method: "m".into(), params: vec![serde_json::json!([1, 0.1, "s", null])] };
        let xml = CsRequest::Xml(bytes::Bytes::from_static(b"<methodCall>\x01\xff</methodCall>"));
        for action in [Op::Call(json), Op::Call(xml), Op::Logout(None)] {
            let msg = NodeMsg::Cs(Box::new(CsForward {
                id: 7,
                reply_to: "a".into(),
                token: "t".into(),
                action: action.clone(),
            }));
            let NodeMsg::Cs(back) = roundtrip(&msg) else { panic!("not a CS forward") };
            assert_eq!(
                (back.id, back.reply_to.as_str(), back.token.as_str(), back.action),
                (7, "a", "t", action)
            );
        }
        let outcomes: Vec<CsOutcome> = vec![
            Ok(Done::Called(CsReply::Json(JsonReply::Result(serde_json::json!({"x": 1.5}))))),
            Ok(Done::Called(CsReply::Xml(RawXml {
                status: 500,
                content_type: Some("text/html; charset=latin1".into()),
                body: bytes::Bytes::from_static(b"<x/>"),
            }))),
            Ok(Done::LoggedOut(LoggedOut {
                was_logged_in: true,
                reply: Some(JsonReply::Fault { code: 3.into(), message: "no".into() }),
                warning: None,
            })),
            Err(CsError::Busy(4)),
            Err(CsError::Upstream(crate::cs::session::CallError::Timeout(10))),
        ];
        for outcome in outcomes {
            let msg = NodeMsg::CsAnswer(Box::new(CsAnswer { id: 9, outcome: outcome.clone() }));
            let NodeMsg::CsAnswer(back) = roundtrip(&msg) else { panic!("not a CS answer") };
            assert_eq!((back.id, back.outcome), (9, outcome));
        }
    }
}
