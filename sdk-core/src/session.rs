//! The connection state machine both the PC and the device use.
//!
//! Inputs are `handle_*` calls (socket opened, text received, socket closed, woken by the
//! page becoming visible or the network returning, a timer firing) and API calls
//! (`request`, `reply`, `hello`, `close`), each with `now`. Outputs are polled:
//! [`Session::poll_action`] (open a socket, send, close), [`Session::poll_event`] (status,
//! devices, replies, commands, rejections) and [`Session::poll_timeout`].
//!
//! Reconnecting follows seed 004: after a lost connection, up to `retries` attempts (3 by
//! default) with backoff and jitter; a success resets the count; after the last failure the
//! status is `unlink` and pending requests are rejected with `disconnected`. A wake
//! (`visibilitychange` to visible, `online`) starts a fresh round. Each reconnect presents the
//! resume token, so the member keeps its id and what was sent to it meanwhile.
//!
//! A device started with `inspect` also owns the inspector's ring ([`InspectOutbox`]): the
//! session opens its gate when a member list shows a watching PC, and sends its batches
//! straight to the socket, never into the reconnect queue.
//!
//! Over 500 lines: one state machine (connect, welcome, resume, retries, requests, replies,
//! the inspector's gate); its tests are in `session_tests.rs` and `session_inspect_tests.rs`.

use super::backoff::{Backoff, Policy};
use super::json::Json;
use super::outbox::InspectOutbox;
use super::pending::{Entry, Pending};
use super::{Millis, hex2, num};
use std::collections::VecDeque;
use tether_protocol::{CloseCode, Kind, Role};

/// Frames kept while not linked (sent on relink); beyond this a request is refused.
pub const QUEUE_MAX: usize = 256;
/// Request times remembered to report the latency of every reply of a broadcast.
const SENT_TIMES: usize = 512;

/// What the page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The first connection is being made.
    Connecting,
    /// In the room.
    Linked,
    /// The connection was lost; retrying.
    Reconnecting,
    /// Not connected and not retrying (retries exhausted, refused, or closed).
    Unlink,
}

impl Status {
    /// The name the facade reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Linked => "linked",
            Status::Reconnecting => "reconnecting",
            Status::Unlink => "unlink",
        }
    }
}

/// A failure a Promise rejects with: `code` is a protocol error code, `timeout` or
/// `disconnected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkError {
    /// Machine-readable.
    pub code: String,
    /// For a person.
    pub message: String,
}

impl SdkError {
    /// An error with this code and message.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        SdkError { code: code.into(), message: message.into() }
    }
}

/// Something for the web layer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a WebSocket to this URL, dropping any previous one.
    Open(String),
    /// Send this text frame on the open socket.
    Send(String),
    /// Close the socket.
    Close,
}

/// A device's reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The request id.
    pub id: String,
    /// `postCb`, `callCb`, `storageCb` or `evalCb`.
    pub kind: Kind,
    /// The device's member id.
    pub device: String,
    /// The reply body (`result`, `cookie`, `appInfo`, `error`, …).
    pub msg: Json,
    /// Milliseconds from sending the request to receiving this reply.
    pub ms: Millis,
}

/// A request a device must carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Echo this id in the reply.
    pub id: String,
    /// `post`, `call`, `storage` or `eval`.
    pub kind: Kind,
    /// The PC's member id.
    pub from: String,
    /// The request body.
    pub msg: Json,
}

