//! One task per room WebSocket: it `select!`s over reading the socket, writing its bounded
//! outbound queue, the heartbeat, the dead-peer deadline, a kick, and shutdown.
//!
//! Over 500 lines: the task's loop and its dispatch of every frame kind (who may send it, what
//! of its body is checked, which rate it counts against) read best together; the rooms decide
//! the rest.

use crate::cluster::Cluster;
use crate::history::Store;
use crate::metrics::Metrics;
use crate::ratelimit::{ByteBucket, ByteVerdict, TokenBucket, Verdict};
use crate::room::{Holding, Hub, Inbox, JoinRequest, Joined, Leave, Now, Outbox, Refusal};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tether_protocol::envelope::error_frame;
use tether_protocol::msg::{Call, Eval, Hello, Post, Storage};
use tether_protocol::{Envelope, ErrorCode, Kind, Role, limits};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, info, warn};

/// The `/ws` query: `room`, `role`, `secret`, optional `name` and `resume`.
#[derive(Debug, Default, Deserialize)]
pub struct JoinQuery {
    room: Option<String>,
    role: Option<String>,
    secret: Option<String>,
    name: Option<String>,
    resume: Option<String>,
}

impl JoinQuery {
    /// Whether it resumes a member that is away here (see [`Hub::resumes_away`]).
    pub fn resumes_away(&self, hub: &Hub) -> bool {
        let (Some(room), Some(role), Some(token)) =
            (self.room.as_deref(), self.role.as_deref().and_then(Role::parse), self.resume.as_deref())
        else {
            return false;
        };
        hub.resumes_away(token, room, role)
    }

    fn into_request(self) -> Result<JoinRequest, Refusal> {
        let room = self
            .room
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Refusal::new(ErrorCode::BadFrame, "missing ?room="))?;
        let role = match self.role.as_deref() {
            Some(r) => Role::parse(r).ok_or_else(|| {
                Refusal::new(ErrorCode::BadFrame, format!("role must be pc or device, not {r:?}"))
            })?,
            None => return Err(Refusal::new(ErrorCode::BadFrame, "missing ?role=pc|device")),
        };
        let secret = self.secret.ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "missing ?secret="))?;
        Ok(JoinRequest {
            room,
            role,
            secret,
            name: self.name,
            resume: self.resume.filter(|r| !r.is_empty()),
            cluster_resume: false,
            from: None,
            existing_only: false,
        })
    }
}

/// How a connection's loop ended.
enum End {
    /// The client sent a close frame.
    Clean,
    /// The socket errored or reached EOF without a close frame.
    Lost,
    /// Nothing heard for two heartbeats.
    Dead,
    /// The relay ended it (slow consumer, flood, oversize, replaced).
    Kicked(Refusal),
    /// The relay is shutting down.
    Shutdown,
}

/// Counts an open connection for `/metrics` and `/healthz` for as long as it lives.
struct Counted(Arc<Metrics>);

impl Counted {
    fn new(metrics: Arc<Metrics>) -> Counted {
        metrics.connections.fetch_add(1, Relaxed);
        metrics.connections_total.fetch_add(1, Relaxed);
        Counted(metrics)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }
}

