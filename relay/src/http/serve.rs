//! The accept loop: every TCP connection on `--listen` holds one of `--max-conns` slots for
//! as long as its socket lives (upgraded to a WebSocket or not), must send each request's head
//! within `--header-timeout-ms`, and may sit idle between requests for `--idle-timeout-ms`.
//!
//! `axum::serve` has none of these, hence this loop (HTTP/1.1 through hyper, as `axum::serve`
//! serves it here: the relay is built without HTTP/2).
//!
//! # The budget
//! - A connection takes a slot when accepted and gives it back when its socket closes: the slot
//!   lives in the socket's IO type (`ConnIo`), which hyper hands to the WebSocket on upgrade.
//! - At the cap, [`OVERFLOW`] more connections are taken, each for at most [`OVERFLOW_LIFE`]
//!   and one request: `/healthz` and `/metrics` are answered, anything else gets `503
//!   at_capacity` with `Retry-After`. Past those, a connection is closed as soon as it is
//!   accepted. Both count in `tether_conns_refused_total`. So a monitor still sees the relay
//!   (and why it refuses) while its sockets are all taken.
//! - The default cap is the open-file limit less room for the relay's other files
//!   ([`default_max_conns`]); `main` first raises the soft limit to the hard one.
//!
//! # The deadlines (`Clock`)
//! hyper's own `header_read_timeout` is not used: it starts when hyper starts reading a head,
//! which it does as soon as the previous response is sent, so it would also close keep-alive
//! connections idle for longer than the head's timeout. Here a connection's phase decides:
//! - fresh: its first head must be complete within the header timeout of the accept;
//! - idle (a response sent, no byte since): closed after the idle timeout;
//! - a head under way (bytes after idle): complete within the header timeout of its first byte;
//! - busy (a request in the handlers, or its response being sent): no deadline here; handlers
//!   have their own timeouts. A request body must keep pace ([`Paced`]): all of it within the
//!   header timeout of the head plus a second per [`MIN_BODY_RATE`] bytes, else reading it
//!   fails (the handler answers 400) and the connection closes.
//!
//! A head also has a size cap ([`MAX_HEAD`], 431 beyond), so a slow head holds little memory.
//!
//! # TLS (`--tls-cert`)
//! The handshake runs in the connection's task, over the same `ConnIo` (so the slot is held and
//! released as for plain HTTP), and counts against the first head's deadline: a stranger who
//! opens TCP and never finishes the handshake holds its slot for the header timeout at most
//! (`tether_http_timeouts_total{reason="tls"}`). A failed handshake (plain HTTP on the TLS
//! port, a bad ClientHello) is closed quietly and counted
//! (`tether_tls_handshake_failures_total`). Then hyper serves the TLS stream exactly as it
//! serves a plain one ([`serve_conn`] is generic over the stream), upgrades included.
//!
//! One file of ~850 lines for one path (a socket from its accept to its close): the budget, the
//! accept loop, the TLS handshake, the deadlines and the paced body; a sixth of it is tests.

use super::AppError;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections taken past the cap to answer `/healthz` and `/metrics`.
pub const OVERFLOW: usize = 32;
/// How long one of those may live (less if the header timeout is shorter).
pub const OVERFLOW_LIFE: Duration = Duration::from_secs(2);
/// Files the relay keeps besides its listener's connections: the store (SQLite's database,
/// journal and WAL files), Redis, the UDP sockets, the overflow pool, stdio, epoll; generous.
pub const RESERVE: u64 = 128;
/// The default cap never goes below this, whatever the open-file limit says.
const FLOOR: u64 = 16;
/// The largest request head (start line and headers), bytes: hyper answers 431 beyond it.
/// Without it a slow head could fill hyper's 400 KiB read buffer per connection.
pub const MAX_HEAD: usize = 32 * 1024;
/// The slowest a request body may come, bytes per second, after the header timeout's grace.
pub const MIN_BODY_RATE: u64 = 1024;
/// How long shutdown waits for requests under way before dropping their connections (the room
/// sockets' goodbyes go out meanwhile; a service manager waits about 10 s in all).
const DRAIN: Duration = Duration::from_secs(3);

