//! The legacy CS gateway's typed core: log in, call, log out.
//!
//! The legacy server binds a user to the TCP connection that logged in (seed 000). So a login
//! opens a **new** keep-alive connection, and the session token the client gets names that
//! connection: the client never names its own uid. Calls go over the session's connection one
//! at a time, in order, through a bounded queue. When the connection ends, so does the session:
//! the next call gets `session_lost`, never a silent retry on a new, un-logged-in connection.
//!
//! A [`CsRequest`] is JSON (`{"method", "params"}`, turned into XML-RPC here and the reply back
//! into a [`JsonReply`]: a result or a fault) or raw XML-RPC, passed through unchanged both ways
//! ([`RawXml`]), except that a DOCTYPE or an entity declaration never reaches the legacy server.
//! Failures are a [`CsError`]: an error code and a message, no HTTP status.
//!
//! No HTTP here: headers, cookies, content types, `Origin` and the statuses errors map to are
//! the HTTP edge's (`http::cs`). The same typed request and reply cross between relays in
//! cluster mode ([`Op`], [`Done`]), so a call forwarded to the node holding its session is
//! answered exactly as a local one.
//!
//! Some 700 lines: the session table, its caps and its typed requests and replies
//! belong together; the connection itself is [`session`], the codec [`xmlrpc`], HTTP `http::cs`.
//!
//! # Layout
//! - [`xmlrpc`]: the pure XML-RPC ⇄ JSON codec.
//! - [`session`]: one session's upstream connection and the task that owns it.
//! - this module: the sessions by token, and what may be asked of them.

pub mod session;
pub mod xmlrpc;

use crate::metrics::{LoginRefused, Metrics};
use crate::per_minute::PerMinute;
use crate::util::lock;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use session::{Answer, CallError, Limits, Session, Submit, Upstream};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tether_protocol::ErrorCode;
use tokio_util::task::TaskTracker;

/// Tokens of ended sessions remembered, so their next call says `session_lost` rather than
/// `unauthorized`.
const LOST_REMEMBERED: usize = 4096;

/// The gateway's settings, from the flags.
#[derive(Debug, Clone)]
pub struct CsConfig {
    /// The legacy server.
    pub upstream: Upstream,
    /// Most sessions at once, logins under way included (`--cs-max-sessions`).
    pub max_sessions: usize,
    /// A session unused this long is closed.
    pub idle: Duration,
    /// A session older than this is closed, used or not (`--cs-max-age-ms`).
    pub max_age: Duration,
    /// The one method a login may call (`--cs-login-method`).
    pub login_method: String,
    /// Logins per address per minute, failed ones included (`--cs-logins-per-ip`; 0: no cap).
    pub logins_per_ip: u32,
    /// Per-session limits.
    pub limits: Limits,
    /// Largest request body.
    pub max_body: usize,
}