/// What a room socket's task is given besides its socket.
pub struct Context {
    /// The rooms.
    pub hub: Arc<Hub>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where replies are recorded (and a new room's history tag).
    pub store: Store,
    /// Cluster mode's Redis side.
    pub cluster: Option<Arc<Cluster>>,
    /// Cancelled when the relay shuts down.
    pub shutdown: CancellationToken,
    /// The relay's socket tasks (shutdown waits for them): a joined member's serving loop is
    /// one of its own.
    pub tasks: tokio_util::task::TaskTracker,
}

/// The two halves of a room WebSocket.
type Sink = futures_util::stream::SplitSink<WebSocket, Message>;
type Stream = futures_util::stream::SplitStream<WebSocket>;

/// Serves one room WebSocket until it ends. `slot` (the connection's place under its
/// address's cap) is held until the connection ends, or, when it is lost, until its member
/// resumes or is gone.
///
/// A plain function that splits the socket and returns the future that serves it: the socket
/// and the query are moved into their final places here, so the (long-lived, per-connection)
/// future holds each of them once instead of keeping room for them in every state.
pub fn serve(
    socket: WebSocket,
    cx: Arc<Context>,
    query: JoinQuery,
    strike: crate::strikes::Strike,
    slot: Option<Holding>,
) -> impl Future<Output = ()> + Send {
    let request = query.into_request();
    let (sink, stream) = socket.split();
    serve_split(sink, stream, cx, request, strike, slot)
}

async fn serve_split(
    mut sink: Sink,
    stream: Stream,
    cx: Arc<Context>,
    mut request: Result<JoinRequest, Refusal>,
    strike: crate::strikes::Strike,
    slot: Option<Holding>,
) {
    let Context { hub, metrics, store, cluster, shutdown, tasks } = &*cx;
    let counted = Counted::new(metrics.clone());
    if let Ok(req) = &mut request {
        req.from = Some(strike.ip());
    }
    let (outbox, inbox) = hub.outbox();
    // Cluster mode: the room's secret is the cluster's (the first joiner of a room with no member
    // on any node sets it). With Redis unreachable, this node decides alone.
    if let (Ok(req), Some(c)) = (&request, &cluster) {
        // The device key's digest: what both a PC (deriving it) and a device can prove. A
        // secret that proves nothing is refused with its reason by `join` below.
        if let Ok(cred) = crate::token::Credential::of(&req.room, &req.secret) {
            match c.claim_secret(&req.room, &crate::token::tag(&cred.key)).await {
                Ok(true) => {}
                Ok(false) => {
                    request = Err(Refusal::new(ErrorCode::Unauthorized, "wrong secret for this room"))
                }
                Err(e) => {
                    warn!(error = %e, "cluster: cannot check the room's secret in Redis; deciding locally")
                }
            }
        }
    }
    // Cluster mode: a resume token for a member this node does not hold, that may resume here.
    if let (Ok(req), Some(c)) = (&mut request, &cluster) {
        if let Some((member, nonce)) =
            req.resume.as_deref().and_then(|t| hub.resume_claim(t, &req.room, req.role))
        {
            req.cluster_resume = c.resumable(&req.room, &member, nonce).await.unwrap_or(false);
        }
    }
    let joined = match request.and_then(|req| hub.join(req, outbox.clone(), Now::read())) {
        Ok(j) => {
            // Only a refused join counts against the address: not held for the connection's life.
            drop(strike);
            j
        }
        Err(r) => {
            debug!(code = %r.code, message = %r.message, "join refused");
            if r.code == ErrorCode::Unauthorized {
                // A wrong secret (or a spent token): this address waits longer each time.
                strike.fail();
            }
            metrics.error(r.code);
            goodbye(&mut sink, &r).await;
            return;
        }
    };
    if let Some(tag) = &joined.new_room_tag {
        if let Err(e) = store.register_room(&joined.room_name, tag).await {
            warn!(error = %e, "could not record the new room in the history store");
            let r = Refusal::new(ErrorCode::Internal, "the history store is unavailable");
            metrics.error(r.code);
            hub.leave(&joined, joined.conn, Leave::Kicked, Now::read());
            goodbye(&mut sink, &r).await;
            return;
        }
    }
    // A debug span: an enabled span costs each idle socket about 0.5 KiB in the log's registry
    // (its slot, its formatted fields); the member's info lines name it themselves.
    let span = debug_span!("member", room = %joined.room_name, member = %joined.member, role = %joined.role);
    let (shutdown, tasks) = (shutdown.clone(), tasks.clone());
    let conn = Connection { cx, joined, outbox };
    // Joined: the member's serving loop is a task of its own, and this one (with the join's
    // state, its arguments and awaits: about a kilobyte per socket) ends here. Awaited
    // inside this future instead, the loop would live in it, beside all of that, for as long
    // as the socket does.
    tasks.spawn(
        async move {
            let _counted = counted;
            let j = &conn.joined;
            info!(room = %j.room_name, member = %j.member, role = %j.role, resumed = j.resumed, "joined");
            let mut stream = stream;
            let mut inbox = inbox;
            let end = conn.run(&mut sink, &mut stream, &mut inbox, shutdown).await;
            conn.finish(end, &mut sink, inbox, slot).await;
        }
        .instrument(span),
    );
}

/// Sends a last `error` and a close frame carrying its code, without waiting long for a
/// peer that may not be reading.
async fn goodbye(sink: &mut Sink, r: &Refusal) {
    let close = CloseFrame { code: r.code.close_code().0, reason: r.code.as_str().into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        sink.send(Message::Text(error_frame(None, r.code, &r.message).into())).await?;
        sink.send(Message::Close(Some(close))).await
    })
    .await;
}

