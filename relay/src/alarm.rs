//! UDP alarms → `/alarms` WebSocket subscribers.
//!
//! The relay is the UDP client of the legacy alarm service (`--alarm-udp`): it sends a
//! subscribe datagram and repeats it every `--alarm-renew-ms`, so the service keeps it
//! registered and re-registers it after a restart. It also accepts alarms pushed to
//! `--alarm-listen`. Each datagram gets the next sequence number and becomes
//! `{"type":"alarm","msg":{"seq","at","from","data"}}`, where `data` is JSON when the payload
//! is JSON or XML, text otherwise, and `{"$base64": "…"}` when it is not UTF-8.
//!
//! Alarms are kept in one ring, bounded in count (`--alarm-history`) and in bytes as stored
//! (`--alarm-buffer-bytes`), oldest dropped first. The ring is both the replay buffer for
//! `/alarms?since=SEQ` and the only copy live subscribers read from: each subscriber keeps its
//! place (the last seq it was sent) and is woken when a newer alarm arrives, so a subscriber
//! holds at most the one frame it is sending, and what all subscribers hold together is the
//! ring. (A broadcast channel would hold its last `--alarm-queue` frames whether anyone read
//! them or not: a datagram of 64 KB of control bytes is a frame of ~390 KB, JSON escaping
//! each as `\u0001`, so 1,024 of them are ~400 MB.) A subscriber that falls more than
//! `--alarm-queue` alarms behind, or behind what the ring still holds, gets
//! `{"type":"alarmGap","msg":{"dropped": n}}` with the exact number it missed; the others keep
//! flowing. Loss is always said, never silent.
//!
//! The service answers nothing to a subscription, so a quiet service and a vanished one look the
//! same — except that a closed port answers with ICMP "port unreachable". The relay's socket is
//! connected to the service, so that answer reaches it: the source is then `unreachable`, every
//! subscriber gets `{"type":"alarmSource","msg":{"state":"unreachable","service"}}`, and when
//! datagrams arrive again, the same with `"state":"up"`. Subscribers stay connected throughout.
//!
//! Who may read `/alarms` ([`Access`]): the holder of a CS session, of `--alarm-token`, or
//! anyone with `--alarms-public`. The HTTP edge checks it before the upgrade.
//!
//! One file of ~740 lines for one path (datagram in, frames out): the decoder, the ring, the
//! UDP client and the subscriber task; about a fifth of it is tests.

use crate::metrics::Metrics;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_protocol::{Kind, OutEnvelope, limits, msg};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The largest UDP payload (IPv4).
pub const MAX_DATAGRAM: usize = 65_507;

/// Who may subscribe besides a CS session's holder: `--alarm-token`, `--alarms-public`.
#[derive(Clone, Default)]
pub struct Access {
    /// `--alarms-public`: anyone.
    pub public: bool,
    /// The SHA-256 of `--alarm-token` (compared as digests, in constant time, so neither the
    /// token's bytes nor its length show in the time a refusal takes).
    token: Option<[u8; 32]>,
}

impl Access {
    /// From the flags.
    pub fn new(public: bool, token: Option<&str>) -> Access {
        Access { public, token: token.filter(|t| !t.is_empty()).map(digest) }
    }

    /// Whether `given` is `--alarm-token`.
    pub fn token_matches(&self, given: &str) -> bool {
        self.token.is_some_and(|t| crate::token::digests_match(&t, &digest(given)))
    }
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::new_with_prefix(b"tether/alarm-token/v1\0").chain_update(token.as_bytes()).finalize().into()
}

/// One alarm, ready to send.
#[derive(Debug)]
pub struct Alarm {
    /// Its sequence number, from 1, in the order received.
    pub seq: u64,
    /// `{"type":"alarm",…}`.
    pub frame: Utf8Bytes,
}

/// The alarms held: consecutive seqs, oldest first, and their frames' bytes.
#[derive(Default)]
struct Ring {
    alarms: VecDeque<Arc<Alarm>>,
    bytes: usize,
}

/// What a subscriber gets next ([`Alarms::next_after`]).
#[derive(Debug)]
enum Next {
    /// This many alarms after its place are no longer held (or it is too far behind): its place
    /// moves past them.
    Gap(u64),
    /// The alarm after its place.
    Alarm(Arc<Alarm>),
    /// Nothing newer yet.
    Nothing,
}