/// Where the gateway tells the other relays which sessions it holds (cluster mode), so they
/// forward those sessions' calls here. The gateway states what it needs; `cluster` provides
/// it, so this module never imports the cluster.
pub trait SessionDirectory: Send + Sync {
    /// This relay holds session `token` for `ttl` (said again on use), or no longer (`None`).
    fn holds(&self, token: &str, ttl: Option<Duration>);
    /// Like [`SessionDirectory::holds`] for a new session; resolves once the other relays can
    /// find it (or after a short wait), so a call right after the login finds it anywhere.
    fn holds_new<'a>(
        &'a self,
        token: &'a str,
        ttl: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

/// Every CS session of this relay.
///
/// Who pays for what: each session is one upstream connection (a socket here and one on the
/// legacy server, a task, a queue of at most `--cs-queue` calls), paid for by the login that
/// made it. A login takes its place under `--cs-max-sessions` ([`Slot`]) before it connects,
/// and gives it back only when its connection has ended, so the cap counts connections, logins
/// under way included, and concurrent logins never exceed it. An address pays for its logins
/// ([`PerMinute`]): a stranger holds at most `--cs-logins-per-ip` sessions per minute, for at
/// most `--cs-idle-ms` unused or `--cs-max-age-ms` in all.
pub struct Gateway {
    cfg: CsConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Places under `--cs-max-sessions` taken: sessions and logins under way.
    slots: Arc<AtomicUsize>,
    /// Logins per address per minute.
    logins: PerMinute,
    lost: Mutex<VecDeque<String>>,
    metrics: Arc<Metrics>,
    me: Weak<Gateway>,
    /// Cluster mode: where this node says which sessions it holds.
    bus: std::sync::OnceLock<Arc<dyn SessionDirectory>>,
    /// Each session's connection task, so that shutdown waits for them to end ([`Gateway::close_all`]).
    tasks: TaskTracker,
    /// Set at shutdown: sessions ending then stay recorded in the cluster as this node's, so
    /// other nodes say `session_lost` once this node is gone (as when it is killed).
    closing: AtomicBool,
}

/// Why a CS request failed: an error code ([`CsError::code`]) and a message (its `Display`),
/// which says what failed, never where (the upstream's address is for the log). The HTTP edge
/// chooses the status. Serde, because it crosses between relays as a forwarded call's outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CsError {
    /// The body is not a call this gateway can send (bad JSON, bad XML, a DOCTYPE, a value
    /// XML-RPC cannot carry).
    #[error("{0}")]
    BadRequest(String),
    /// No session token with the request.
    #[error("log in first: POST /cs/login")]
    NotLoggedIn,
    /// A token this relay never issued (or long forgot).
    #[error("unknown session: log in again")]
    UnknownSession,
    /// The session's connection is gone.
    #[error("the CS server closed this session's connection (logout, idle close, restart): log in again")]
    SessionLost,
    /// `--cs-max-sessions` reached.
    #[error(
        "this relay already holds {0} CS sessions, logins under way included (--cs-max-sessions): try again later"
    )]
    TooManySessions(usize),
    /// A login naming another method than `--cs-login-method`.
    #[error(
        "/cs/login calls only the login method {expected:?} (--cs-login-method), not {got:?}: other methods go to /cs/call with a session"
    )]
    NotLogin {
        /// `--cs-login-method`.
        expected: String,
        /// What the body named (cut to 64 characters).
        got: String,
    },
    /// The address made its minute's logins (`--cs-logins-per-ip`).
    #[error(
        "{per_minute} logins from this address in the last minute (--cs-logins-per-ip): try again in {wait_s} s"
    )]
    TooManyLogins {
        /// The cap.
        per_minute: u32,
        /// Seconds until the address may try again.
        wait_s: u64,
    },
    /// The session's queue is full.
    #[error("{0} calls are already queued on this session; try again shortly")]
    Busy(usize),
    /// The upstream gave no answer.
    #[error(transparent)]
    Upstream(#[from] CallError),
    /// The upstream's answer is not XML-RPC (or not HTTP 200) where JSON was asked for.
    #[error("{0}")]
    BadUpstream(String),
    /// A call was forwarded to a relay that has no legacy CS server.
    #[error("the relay holding this session has no legacy CS server")]
    NoUpstreamThere,
    /// The relay holding the session stopped.
    #[error("the relay holding this session stopped: log in again")]
    NodeStopped,
    /// The session's relay cannot be asked now (the bus is down or full, Redis unreachable).
    #[error("{0}")]
    Cluster(String),
    /// The session's relay did not answer in time.
    #[error("the relay holding this session did not answer in time")]
    NodeTimeout,
}

impl CsError {
    /// The error code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            CsError::BadRequest(_) | CsError::NotLogin { .. } => ErrorCode::BadFrame,
            CsError::NotLoggedIn | CsError::UnknownSession | CsError::NoUpstreamThere => {
                ErrorCode::Unauthorized
            }
            CsError::SessionLost | CsError::NodeStopped | CsError::Upstream(CallError::Lost) => {
                ErrorCode::SessionLost
            }
            CsError::TooManySessions(_) | CsError::Busy(_) | CsError::TooManyLogins { .. } => {
                ErrorCode::RateLimited
            }
            CsError::Upstream(CallError::TooLarge(_)) => ErrorCode::TooLarge,
            CsError::Upstream(_) => ErrorCode::UpstreamClosed,
            CsError::BadUpstream(_) => ErrorCode::BadUpstream,
            CsError::Cluster(_) | CsError::NodeTimeout => ErrorCode::ClusterUnavailable,
        }
    }
}