/// What `--max-conns`, `--header-timeout-ms` and `--idle-timeout-ms` set.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Connections open at once (each holds a file).
    pub max_conns: usize,
    /// A request's head must be complete within this of its start.
    pub header_timeout: Duration,
    /// A connection with no request under way is closed after this.
    pub idle_timeout: Duration,
    /// Connections one peer address may hold (0: no cap).
    pub per_ip: usize,
}

impl Budget {
    /// The budget the flags ask for; an absent `--max-conns` is [`default_max_conns`] of this
    /// process's open-file limit. Logs what it is, and warns where it leaves no room.
    pub fn from_config(config: &crate::Config) -> Budget {
        let nofile = open_file_limit();
        let upstreams = if config.cs_upstream.is_some() { config.cs_max_sessions as u64 } else { 0 };
        let max_conns = match config.max_conns {
            Some(n) => {
                if let Some(limit) = nofile.filter(|l| n.saturating_add(RESERVE + upstreams) > *l) {
                    tracing::warn!(
                        "--max-conns {n} leaves too little of the open-file limit ({limit}) for the store and \
                         upstreams: past it accepting fails and /healthz stops answering; raise `ulimit -n`"
                    );
                }
                n
            }
            None => default_max_conns(nofile, upstreams),
        };
        let budget = Budget {
            max_conns: usize::try_from(max_conns).unwrap_or(usize::MAX).clamp(1, Semaphore::MAX_PERMITS),
            header_timeout: Duration::from_millis(config.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.max(1)),
            per_ip: match config.max_tcp_per_ip {
                Some(n) => n,
                // Behind a proxy every socket is the proxy's.
                None if config.real_ip_header.is_some() => 0,
                None => config.max_conns_per_ip.saturating_mul(2),
            },
        };
        tracing::info!(
            max_conns = budget.max_conns,
            open_file_limit = nofile,
            header_timeout_ms = config.header_timeout_ms,
            idle_timeout_ms = config.idle_timeout_ms,
            per_ip = budget.per_ip,
            "connection budget (--max-conns, --header-timeout-ms, --idle-timeout-ms, --max-tcp-per-ip)"
        );
        budget
    }
}

/// The default `--max-conns`: the open-file limit `nofile` less [`RESERVE`] and the CS
/// sessions' `upstreams` connections; half the limit where that leaves less than half (a tiny
/// limit: the relay warns). Without a known limit (not unix), 8192.
pub fn default_max_conns(nofile: Option<u64>, upstreams: u64) -> u64 {
    let Some(limit) = nofile else { return 8192 };
    let reserve = RESERVE + upstreams;
    if limit >= 2 * reserve {
        return limit - reserve;
    }
    let half = (limit / 2).max(FLOOR);
    tracing::warn!(
        "the open-file limit ({limit}) leaves little room: --max-conns defaults to {half}; raise `ulimit -n` \
         (or lower --cs-max-sessions)"
    );
    half
}

/// This process's open-file limit (the soft one), if known.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rustix::process::getrlimit(rustix::process::Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Raises the soft open-file limit to the hard one (a process may, unprivileged), so the
/// default `--max-conns` is as large as the system allows; returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        if current != maximum {
            let raised = Rlimit { current: maximum, maximum };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                // macOS refuses an unlimited soft limit; the soft one stays.
                tracing::debug!("cannot raise the open-file limit to {maximum:?}: {e}");
            }
        }
    }
    open_file_limit()
}