/// Received alarms: the ring, which live subscribers and `since=` replays read alike.
///
/// Sequence numbers start at this process's start time in ms × 1000 + 1, so they keep growing
/// across relay restarts (a client resuming with `since=` from before a restart still gets
/// everything the new process holds) and stay below 2^53 (exact in JavaScript).
///
/// Memory: the ring's frames, at most `--alarm-buffer-bytes` (and `--alarm-history` frames),
/// plus, per subscriber, the frame it is sending.
pub struct Alarms {
    first: u64,
    next: AtomicU64,
    ring: Mutex<Ring>,
    /// Most alarms held (`--alarm-history`).
    history: usize,
    /// Most bytes of frames held (`--alarm-buffer-bytes`).
    max_bytes: usize,
    /// How far a live subscriber may fall behind before it gets `alarmGap` (`--alarm-queue`).
    queue: u64,
    /// The last seq given: subscribers wait on it for news.
    latest: watch::Sender<u64>,
    /// What is known of the service, and its address.
    source: watch::Sender<(Source, Option<SocketAddr>)>,
    metrics: Arc<Metrics>,
}

/// What the relay knows of the alarm service it subscribes to (`--alarm-udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No `--alarm-udp`, or nothing heard from it yet.
    Unknown,
    /// A datagram came from the service.
    Up,
    /// The service's port refused the last subscription (ICMP port unreachable).
    Unreachable,
}

impl Source {
    /// As shown in `/healthz` and `alarmSource` frames.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Unknown => "unknown",
            Source::Up => "up",
            Source::Unreachable => "unreachable",
        }
    }
}

fn source_frame(state: Source, service: Option<SocketAddr>) -> Utf8Bytes {
    let body = msg::AlarmSource { state: state.as_str().into(), service: service.map(|s| s.to_string()) };
    OutEnvelope::new(Kind::AlarmSource, body).to_text().into()
}

/// The `alarmSource` frame a subscriber that was last told `told` should get now, if any: when
/// the service became unreachable, or came back after being so.
fn source_news(
    source: &mut watch::Receiver<(Source, Option<SocketAddr>)>,
    told: &mut Source,
) -> Option<Utf8Bytes> {
    let (state, service) = *source.borrow_and_update();
    if state == *told || (state != Source::Unreachable && *told != Source::Unreachable) {
        return None;
    }
    *told = state;
    Some(source_frame(state, service))
}

fn gap_frame(dropped: u64) -> Utf8Bytes {
    OutEnvelope::new(Kind::AlarmGap, msg::AlarmGap { dropped }).to_text().into()
}

impl Alarms {
    /// Keeps `history` alarms, at most `max_bytes` of frames, for replay and live delivery; a
    /// subscriber may be `queue` alarms behind.
    pub fn new(history: usize, max_bytes: usize, queue: usize, metrics: Arc<Metrics>) -> Arc<Alarms> {
        Alarms::starting_at(crate::now_ms() * 1000 + 1, history, max_bytes, queue, metrics)
    }

