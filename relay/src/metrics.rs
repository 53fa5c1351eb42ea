//! Counters and gauges, rendered in the Prometheus text format on `/metrics`.
//!
//! Plain atomics: no label carries a room name, member id or secret, so the endpoint can be
//! scraped without revealing who uses the relay.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use tether_protocol::{ErrorCode, Kind};

/// Why a frame was not delivered (the `reason` label of `tether_drops_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The target's outbound queue was full; the target was disconnected.
    SlowConsumer,
    /// The target was away and its resume buffer was full.
    BufferFull,
    /// The sender exceeded its rate.
    RateLimited,
    /// Nobody to deliver to.
    NoTarget,
    /// The relay (`--max-buffered-bytes`) or the room (`--max-room-buffered-bytes`) already
    /// held all it may for its members.
    OverBudget,
    /// An `inspect` frame with no live watching PC to go to (counted once per frame).
    InspectNobody,
    /// An `inspect` frame not queued toward a watching PC whose queue was over half full (or
    /// whose connection was closing): one per PC.
    InspectQueue,
    /// An `inspect` frame not queued toward a watching PC: the relay held all it may
    /// (`--max-buffered-bytes`). One per PC.
    InspectBudget,
    /// An `inspect` frame over its device's `--inspect-rate`.
    InspectRate,
    /// Cluster mode: an `inspect` frame not sent toward a watching PC on another relay (the
    /// bus is down, or its queue over half full). One per PC.
    InspectBus,
    /// An `inspect` batch a keeping PC asked to keep that the history write queue had no
    /// room for: delivered, but not stored.
    InspectHistory,
}

impl Dropped {
    const ALL: [Dropped; 11] = [
        Dropped::SlowConsumer,
        Dropped::BufferFull,
        Dropped::RateLimited,
        Dropped::NoTarget,
        Dropped::OverBudget,
        Dropped::InspectNobody,
        Dropped::InspectQueue,
        Dropped::InspectBudget,
        Dropped::InspectRate,
        Dropped::InspectBus,
        Dropped::InspectHistory,
    ];
    fn as_str(self) -> &'static str {
        match self {
            Dropped::SlowConsumer => "slow_consumer",
            Dropped::BufferFull => "buffer_full",
            Dropped::RateLimited => "rate_limited",
            Dropped::NoTarget => "no_target",
            Dropped::OverBudget => "over_budget",
            Dropped::InspectNobody => "inspect_nobody",
            Dropped::InspectQueue => "inspect_queue",
            Dropped::InspectBudget => "inspect_budget",
            Dropped::InspectRate => "inspect_rate",
            Dropped::InspectBus => "inspect_bus",
            Dropped::InspectHistory => "inspect_history",
        }
    }
}

/// Why a CS login was refused before reaching the legacy server (the `reason` label of
/// `tether_cs_logins_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Not `--cs-login-method`.
    Method,
    /// The address made its minute's logins (`--cs-logins-per-ip`).
    Rate,
    /// `--cs-max-sessions` reached.
    Full,
}

impl LoginRefused {
    const ALL: [LoginRefused; 3] = [LoginRefused::Method, LoginRefused::Rate, LoginRefused::Full];
    fn as_str(self) -> &'static str {
        match self {
            LoginRefused::Method => "method",
            LoginRefused::Rate => "rate",
            LoginRefused::Full => "full",
        }
    }
}

