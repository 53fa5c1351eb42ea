//! The one way out to Redis: a bounded queue (count and bytes) that the hub and the gateway
//! push to without waiting, and the publisher task that drains it.

use super::*;

pub(super) enum Out {
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
    pub(super) node: Arc<str>,
    pub(super) tx: mpsc::Sender<Out>,
    /// Publishes that found the queue full.
    pub dropped: AtomicU64,
    /// Whether Redis answered the last liveness write and this node's subscription is live:
    /// while not, sends toward other nodes are refused with `cluster_unavailable`, not lost.
    pub(super) up: AtomicBool,
    pub(super) subscribed: AtomicBool,
    /// How long a member whose node went away may resume elsewhere (`--grace-ms`).
    pub(super) grace_ms: u64,
    /// CS calls forwarded from here, awaiting their answers.
    pub(super) cs_waiting:
        std::sync::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<CsOutcome>>>,
    pub(super) cs_next: AtomicU64,
    /// Bytes in the publish queue.
    pub(super) queued_bytes: std::sync::atomic::AtomicUsize,
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
        self.push_within(out, QUEUE_BYTES)
    }

    /// Queues `out`; a frame for another node only while the bus is up and the queue's bytes
    /// stay within `cap`.
    fn push_within(&self, out: Out, cap: usize) -> bool {
        let size = out.size();
        if let Out::Publish { channel, .. } = &out {
            if channel.starts_with("tether:node:")
                && (!self.is_up() || self.queued_bytes.load(Relaxed) + size > cap)
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
        let msg = NodeMsg::Frame { room: room.into(), to: to.into(), frame: frame.into(), droppable: false };
        self.publish_to(node, &msg)
    }

    /// Sends an `inspect` batch to member `to` of `room`, held by `node`: only while the bus
    /// is up and its queue holds less than half of [`QUEUE_BYTES`]; `false`: dropped.
    pub fn send_droppable(&self, node: &str, room: &str, to: &str, frame: &str) -> bool {
        let msg = NodeMsg::Frame { room: room.into(), to: to.into(), frame: frame.into(), droppable: true };
        let payload = serde_json::to_string(&msg).unwrap_or_default();
        self.push_within(Out::Publish { channel: node_channel(node), payload }, QUEUE_BYTES / 2)
    }

    /// Sends a request to the node that holds its device.
    pub fn send_request(&self, node: &str, req: RemoteRequest) -> bool {
        self.publish_to(node, &NodeMsg::Request(Box::new(req)))
    }

    pub(super) fn publish_to(&self, node: &str, msg: &NodeMsg) -> bool {
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

    pub(super) fn cs_answered(&self, answer: CsAnswer) {
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

    fn send_droppable(&self, node: &str, room: &str, to: &str, frame: &str) -> bool {
        Bus::send_droppable(self, node, room, to, frame)
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

pub(super) async fn publisher(
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