impl From<xmlrpc::CodecError> for CsError {
    fn from(e: xmlrpc::CodecError) -> Self {
        CsError::BadRequest(e.to_string())
    }
}

/// What a request body is, by its media type (which the HTTP edge reads from `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`.
    Json,
    /// `text/xml` (or `application/xml`): raw XML-RPC, passed through.
    Xml,
}

/// A call to run on the legacy server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CsRequest {
    /// `{"method", "params"}`, sent as an XML-RPC `methodCall`; the answer is a [`JsonReply`].
    Json {
        /// The method name.
        method: String,
        /// Its parameters.
        params: Vec<Value>,
    },
    /// Raw XML-RPC, passed through (checked to carry no DOCTYPE nor entity declaration); the
    /// answer is [`RawXml`].
    Xml(#[serde(with = "base64_bytes")] Bytes),
}

impl CsRequest {
    /// The call a body of `media` holds. A JSON call is checked to be one XML-RPC can carry
    /// exactly (so a bad one is refused before any session is looked at).
    pub fn parse(media: Media, body: Bytes) -> Result<CsRequest, CsError> {
        match media {
            Media::Xml => {
                xmlrpc::check_passthrough(&body)?;
                Ok(CsRequest::Xml(body))
            }
            Media::Json => {
                let (method, params) = xmlrpc::call_json(&body)?;
                xmlrpc::encode_call(&method, &params)?;
                Ok(CsRequest::Json { method, params })
            }
        }
    }

    /// The method it calls.
    fn method(&self) -> Result<String, CsError> {
        match self {
            CsRequest::Json { method, .. } => Ok(method.clone()),
            CsRequest::Xml(xml) => Ok(xmlrpc::call_method(xml)?),
        }
    }

    /// What goes to the legacy server.
    fn to_xml(&self) -> Result<Bytes, CsError> {
        Ok(match self {
            CsRequest::Json { method, params } => Bytes::from(xmlrpc::encode_call(method, params)?),
            CsRequest::Xml(xml) => xml.clone(),
        })
    }
}

/// The answer to a JSON call. Serialized, it is the HTTP body: `{"result": …}` or
/// `{"fault": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JsonReply {
    /// The returned value.
    Result(Value),
    /// A fault: `faultCode` and `faultString`.
    Fault {
        /// `faultCode` (usually an integer).
        code: Value,
        /// `faultString`.
        message: String,
    },
}

/// The legacy server's answer to raw XML, as it sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawXml {
    /// The upstream's HTTP status.
    pub status: u16,
    /// The upstream's `Content-Type` (only its charset is ever kept: the edge serves `text/xml`).
    pub content_type: Option<String>,
    /// The bytes.
    #[serde(with = "base64_bytes")]
    pub body: Bytes,
}

/// The answer to a call: the kind of the request's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CsReply {
    /// To a JSON call.
    Json(JsonReply),
    /// To raw XML.
    Xml(RawXml),
}

/// A login's outcome.
#[derive(Debug)]
pub struct Login {
    /// The login call's answer.
    pub reply: CsReply,
    /// The new session's token; `None` when the login was a fault (or not XML-RPC), which
    /// gets no session.
    pub session: Option<String>,
}

/// A logout's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    /// Whether the session was still live (logging out of one already gone is no error).
    pub was_logged_in: bool,
    /// The answer to the call in the logout's body, as JSON, if there was one and it decoded.
    pub reply: Option<JsonReply>,
    /// Why that call failed, if it did otherwise than by the upstream closing the session.
    pub warning: Option<String>,
}

/// What may be asked of a session held by another relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// [`Gateway::call`].
    Call(CsRequest),
    /// [`Gateway::logout`].
    Logout(Option<CsRequest>),
}

/// The outcome of an [`Op`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Done {
    /// Of a call.
    Called(CsReply),
    /// Of a logout.
    LoggedOut(LoggedOut),
}

/// `Bytes` as a base64 string (the bus between relays carries JSON text).
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map(Bytes::from).map_err(D::Error::custom)
    }
}