/// Every figure the relay exports.
#[derive(Default)]
pub struct Metrics {
    /// Open room WebSockets (gauge).
    pub connections: AtomicI64,
    /// Room WebSockets ever accepted.
    pub connections_total: AtomicU64,
    /// Rooms with at least one member (gauge).
    pub rooms: AtomicI64,
    /// Members currently away, waiting to resume (gauge).
    pub away: AtomicI64,
    /// Bytes held for members: outbound queues, resume buffers, request bodies awaiting
    /// replies (gauge; `room::Budget` keeps it under `--max-buffered-bytes`).
    pub buffered_bytes: std::sync::atomic::AtomicUsize,
    /// Requests awaiting a device's reply, every room's together (gauge; one per device a
    /// request went to).
    pub pending: AtomicI64,
    /// HTTP API requests (`post`, `call`) under way, each with its room member (gauge): a
    /// request answered with its first reply counts until its other devices have answered.
    pub api_requests: AtomicI64,
    /// HTTP API requests (`post`, `call`) that reached a room.
    pub api_requests_total: AtomicU64,
    /// Joins that resumed an earlier member.
    pub resumes: AtomicU64,
    frames_in: [AtomicU64; Kind::ALL.len()],
    /// Frames whose type is unknown.
    pub frames_in_unknown: AtomicU64,
    /// Frames queued toward members.
    pub frames_out: AtomicU64,
    /// `inspect` frames queued toward watching PCs (one per PC; on the bus for a PC on
    /// another relay).
    pub inspect_frames: AtomicU64,
    /// Their bytes.
    pub inspect_bytes: AtomicU64,
    errors: [AtomicU64; ErrorCode::ALL.len()],
    drops: [AtomicU64; Dropped::ALL.len()],
    /// CS sessions open (gauge).
    pub cs_sessions: AtomicI64,
    /// CS calls made.
    pub cs_calls: AtomicU64,
    /// CS logins sent to the legacy server (faults included).
    pub cs_logins: AtomicU64,
    cs_logins_refused: [AtomicU64; LoginRefused::ALL.len()],
    /// CS sessions closed for their age (`--cs-max-age-ms`).
    pub cs_sessions_expired: AtomicU64,
    /// Alarm datagrams received.
    pub alarms_received: AtomicU64,
    /// Alarm frames queued toward subscribers.
    pub alarms_forwarded: AtomicU64,
    /// Alarms a subscriber fell too far behind to get (each told in an `alarmGap`).
    pub alarms_dropped_lagging: AtomicU64,
    /// Alarms asked for by `since=` that were no longer held.
    pub alarms_dropped_expired: AtomicU64,
    /// Alarms dropped from the ring by `--alarm-buffer-bytes` (before `--alarm-history` would
    /// have dropped them), or too large to keep at all.
    pub alarms_evicted_bytes: AtomicU64,
    /// Bytes of alarm frames the ring holds (gauge).
    pub alarm_ring_bytes: AtomicU64,
    /// `/alarms` subscribers (gauge).
    pub alarm_subscribers: AtomicI64,
    /// The last alarm seq given (gauge).
    pub alarm_last_seq: AtomicU64,
    /// 1 while the `--alarm-udp` service's port refuses subscriptions (gauge).
    pub alarm_source_unreachable: AtomicU64,
    /// Cluster mode: 1 while the bus between relays (Redis) works, 0 when not (gauge).
    pub cluster_up: AtomicI64,
    /// History transactions committed; the store's own counter (`Store::commits`).
    pub history_commits: Arc<AtomicU64>,
    /// Requests refused by `--allow-origin`.
    pub refused_origin: AtomicU64,
    /// Joins refused because their address made its minute's rooms (`--max-new-rooms-per-ip`).
    pub refused_rooms: AtomicU64,
    /// Datagrams to `--alarm-listen` from a sender not in `--alarm-from`, dropped.
    pub alarms_refused: AtomicU64,
    /// TCP connections holding a slot of `--max-conns` (gauge).
    pub conns_open: AtomicI64,
    /// `--max-conns` in force (gauge; its default depends on the open-file limit).
    pub conns_max: AtomicI64,
    /// Connections accepted at the cap: answered only `/healthz` and `/metrics`, or closed.
    pub conns_refused: AtomicU64,
    /// Connections closed at once: their peer address held `--max-tcp-per-ip` already.
    pub conns_refused_per_ip: AtomicU64,
    /// Connections closed for a request head slower than `--header-timeout-ms`.
    pub http_timeouts_head: AtomicU64,
    /// Keep-alive connections closed after `--idle-timeout-ms` without a request.
    pub http_timeouts_idle: AtomicU64,
    /// Request bodies slower than `MIN_BODY_RATE` after `--header-timeout-ms`, cut off.
    pub http_timeouts_body: AtomicU64,
    /// Connections closed for a TLS handshake not done within `--header-timeout-ms` of the accept.
    pub http_timeouts_tls: AtomicU64,
    /// TLS handshakes that failed (a plain-HTTP client on the TLS port, a bad ClientHello, an
    /// untrusting client's alert): closed.
    pub tls_handshake_failures: AtomicU64,
    /// The history store's size, rows pruned, records cut; the store's own (`Store::counters`).
    pub history: Arc<crate::history::Counters>,
}