    /// Like [`Alarms::new`], numbering from `first`.
    pub fn starting_at(
        first: u64,
        history: usize,
        max_bytes: usize,
        queue: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Alarms> {
        let (source, _) = watch::channel((Source::Unknown, None));
        Arc::new(Alarms {
            first,
            next: AtomicU64::new(first),
            ring: Mutex::default(),
            history: history.max(1),
            max_bytes,
            queue: queue.max(1) as u64,
            latest: watch::channel(first - 1).0,
            source,
            metrics,
        })
    }

    /// What is known of the alarm service.
    pub fn source(&self) -> Source {
        self.source.borrow().0
    }

    /// Records what was just learnt of the service at `service`; a change to or from
    /// `Unreachable` is logged and told to every subscriber.
    fn set_source(&self, state: Source, service: SocketAddr) {
        let (before, _) = self.source.send_replace((state, Some(service)));
        if before == state {
            return;
        }
        self.metrics.alarm_source_unreachable.store(u64::from(state == Source::Unreachable), Relaxed);
        if state == Source::Unreachable {
            tracing::warn!(%service, "the alarm service is unreachable; subscribers are told, renewals go on");
        } else if before == Source::Unreachable {
            tracing::info!(%service, "the alarm service is back");
        }
    }

    /// Takes in one datagram. The oldest alarms make room for it, by count (`--alarm-history`)
    /// and by bytes (`--alarm-buffer-bytes`); a frame larger than the whole byte budget is not
    /// kept at all (subscribers get `alarmGap` for it). Either way the ring stays consecutive.
    pub fn ingest(&self, from: SocketAddr, payload: &[u8]) -> Arc<Alarm> {
        let alarm = self.store(from, payload);
        self.announce();
        alarm
    }

    /// Tells the subscribers that alarms were stored (once for a burst).
    pub fn announce(&self) {
        self.latest.send_replace(self.last_seq());
    }

    /// [`Alarms::ingest`] without telling the subscribers yet ([`Alarms::announce`]).
    pub fn store(&self, from: SocketAddr, payload: &[u8]) -> Arc<Alarm> {
        let data = decode(payload);
        let mut ring = crate::util::lock(&self.ring);
        // Numbered under the ring's lock, so the ring holds consecutive seqs in order.
        let seq = self.next.fetch_add(1, Relaxed);
        let body = msg::Alarm { seq, at: crate::now_ms(), from: from.to_string(), data };
        let alarm = Arc::new(Alarm { seq, frame: OutEnvelope::new(Kind::Alarm, body).to_text().into() });
        let len = alarm.frame.len();
        let mut evicted = 0;
        while let Some(oldest) = ring.alarms.front() {
            let by_count = ring.alarms.len() >= self.history;
            if !by_count && ring.bytes + len <= self.max_bytes {
                break;
            }
            evicted += u64::from(!by_count);
            ring.bytes -= oldest.frame.len();
            ring.alarms.pop_front();
        }
        if len <= self.max_bytes {
            ring.bytes += len;
            ring.alarms.push_back(alarm.clone());
        } else {
            evicted += 1;
        }
        let bytes = ring.bytes;
        drop(ring);
        self.metrics.alarms_evicted_bytes.fetch_add(evicted, Relaxed);
        self.metrics.alarm_ring_bytes.store(bytes as u64, Relaxed);
        self.metrics.alarms_received.fetch_add(1, Relaxed);
        self.metrics.alarm_last_seq.fetch_max(seq, Relaxed);
        alarm
    }

    /// Where a new subscriber starts: the seq it has seen up to, and how many of those it asked
    /// for (`since`) are no longer held. Without `since`, from now.
    fn subscribe(&self, since: Option<u64>) -> (u64, u64) {
        let ring = crate::util::lock(&self.ring);
        let last = self.next.load(Relaxed) - 1;
        let Some(since) = since else { return (last, 0) };
        // Before this process started nothing is known here; after the last, nothing yet.
        let since = since.max(self.first - 1).min(last);
        let first_held = ring.alarms.front().map_or(last + 1, |a| a.seq);
        let expired = first_held.saturating_sub(since + 1);
        (since + expired, expired)
    }

    /// What a subscriber that has seen up to `seen` gets next. With `bounded`, it may be at
    /// most `--alarm-queue` alarms behind the last; it may never be behind what the ring holds.
    fn next_after(&self, seen: u64, bounded: bool) -> Next {
        let ring = crate::util::lock(&self.ring);
        let last = self.next.load(Relaxed) - 1;
        let held_from = ring.alarms.front().map_or(last + 1, |a| a.seq);
        let mut floor = held_from - 1;
        if bounded {
            floor = floor.max(last.saturating_sub(self.queue));
        }
        if seen < floor {
            return Next::Gap(floor - seen);
        }
        // The ring is consecutive: the alarm after `seen` is at this index, if held yet.
        match usize::try_from(seen + 1 - held_from).ok().and_then(|i| ring.alarms.get(i)) {
            Some(a) => Next::Alarm(a.clone()),
            None => Next::Nothing,
        }
    }

    /// Bytes of frames the ring holds.
    pub fn held_bytes(&self) -> usize {
        crate::util::lock(&self.ring).bytes
    }

    /// The last sequence number given (`first - 1` before any).
    pub fn last_seq(&self) -> u64 {
        self.next.load(Relaxed) - 1
    }
}

/// `data` for a payload: JSON, XML turned into JSON, text, or `{"$base64"}`.
pub fn decode(payload: &[u8]) -> Value {
    let Ok(text) = std::str::from_utf8(payload) else {
        return json!({ "$base64": base64::engine::general_purpose::STANDARD.encode(payload) });
    };
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(v) = serde_json::from_str(text) {
            return v;
        }
    }
    if t.starts_with('<') {
        if let Some(v) = xml_to_json(text) {
            return v;
        }
    }
    Value::String(text.to_owned())
}