/// One place under `--cs-max-sessions`, taken before a login connects ([`Gateway::reserve`]).
/// Dropping it gives the place back: a login that failed or was abandoned (the browser went
/// away) at once, a session when its connection has ended (the connection's `ended` callback
/// owns it).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn new_token() -> String {
    crate::util::hex(&rand::random::<[u8; 16]>())
}

fn call_error(e: CallError) -> CsError {
    // The message names what failed, never where (the upstream's address is an internal one):
    // the detail is for the log.
    if let CallError::Connect(detail) | CallError::Io(detail) = &e {
        tracing::warn!(error = %detail, "the CS server: {e}");
    }
    CsError::Upstream(e)
}

/// The answer to a JSON call: a result or a fault; anything else is `bad_upstream`.
fn json_reply(answer: &Answer) -> Result<JsonReply, CsError> {
    if answer.status != 200 {
        return Err(CsError::BadUpstream(format!("the CS server answered HTTP {}", answer.status)));
    }
    match xmlrpc::decode_response(&answer.body) {
        Ok(xmlrpc::Response::Ok(v)) => Ok(JsonReply::Result(v)),
        Ok(xmlrpc::Response::Fault { code, message }) => Ok(JsonReply::Fault { code, message }),
        Err(e) => Err(CsError::BadUpstream(format!("the CS server's answer is {e}"))),
    }
}

/// The answer to `request`, in its kind.
fn reply(request: &CsRequest, answer: Answer) -> Result<CsReply, CsError> {
    match request {
        CsRequest::Json { .. } => json_reply(&answer).map(CsReply::Json),
        CsRequest::Xml(_) => Ok(CsReply::Xml(RawXml {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
        })),
    }
}

impl Gateway {
    /// A gateway with no sessions. Each session's connection task is tracked by `tasks`.
    pub fn new(cfg: CsConfig, metrics: Arc<Metrics>, tasks: TaskTracker) -> Arc<Gateway> {
        Arc::new_cyclic(|me| Gateway {
            logins: PerMinute::new(cfg.logins_per_ip),
            cfg,
            sessions: Mutex::new(HashMap::new()),
            slots: Arc::new(AtomicUsize::new(0)),
            lost: Mutex::new(VecDeque::new()),
            metrics,
            me: me.clone(),
            bus: std::sync::OnceLock::new(),
            tasks,
            closing: AtomicBool::new(false),
        })
    }

    /// Cluster mode: sessions held here are made known to the other nodes, which forward
    /// their calls here.
    pub fn attach_bus(&self, bus: Arc<dyn SessionDirectory>) {
        let _ = self.bus.set(bus);
    }

    /// Says (again) that this node holds `token`, for a while past the idle timeout.
    fn held(&self, token: &str) {
        if let Some(bus) = self.bus.get() {
            bus.holds(token, Some(self.cfg.idle + Duration::from_secs(60)));
        }
    }

    /// Whether `token` is a live session of this node.
    pub fn holds(&self, token: &str) -> bool {
        lock(&self.sessions).get(token).is_some_and(|s| s.is_alive() && !self.too_old(s, crate::now_ms()))
    }