/// Something that happened, for the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The status changed.
    Status(Status),
    /// Joined (or rejoined) the room as `member`; `resumed` when the old id was kept.
    Welcome {
        /// This member's id.
        member: String,
        /// Whether an earlier member was resumed.
        resumed: bool,
    },
    /// The room's members: `[{id, role, name, appInfo, since, away}]`, passed through as sent.
    Devices(Json),
    /// A reply arrived (every reply, including later ones of a broadcast).
    Reply(Reply),
    /// The first reply to a pending request: resolve its Promise.
    Resolved(Reply),
    /// A pending request failed: reject its Promise.
    Rejected(String, SdkError),
    /// A request for this device to run (`post`, `call`, `storage`, `eval`).
    Command(Command),
    /// A PC watching: an `inspect` batch from `device` (`{events, dropped?, droppedBytes?}`).
    Inspect {
        /// The device's member id.
        device: String,
        /// The batch.
        msg: Json,
    },
    /// An `error` from the relay not tied to a pending request, or the reason for `unlink`.
    Error(SdkError),
}

/// How to join.
#[derive(Debug, Clone)]
pub struct Options {
    /// The room WebSocket URL (`ws://host/ws`); an `http(s)://` base is accepted.
    pub url: String,
    /// Room name.
    pub room: String,
    /// Room secret.
    pub secret: String,
    /// `pc` or `device`.
    pub role: Role,
    /// Display name.
    pub name: Option<String>,
    /// Reconnect pacing.
    pub policy: Policy,
    /// Default request timeout.
    pub timeout_ms: Millis,
    /// How long opening a socket and receiving `welcome` may take.
    pub connect_timeout_ms: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sock {
    None,
    /// Opening, or open and awaiting `welcome`, until the deadline.
    Joining {
        deadline: Millis,
    },
    Linked,
}

/// The state machine.
#[derive(Debug)]
pub struct Session {
    opts: Options,
    url: String,
    status: Status,
    sock: Sock,
    attempts: u32,
    retry_at: Option<Millis>,
    closed: bool,
    member: Option<String>,
    resume: Option<String>,
    /// A PC's room device key, from `welcome`: what the QR link carries instead of the secret.
    device_key: Option<String>,
    linked_before: bool,
    queue: VecDeque<String>,
    pending: Pending,
    sent_times: VecDeque<(String, Millis)>,
    next_id: u64,
    /// Everything said in `hello` so far, re-sent after every (re)join.
    hello: Option<Json>,
    /// A device's inspector ring, when the page turned inspection on.
    outbox: Option<InspectOutbox>,
    backoff: Backoff,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Session {
    /// Starts connecting at `now`; `seed` drives the retry jitter.
    pub fn new(opts: Options, now: Millis, seed: u64) -> Result<Session, SdkError> {
        let url = ws_url(&opts.url)?;
        if opts.room.is_empty() {
            return Err(SdkError::new("bad_frame", "room is required"));
        }
        let mut s = Session {
            backoff: Backoff::new(opts.policy, seed),
            url,
            opts,
            status: Status::Connecting,
            sock: Sock::None,
            attempts: 0,
            retry_at: None,
            closed: false,
            member: None,
            resume: None,
            device_key: None,
            linked_before: false,
            queue: VecDeque::new(),
            pending: Pending::default(),
            sent_times: VecDeque::new(),
            next_id: 1,
            hello: None,
            outbox: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.events.push_back(Event::Status(Status::Connecting));
        s.open(now);
        Ok(s)
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status
    }

    /// This member's id, once welcomed.
    pub fn member(&self) -> Option<&str> {
        self.member.as_deref()
    }

    /// What a device joins this room with: the device key a PC was welcomed with (never the
    /// PC secret itself, but for a relay too old to give one).
    pub fn device_secret(&self) -> &str {
        self.device_key.as_deref().unwrap_or(&self.opts.secret)
    }

    /// The room.
    pub fn room(&self) -> &str {
        &self.opts.room
    }

    /// The secret.
    pub fn secret(&self) -> &str {
        &self.opts.secret
    }

    /// The room WebSocket URL (normalised).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests awaiting replies.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn set_status(&mut self, s: Status) {
        if self.status != s {
            self.status = s;
            self.events.push_back(Event::Status(s));
        }
    }

    fn open(&mut self, now: Millis) {
        let mut url =
            [&self.url, "?room=", &encode(&self.opts.room), "&role=", self.opts.role.as_str()].concat();
        url.push_str(&["&secret=", &encode(&self.opts.secret)].concat());
        if let Some(name) = &self.opts.name {
            url.push_str(&["&name=", &encode(name)].concat());
        }
        if let Some(token) = &self.resume {
            url.push_str(&["&resume=", &encode(token)].concat());
        }
        self.actions.push_back(Action::Open(url));
        self.sock = Sock::Joining { deadline: now + self.opts.connect_timeout_ms };
    }

    /// The socket opened (nothing to do until `welcome`).
    pub fn handle_open(&mut self, _now: Millis) {}

    /// A text frame arrived.
    pub fn handle_text(&mut self, now: Millis, text: &str) {
        self.on_text(now, text);
        self.flush_inspect(now, false);
    }

    fn on_text(&mut self, now: Millis, text: &str) {
        let Ok(mut frame) = Json::parse(text) else { return };
        let Some(kind) = frame["type"].as_str().and_then(Kind::parse) else { return }; // newer relay: ignore
        let id = frame["id"].as_str().map(str::to_owned);
        let from = frame["from"].as_str().unwrap_or_default().to_owned();
        let msg = frame.take("msg").unwrap_or_default();
        let text_of = |key: &str| msg[key].as_str().map(str::to_owned);
        match kind {
            Kind::Welcome => {
                let (Some(member), Some(resume)) = (text_of("member"), text_of("resume")) else { return };
                let resumed = msg["resumed"].as_bool().unwrap_or(false);
                if let Some(key) = text_of("deviceKey") {
                    self.device_key = Some(key);
                }
                if let Some(o) = &mut self.outbox {
                    o.linked(now, msg["inspectRate"].as_u64(), msg["maxFrame"].as_u64());
                }
                self.on_welcome(member, resume, resumed);
            }
            Kind::Devices => {
                if let Some(members) = msg.get("members").filter(|m| m.as_array().is_some()) {
                    if let Some(o) = &mut self.outbox {
                        o.set_watching(watched(members));
                    }
                    self.events.push_back(Event::Devices(members.clone()));
                }
            }
            Kind::PostCb | Kind::CallCb | Kind::StorageCb | Kind::EvalCb => {
                let Some(id) = id else { return };
                let sent = self.sent_times.iter().rev().find(|(i, _)| *i == id).map(|(_, t)| *t);
                let first = self.pending.take(&id);
                let ms = first.as_ref().map(|e| e.sent_at).or(sent).map_or(0, |t| now.saturating_sub(t));
                let reply = Reply { id, kind, device: from, msg, ms };
                if first.is_some() {
                    self.events.push_back(Event::Resolved(reply.clone()));
                }
                self.events.push_back(Event::Reply(reply));
            }
            Kind::Post | Kind::Call | Kind::Storage | Kind::Eval => {
                if let Some(id) = id {
                    self.events.push_back(Event::Command(Command { id, kind, from, msg }));
                }
            }
            Kind::Inspect if self.opts.role == Role::Pc => {
                self.events.push_back(Event::Inspect { device: from, msg });
            }
            Kind::Error => {
                let code = text_of("code").unwrap_or_else(|| "internal".into());
                let err = SdkError { code, message: text_of("message").unwrap_or_default() };
                match id.filter(|id| self.pending.contains(id)) {
                    Some(id) => {
                        self.pending.take(&id);
                        self.events.push_back(Event::Rejected(id, err));
                    }
                    // A relay older than inspection: of what a member that inspects sends, only
                    // `inspect` batches go without an id and with a kind it may not know.
                    // Stop them; the page needs no error.
                    None if err.code == "unknown_type"
                        && self.hello.as_ref().is_some_and(|h| !h["inspect"].is_null()) =>
                    {
                        if let Some(o) = &mut self.outbox {
                            o.turn_off();
                        }
                    }
                    None => self.events.push_back(Event::Error(err)),
                }
            }
            Kind::Hello | Kind::Alarm | Kind::AlarmGap | Kind::AlarmSource | Kind::Inspect => {}
        }
    }

    fn on_welcome(&mut self, member: String, resume: String, resumed: bool) {
        let reconnect = self.linked_before;
        self.member = Some(member.clone());
        self.resume = Some(resume);
        self.sock = Sock::Linked;
        self.attempts = 0;
        self.retry_at = None;
        self.linked_before = true;
        if reconnect && !resumed {
            // The relay did not keep our place: replies to what we asked before cannot come.
            self.reject_all("disconnected", "the relay did not keep this member's place; requests were lost");
        }
        self.events.push_back(Event::Welcome { member, resumed });
        self.set_status(Status::Linked);
        if let Some(hello) = &self.hello {
            let frame = Json::obj([("type", "hello".into()), ("msg", hello.clone())]).to_json();
            self.actions.push_back(Action::Send(frame));
        }
        while let Some(frame) = self.queue.pop_front() {
            self.actions.push_back(Action::Send(frame));
        }
    }

    /// The socket closed or failed to open; `code` is the close code, if one came.
    pub fn handle_close(&mut self, now: Millis, code: Option<u16>) {
        if self.closed || self.sock == Sock::None {
            return;
        }
        self.sock = Sock::None;
        if let Some(o) = &mut self.outbox {
            o.set_watching(false);
        }
        if let Some(code) = code.map(CloseCode).filter(|c| !c.should_reconnect()) {
            let err = match code {
                CloseCode::UNAUTHORIZED => {
                    SdkError::new("unauthorized", "wrong or missing secret for this room")
                }
                CloseCode::ROOM_FULL => SdkError::new("room_full", "the room is full"),
                CloseCode::REPLACED => SdkError::new("replaced", "this member reconnected elsewhere"),
                CloseCode::TOO_LARGE => SdkError::new("too_large", "a frame was far too large"),
                _ => SdkError::new(
                    "bad_frame",
                    ["the relay refused the connection (", &num(code.0.into()), ")"].concat(),
                ),
            };
            return self.give_up(err);
        }
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Millis) {
        self.attempts += 1;
        if self.attempts > self.backoff.policy().retries {
            let n = self.backoff.policy().retries;
            return self.give_up(SdkError::new(
                "disconnected",
                ["the relay could not be reached after ", &num(n.into()), " retries"].concat(),
            ));
        }
        self.retry_at = Some(now + self.backoff.delay(self.attempts));
        self.set_status(if self.linked_before { Status::Reconnecting } else { Status::Connecting });
    }

    fn give_up(&mut self, err: SdkError) {
        self.retry_at = None;
        self.queue.clear();
        self.reject_all(&err.code, &err.message);
        self.events.push_back(Event::Error(err));
        self.set_status(Status::Unlink);
    }

    fn reject_all(&mut self, code: &str, message: &str) {
        for (id, _) in self.pending.drain() {
            self.events.push_back(Event::Rejected(id, SdkError::new(code, message)));
        }
    }

    /// The page became visible or the network came back: if not linked, start a fresh round
    /// of retries now.
    pub fn handle_wake(&mut self, now: Millis) {
        if self.closed || matches!(self.sock, Sock::Linked | Sock::Joining { .. }) {
            return;
        }
        self.attempts = 0;
        self.retry_at = None;
        self.set_status(if self.linked_before { Status::Reconnecting } else { Status::Connecting });
        self.open(now);
    }

    /// A manual reconnect (the page's button after `unlink`): the same as a wake.
    pub fn reconnect(&mut self, now: Millis) {
        self.handle_wake(now);
    }

    /// Time has reached `now`: retries, connect timeouts and request timeouts.
    pub fn handle_timeout(&mut self, now: Millis) {
        if let Sock::Joining { deadline } = self.sock {
            if deadline <= now {
                self.actions.push_back(Action::Close);
                self.handle_close(now, None);
            }
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.open(now);
        }
        for (id, e) in self.pending.expire(now) {
            let err =
                SdkError::new("timeout", ["no reply within ", &num(e.deadline - e.sent_at), " ms"].concat());
            self.events.push_back(Event::Rejected(id, err));
        }
        self.flush_inspect(now, false);
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let sock = match self.sock {
            Sock::Joining { deadline } => Some(deadline),
            _ => None,
        };
        let inspect = self.outbox.as_ref().filter(|_| self.sock == Sock::Linked).and_then(|o| o.wake_at());
        [sock, self.retry_at, self.pending.next_deadline(), inspect].into_iter().flatten().min()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn send(&mut self, frame: String) -> Result<(), SdkError> {
        if self.sock == Sock::Linked {
            self.actions.push_back(Action::Send(frame));
            return Ok(());
        }
        if self.status == Status::Unlink {
            return Err(SdkError::new("disconnected", "not connected to the relay"));
        }
        if self.queue.len() >= QUEUE_MAX {
            return Err(SdkError::new(
                "rate_limited",
                "too many frames waiting for the connection to come back",
            ));
        }
        self.queue.push_back(frame);
        Ok(())
    }

    /// A PC's `post` or `call`; returns the request id, whose reply or failure comes as
    /// [`Event::Resolved`] or [`Event::Rejected`]. `to` picks one device; `None` asks all.
    pub fn request(
        &mut self,
        now: Millis,
        kind: Kind,
        to: Option<&str>,
        mut msg: Json,
        timeout_ms: Option<Millis>,
    ) -> Result<String, SdkError> {
        let id = num(self.next_id);
        self.next_id += 1;
        self.request_with_id(now, &id, kind, to, &mut msg, timeout_ms)?;
        Ok(id)
    }

    /// Like [`Session::request`] with a caller-chosen id; an id already awaiting a reply is
    /// refused.
    pub fn request_with_id(
        &mut self,
        now: Millis,
        id: &str,
        kind: Kind,
        to: Option<&str>,
        msg: &mut Json,
        timeout_ms: Option<Millis>,
    ) -> Result<(), SdkError> {
        if self.opts.role != Role::Pc || !kind.is_request() {
            return Err(SdkError::new("bad_frame", ["only a pc sends ", kind.as_str()].concat()));
        }
        if self.closed || self.status == Status::Unlink {
            return Err(SdkError::new("disconnected", "not connected to the relay"));
        }
        if self.pending.contains(id) {
            return Err(SdkError::new(
                "bad_frame",
                ["request id ", id, " is already awaiting a reply"].concat(),
            ));
        }
        let timeout = timeout_ms.unwrap_or(self.opts.timeout_ms);
        msg.set("timeoutMs", Json::uint(timeout));
        let mut frame = Json::obj([("type", kind.as_str().into()), ("id", id.into()), ("msg", msg.clone())]);
        if let Some(to) = to {
            frame.set("to", to.into());
        }
        self.send(frame.to_json())?;
        let _ = self.pending.insert(id, Entry { kind, sent_at: now, deadline: now + timeout });
        self.sent_times.push_back((id.to_owned(), now));
        if self.sent_times.len() > SENT_TIMES {
            self.sent_times.pop_front();
        }
        Ok(())
    }

    /// A device's reply to a [`Command`] (`postCb`, `callCb`, `storageCb`, `evalCb`). Queued
    /// while reconnecting: the relay keeps the request for a member that resumes.
    pub fn reply(&mut self, id: &str, kind: Kind, msg: Json) -> Result<(), SdkError> {
        if !kind.is_reply() {
            return Err(SdkError::new("bad_frame", [kind.as_str(), " is not a reply"].concat()));
        }
        self.send(Json::obj([("type", kind.as_str().into()), ("id", id.into()), ("msg", msg)]).to_json())
    }

    /// Says who this member is; re-sent after every (re)join.
    pub fn hello(&mut self, name: Option<String>, app_info: Option<Json>) {
        let mut msg = Json::obj([]);
        if let Some(n) = name {
            msg.set("name", n.into());
        }
        if let Some(a) = app_info {
            msg.set("appInfo", a);
        }
        self.say(msg);
    }

    /// Sends `msg` in a `hello` now (if linked), and adds its fields to what is re-sent after
    /// every (re)join (the relay keeps the fields a `hello` leaves out).
    fn say(&mut self, msg: Json) {
        let all = self.hello.get_or_insert_with(|| Json::obj([]));
        if let Json::Obj(pairs) = &msg {
            for (k, v) in pairs {
                all.set(k, v.clone());
            }
        }
        if self.sock == Sock::Linked {
            let frame = Json::obj([("type", "hello".into()), ("msg", msg)]).to_json();
            self.actions.push_back(Action::Send(frame));
        }
    }

    /// A PC: asks for the room's devices' `inspect` batches, `mode` `"live"` or `"keep"` (which
    /// also keeps `storage`/`eval` pairs in history). `"keep"` is not taken back by a later
    /// `"live"`.
    pub fn watch(&mut self, mode: &str) {
        let said = self.hello.as_ref().map(|h| &h["inspect"]);
        if self.opts.role != Role::Pc || said.is_some_and(|s| *s == mode || *s == "keep") {
            return;
        }
        self.say(Json::obj([("inspect", mode.into())]));
    }

    /// A device: the page turned inspection on. Keeps what its inspector captures in a ring of
    /// `ring_bytes` ([`InspectOutbox`]) and says in `hello` what it captures (`captures`:
    /// `{console, network, storage, allow}`).
    pub fn inspect_start(&mut self, now: Millis, ring_bytes: usize, captures: Json) {
        if self.opts.role != Role::Device || self.closed {
            return;
        }
        self.outbox = Some(InspectOutbox::new(ring_bytes, now));
        self.say(Json::obj([("inspect", captures)]));
    }

    /// One event from the inspector (`kind`, one JSON object's text), captured at `now`.
    pub fn inspect_push(&mut self, now: Millis, kind: &str, text: String) {
        if let Some(o) = &mut self.outbox {
            o.push(now, kind, text);
        }
        self.flush_inspect(now, false);
    }

    /// Events the web layer could not hand over (it was busy): counted as dropped, by kind
    /// (in the order of [`crate::outbox::KINDS`]), with their bytes.
    pub fn inspect_missed(&mut self, counts: [u64; 5], bytes: u64) {
        if let Some(o) = &mut self.outbox {
            o.add_dropped(counts, bytes);
        }
    }

    /// The page is being hidden (the webview may freeze it): send what is waiting now, as far
    /// as the pace allows, without waiting for the flush delay.
    pub fn inspect_hide(&mut self, now: Millis) {
        self.flush_inspect(now, true);
    }

    /// The inspector's ring, if the page turned inspection on.
    pub fn inspect_outbox(&self) -> Option<&InspectOutbox> {
        self.outbox.as_ref()
    }

    fn flush_inspect(&mut self, now: Millis, now_anyway: bool) {
        let Some(o) = self.outbox.as_mut().filter(|_| self.sock == Sock::Linked) else { return };
        while let Some(frame) = o.poll(now, now_anyway) {
            self.actions.push_back(Action::Send(frame));
        }
    }

    /// Leaves for good: the socket closes, pending requests are rejected, nothing retries.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        if self.sock != Sock::None {
            self.actions.push_back(Action::Close);
        }
        self.sock = Sock::None;
        self.retry_at = None;
        self.queue.clear();
        if let Some(o) = &mut self.outbox {
            o.turn_off();
        }
        self.reject_all("disconnected", "the session was closed");
        self.closed = true;
        self.set_status(Status::Unlink);
    }