struct Connection {
    /// What every connection shares, behind one pointer: an idle socket's task holds this
    /// rather than a copy of each handle.
    cx: Arc<Context>,
    joined: Joined,
    outbox: Outbox,
}

impl Connection {
    async fn run(
        &self,
        sink: &mut Sink,
        stream: &mut Stream,
        inbox: &mut Inbox,
        shutdown: CancellationToken,
    ) -> End {
        let limits = self.cx.hub.limits();
        let mut ping = tokio::time::interval_at(Instant::now() + limits.heartbeat, limits.heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let silence = limits.heartbeat * limits::MISSED_HEARTBEATS as u32;
        let deadline = sleep_until(Instant::now() + silence);
        tokio::pin!(deadline);
        let mut bucket = TokenBucket::new(limits.rate, limits.burst, std::time::Instant::now());
        // A device's `inspect` bytes (`--inspect-rate`), on top of the frame rate.
        let mut inspect_bytes = ByteBucket::new(limits.inspect_rate, std::time::Instant::now());
        let kick = self.outbox.kick.clone();
        // Whether the client has sent anything on this connection yet (see `Hub::confirm`).
        let mut heard = false;

        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break End::Shutdown,
                () = kick.fired() => break End::Kicked(kick.reason()),
                () = &mut deadline => break End::Dead,
                frame = inbox.recv() => {
                    // Write what is queued in one go, flushing once.
                    let write = async {
                        sink.feed(Message::Text(frame)).await?;
                        let mut n = 1;
                        while n < 64 {
                            let Some(f) = inbox.try_recv() else { break };
                            sink.feed(Message::Text(f)).await?;
                            n += 1;
                        }
                        sink.flush().await
                    };
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break End::Shutdown,
                        () = kick.fired() => break End::Kicked(kick.reason()),
                        () = &mut deadline => break End::Dead,
                        r = write => if r.is_err() { break End::Lost },
                    }
                }
                _ = ping.tick() => {
                    // Guarded like any write: a peer that reads nothing must not wedge the task.
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break End::Shutdown,
                        () = kick.fired() => break End::Kicked(kick.reason()),
                        () = &mut deadline => break End::Dead,
                        r = sink.send(Message::Ping(Default::default())) => if r.is_err() { break End::Lost },
                    }
                }
                msg = stream.next() => {
                    let msg = match msg {
                        None => break End::Lost,
                        Some(Err(e)) => {
                            let text = e.to_string();
                            // tungstenite refuses a frame beyond its size limit before reading
                            // it; the stream cannot be resynchronised past it.
                            if text.contains("too long") || text.contains("Space limit") {
                                break End::Kicked(Refusal::new(
                                    ErrorCode::TooLarge,
                                    format!("frame far beyond the {}-byte limit; closing", limits.max_frame),
                                ));
                            }
                            debug!(error = %text, "socket error");
                            break End::Lost;
                        }
                        Some(Ok(m)) => m,
                    };
                    if !heard {
                        heard = true;
                        self.cx.hub.confirm(&self.joined);
                    }
                    deadline.as_mut().reset(Instant::now() + silence);
                    match msg {
                        Message::Text(text) => {
                            let at = std::time::Instant::now();
                            match bucket.take(at) {
                            Verdict::Allow => self.on_text(text.as_str(), at, &mut inspect_bytes).await,
                            Verdict::Limit => {
                                self.cx.metrics.dropped(crate::metrics::Dropped::RateLimited);
                                self.refuse(None, ErrorCode::RateLimited, "too many frames; slow down");
                            }
                            Verdict::Flood => break End::Kicked(Refusal::new(
                                ErrorCode::RateLimited,
                                "kept flooding after being told to slow down; closing",
                            )),
                        }},
                        Message::Binary(_) => self.refuse(None, ErrorCode::BadFrame, "frames are JSON text, not binary"),
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => break End::Clean,
                    }
                }
            }
        }
    }

    async fn finish(&self, end: End, sink: &mut Sink, mut inbox: Inbox, slot: Option<Holding>) {
        // Leave first, so nobody queues more toward a socket that is going away, then say
        // goodbye (which may wait up to a second on a peer that does not read).
        let how = match &end {
            End::Clean => Leave::Clean,
            End::Lost | End::Dead | End::Shutdown => Leave::Lost,
            End::Kicked(r) if r.code == ErrorCode::Replaced => Leave::Lost,
            End::Kicked(_) => Leave::Kicked,
        };
        // At shutdown, what was queued but not written waits in the member's resume buffer,
        // which the restart snapshot carries to the next process; `inspect` batches excepted
        // (they are never buffered).
        let mut unsent = std::collections::VecDeque::new();
        if matches!(end, End::Shutdown) {
            while let Some(f) = inbox.try_recv() {
                if !crate::room::inspect::is_inspect_frame(&f) {
                    unsent.push_back(f);
                }
            }
        }
        // A lost member keeps its address's slot while away: an address cannot hold more
        // members, live or away, than --max-conns-per-ip.
        self.cx.hub.leave_with(&self.joined, self.joined.conn, how, unsent, slot, Now::read());
        match end {
            End::Clean => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            }
            End::Lost => {}
            End::Dead => {
                let j = &self.joined;
                info!(room = %j.room_name, member = %j.member, "no answer for two heartbeats; marked away")
            }
            End::Shutdown => {
                let r = Refusal::new(ErrorCode::ShuttingDown, "the relay is restarting; reconnect");
                goodbye(sink, &r).await;
            }
            End::Kicked(r) => {
                self.cx.metrics.error(r.code);
                if r.code != ErrorCode::Replaced {
                    let j = &self.joined;
                    info!(room = %j.room_name, member = %j.member, code = %r.code, "closing: {}", r.message);
                }
                goodbye(sink, &r).await;
            }
        }
    }

    /// Queues an `error` frame to this connection.
    fn refuse(&self, id: Option<&str>, code: ErrorCode, message: &str) {
        self.cx.metrics.error(code);
        let frame = error_frame(id, code, message);
        let mut room = crate::util::lock(&self.joined.room);
        room.deliver(&self.joined.member, frame.into(), Now::read());
    }

    /// A text frame that arrived at `at`; `inspect_bytes` meters the connection's `inspect`
    /// frames.
    async fn on_text(&self, text: &str, at: std::time::Instant, inspect_bytes: &mut ByteBucket) {
        let max = self.cx.hub.limits().max_frame;
        if text.len() > max {
            let msg = format!("frame of {} bytes is over the {max}-byte limit", text.len());
            return self.refuse(None, ErrorCode::TooLarge, &msg);
        }
        let env = match Envelope::parse(text) {
            Ok(env) => env,
            Err(e) => {
                return self.refuse(None, ErrorCode::BadFrame, &format!("not a JSON envelope: {e}"));
            }
        };
        let id = env.id.as_deref();
        if id.is_some_and(|id| id.len() > limits::MAX_ID_LEN || id.is_empty()) {
            return self.refuse(None, ErrorCode::BadFrame, "id must be 1 to 128 bytes");
        }
        let Some(kind) = Kind::parse(&env.kind) else {
            self.cx.metrics.frames_in_unknown.fetch_add(1, Relaxed);
            return self.refuse(id, ErrorCode::UnknownType, &format!("unknown type {:?}", env.kind));
        };
        self.cx.metrics.frame_in(kind);
        let now = || Now { at, ms: crate::now_ms() };
        let role = self.joined.role;
        match kind {
            Kind::Welcome
            | Kind::Devices
            | Kind::Error
            | Kind::Alarm
            | Kind::AlarmGap
            | Kind::AlarmSource => {
                self.refuse(id, ErrorCode::BadFrame, &format!("only the relay sends {kind}"));
            }
            Kind::Hello => {
                // Room for the name, the appInfo, a device's `inspect` flags and the JSON around.
                if let Some(m) =
                    env.msg.filter(|m| m.get().len() > limits::MAX_APP_INFO + limits::MAX_NAME_LEN + 256)
                {
                    let msg = format!(
                        "hello of {} bytes: appInfo may be at most {} bytes, as it is sent to every member",
                        m.get().len(),
                        limits::MAX_APP_INFO
                    );
                    return self.refuse(id, ErrorCode::BadFrame, &msg);
                }
                let hello = match env.msg.map(|m| serde_json::from_str::<Hello>(m.get())) {
                    None => Hello::default(),
                    Some(Ok(h)) => h,
                    Some(Err(e)) => {
                        return self.refuse(id, ErrorCode::BadFrame, &format!("bad hello: {e}"));
                    }
                };
                if let Err(r) = self.cx.hub.hello(&self.joined, hello, now()) {
                    self.refuse(id, r.code, &r.message);
                }
            }
            Kind::Inspect => {
                if role != Role::Device {
                    return self.refuse(id, ErrorCode::BadFrame, "only a device sends inspect");
                }
                if let ByteVerdict::Drop { tell } = inspect_bytes.take(text.len(), at) {
                    self.cx.metrics.dropped(crate::metrics::Dropped::InspectRate);
                    if tell {
                        let rate = self.cx.hub.limits().inspect_rate;
                        let msg = format!(
                            "inspect frames over {rate} bytes/s (--inspect-rate) are dropped; slow down"
                        );
                        self.refuse(None, ErrorCode::RateLimited, &msg);
                    }
                    return;
                }
                let Some(msg) = env.msg.filter(|m| inspect_shape(m.get())) else {
                    return self.refuse(id, ErrorCode::BadFrame, "inspect needs msg.events, an array");
                };
                if let Err(r) =
                    self.cx.hub.inspect(&self.cx.store, &self.joined, msg, env.to.as_deref(), now())
                {
                    self.refuse(id, r.code, &r.message);
                }
            }
            Kind::Post | Kind::Call | Kind::Storage | Kind::Eval => {
                if role != Role::Pc {
                    return self.refuse(id, ErrorCode::BadFrame, &format!("only a pc sends {kind}"));
                }
                let Some(msg) = env.msg else {
                    let need = match kind {
                        Kind::Post => "msg.url",
                        Kind::Call => "msg.method",
                        Kind::Storage => "msg.op",
                        _ => "msg.code",
                    };
                    return self.refuse(id, ErrorCode::BadFrame, &format!("{kind} needs {need}"));
                };
                let (target, timeout_ms) = match request_target(kind, msg.get()) {
                    Ok(t) => t,
                    Err(e) => return self.refuse(id, ErrorCode::BadFrame, &format!("bad {kind}: {e}")),
                };
                let timeout = Duration::from_millis(
                    timeout_ms
                        .unwrap_or(limits::DEFAULT_REQUEST_TIMEOUT_MS)
                        .min(limits::MAX_REQUEST_TIMEOUT_MS),
                );
                let to = env.to.as_deref();
                let (id, refusals) =
                    self.cx.hub.request(&self.joined, kind, id, to, msg, target, timeout, now());
                for r in refusals {
                    self.refuse(Some(&id), r.code, &r.message);
                }
            }
            Kind::PostCb | Kind::CallCb | Kind::StorageCb | Kind::EvalCb => {
                if role != Role::Device {
                    return self.refuse(id, ErrorCode::BadFrame, &format!("only a device sends {kind}"));
                }
                let null = serde_json::value::RawValue::NULL;
                let msg = env.msg.unwrap_or(null);
                // Boxed (one allocation per reply): held in place, the state of its rare wait
                // for room in the history's write queue would make every idle socket's task
                // larger by its size, 384 bytes.
                let reply = Box::pin(self.cx.hub.reply(&self.cx.store, &self.joined, kind, id, msg, now()));
                if let Err(r) = reply.await {
                    self.refuse(id, r.code, &r.message);
                }
            }
        }
    }
}