    /// Whether `s` has lived past `--cs-max-age-ms` at `now` (ms since the epoch).
    fn too_old(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.opened_ms) >= self.cfg.max_age.as_millis() as u64
    }

    /// Whether `token` is, or was lately, a session of this node.
    pub fn knows(&self, token: &str) -> bool {
        lock(&self.sessions).contains_key(token) || lock(&self.lost).contains(&token.to_owned())
    }

    /// How long a node forwarding a call here waits for it: a whole queue of calls may be ahead.
    pub fn forward_wait(&self) -> Duration {
        self.cfg.limits.timeout * (self.cfg.limits.queue as u32 + 1) + Duration::from_secs(1)
    }

    /// The largest request body accepted.
    pub fn max_body(&self) -> usize {
        self.cfg.max_body
    }

    /// Takes `token` out of the table; whether it was there (so that, of two who end a
    /// session at once, one counts it).
    fn forget(&self, token: &str) -> bool {
        let removed = lock(&self.sessions).remove(token).is_some();
        if removed {
            if let Some(bus) = self.bus.get().filter(|_| !self.closing.load(Ordering::Acquire)) {
                bus.holds(token, None);
            }
            let mut lost = lock(&self.lost);
            lost.push_back(token.to_owned());
            if lost.len() > LOST_REMEMBERED {
                lost.pop_front();
            }
        }
        removed
    }

    fn session(&self, token: &str) -> Result<Arc<Session>, CsError> {
        let found = lock(&self.sessions).get(token).cloned();
        match found {
            Some(s) if s.is_alive() && !self.too_old(&s, crate::now_ms()) => Ok(s),
            Some(s) => {
                // Dead, or past its age (closed now rather than at the next sweep).
                let expired = s.is_alive();
                s.close();
                if self.forget(token) && expired {
                    self.metrics.cs_sessions_expired.fetch_add(1, Relaxed);
                }
                Err(CsError::SessionLost)
            }
            None if lock(&self.lost).iter().any(|t| t == token) => Err(CsError::SessionLost),
            None => Err(CsError::UnknownSession),
        }
    }

    /// Sends `xml` on the session's connection, after the calls queued before it.
    async fn submit(&self, session: &Session, xml: Bytes) -> Result<Answer, CsError> {
        let answer = match session.submit(xml, "text/xml") {
            Ok(a) => a,
            Err(Submit::Busy) => return Err(CsError::Busy(self.cfg.limits.queue)),
            Err(Submit::Lost) => return Err(CsError::SessionLost),
        };
        answer.await.map_err(|_| CsError::SessionLost)?.map_err(call_error)
    }

    /// Takes a place under `--cs-max-sessions`, or says there is none.
    fn reserve(&self) -> Result<Slot, CsError> {
        let max = self.cfg.max_sessions;
        match self.slots.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)) {
            Ok(_) => Ok(Slot(self.slots.clone())),
            Err(_) => Err(CsError::TooManySessions(max)),
        }
    }

    /// Whether `from` may log in now: the call must be `--cs-login-method`, and the address
    /// within `--cs-logins-per-ip` (this counts one login); nothing reaches the upstream
    /// otherwise. Each refusal is counted by its reason.
    fn admit(&self, request: &CsRequest, from: IpAddr) -> Result<(), CsError> {
        let method = request.method()?;
        if method != self.cfg.login_method {
            self.metrics.login_refused(LoginRefused::Method);
            return Err(CsError::NotLogin {
                expected: self.cfg.login_method.clone(),
                got: method.chars().take(64).collect(),
            });
        }
        if let Err(wait) = self.logins.take(from, std::time::Instant::now()) {
            self.metrics.login_refused(LoginRefused::Rate);
            let wait_s = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(CsError::TooManyLogins { per_minute: self.cfg.logins_per_ip, wait_s });
        }
        Ok(())
    }

    /// A new connection, the login call on it, and a session if it worked: a login that is a
    /// fault (or not XML-RPC) gets its answer and no session. `from` is the client's address
    /// (for `--cs-logins-per-ip`).
    ///
    /// The place under `--cs-max-sessions` is taken before connecting and held by the
    /// connection until it ends, so no number of concurrent logins exceeds the cap; a login
    /// that fails, or whose caller goes away mid-way (this future dropped), gives it back.
    pub async fn login(&self, request: CsRequest, from: IpAddr) -> Result<Login, CsError> {
        let xml = request.to_xml()?;
        self.admit(&request, from)?;
        let slot = self.reserve().inspect_err(|_| self.metrics.login_refused(LoginRefused::Full))?;
        self.metrics.cs_logins.fetch_add(1, Relaxed);
        let token = new_token();
        let ended = {
            let (me, token, metrics) = (self.me.clone(), token.clone(), self.metrics.clone());
            move || {
                metrics.cs_sessions.fetch_sub(1, Relaxed);
                if let Some(g) = me.upgrade() {
                    g.forget(&token);
                }
                drop(slot); // the connection is gone: its place is free
            }
        };
        let session = Session::open(&self.cfg.upstream, self.cfg.limits, &self.tasks, ended)
            .await
            .map_err(call_error)?;
        self.metrics.cs_sessions.fetch_add(1, Relaxed);
        let session = Arc::new(session);
        let answer = match self.submit(&session, xml).await {
            Ok(a) => a,
            Err(e) => {
                session.abort();
                return Err(e);
            }
        };
        let fault = answer.status != 200
            || !matches!(xmlrpc::decode_response(&answer.body), Ok(xmlrpc::Response::Ok(_)));
        if fault {
            session.close();
            return Ok(Login { reply: reply(&request, answer)?, session: None });
        }
        lock(&self.sessions).insert(token.clone(), session);
        if let Some(bus) = self.bus.get() {
            bus.holds_new(&token, self.cfg.idle + Duration::from_secs(60)).await;
        }
        Ok(Login { reply: reply(&request, answer)?, session: Some(token) })
    }

    /// The call on `session`'s own connection.
    pub async fn call(&self, session: &str, request: CsRequest) -> Result<CsReply, CsError> {
        let xml = request.to_xml()?;
        let held = self.session(session)?;
        self.metrics.cs_calls.fetch_add(1, Relaxed);
        self.held(session);
        let result = match self.submit(&held, xml).await {
            Ok(answer) => reply(&request, answer),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            if e.code() == ErrorCode::SessionLost || !held.is_alive() {
                self.forget(session);
            }
        }
        result
    }

    /// Runs `request`, if any, on `session`, then closes the session's connection.
    pub async fn logout(&self, session: &str, request: Option<CsRequest>) -> Result<LoggedOut, CsError> {
        let xml = request.as_ref().map(CsRequest::to_xml).transpose()?;
        let held = match self.session(session) {
            Ok(s) => s,
            // Logging out of a session that is already gone is not an error.
            Err(e) if e.code() == ErrorCode::SessionLost => {
                return Ok(LoggedOut { was_logged_in: false, reply: None, warning: None });
            }
            Err(e) => return Err(e),
        };
        let mut out = LoggedOut { was_logged_in: true, reply: None, warning: None };
        if let Some(xml) = xml {
            // The upstream may close the connection in answer to its own logout: that is fine.
            match self.submit(&held, xml).await {
                Ok(a) => out.reply = json_reply(&a).ok(),
                Err(e) if e.code() == ErrorCode::SessionLost => {}
                Err(e) => out.warning = Some(e.to_string()),
            }
        }
        held.close();
        self.forget(session);
        Ok(out)
    }

    /// Runs `op` on `session`: a call or a logout, as another relay forwarded it.
    pub async fn run(&self, session: &str, op: Op) -> Result<Done, CsError> {
        match op {
            Op::Call(request) => self.call(session, request).await.map(Done::Called),
            Op::Logout(request) => self.logout(session, request).await.map(Done::LoggedOut),
        }
    }

    /// Closes sessions unused for longer than the idle timeout, and those older than
    /// `--cs-max-age-ms`.
    pub fn sweep(&self) {
        let now = crate::now_ms();
        let cutoff = now.saturating_sub(self.cfg.idle.as_millis() as u64);
        let ending: Vec<(String, Arc<Session>, bool)> = lock(&self.sessions)
            .iter()
            .filter_map(|(t, s)| {
                let old = self.too_old(s, now) && s.is_alive();
                (old || s.last_used.load(Relaxed) < cutoff).then(|| (t.clone(), s.clone(), old))
            })
            .collect();
        for (token, s, old) in ending {
            s.close();
            if self.forget(&token) && old {
                self.metrics.cs_sessions_expired.fetch_add(1, Relaxed);
            }
        }
    }

    /// At shutdown: every session finishes what is queued on it and closes its connection
    /// (the tasks doing so are tracked: the relay waits for them). In cluster mode the
    /// sessions stay recorded as this node's, so the other nodes answer `session_lost`.
    pub fn close_all(&self) {
        self.closing.store(true, Ordering::Release);
        let open: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for s in open {
            s.close();
        }
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }
}