/// Serves `app` on `listener` within `budget` (over TLS with `tls`) until `shutdown` resolves;
/// then stops accepting, lets requests under way finish (for up to 3 s) and returns. WebSockets
/// already upgraded are not waited for here: their tasks close on the relay's own shutdown.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    budget: Budget,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    metrics.conns_max.store(i64::try_from(budget.max_conns).unwrap_or(i64::MAX), Relaxed);
    let slots = Arc::new(Semaphore::new(budget.max_conns));
    let per_peer = Arc::new(PerPeer { max: budget.per_ip, open: Mutex::default() });
    let overflow = Arc::new(Semaphore::new(OVERFLOW));
    let stop = CancellationToken::new();
    let conns = TaskTracker::new();
    let service = TowerToHyperService::new(app);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e, &mut shutdown).await;
                    continue;
                }
            },
        };
        // Frames are small and each is written when it is ready: Nagle's algorithm would hold
        // a second small segment until the first is acknowledged (and the peer delays that ack).
        let _ = tcp.set_nodelay(true);
        // One address may not take the relay's sockets for itself: past its share, closed
        // at once (before the cap's overflow, which monitors need).
        let Some(peer_slot) = per_peer.take(peer.ip()) else {
            metrics.conns_refused_per_ip.fetch_add(1, Relaxed);
            drop(tcp);
            continue;
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(permit) => Slot::new(permit, metrics.clone()),
            Err(_) => {
                metrics.conns_refused.fetch_add(1, Relaxed);
                match overflow.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let life = budget.header_timeout.min(OVERFLOW_LIFE);
                        let held = (permit, peer_slot);
                        let (tls, metrics, service) = (tls.clone(), metrics.clone(), service.clone());
                        let answer = async move {
                            match tls {
                                None => serve_overflow(tcp, peer, service).await,
                                Some(tls) => {
                                    if let Some(io) = handshake(&tls, tcp, peer, &metrics).await {
                                        serve_overflow(io, peer, service).await;
                                    }
                                }
                            }
                        };
                        let stop = stop.clone();
                        conns.spawn(async move {
                            let _held = held;
                            tokio::select! {
                                _ = tokio::time::timeout(life, answer) => {},
                                () = stop.cancelled() => {},
                            }
                        });
                    }
                    // Dropped: closed at once.
                    Err(_) => drop(tcp),
                }
                continue;
            }
        };
        let accepted = Instant::now();
        let clock = Arc::new(Clock::new(accepted));
        let io = ConnIo { tcp, _slot: Some((slot, peer_slot)), clock: Some(clock.clone()) };
        let conn = Conn { peer, clock, budget, stop: stop.clone(), metrics: metrics.clone() };
        let service = service.clone();
        match tls.clone() {
            None => conns.spawn(conn.serve(io, service)),
            Some(tls) => conns.spawn(async move {
                // The handshake counts against the first head's deadline (from the accept).
                let due = accepted + budget.header_timeout;
                tokio::select! {
                    done = handshake(&tls, io, peer, &conn.metrics) => {
                        if let Some(io) = done {
                            conn.serve(io, service).await;
                        }
                    }
                    () = tokio::time::sleep_until(due) => {
                        conn.metrics.http_timeouts_tls.fetch_add(1, Relaxed);
                        tracing::debug!("connection from {peer} closed: no TLS handshake within the header timeout");
                    }
                    () = conn.stop.cancelled() => {},
                }
            }),
        };
    }
    stop.cancel();
    conns.close();
    // Each connection's task ends within DRAIN of the stop.
    conns.wait().await;
}

/// One accepted connection's context, for [`Conn::serve`].
struct Conn {
    peer: SocketAddr,
    clock: Arc<Clock>,
    budget: Budget,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Conn {
    /// Serves HTTP/1.1 on `io` (the plain [`ConnIo`] or TLS over it) until it closes, its
    /// clock expires or the relay stops (then a request under way gets [`DRAIN`] to finish).
    async fn serve<I>(self, io: I, service: TowerToHyperService<Router>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn { peer, clock, budget, stop, metrics } = self;
        let svc = counted(service, peer, clock.clone(), budget.header_timeout, metrics.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.max_header_size(MAX_HEAD).header_read_timeout(None);
        let conn = http.serve_connection(TokioIo::new(io), svc).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::trace!("connection from {peer}: {e}");
                }
            }
            why = clock.expired(&budget) => {
                let counter = match why {
                    Expired::Head => &metrics.http_timeouts_head,
                    Expired::Idle => &metrics.http_timeouts_idle,
                };
                counter.fetch_add(1, Relaxed);
                tracing::debug!("connection from {peer} closed: {why:?} timeout");
            }
            () = stop.cancelled() => {
                // Idle ones close now; one with a request under way finishes it, in time.
                conn.as_mut().graceful_shutdown();
                if tokio::time::timeout(DRAIN, conn).await.is_err() {
                    tracing::warn!("a request from {peer} did not finish in time for shutdown: dropped");
                }
            }
        }
        clock.done.store(true, Relaxed);
    }
}