/// A generic XML → JSON mapping: `{root: …}`; an element with only text is that text;
/// otherwise an object with `@attr`s, child elements by name (repeated names become arrays)
/// and `#text`. `None` for anything that is not well-formed, has a DOCTYPE, or an unknown
/// entity (nothing is ever expanded).
pub fn xml_to_json(text: &str) -> Option<Value> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    // A stack of open elements: (name, object, text).
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root = None;
    let attrs = |s: &quick_xml::events::BytesStart<'_>| -> Option<Map<String, Value>> {
        let mut m = Map::new();
        for a in s.attributes() {
            let a = a.ok()?;
            // Only the predefined entities are resolved (an unknown one is an error).
            let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).ok()?;
            m.insert(format!("@{}", a.key.as_ref()), Value::String(v.into_owned()));
        }
        Some(m)
    };
    loop {
        match reader.read_event().ok()? {
            Event::Start(s) => {
                if stack.len() >= 64 {
                    return None;
                }
                stack.push((s.name().as_ref().to_owned(), attrs(&s)?, String::new()));
            }
            Event::Empty(s) => {
                let m = attrs(&s)?;
                let v = if m.is_empty() { Value::String(String::new()) } else { Value::Object(m) };
                let name = s.name().as_ref().to_owned();
                match stack.last_mut() {
                    Some((_, parent, _)) => add_child(parent, name, v),
                    None => root = Some(json!({ name: v })),
                }
            }
            Event::Text(t) => stack.last_mut()?.2.push_str(&t.xml10_content()),
            Event::CData(c) => stack.last_mut()?.2.push_str(c.as_ref()),
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref().ok()??
                } else {
                    match r.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return None,
                    }
                };
                stack.last_mut()?.2.push(c);
            }
            Event::End(_) => {
                let (name, mut m, text) = stack.pop()?;
                let v = if m.is_empty() {
                    Value::String(text)
                } else {
                    if !text.trim().is_empty() {
                        m.insert("#text".into(), Value::String(text.trim().to_owned()));
                    }
                    Value::Object(m)
                };
                match stack.last_mut() {
                    Some((_, parent, _)) => add_child(parent, name, v),
                    None => root = Some(json!({ name: v })),
                }
            }
            Event::DocType(_) => return None,
            Event::Eof => return if stack.is_empty() { root } else { None },
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
}

fn add_child(parent: &mut Map<String, Value>, name: String, v: Value) {
    match parent.get_mut(&name) {
        Some(Value::Array(items)) => items.push(v),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, v]);
        }
        None => {
            parent.insert(name, v);
        }
    }
}