/// Runs `op`, forwarded by another relay, on `session`, held here.
pub async fn run_forwarded(g: Option<&Gateway>, session: &str, op: Op) -> Result<Done, CsError> {
    match g {
        Some(g) => g.run(session, op).await,
        None => Err(CsError::NoUpstreamThere),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway whose legacy server is a port nobody listens on: a login that reaches it
    /// fails `cannot connect`, so each test can tell which logins got that far.
    async fn gateway(tweak: impl FnOnce(&mut CsConfig)) -> Arc<Gateway> {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let mut cfg = CsConfig {
            upstream: Upstream::parse(&format!("http://{dead}/RPC2")).unwrap(),
            max_sessions: 1,
            idle: Duration::from_secs(60),
            max_age: Duration::from_secs(60),
            login_method: "login".into(),
            logins_per_ip: 0,
            limits: Limits {
                queue: 1,
                timeout: Duration::from_secs(1),
                max_answer: 1024,
                connect_timeout: Duration::from_secs(1),
            },
            max_body: 1024,
        };
        tweak(&mut cfg);
        Gateway::new(cfg, Arc::default(), TaskTracker::new())
    }

    fn json_login(method: &str) -> CsRequest {
        CsRequest::Json { method: method.into(), params: vec![Value::from("alice")] }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[tokio::test]
    async fn a_login_that_fails_gives_its_place_back() {
        let g = gateway(|_| {}).await;
        for _ in 0..3 {
            let e = g.login(json_login("login"), IP).await.unwrap_err();
            assert!(matches!(e, CsError::Upstream(CallError::Connect(_))), "{e:?}");
        }
        assert_eq!(g.slots.load(Ordering::Acquire), 0);
        // A place held (a login under way) is one the next login cannot take.
        let held = g.reserve().unwrap();
        assert_eq!(g.login(json_login("login"), IP).await.unwrap_err(), CsError::TooManySessions(1));
        drop(held);
        assert!(g.reserve().is_ok());
    }

    #[tokio::test]
    async fn a_login_abandoned_mid_way_gives_its_place_back_when_its_connection_ends() {
        // A server that reads the login and never answers; it says when the login arrived.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let server = tokio::spawn({
            let arrived = arrived.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((mut tcp, _)) = silent.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
                    arrived.notify_one();
                    held.push(tcp);
                }
            }
        });
        let g = gateway(|c| {
            c.upstream = Upstream::parse(&format!("http://{addr}/RPC2")).unwrap();
            c.limits.timeout = Duration::from_millis(200);
        })
        .await;
        // The browser goes away mid-login: the login's future is dropped once the login call
        // is on its way to the server.
        tokio::select! {
            _ = g.login(json_login("login"), IP) => panic!("the server never answers"),
            () = arrived.notified() => {}
        }
        assert_eq!(g.slots.load(Ordering::Acquire), 1, "held while its connection lives");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while g.slots.load(Ordering::Acquire) != 0 {
            assert!(std::time::Instant::now() < deadline, "the place was never given back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(g.metrics.cs_sessions.load(Relaxed), 0);
        server.abort();
    }

    #[tokio::test]
    async fn only_the_login_method_is_sent_and_each_address_has_its_minutes_logins() {
        let g = gateway(|c| c.logins_per_ip = 2).await;
        // Another method never reaches the server (which would say `cannot connect`), JSON or XML.
        let xml = CsRequest::Xml(Bytes::from(xmlrpc::encode_call("deleteAll", &[]).unwrap()));
        for request in [json_login("deleteAll"), xml] {
            let e = g.login(request, IP).await.unwrap_err();
            assert!(matches!(&e, CsError::NotLogin { got, .. } if got == "deleteAll"), "{e:?}");
        }
        let xml = CsRequest::Xml(Bytes::from(xmlrpc::encode_call("login", &[]).unwrap()));
        for request in [xml, json_login("login")] {
            assert!(matches!(g.login(request, IP).await, Err(CsError::Upstream(_))), "failed logins count");
        }
        let e = g.login(json_login("login"), IP).await.unwrap_err();
        assert!(matches!(e, CsError::TooManyLogins { per_minute: 2, wait_s: 1..=60 }), "{e:?}");
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        assert!(matches!(g.login(json_login("login"), other).await, Err(CsError::Upstream(_))));
        let text = g.metrics.render();
        for line in [
            "tether_cs_logins_refused_total{reason=\"method\"} 2",
            "tether_cs_logins_refused_total{reason=\"rate\"} 1",
            "tether_cs_logins_total 3",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
