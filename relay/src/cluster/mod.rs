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
//!
//! # Layout
//! - this module: the Redis keys and channels, the messages between nodes ([`NodeMsg`]), and
//!   [`Cluster`] (what asks Redis and waits for the answer: secrets, resume, CS owners).
//! - `bus`: the bounded way out ([`Bus`], which implements `room::Peers` and
//!   `cs::SessionDirectory`) and the publisher task.
//! - `tasks`: the subscriber and the liveness keeper.

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

mod bus;
mod tasks;

pub use bus::Bus;
use bus::{Out, publisher};
use tasks::{Subscriber, liveness, subscribe};

/// Publishes waiting to go out, at most; and their bytes, at most (frames are up to
/// `--max-frame` each). Past either, a frame for another node is refused to its sender with
/// `cluster_unavailable`; an `inspect` batch is dropped past half of the bytes, so that it never
/// takes the room other frames need.
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
        /// An `inspect` batch: dropped rather than queued past half the member's queue, never
        /// buffered (absent from older relays: a frame that must be delivered).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        droppable: bool,
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

    /// The tag of `room`'s device key digest as the cluster holds it, and the room's members
    /// on every node (this one's too), for the HTTP API, which checks a secret without
    /// claiming a room: `None` when no node has the room open.
    pub async fn open_room(
        &self,
        room: &str,
    ) -> Result<Option<(String, Vec<RemoteMember>)>, redis::RedisError> {
        let mut c = self.conn.clone();
        let entries: Vec<(String, String)> = c.hgetall(members_key(room)).await?;
        if entries.is_empty() {
            return Ok(None);
        }
        let secret: Option<String> = c.get(secret_key(room)).await?;
        let mut members: Vec<RemoteMember> =
            entries.into_iter().filter_map(|(_, v)| serde_json::from_str(&v).ok()).collect();
        members.sort_by_key(|m| m.info.since);
        Ok(secret.map(|s| (s, members)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cs::{CsError, CsReply, CsRequest, Done, JsonReply, LoggedOut, Op, RawXml};

    fn roundtrip(msg: &NodeMsg) -> NodeMsg {
        serde_json::from_str(&serde_json::to_string(msg).unwrap()).unwrap()
    }

    #[test]
    fn a_frame_says_whether_it_may_be_dropped_and_an_older_relays_frame_may_not() {
        let old = r#"{"op":"frame","room":"r","to":"p-1","frame":"{}"}"#;
        let Ok(NodeMsg::Frame { droppable, .. }) = serde_json::from_str(old) else { panic!("a frame") };
        assert!(!droppable);
        let msg = NodeMsg::Frame { room: "r".into(), to: "p-1".into(), frame: "{}".into(), droppable: false };
        assert_eq!(serde_json::to_string(&msg).unwrap(), old, "unchanged for older relays");
        let msg = NodeMsg::Frame { room: "r".into(), to: "p-1".into(), frame: "{}".into(), droppable: true };
        let NodeMsg::Frame { droppable, .. } = roundtrip(&msg) else { panic!("a frame") };
        assert!(droppable);
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