/// A UDP socket with a large receive buffer, so bursts are not dropped by the kernel.
fn udp(bind: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if bind.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(4 * 1024 * 1024);
    s.bind(&bind.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Subscribes to the alarm service at `service`, renews every `renew`, and takes in what it
/// sends, until `stop`.
pub async fn run_client(
    alarms: Arc<Alarms>,
    service: String,
    renew: Duration,
    subscribe: String,
    stop: CancellationToken,
) {
    let target = match tokio::net::lookup_host(&service).await.map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            tracing::error!(%service, "--alarm-udp: cannot resolve the alarm service");
            return;
        }
    };
    let bind: SocketAddr = if target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = match udp(bind) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "--alarm-udp: cannot open a UDP socket");
            return;
        }
    };
    // Connected, so that an ICMP "port unreachable" for a subscription comes back as an error.
    if let Err(e) = sock.connect(target).await {
        tracing::error!(error = %e, %target, "--alarm-udp: cannot address the alarm service");
        return;
    }
    tracing::info!(%target, "subscribing to alarms");
    let mut every = tokio::time::interval(renew);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                // A service that is down answers nothing (or an ICMP error); the next renewal
                // tries again, so a restarted service registers the relay anew.
                if let Err(e) = sock.send(subscribe.as_bytes()).await {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        alarms.set_source(Source::Unreachable, target);
                    }
                }
            }
            // A connected socket only receives from the service.
            r = sock.recv(&mut buf) => match r {
                Ok(n) => {
                    alarms.set_source(Source::Up, target);
                    // This one and what else the kernel holds (up to DRAIN), told once.
                    alarms.store(target, &buf[..n]);
                    for _ in 1..DRAIN {
                        let Ok(n) = sock.try_recv(&mut buf) else { break };
                        alarms.store(target, &buf[..n]);
                    }
                    alarms.announce();
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    alarms.set_source(Source::Unreachable, target);
                }
                Err(_) => {}
            },
        }
    }
}

/// Binds `--alarm-listen`'s socket (at start, so a taken port fails the start).
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    udp(addr)
}

/// Datagrams read in one go before the subscribers are told.
const DRAIN: usize = 64;

/// Takes in alarms pushed to `sock`, until `stop`.
pub async fn run_listener(
    alarms: Arc<Alarms>,
    sock: UdpSocket,
    from: Vec<std::net::IpAddr>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => if let Ok((n, sender)) = r {
                // This one, then what else the kernel holds (up to DRAIN), told to the
                // subscribers once: a burst wakes each of them once, not once a datagram.
                let mut next = Some((n, sender));
                let mut took = 0;
                let mut stored = false;
                while let Some((n, sender)) = next.take() {
                    if sender_allowed(&from, sender.ip()) {
                        alarms.store(sender, &buf[..n]);
                        stored = true;
                    } else {
                        // Anyone can send a datagram: only the listed senders' are stored.
                        alarms.metrics.alarms_refused.fetch_add(1, Relaxed);
                    }
                    took += 1;
                    if took < DRAIN {
                        next = sock.try_recv_from(&mut buf).ok();
                    }
                }
                if stored {
                    alarms.announce();
                }
            },
        }
    }
}

/// Whether `ip` is one of `from` (a v4-mapped IPv6 sender counts as its IPv4 address).
pub fn sender_allowed(from: &[std::net::IpAddr], ip: std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    };
    from.contains(&ip)
}

/// Who `--alarm-listen` takes datagrams from: `--alarm-from` when given, else the
/// `--alarm-udp` service's host (resolved now), else this machine.
pub async fn senders(alarm_from: &[std::net::IpAddr], alarm_udp: Option<&str>) -> Vec<std::net::IpAddr> {
    if !alarm_from.is_empty() {
        return alarm_from.to_vec();
    }
    if let Some(service) = alarm_udp {
        if let Ok(addrs) = tokio::net::lookup_host(service).await {
            let ips: Vec<std::net::IpAddr> = addrs.map(|a| a.ip()).collect();
            if !ips.is_empty() {
                return ips;
            }
        }
    }
    vec![std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()]
}

/// The subscriber's socket is gone, or stopped reading or answering.
struct Gone;

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Writes one frame, giving up after `limit`: a subscriber that stops reading fills its socket
/// and would hold this task (and its queue) forever.
/// Alarms (and gaps) a subscriber's turn writes at most, in one flush.
const BATCH: usize = 64;

async fn send(tx: &mut Sink, m: Message, limit: Duration) -> Result<(), Gone> {
    match tokio::time::timeout(limit, tx.send(m)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Gone),
    }
}