/// The server side of a TLS handshake on `io`; `None` (counted, logged at debug) when it fails.
/// No deadline here: the caller's.
async fn handshake<I>(
    tls: &TlsAcceptor,
    io: I,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Option<tokio_rustls::server::TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    match tls.accept(io).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            metrics.tls_handshake_failures.fetch_add(1, Relaxed);
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            None
        }
    }
}

/// Connections open per peer address (an IPv6 host by its /64), up to `max` (0: any number).
struct PerPeer {
    max: usize,
    open: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection counted for its address; uncounted when dropped, with its socket.
struct PeerSlot {
    per_peer: Arc<PerPeer>,
    key: std::net::IpAddr,
}

impl PerPeer {
    /// A place for a connection from `ip`: `None` when its address holds its share already,
    /// `Some(None)` when nothing is counted (no cap).
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Option<PeerSlot>> {
        if self.max == 0 {
            return Some(None);
        }
        let key = crate::strikes::address_key(ip);
        let mut open = crate::util::lock(&self.open);
        let n = open.entry(key).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(PeerSlot { per_peer: self.clone(), key }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = crate::util::lock(&self.per_peer.open);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// An accept that failed. A connection reset before it was accepted is nothing; anything else
/// (out of files: `EMFILE`) is logged, and accepting pauses for a second, as hyper used to.
async fn accept_failed(e: io::Error, shutdown: &mut Pin<&mut impl Future<Output = ()>>) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!("accept failed: {e} (is --max-conns above what `ulimit -n` allows?)");
    tokio::select! {
        () = shutdown.as_mut() => {},
        () = tokio::time::sleep(Duration::from_secs(1)) => {},
    }
}

/// One connection past the cap: one request, `/healthz` and `/metrics` only (the caller
/// bounds its life).
async fn serve_overflow<I>(io: I, peer: SocketAddr, service: TowerToHyperService<Router>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let path = req.uri().path();
        let allowed = path == "/healthz" || path == "/metrics";
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = allowed.then(|| hyper::service::Service::call(&service, req));
        async move {
            match call {
                Some(call) => call.await,
                None => Ok(at_capacity()),
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_header_size(MAX_HEAD).header_read_timeout(None).keep_alive(false);
    if let Err(e) = http.serve_connection(io, svc).await {
        tracing::trace!("connection from {peer} past the cap: {e}");
    }
}

/// The answer past the cap: `503 at_capacity`, try again in a few seconds.
fn at_capacity() -> axum::response::Response {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "at_capacity",
        "the relay is at its connection cap (--max-conns): try again shortly",
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    .into_response()
}

/// The router as hyper calls it on one connection: the peer's address put where
/// `ConnectInfo<SocketAddr>` finds it, the body [`Paced`], and each request counted busy on
/// `clock` until its response is sent (or dropped).
fn counted(
    service: TowerToHyperService<Router>,
    peer: SocketAddr,
    clock: Arc<Clock>,
    grace: Duration,
    metrics: Arc<Metrics>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Counted>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<hyper::Response<Counted>, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::new(clock.clone());
        let req = req.map(|body| Paced::new(body, grace, metrics.clone()));
        let call = hyper::service::Service::call(&service, req);
        async move {
            let resp = call.await?;
            Ok(resp.map(|body| Counted { body, _busy: busy }))
        }
    })
}

/// A response body that keeps its request counted busy until it is sent or dropped.
pub struct Counted {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that must keep pace: all of it within `grace` of the head plus a second per
/// [`MIN_BODY_RATE`] bytes received. Later, reading it fails: the handler answers 400 (or
/// drops it) and hyper closes the connection, whose body was not read to its end.
pub struct Paced {
    body: Incoming,
    /// When the head arrived.
    start: Instant,
    grace: Duration,
    received: u64,
    /// Armed the first time the body has nothing ready (most bodies never wait).
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

impl Paced {
    fn new(body: Incoming, grace: Duration, metrics: Arc<Metrics>) -> Paced {
        Paced { body, start: Instant::now(), grace, received: 0, deadline: None, metrics }
    }

    /// By when the next byte must have arrived.
    fn due(&self) -> Instant {
        self.start + self.grace + Duration::from_millis(self.received.saturating_mul(1000) / MIN_BODY_RATE)
    }
}

impl hyper::body::Body for Paced {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let due = self.due();
                    if let Some(d) = self.deadline.as_mut() {
                        d.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let due = self.due();
                let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.metrics.http_timeouts_body.fetch_add(1, Relaxed);
                let e = format!("the request body came slower than {MIN_BODY_RATE} bytes a second");
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request under way, from its head's arrival until its response is gone.
struct Busy(Arc<Clock>);

impl Busy {
    fn new(clock: Arc<Clock>) -> Busy {
        clock.shift(|p| match p {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        Busy(clock)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.shift(|p| match p {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle { since: Instant::now(), fresh: false },
        });
    }
}

/// What a connection is doing, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// No request under way. `fresh`: none yet, since `since` (the accept).
    Idle { since: Instant, fresh: bool },
    /// The next head began arriving at `since`.
    Head { since: Instant },
    /// Requests in the handlers or their responses being sent.
    Busy(usize),
}

/// Why a connection was closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// A head took longer than the header timeout.
    Head,
    /// Nothing came for the idle timeout.
    Idle,
}

impl Phase {
    /// When a connection in this phase is closed, and why.
    fn deadline(self, budget: &Budget) -> Option<(Instant, Expired)> {
        match self {
            Phase::Idle { since, fresh: true } | Phase::Head { since } => {
                Some((since + budget.header_timeout, Expired::Head))
            }
            Phase::Idle { since, fresh: false } => Some((since + budget.idle_timeout, Expired::Idle)),
            Phase::Busy(_) => None,
        }
    }

    /// The phase after bytes arrived at `now`.
    fn read(self, now: Instant) -> Phase {
        match self {
            Phase::Idle { fresh: false, .. } => Phase::Head { since: now },
            other => other,
        }
    }
}

/// A connection's phase, shared by its IO (bytes read), its service (requests) and its
/// task (which waits for the deadline).
struct Clock {
    phase: Mutex<Phase>,
    changed: Notify,
    /// Set when hyper is done with the connection (closed, or upgraded to a WebSocket): reads
    /// then no longer touch the phase.
    done: AtomicBool,
}

impl Clock {
    fn new(accepted: Instant) -> Clock {
        Clock {
            phase: Mutex::new(Phase::Idle { since: accepted, fresh: true }),
            changed: Notify::new(),
            done: AtomicBool::new(false),
        }
    }

    fn shift(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = crate::util::lock(&self.phase);
        let next = f(*phase);
        if next != *phase {
            *phase = next;
            // One waiter, the connection's task: a stored permit covers a change made while
            // it is not waiting.
            self.changed.notify_one();
        }
    }

    /// Resolves when the connection's phase has outlived its deadline.
    async fn expired(&self, budget: &Budget) -> Expired {
        loop {
            let deadline = crate::util::lock(&self.phase).deadline(budget);
            match deadline {
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {},
                        () = self.changed.notified() => {},
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// An accepted socket with what it holds: its slot of `--max-conns` (given back when the
/// socket is dropped, by hyper or, after an upgrade, by the WebSocket's task) and its clock.
/// With `--tls-cert` the TLS stream wraps it, so the slot goes with the TLS stream and the
/// clock sees the encrypted bytes arrive (a TLS record of a head is a head under way).
struct ConnIo {
    tcp: TcpStream,
    /// Its place under `--max-conns` and under its address's `--max-tcp-per-ip`.
    _slot: Option<(Slot, Option<PeerSlot>)>,
    clock: Option<Arc<Clock>>,
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            match &self.clock {
                // Upgraded (or closed): the clock is let go, as an idle WebSocket's socket
                // lives on for hours.
                Some(clock) if clock.done.load(Relaxed) => self.clock = None,
                Some(clock) => {
                    let now = Instant::now();
                    clock.shift(|p| p.read(now));
                }
                None => {}
            }
        }
        res
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// One of `--max-conns` slots, counted in `tether_conns_open` while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Slot {
        metrics.conns_open.fetch_add(1, Relaxed);
        Slot { _permit: permit, metrics }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.conns_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            max_conns: 8,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            per_ip: 0,
        }
    }

    #[test]
    fn an_address_holds_its_share_of_connections_ipv6_by_its_64_and_gets_them_back() {
        let per = Arc::new(PerPeer { max: 2, open: Mutex::default() });
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same64: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let first = per.take(a).expect("the first");
        let _second = per.take(same64).expect("the second, same /64");
        assert!(per.take(a).is_none(), "the third from that /64");
        assert!(per.take(other).is_some(), "another /64 has its own share");
        drop(first);
        assert!(per.take(a).is_some(), "given back with the socket");
        let none = Arc::new(PerPeer { max: 0, open: Mutex::default() });
        assert!(matches!(none.take(a), Some(None)), "0: nothing counted");
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_open_file_limit() {
        assert_eq!(default_max_conns(Some(20_000), 0), 20_000 - RESERVE);
        assert_eq!(default_max_conns(Some(20_000), 1000), 20_000 - RESERVE - 1000);
        assert_eq!(default_max_conns(Some(1024), 0), 1024 - RESERVE);
        // A limit too small for the reserve: half of it, never below the floor.
        assert_eq!(default_max_conns(Some(1024), 1000), 512);
        assert_eq!(default_max_conns(Some(20), 0), FLOOR);
        assert_eq!(default_max_conns(None, 0), 8192);
    }

    #[test]
    fn each_phase_has_its_deadline() {
        let t0 = Instant::now();
        let b = budget();
        let fresh = Phase::Idle { since: t0, fresh: true };
        assert_eq!(fresh.deadline(&b), Some((t0 + b.header_timeout, Expired::Head)));
        // Bytes of the first head change nothing: it was due from the accept.
        assert_eq!(fresh.read(t0 + Duration::from_secs(5)), fresh);
        let idle = Phase::Idle { since: t0, fresh: false };
        assert_eq!(idle.deadline(&b), Some((t0 + b.idle_timeout, Expired::Idle)));
        // After an idle spell, the next head is due within the header timeout of its first byte.
        let t1 = t0 + Duration::from_secs(20);
        let head = idle.read(t1);
        assert_eq!(head.deadline(&b), Some((t1 + b.header_timeout, Expired::Head)));
        // More bytes of the same head do not push its deadline back.
        assert_eq!(head.read(t1 + Duration::from_secs(9)), head);
        assert_eq!(Phase::Busy(1).deadline(&b), None);
        assert_eq!(Phase::Busy(1).read(t1), Phase::Busy(1));
    }

    #[tokio::test]
    async fn requests_keep_a_connection_busy_until_their_responses_are_gone() {
        let clock = Arc::new(Clock::new(Instant::now()));
        let a = Busy::new(clock.clone());
        let b = Busy::new(clock.clone());
        assert_eq!(*clock.phase.lock().unwrap(), Phase::Busy(2));
        drop(a);
        assert_eq!(*clock.phase.lock().unwrap(), Phase::Busy(1));
        drop(b);
        assert!(matches!(*clock.phase.lock().unwrap(), Phase::Idle { fresh: false, .. }));
    }

    #[tokio::test]
    async fn the_clock_expires_at_the_deadline_of_the_phase_it_is_in() {
        let b = Budget {
            max_conns: 8,
            header_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(150),
            per_ip: 0,
        };
        let clock = Arc::new(Clock::new(Instant::now()));
        let start = Instant::now();
        assert_eq!(clock.expired(&b).await, Expired::Head);
        assert!(start.elapsed() >= b.header_timeout);
        // Busy: no deadline; the idle one starts when the response is gone.
        let busy = Busy::new(clock.clone());
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.expired(&b).await })
        };
        tokio::time::sleep(b.idle_timeout * 2).await;
        assert!(!waiter.is_finished(), "a busy connection has no deadline");
        let idle_from = Instant::now();
        drop(busy);
        assert_eq!(waiter.await.unwrap(), Expired::Idle);
        assert!(idle_from.elapsed() >= b.idle_timeout);
    }
}
