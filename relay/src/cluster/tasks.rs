//! The tasks that listen: the subscriber (frames, requests, presence, CS calls from other
//! nodes) and the liveness keeper (this node's key, and other nodes' members when theirs expires).

use super::*;

/// Keeps this node's `tether:alive:{node}` key (three beats long) and, every beat, removes the
/// members of nodes whose key has expired (killed without a goodbye) from the rooms this node has
/// members in. A beat is the heartbeat, at most 250 ms: a dead node is noticed within about a
/// second whatever `--heartbeat-ms` is, for four small writes a second per node.
pub(super) async fn liveness(
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

pub(super) async fn subscribe(
    client: &redis::Client,
    node: &str,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(node_channel(node)).await?;
    pubsub.subscribe(PRESENCE).await?;
    Ok(pubsub)
}

pub(super) struct Subscriber {
    pub(super) client: redis::Client,
    pub(super) conn: redis::aio::ConnectionManager,
    pub(super) hub: Arc<Hub>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) bus: Arc<Bus>,
    pub(super) resume_key: Option<String>,
    pub(super) cs: Option<Arc<crate::cs::Gateway>>,
    /// Where the forwarded CS calls run, so that shutdown waits for them.
    pub(super) tasks: TaskTracker,
}

impl Subscriber {
    /// Reads the bus; when the subscription ends (Redis went away), subscribes again once Redis
    /// is back, and announces this node's members anew (a restarted Redis forgot them).
    pub(super) async fn run(mut self, first: redis::aio::PubSub, stop: CancellationToken) {
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
            Ok(NodeMsg::Frame { room, to, frame, droppable }) => {
                self.hub.bus_frame(&room, &to, frame, droppable, Now::read())
            }
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