    /// Whether [`Session::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}

/// Whether a member list shows a PC that watches (its `hello` said `inspect` `"live"` or
/// `"keep"`) and is connected now (not `away`).
fn watched(members: &Json) -> bool {
    members.as_array().unwrap_or_default().iter().any(|m| {
        m["role"] == "pc"
            && m["away"].as_bool() != Some(true)
            && (m["inspect"] == "live" || m["inspect"] == "keep")
    })
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.extend(hex2(b, true));
        }
    }
    out
}

/// Normalises the `url` option: `ws(s)://host/ws` as is; `ws(s)://host` or
/// `http(s)://host[/]` becomes `ws(s)://host/ws`. (Byte scans rather than substring search:
/// the searcher would add kilobytes to the wasm.)
pub fn ws_url(url: &str) -> Result<String, SdkError> {
    let bad = || {
        SdkError::new(
            "bad_frame",
            ["url must be ws://, wss://, http:// or https://, not \"", url, "\""].concat(),
        )
    };
    let colon = url.bytes().position(|b| b == b':').ok_or_else(bad)?;
    let rest = url[colon + 1..].strip_prefix("//").ok_or_else(bad)?;
    // A ws:// URL names the socket itself; an http:// one names the relay, whose socket is /ws.
    let (scheme, names_relay) = match url[..colon].to_ascii_lowercase().as_str() {
        "ws" => ("ws", false),
        "wss" => ("wss", false),
        "http" => ("ws", true),
        "https" => ("wss", true),
        _ => return Err(bad()),
    };
    let end = rest.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(rest.len());
    let rest = rest[..end].trim_end_matches('/');
    let (host, path) = rest.split_at(rest.bytes().position(|b| b == b'/').unwrap_or(rest.len()));
    if host.is_empty() {
        return Err(SdkError::new("bad_frame", "url has no host"));
    }
    let suffix = if path.is_empty() || (names_relay && !path.ends_with("/ws")) { "/ws" } else { "" };
    Ok([scheme, "://", host, path, suffix].concat())
}