/// Serves one `/alarms` subscriber until it leaves, goes silent (no pong for two heartbeats),
/// stops reading (a write stuck for two heartbeats), or the relay stops.
pub async fn serve(
    socket: WebSocket,
    alarms: Arc<Alarms>,
    since: Option<u64>,
    heartbeat: Duration,
    stop: CancellationToken,
) {
    let metrics = alarms.metrics.clone();
    metrics.alarm_subscribers.fetch_add(1, Relaxed);
    let (mut tx, mut rx_ws) = socket.split();
    let mut news = alarms.latest.subscribe();
    let (mut seen, expired) = alarms.subscribe(since);
    // What was there when it subscribed is a replay, bounded by the ring only; after that it
    // may fall at most `--alarm-queue` behind.
    let replay_to = alarms.last_seq();
    let mut source = alarms.source.subscribe();
    let mut told = Source::Unknown;
    let silence = heartbeat * limits::MISSED_HEARTBEATS as u32;
    let outcome: Result<(), Gone> = async {
        let tx = &mut tx;
        if let Some(f) = source_news(&mut source, &mut told) {
            send(tx, Message::Text(f), silence).await?; // unreachable already
        }
        if expired > 0 {
            metrics.alarms_dropped_expired.fetch_add(expired, Relaxed);
            send(tx, Message::Text(gap_frame(expired)), silence).await?;
        }
        let mut ping = tokio::time::interval(heartbeat);
        let deadline = tokio::time::sleep(silence);
        tokio::pin!(deadline);
        loop {
            let behind = alarms.last_seq() > seen;
            tokio::select! {
                () = stop.cancelled() => {
                    let close = CloseFrame { code: 1012, reason: "shutting_down".into() };
                    let _ = send(tx, Message::Close(Some(close)), Duration::from_secs(1)).await;
                    return Ok(());
                }
                () = &mut deadline => {
                    tracing::debug!("an alarm subscriber answered no ping for two heartbeats; closing");
                    return Err(Gone);
                }
                // What is waiting, up to BATCH alarms (and gaps) a turn, written in one go: fed
                // to the socket's buffer, then flushed once (one write for the lot, not one a
                // frame). A turn is bounded, so pings and pongs are not starved by a flood.
                () = std::future::ready(()), if behind => {
                    let write = async {
                        for _ in 0..BATCH {
                            match alarms.next_after(seen, seen >= replay_to) {
                                Next::Alarm(a) => {
                                    // "Back up" goes before the first alarm that says so.
                                    if let Some(f) = source_news(&mut source, &mut told) {
                                        tx.feed(Message::Text(f)).await?;
                                    }
                                    seen = a.seq;
                                    tx.feed(Message::Text(a.frame.clone())).await?;
                                    metrics.alarms_forwarded.fetch_add(1, Relaxed);
                                }
                                Next::Gap(n) => {
                                    seen += n;
                                    metrics.alarms_dropped_lagging.fetch_add(n, Relaxed);
                                    tx.feed(Message::Text(gap_frame(n))).await?;
                                }
                                Next::Nothing => break,
                            }
                        }
                        tx.flush().await
                    };
                    match tokio::time::timeout(silence, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) | Err(_) => return Err(Gone),
                    }
                }
                // News: a newer alarm (seen in `behind` on the next turn).
                Ok(()) = news.changed(), if !behind => {}
                Ok(()) = source.changed() => {
                    if let Some(f) = source_news(&mut source, &mut told) {
                        send(tx, Message::Text(f), silence).await?;
                    }
                }
                _ = ping.tick() => send(tx, Message::Ping(Default::default()), silence).await?,
                incoming = rx_ws.next() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    // Subscribers have nothing to say; anything (a pong) shows they are there.
                    Some(Ok(_)) => deadline.as_mut().reset(tokio::time::Instant::now() + silence),
                },
            }
        }
    }
    .await;
    let _ = outcome;
    metrics.alarm_subscribers.fetch_sub(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seqs a subscriber that has seen up to `seen` gets, in order (a gap as 0).
    fn replay(a: &Alarms, mut seen: u64, bounded: bool) -> Vec<u64> {
        let mut got = Vec::new();
        loop {
            match a.next_after(seen, bounded) {
                Next::Alarm(x) => {
                    seen = x.seq;
                    got.push(x.seq);
                }
                Next::Gap(n) => {
                    seen += n;
                    got.push(0);
                }
                Next::Nothing => return got,
            }
        }
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_oldest_first_and_stays_consecutive() {
        let metrics = Arc::new(Metrics::default());
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // A frame of 100 control bytes is ~700 bytes: each is escaped as six (`\u0001`).
        let control = [1u8; 100];
        let one =
            Alarms::starting_at(1, 100, 1 << 20, 100, Arc::default()).ingest(from, &control).frame.len();
        assert!(one > 600, "{one} bytes");
        let a = Alarms::starting_at(1, 100, 3 * one + one / 2, 100, metrics.clone());
        for _ in 0..10 {
            a.ingest(from, &control);
            assert!(a.held_bytes() <= 3 * one + one / 2);
        }
        assert_eq!(replay(&a, 0, false), [0, 8, 9, 10], "7 no longer held, said as one gap");
        assert_eq!(metrics.alarms_evicted_bytes.load(Relaxed), 7);
        // A live subscriber may be `queue` behind at most.
        let b = Alarms::starting_at(1, 100, 1 << 20, 2, Arc::default());
        for _ in 0..6 {
            b.ingest(from, b"x");
        }
        assert_eq!(replay(&b, 0, true), [0, 5, 6]);
        assert_eq!(replay(&b, 0, false), [1, 2, 3, 4, 5, 6], "a replay is bounded by the ring only");
        // A frame larger than the whole budget is not kept: the ring is emptied, not holed.
        let big = Alarms::starting_at(1, 100, one + 10, 100, metrics.clone());
        big.ingest(from, b"small");
        big.ingest(from, &[1u8; 1000]);
        big.ingest(from, b"after");
        assert_eq!(replay(&big, 0, false), [0, 3]);
        assert!(big.held_bytes() <= one + 10);
    }

    #[tokio::test]
    async fn pushes_are_taken_from_the_listed_senders_else_the_service_else_this_machine() {
        let listed: std::net::IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(senders(&[listed], Some("127.0.0.1:9")).await, vec![listed]);
        assert_eq!(
            senders(&[], Some("127.0.0.3:9")).await,
            vec!["127.0.0.3".parse::<std::net::IpAddr>().unwrap()]
        );
        let local = senders(&[], None).await;
        assert!(sender_allowed(&local, "127.0.0.1".parse().unwrap()));
        assert!(sender_allowed(&local, "::1".parse().unwrap()));
        assert!(sender_allowed(&local, "::ffff:127.0.0.1".parse().unwrap()), "v4-mapped counts as v4");
        assert!(!sender_allowed(&local, "192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn payloads_decode_by_kind() {
        assert_eq!(decode(br#"{"seq": 3, "level": "warn"}"#), json!({"seq": 3, "level": "warn"}));
        assert_eq!(decode(b"[1,2]"), json!([1, 2]));
        assert_eq!(decode(b"ALARM 7 zone=3"), json!("ALARM 7 zone=3"));
        assert_eq!(decode(b"{not json"), json!("{not json"));
        assert_eq!(decode(&[0xff, 0x00, 0x10]), json!({"$base64": "/wAQ"}));
        assert_eq!(
            decode(br#"<?xml version="1.0"?><alarm seq="5" level="high"><zone>3</zone><tag>a</tag><tag>b</tag><note>x &amp; y</note></alarm>"#),
            json!({"alarm": {"@seq": "5", "@level": "high", "zone": "3", "tag": ["a", "b"], "note": "x & y"}})
        );
        assert_eq!(decode(b"<ping/>"), json!({"ping": ""}));
        // Not well-formed, or a DTD: kept as text, never expanded.
        assert_eq!(decode(b"<a><b></a>"), json!("<a><b></a>"));
        let dtd = br#"<!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>"#;
        assert_eq!(decode(dtd), Value::String(String::from_utf8_lossy(dtd).into_owned()));
    }

    #[test]
    fn replay_says_how_many_are_no_longer_held() {
        let a = Alarms::starting_at(1, 3, 1 << 20, 16, Arc::default());
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for i in 0..5u8 {
            a.ingest(from, &[b'0' + i]);
        }
        // Holds 3, 4, 5. since=0 asks for 1..5: 1 and 2 are gone.
        assert_eq!(a.subscribe(Some(0)), (2, 2));
        assert_eq!(replay(&a, 2, false), [3, 4, 5]);
        assert_eq!(a.subscribe(Some(4)), (4, 0));
        assert_eq!(a.subscribe(Some(99)), (5, 0), "a future since means 'from now'");
        assert_eq!(a.subscribe(None), (5, 0));
    }
}