/// A request's target (what history shows: the url, the method, the storage op, the start of
/// the code) and its `timeoutMs`, from its body; `Err` says what is wrong with it.
fn request_target(kind: Kind, msg: &str) -> Result<(String, Option<u64>), String> {
    let parsed = match kind {
        Kind::Post => serde_json::from_str::<Post>(msg).map(|p| (p.url, p.timeout_ms)),
        Kind::Call => serde_json::from_str::<Call>(msg).map(|c| (c.method, c.timeout_ms)),
        Kind::Storage => serde_json::from_str::<Storage>(msg).map(|s| (s.op, s.timeout_ms)),
        _ => {
            let e = serde_json::from_str::<Eval>(msg).map_err(|e| e.to_string())?;
            if e.code.len() > limits::MAX_EVAL_CODE {
                return Err(format!(
                    "code of {} bytes is over the {}-byte limit",
                    e.code.len(),
                    limits::MAX_EVAL_CODE
                ));
            }
            return Ok((crate::util::cut(&e.code, EVAL_TARGET_LEN).to_owned(), e.timeout_ms));
        }
    };
    parsed.map_err(|e| e.to_string())
}

/// How much of an `eval`'s code names it in history (the whole code is the request body).
const EVAL_TARGET_LEN: usize = 200;

/// Whether an `inspect` body is an object with an `events` array (all the relay checks of
/// it; the events themselves are for the PC). Reads it without keeping anything.
fn inspect_shape(msg: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Shape {
        #[allow(dead_code)]
        events: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Shape>(msg).is_ok()
}