/// The relay's HTTP base (`http(s)://host[/prefix]`) for a room WebSocket URL.
pub fn http_base(ws: &str) -> String {
    let base = ws.strip_suffix("/ws").unwrap_or(ws);
    if let Some(rest) = base.strip_prefix("wss://") {
        ["https://", rest].concat()
    } else if let Some(rest) = base.strip_prefix("ws://") {
        ["http://", rest].concat()
    } else {
        base.to_owned()
    }
}

/// The link the QR code carries: `{base}/d/{room}?secret=…`.
pub fn device_link(base: &str, room: &str, secret: &str) -> String {
    [base.trim_end_matches('/'), "/d/", &encode(room), "?secret=", &encode(secret)].concat()
}

/// The history API URL for a room (the secret goes in an `Authorization` header, never in
/// the URL, which proxies log): `limit`, `before`, and `types` (comma-separated row types,
/// e.g. `"inspect"`; the relay refuses one it does not know).
pub fn history_url(
    base: &str,
    room: &str,
    limit: Option<u32>,
    before: Option<i64>,
    types: Option<&str>,
) -> String {
    let mut u = [base.trim_end_matches('/'), "/api/rooms/", &encode(room), "/history"].concat();
    let mut sep = "?";
    let mut param = |name: &str, value: &str| {
        u.push_str(&[sep, name, "=", value].concat());
        sep = "&";
    };
    if let Some(l) = limit {
        param("limit", &num(l.into()));
    }
    if let Some(b) = before {
        param("before", &num(b.max(0) as u64));
    }
    if let Some(t) = types.filter(|t| !t.is_empty()) {
        param("type", &encode(t));
    }
    u
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_inspect_tests.rs"]
mod inspect_tests;