impl Metrics {
    /// Counts an incoming frame of a known kind.
    pub fn frame_in(&self, kind: Kind) {
        self.frames_in[kind.index()].fetch_add(1, Relaxed);
    }

    /// Counts an `error` frame sent (or a connection closed) with this code.
    pub fn error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Relaxed);
    }

    /// Counts an undelivered frame.
    pub fn dropped(&self, why: Dropped) {
        self.drops[Dropped::ALL.iter().position(|d| *d == why).unwrap_or(0)].fetch_add(1, Relaxed);
    }

    /// Counts a CS login refused before reaching the legacy server.
    pub fn login_refused(&self, why: LoginRefused) {
        self.cs_logins_refused[why as usize].fetch_add(1, Relaxed);
    }

    /// Errors sent with this code so far.
    pub fn errors(&self, code: ErrorCode) -> u64 {
        self.errors[code.index()].load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut gauge = |name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge("tether_connections", "Open room WebSockets.", self.connections.load(Relaxed));
        gauge("tether_rooms", "Rooms with at least one member.", self.rooms.load(Relaxed));
        gauge("tether_members_away", "Members waiting to resume.", self.away.load(Relaxed));
        gauge(
            "tether_buffered_bytes",
            "Bytes held for members: outbound queues, resume buffers, request bodies awaiting replies (--max-buffered-bytes).",
            self.buffered_bytes.load(Relaxed) as i64,
        );
        gauge(
            "tether_pending_requests",
            "Requests awaiting a device's reply (one per device a request went to; --max-pending per room).",
            self.pending.load(Relaxed),
        );
        gauge(
            "tether_api_requests",
            "HTTP API post/call requests under way, each a room member meanwhile.",
            self.api_requests.load(Relaxed),
        );
        gauge(
            "tether_cs_sessions",
            "Legacy CS sessions (upstream connections) open.",
            self.cs_sessions.load(Relaxed),
        );
        gauge("tether_alarm_subscribers", "/alarms subscribers.", self.alarm_subscribers.load(Relaxed));
        gauge(
            "tether_history_db_bytes",
            "The history store's size: SQLite, the database file's pages (free ones included, the WAL not); PostgreSQL, pg_total_relation_size of the history table.",
            self.history.db_bytes.load(Relaxed).min(i64::MAX as u64) as i64,
        );
        gauge(
            "tether_history_queue_bytes",
            "Bytes of history records waiting for the writer (at most 64 MiB; past it repliers wait).",
            self.history.queued_bytes.load(Relaxed).min(i64::MAX as u64) as i64,
        );
        gauge(
            "tether_cluster_up",
            "Cluster mode: 1 while the bus between relays works.",
            self.cluster_up.load(Relaxed),
        );
        gauge(
            "tether_conns_open",
            "TCP connections holding a slot of --max-conns.",
            self.conns_open.load(Relaxed),
        );
        gauge("tether_conns_max", "--max-conns in force.", self.conns_max.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP tether_alarm_last_seq The last alarm seq given.\n# TYPE tether_alarm_last_seq gauge"
        );
        let _ = writeln!(out, "tether_alarm_last_seq {}", self.alarm_last_seq.load(Relaxed));
        let _ = writeln!(
            out,
            "# HELP tether_alarm_ring_bytes Bytes of alarm frames held (--alarm-buffer-bytes).\n# TYPE tether_alarm_ring_bytes gauge\ntether_alarm_ring_bytes {}",
            self.alarm_ring_bytes.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_alarm_source_unreachable 1 while the alarm service refuses subscriptions.\n# TYPE tether_alarm_source_unreachable gauge\ntether_alarm_source_unreachable {}",
            self.alarm_source_unreachable.load(Relaxed)
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "tether_connections_total",
            "Room WebSockets accepted.",
            self.connections_total.load(Relaxed),
        );
        counter("tether_resumes_total", "Joins that resumed a member.", self.resumes.load(Relaxed));
        counter(
            "tether_api_requests_total",
            "HTTP API post/call requests that reached a room.",
            self.api_requests_total.load(Relaxed),
        );
        counter("tether_cs_calls_total", "Legacy CS calls made.", self.cs_calls.load(Relaxed));
        counter(
            "tether_cs_logins_total",
            "Legacy CS logins sent to the CS server (faults included).",
            self.cs_logins.load(Relaxed),
        );
        counter(
            "tether_cs_sessions_expired_total",
            "Legacy CS sessions closed for their age (--cs-max-age-ms).",
            self.cs_sessions_expired.load(Relaxed),
        );
        counter(
            "tether_alarms_received_total",
            "Alarm datagrams received.",
            self.alarms_received.load(Relaxed),
        );
        counter(
            "tether_alarms_forwarded_total",
            "Alarm frames sent to subscribers.",
            self.alarms_forwarded.load(Relaxed),
        );
        counter("tether_frames_out_total", "Frames queued toward members.", self.frames_out.load(Relaxed));
        counter(
            "tether_inspect_frames_total",
            "inspect frames queued toward watching PCs (one per PC, those on other relays included).",
            self.inspect_frames.load(Relaxed),
        );
        counter(
            "tether_inspect_bytes_total",
            "Bytes of the inspect frames counted in tether_inspect_frames_total.",
            self.inspect_bytes.load(Relaxed),
        );
        counter(
            "tether_refused_origin_total",
            "Requests refused for their Origin (--allow-origin).",
            self.refused_origin.load(Relaxed),
        );
        counter(
            "tether_alarms_refused_total",
            "Datagrams to --alarm-listen from senders not in --alarm-from, dropped.",
            self.alarms_refused.load(Relaxed),
        );
        counter(
            "tether_alarms_evicted_total",
            "Alarms dropped from the replay ring by --alarm-buffer-bytes, or too large to keep.",
            self.alarms_evicted_bytes.load(Relaxed),
        );
        counter(
            "tether_rooms_refused_total",
            "Rooms not created: their address had made its minute's (--max-new-rooms-per-ip).",
            self.refused_rooms.load(Relaxed),
        );
        counter(
            "tether_history_writes_total",
            "History records committed.",
            self.history.written.load(Relaxed),
        );
        counter(
            "tether_history_commits_total",
            "History transactions committed (records per commit = writes / commits).",
            self.history_commits.load(Relaxed),
        );
        counter(
            "tether_history_failures_total",
            "History records that failed to commit.",
            self.history.failed.load(Relaxed),
        );
        counter(
            "tether_history_log_failures_total",
            "History records the reply log could not take (their replies waited for the commit).",
            self.history.log_failed.load(Relaxed),
        );
        counter(
            "tether_history_cut_total",
            "History records stored with their bodies cut to --history-max-record.",
            self.history.cut.load(Relaxed),
        );
        counter(
            "tether_history_rooms_pruned_total",
            "Rooms forgotten: no history left, not open, not opened for --history-max-age.",
            self.history.rooms_pruned.load(Relaxed),
        );
        counter(
            "tether_conns_refused_per_ip_total",
            "Connections closed at once: their address held --max-tcp-per-ip already.",
            self.conns_refused_per_ip.load(Relaxed),
        );
        counter(
            "tether_tls_handshake_failures_total",
            "TLS handshakes on --listen that failed (plain HTTP on the TLS port, a bad ClientHello, a client \
             that does not trust the certificate): closed.",
            self.tls_handshake_failures.load(Relaxed),
        );
        counter(
            "tether_conns_refused_total",
            "Connections accepted at --max-conns: answered only /healthz and /metrics, or closed at once.",
            self.conns_refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP tether_http_timeouts_total Connections closed by a timeout: a request head slower than \
             --header-timeout-ms (head), no request for --idle-timeout-ms (idle), a request body slower \
             than 1 KiB/s after --header-timeout-ms (body), a TLS handshake not done within \
             --header-timeout-ms of the accept (tls)."
        );
        let _ = writeln!(out, "# TYPE tether_http_timeouts_total counter");
        let _ = writeln!(
            out,
            "tether_http_timeouts_total{{reason=\"head\"}} {}",
            self.http_timeouts_head.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tether_http_timeouts_total{{reason=\"idle\"}} {}",
            self.http_timeouts_idle.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tether_http_timeouts_total{{reason=\"body\"}} {}",
            self.http_timeouts_body.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tether_http_timeouts_total{{reason=\"tls\"}} {}",
            self.http_timeouts_tls.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tether_history_pruned_total History rows deleted, by reason (--history-max-age, --history-max-bytes).\n# TYPE tether_history_pruned_total counter"
        );
        let _ = writeln!(
            out,
            "tether_history_pruned_total{{reason=\"age\"}} {}",
            self.history.pruned_age.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tether_history_pruned_total{{reason=\"bytes\"}} {}",
            self.history.pruned_bytes.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP tether_frames_in_total Frames received, by type.");
        let _ = writeln!(out, "# TYPE tether_frames_in_total counter");
        for k in Kind::ALL {
            let _ = writeln!(
                out,
                "tether_frames_in_total{{type=\"{k}\"}} {}",
                self.frames_in[k.index()].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "tether_frames_in_total{{type=\"unknown\"}} {}",
            self.frames_in_unknown.load(Relaxed)
        );
        let _ = writeln!(out, "# HELP tether_errors_total Error frames sent, by code.");
        let _ = writeln!(out, "# TYPE tether_errors_total counter");
        for c in ErrorCode::ALL {
            let _ =
                writeln!(out, "tether_errors_total{{code=\"{c}\"}} {}", self.errors[c.index()].load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP tether_drops_total Frames not delivered, by reason (inspect_*: inspect frames, dropped by design rather than slowing anyone down)."
        );
        let _ = writeln!(out, "# TYPE tether_drops_total counter");
        for (i, d) in Dropped::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "tether_drops_total{{reason=\"{}\"}} {}",
                d.as_str(),
                self.drops[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tether_cs_logins_refused_total Legacy CS logins refused before reaching the CS server, by reason: method (not --cs-login-method), rate (--cs-logins-per-ip), full (--cs-max-sessions)."
        );
        let _ = writeln!(out, "# TYPE tether_cs_logins_refused_total counter");
        for r in LoginRefused::ALL {
            let _ = writeln!(
                out,
                "tether_cs_logins_refused_total{{reason=\"{}\"}} {}",
                r.as_str(),
                self.cs_logins_refused[r as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tether_alarms_dropped_total Alarms not delivered to a subscriber, by reason (each told in an alarmGap)."
        );
        let _ = writeln!(out, "# TYPE tether_alarms_dropped_total counter");
        let _ = writeln!(
            out,
            "tether_alarms_dropped_total{{reason=\"lagging\"}} {}",
            self.alarms_dropped_lagging.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "tether_alarms_dropped_total{{reason=\"expired\"}} {}",
            self.alarms_dropped_expired.load(Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_once_with_values() {
        let m = Metrics::default();
        m.frame_in(Kind::Post);
        m.frame_in(Kind::Post);
        m.error(ErrorCode::NoTarget);
        m.dropped(Dropped::BufferFull);
        m.connections.store(3, Relaxed);
        let text = m.render();
        assert!(text.contains("tether_frames_in_total{type=\"post\"} 2\n"));
        assert!(text.contains("tether_errors_total{code=\"no_target\"} 1\n"));
        assert!(text.contains("tether_drops_total{reason=\"buffer_full\"} 1\n"));
        assert!(text.contains("tether_connections 3\n"));
        assert_eq!(text.matches("# TYPE tether_frames_in_total").count(), 1);
    }
}
