//! The relay's configuration: every flag also reads `TETHER_<FLAG>`.
//!
//! Over 500 lines: one struct holding every flag with its documentation (what `--help` and the
//! README say), its `defaults()` twin, and the tests that keep the two equal.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tether_protocol::limits;

/// `tether-relay`: rooms between a PC debug page and the H5 page inside a mobile app.
#[derive(Debug, Clone, Parser)]
#[command(name = "tether-relay", version, about, long_about = None)]
pub struct Config {
    /// HTTP + WebSocket listener (`0.0.0.0:8080` for phones on the LAN).
    #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve `https://` and `wss://` on `--listen` (TLS only: no plain HTTP beside it) with this
    /// certificate chain, PEM (the server's certificate first). Needs `--tls-key`. For a LAN
    /// without a proxy; public deployments terminate TLS in nginx (docs/deploy.md).
    #[arg(long, env = "TETHER_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert`, PEM (PKCS#8, PKCS#1 or SEC1). Needs `--tls-cert`.
    #[arg(long, env = "TETHER_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Static files for the pages (default: the built `www/dist`).
    #[arg(long, env = "TETHER_WWW")]
    pub www: Option<PathBuf>,

    /// The built npm package `tether-sdk`, served at `/sdk/` (default: `sdk-wasm/pkg`).
    #[arg(long, env = "TETHER_SDK")]
    pub sdk: Option<PathBuf>,

    /// History store: `sqlite://PATH` (created on first run), `sqlite::memory:`, or
    /// `postgres://USER@HOST:PORT/DB` where several relays share one.
    #[arg(long, env = "TETHER_DB", default_value = "sqlite://tether.db", hide_env_values = true)]
    pub db: String,

    /// History retention: the store's size cap, bytes (0: none; else at least 1 MiB). Past it
    /// the oldest pairs go until the store is down to 90% of it. SQLite counts the database's
    /// pages in use; PostgreSQL the rows' stored bodies.
    #[arg(long, env = "TETHER_HISTORY_MAX_BYTES", default_value_t = 1 << 30, value_parser = history_max_bytes)]
    pub history_max_bytes: u64,

    /// History retention: pairs older than this go, and so do rooms with no history left
    /// not opened for as long. A whole number and a unit: `7d`, `12h`, `30m`, `90s`, `500ms`
    /// (`0`: kept whatever their age).
    #[arg(long, env = "TETHER_HISTORY_MAX_AGE", default_value = "7d", value_parser = duration)]
    pub history_max_age: Duration,

    /// A stored pair's bodies (url or method, request, result, cookie, appInfo, error) beyond
    /// this many bytes together are cut, and the row says so (`cut`); the PC still gets the
    /// reply whole. 0: never cut; else at least 1024.
    #[arg(long, env = "TETHER_HISTORY_MAX_RECORD", default_value_t = 256 * 1024,
          value_parser = history_max_record)]
    pub history_max_record: usize,

    /// Server ping interval, ms; a member that answers nothing for two intervals is marked away.
    #[arg(long, env = "TETHER_HEARTBEAT_MS", default_value_t = limits::DEFAULT_HEARTBEAT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_ms: u64,

    /// Largest accepted frame, bytes.
    #[arg(long, env = "TETHER_MAX_FRAME", default_value_t = limits::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,

    /// How long an away member keeps its id and its buffered frames, ms.
    #[arg(long, env = "TETHER_GRACE_MS", default_value_t = limits::DEFAULT_GRACE_MS)]
    pub grace_ms: u64,

    /// Frames per second one connection may send (sustained); also HTTP API requests per
    /// second from one address.
    #[arg(long, env = "TETHER_RATE_LIMIT", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,

    /// Frames one connection may send in a burst above the rate (and API requests one address).
    #[arg(long, env = "TETHER_RATE_BURST", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,

    /// Bytes of `inspect` frames one device may send per second (sustained; one second's worth
    /// at once). Over it the frames are dropped (`tether_drops_total{reason="inspect_rate"}`)
    /// and the device is told `rate_limited`, at most once a second. A device is told it in
    /// `welcome.inspectRate`, so its SDK paces itself below it. On top of `--rate-limit`, which
    /// counts every frame.
    #[arg(long, env = "TETHER_INSPECT_RATE", default_value_t = limits::DEFAULT_INSPECT_RATE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub inspect_rate: u32,

    /// Frames queued toward one connection before it counts as a slow consumer and is closed.
    #[arg(long, env = "TETHER_QUEUE_FRAMES", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_frames: u32,

    /// Bytes queued toward one connection before it counts as a slow consumer and is closed.
    #[arg(long, env = "TETHER_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub queue_bytes: usize,

    /// Frames kept for an away member until it resumes; beyond this the sender gets `buffer_full`.
    #[arg(long, env = "TETHER_RESUME_BUFFER", default_value_t = 256)]
    pub resume_buffer: usize,

    /// Bytes the whole relay may hold for members: frames in outbound queues and in away
    /// members' resume buffers, and request bodies awaiting replies (0: no cap). Past it a
    /// request or reply is refused to its sender (`buffer_full`); the relay's own small frames
    /// (welcome, member lists, errors) always go.
    #[arg(long, env = "TETHER_MAX_BUFFERED_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_buffered_bytes: usize,

    /// Bytes one room may hold in its away members' resume buffers, together; past it frames
    /// to its away members are refused to their senders (`buffer_full`).
    #[arg(long, env = "TETHER_MAX_ROOM_BUFFERED_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_room_buffered_bytes: usize,

    /// Members one room may hold.
    #[arg(long, env = "TETHER_MAX_ROOM_MEMBERS", default_value_t = 64)]
    pub max_room_members: usize,

    /// Rooms one IP address may create per minute (0: no cap); joining a room that exists costs
    /// nothing. Beyond it the join is refused `rate_limited`.
    #[arg(long, env = "TETHER_MAX_NEW_ROOMS_PER_IP", default_value_t = 60)]
    pub max_new_rooms_per_ip: u32,

    /// Requests one room may have awaiting replies; beyond this a request gets `rate_limited`.
    #[arg(long, env = "TETHER_MAX_PENDING", default_value_t = 4096)]
    pub max_pending: usize,

    /// Bytes of request bodies one room may hold while awaiting replies; beyond this a request
    /// gets `rate_limited`.
    #[arg(long, env = "TETHER_MAX_PENDING_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_pending_bytes: usize,

    /// The legacy XML-RPC server (`http://host:port/path`); enables `/cs/*`.
    #[arg(long, env = "TETHER_CS_UPSTREAM")]
    pub cs_upstream: Option<String>,

    /// Most CS sessions (upstream connections) at once, logins under way included: never
    /// exceeded, even by concurrent logins. Beyond it a login gets 503 `rate_limited`.
    #[arg(long, env = "TETHER_CS_MAX_SESSIONS", default_value_t = 1000)]
    pub cs_max_sessions: usize,

    /// The one method `/cs/login` sends to the legacy server (its login call); a login body
    /// naming another is refused 400 and never reaches it. Other methods go to `/cs/call`.
    #[arg(long, env = "TETHER_CS_LOGIN_METHOD", default_value = "login")]
    pub cs_login_method: String,

    /// Logins one IP address may attempt per minute, failed ones included (0: no cap); beyond
    /// it `/cs/login` answers 429 `rate_limited` with `Retry-After`. Behind a proxy, set
    /// `--real-ip-header` so that each client counts on its own.
    #[arg(long, env = "TETHER_CS_LOGINS_PER_IP", default_value_t = 30)]
    pub cs_logins_per_ip: u32,

    /// A CS session older than this is closed however busy it is, ms (its next call gets 410
    /// `session_lost`: log in again).
    #[arg(long, env = "TETHER_CS_MAX_AGE_MS", default_value_t = 12 * 3_600_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cs_max_age_ms: u64,

    /// A CS session unused this long is closed, ms.
    #[arg(long, env = "TETHER_CS_IDLE_MS", default_value_t = 30 * 60_000)]
    pub cs_idle_ms: u64,

    /// Calls queued per CS session; beyond this a call gets 503.
    #[arg(long, env = "TETHER_CS_QUEUE", default_value_t = 16)]
    pub cs_queue: usize,

    /// How long one CS call may take, ms; past it the session is closed.
    #[arg(long, env = "TETHER_CS_TIMEOUT_MS", default_value_t = 30_000)]
    pub cs_timeout_ms: u64,

    /// Largest `/cs/*` request body and upstream answer, bytes.
    #[arg(long, env = "TETHER_CS_MAX_BODY", default_value_t = 1024 * 1024)]
    pub cs_max_body: usize,

    /// The legacy alarm service (`HOST:PORT`): the relay subscribes to it over UDP.
    #[arg(long, env = "TETHER_ALARM_UDP")]
    pub alarm_udp: Option<String>,

    /// Also accept alarms pushed to this UDP address.
    #[arg(long, env = "TETHER_ALARM_LISTEN")]
    pub alarm_listen: Option<SocketAddr>,

    /// The senders whose datagrams `--alarm-listen` takes (comma-separated IP addresses).
    /// Default: the `--alarm-udp` service's host, or this machine (loopback) without one.
    /// Others are dropped and counted (`tether_alarms_refused_total`).
    #[arg(long, env = "TETHER_ALARM_FROM", value_delimiter = ',')]
    pub alarm_from: Vec<std::net::IpAddr>,

    /// How often the subscription to `--alarm-udp` is renewed, ms.
    #[arg(long, env = "TETHER_ALARM_RENEW_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub alarm_renew_ms: u64,

    /// The datagram sent to subscribe (and renew).
    #[arg(long, env = "TETHER_ALARM_SUBSCRIBE", default_value = "SUBSCRIBE")]
    pub alarm_subscribe: String,

    /// Alarms kept for `/alarms?since=SEQ`.
    #[arg(long, env = "TETHER_ALARM_HISTORY", default_value_t = 4096)]
    pub alarm_history: usize,

    /// Bytes of alarm frames kept (the replay ring, which live subscribers read too), as
    /// stored; the oldest go first. A datagram of 64 KB can be a frame of ~390 KB (each control
    /// byte is JSON-escaped as six), so the default holds at least 40 of the largest.
    #[arg(long, env = "TETHER_ALARM_BUFFER_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub alarm_buffer_bytes: usize,

    /// Alarms a subscriber may fall behind before it gets `alarmGap`.
    #[arg(long, env = "TETHER_ALARM_QUEUE", default_value_t = 1024)]
    pub alarm_queue: usize,

    /// A token that opens `/alarms` (`Authorization: Bearer TOKEN` or `?token=TOKEN`), for
    /// readers without a CS session: dashboards, scripts. Without it (and without
    /// `--alarms-public`) `/alarms` needs a CS session.
    #[arg(long, env = "TETHER_ALARM_TOKEN", hide_env_values = true)]
    pub alarm_token: Option<String>,

    /// Opens `/alarms` to anyone who can reach the relay, on purpose (the relay warns at start).
    #[arg(long, env = "TETHER_ALARMS_PUBLIC")]
    pub alarms_public: bool,

    /// Cluster mode: relays share rooms through this Redis (`redis://HOST:PORT`).
    #[arg(long, env = "TETHER_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// This node's name in cluster mode (default: hostname:port).
    #[arg(long, env = "TETHER_NODE_ID")]
    pub node_id: Option<String>,

    /// Origins (comma-separated, e.g. `https://tether.example.com`) allowed besides the relay's
    /// own. Unset: `/ws` and `/alarms` take any origin, while `/cs/*` (and `/alarms` opened with
    /// the CS cookie) take only the relay's own, the `Origin` matching the `Host` the request
    /// came to. Set: every one of them takes the relay's own and these. A request without an
    /// `Origin` header (not a browser) is not affected.
    #[arg(long, env = "TETHER_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,

    /// WebSocket connections (`/ws` and `/alarms`) and HTTP API requests under way at once from
    /// one IP address (0: no cap). Behind a proxy every connection comes from the proxy: raise
    /// it or set 0 there.
    #[arg(long, env = "TETHER_MAX_CONNS_PER_IP", default_value_t = 256)]
    pub max_conns_per_ip: usize,

    /// TCP connections open at once on `--listen`, the whole relay: HTTP requests and the
    /// WebSockets they upgrade to. At the cap, a few more are taken for one request each:
    /// `/healthz` and `/metrics` are answered, anything else gets 503 `at_capacity`; past
    /// those a connection is closed at once (`tether_conns_refused_total`). Default: the
    /// open-file limit (raised to its hard limit at start) less 128 for the relay's other
    /// files, and less `--cs-max-sessions` with `--cs-upstream` (their upstream connections).
    #[arg(long, env = "TETHER_MAX_CONNS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_conns: Option<u64>,

    /// TCP connections one peer address (an IPv6 host by its /64) may hold open on `--listen`,
    /// HTTP and WebSockets together (0: no cap); past it a new one is closed at once
    /// (`tether_conns_refused_per_ip_total`). It counts the socket's own address, so behind a
    /// proxy it would count the proxy: without the flag it is then off (with
    /// `--real-ip-header`). Default: twice `--max-conns-per-ip` (off when that is 0).
    #[arg(long, env = "TETHER_MAX_TCP_PER_IP")]
    pub max_tcp_per_ip: Option<usize>,

    /// An HTTP request's head (request line and headers) must arrive within this, ms: counted
    /// from the accept for a connection's first request, from the head's first byte for later
    /// ones. A slower client is closed (`tether_http_timeouts_total{reason="head"}`). A request
    /// body must come within it too, plus a second per KiB: a slower one is cut off (400, the
    /// connection closed, `{reason="body"}`).
    #[arg(long, env = "TETHER_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// A keep-alive connection with no request under way is closed after this, ms
    /// (`tether_http_timeouts_total{reason="idle"}`). WebSockets are not affected.
    #[arg(long, env = "TETHER_IDLE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// Behind a proxy: the request header that carries the client's address (`X-Real-IP`, or
    /// `X-Forwarded-For`, whose last entry is taken: the one the nearest proxy wrote). Used for
    /// the per-address caps and the wrong-secret throttle. Unset: the socket's peer address.
    /// Set it only when every request comes through that proxy: a client reaching the relay
    /// directly could name any address.
    #[arg(long, env = "TETHER_REAL_IP_HEADER")]
    pub real_ip_header: Option<String>,
    /// The globals the device page takes as the app's native bridge, in order (comma-separated
    /// JS identifiers, e.g. `TencentNews,NewsApp`): the page uses the first one that exists.
    /// The page's configuration, injected into `/d/{room}`; a link cannot name another.
    #[arg(long, env = "TETHER_BRIDGE_NAMES", value_delimiter = ',', default_value = "TencentNews",
          value_parser = bridge_name)]
    pub bridge_names: Vec<String>,

    /// Log filter (tracing's `EnvFilter` syntax); `RUST_LOG` wins when set.
    #[arg(long, env = "TETHER_LOG", default_value = "info")]
    pub log: String,
}

impl Config {
    /// The defaults, as if run with no flags and no environment (for tests and embedding).
    pub fn defaults() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            tls_cert: None,
            tls_key: None,
            www: None,
            sdk: None,
            db: "sqlite://tether.db".into(),
            history_max_bytes: 1 << 30,
            history_max_age: Duration::from_secs(7 * 24 * 3600),
            history_max_record: 256 * 1024,
            heartbeat_ms: limits::DEFAULT_HEARTBEAT_MS,
            max_frame: limits::DEFAULT_MAX_FRAME,
            grace_ms: limits::DEFAULT_GRACE_MS,
            rate_limit: 200,
            rate_burst: 400,
            inspect_rate: limits::DEFAULT_INSPECT_RATE,
            queue_frames: 512,
            queue_bytes: 8 * 1024 * 1024,
            resume_buffer: 256,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_room_buffered_bytes: 16 * 1024 * 1024,
            max_room_members: 64,
            max_new_rooms_per_ip: 60,
            max_pending: 4096,
            max_pending_bytes: 64 * 1024 * 1024,
            cs_upstream: None,
            cs_max_sessions: 1000,
            cs_login_method: "login".into(),
            cs_logins_per_ip: 30,
            cs_max_age_ms: 12 * 3_600_000,
            cs_idle_ms: 30 * 60_000,
            cs_queue: 16,
            cs_timeout_ms: 30_000,
            cs_max_body: 1024 * 1024,
            alarm_udp: None,
            alarm_listen: None,
            alarm_from: Vec::new(),
            alarm_renew_ms: 5_000,
            alarm_subscribe: "SUBSCRIBE".into(),
            alarm_history: 4096,
            alarm_buffer_bytes: 16 * 1024 * 1024,
            alarm_queue: 1024,
            alarm_token: None,
            alarms_public: false,
            redis: None,
            node_id: None,
            allow_origin: Vec::new(),
            max_conns_per_ip: 256,
            max_conns: None,
            max_tcp_per_ip: None,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            real_ip_header: None,
            bridge_names: vec!["TencentNews".into()],
            log: "info".into(),
        }
    }

    /// The ping interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The history store's budget.
    pub fn history_budget(&self) -> crate::history::Budget {
        crate::history::Budget {
            max_bytes: self.history_max_bytes,
            max_age_ms: self.history_max_age.as_millis().min(u128::from(u64::MAX)) as u64,
            max_record: self.history_max_record,
        }
    }

    /// The away grace window.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// The CS gateway's settings, when `--cs-upstream` is given.
    pub fn cs(&self) -> Result<Option<crate::cs::CsConfig>, String> {
        let Some(url) = &self.cs_upstream else { return Ok(None) };
        if self.cs_login_method.trim().is_empty() {
            return Err("--cs-login-method must name the legacy server's login method".into());
        }
        Ok(Some(crate::cs::CsConfig {
            upstream: crate::cs::session::Upstream::parse(url)?,
            max_sessions: self.cs_max_sessions.max(1),
            idle: Duration::from_millis(self.cs_idle_ms),
            max_age: Duration::from_millis(self.cs_max_age_ms),
            login_method: self.cs_login_method.trim().to_owned(),
            logins_per_ip: self.cs_logins_per_ip,
            limits: crate::cs::session::Limits {
                queue: self.cs_queue.max(1),
                timeout: Duration::from_millis(self.cs_timeout_ms.max(1)),
                max_answer: self.cs_max_body.max(1024),
                connect_timeout: Duration::from_secs(5),
            },
            max_body: self.cs_max_body.max(1024),
        }))
    }

    /// The folder `/sdk/` is served from: `--sdk`, else `sdk-wasm/pkg` here, else the one
    /// beside this crate's sources.
    pub fn sdk_dir(&self) -> PathBuf {
        self.sdk.clone().unwrap_or_else(|| built_dir("sdk-wasm/pkg"))
    }

    /// The folder the pages are served from: `--www`, else `www/dist` here, else the one
    /// beside this crate's sources (so `cargo run` works from anywhere in the checkout).
    pub fn www_dir(&self) -> PathBuf {
        self.www.clone().unwrap_or_else(|| built_dir("www/dist"))
    }
}

/// One `--bridge-names` entry: a plain JS identifier, never `window`, `eval` or the like (the
/// device page looks it up as a global and runs the PC's calls on it).
fn bridge_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if tether_protocol::names::plain_name(name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a bridge global's name: a JS identifier (letters, digits, _ and $, \
             not starting with a digit), not one of JavaScript's own (window, eval, constructor, …)"
        ))
    }
}

/// A duration flag: a whole number and a unit (`ms`, `s`, `m`, `h`, `d`), or `0`. A bare
/// number is refused: seconds or milliseconds would be a guess.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let refuse = || {
        format!(
            "{text:?} is not a duration: a whole number and a unit, e.g. 7d, 12h, 30m, 90s, 500ms (or 0 for none)"
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(refuse)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| refuse())?;
    let ms_per: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(refuse()),
    };
    // At most about a century: beyond it is a typo, and it keeps the arithmetic in range.
    const MAX_MS: u64 = 100 * 365 * 86_400_000;
    match n.checked_mul(ms_per) {
        Some(ms) if ms <= MAX_MS => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{text:?} is too long a duration: at most 36500d")),
    }
}

/// `--history-max-bytes`: 0, or at least 1 MiB (less could not hold a few pairs and the
/// store's own tables).
fn history_max_bytes(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n == 0 || n >= 1 << 20 => Ok(n),
        Ok(_) => Err("must be 0 (no cap) or at least 1048576 (1 MiB)".into()),
        Err(_) => Err(format!("{text:?} is not a number of bytes")),
    }
}

/// `--history-max-record`: 0, or at least 1024 (less could not keep the start of a body).
fn history_max_record(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n == 0 || n >= 1024 => Ok(n),
        Ok(_) => Err("must be 0 (never cut) or at least 1024".into()),
        Err(_) => Err(format!("{text:?} is not a number of bytes")),
    }
}

/// `rel` under the working directory if it exists there, else beside this crate's sources
/// (so `cargo run` works from anywhere in the checkout).
fn built_dir(rel: &str) -> PathBuf {
    let here = PathBuf::from(rel);
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_parsed_defaults() {
        // Guards against `defaults()` drifting from the clap attributes.
        let parsed = Config::try_parse_from(["tether-relay"]).unwrap();
        let d = Config::defaults();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
    }

    #[test]
    fn flags_parse() {
        let c = Config::try_parse_from([
            "tether-relay",
            "--listen",
            "0.0.0.0:9000",
            "--heartbeat-ms",
            "500",
            "--max-frame",
            "4096",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.heartbeat(), Duration::from_millis(500));
        assert_eq!(c.max_frame, 4096);
        assert!(Config::try_parse_from(["tether-relay", "--heartbeat-ms", "0"]).is_err());
        let c = Config::try_parse_from(["tether-relay", "--inspect-rate", "65536"]).unwrap();
        assert_eq!((c.inspect_rate, Config::defaults().inspect_rate), (65_536, 524_288));
        assert!(Config::try_parse_from(["tether-relay", "--inspect-rate", "0"]).is_err());
        // --tls-cert and --tls-key: both or neither.
        assert!(Config::try_parse_from(["tether-relay", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["tether-relay", "--tls-key", "k.pem"]).is_err());
        let c =
            Config::try_parse_from(["tether-relay", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!((c.tls_cert.unwrap(), c.tls_key.unwrap()), ("c.pem".into(), "k.pem".into()));
        let c = Config::try_parse_from(["tether-relay", "--alarm-token", "t0k", "--alarms-public"]).unwrap();
        assert_eq!((c.alarm_token.as_deref(), c.alarms_public), (Some("t0k"), true));
    }

    #[test]
    fn durations_take_a_unit_and_refuse_guesses() {
        for (text, ms) in [
            ("7d", 604_800_000),
            ("12h", 43_200_000),
            ("30m", 1_800_000),
            ("90s", 90_000),
            ("500ms", 500),
            ("0", 0),
        ] {
            assert_eq!(duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for bad in
            ["", "7", "600", "d", "7 d", "-1s", "1.5h", "7w", "7D", "1s2", "99999999999999999999s", "36501d"]
        {
            let e = duration(bad).unwrap_err();
            assert!(e.contains("duration"), "{bad}: {e}");
        }
        let c = Config::try_parse_from(["tether-relay", "--history-max-age", "2s"]).unwrap();
        assert_eq!(c.history_budget().max_age_ms, 2000);
        assert!(Config::try_parse_from(["tether-relay", "--history-max-age", "2"]).is_err());
    }

    #[test]
    fn history_caps_refuse_values_too_small_to_work() {
        let c = Config::try_parse_from([
            "tether-relay",
            "--history-max-bytes",
            "0",
            "--history-max-record",
            "0",
            "--history-max-age",
            "0",
        ])
        .unwrap();
        assert_eq!(c.history_budget(), crate::history::Budget::UNLIMITED);
        for (flag, bad) in
            [("--history-max-bytes", "1000"), ("--history-max-record", "100"), ("--history-max-bytes", "1G")]
        {
            assert!(Config::try_parse_from(["tether-relay", flag, bad]).is_err(), "{flag} {bad}");
        }
        let d = Config::defaults().history_budget();
        assert_eq!((d.max_bytes, d.max_age_ms, d.max_record), (1 << 30, 7 * 86_400_000, 262_144));
    }

    #[test]
    fn secrets_are_hidden_in_help() {
        let cmd = <Config as clap::CommandFactory>::command();
        for id in ["alarm_token", "redis", "db"] {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).expect("the flag");
            assert!(arg.is_hide_env_values_set(), "--help shows the value of {id}'s env var");
        }
    }

    #[test]
    fn bridge_names_are_plain_identifiers() {
        let c =
            Config::try_parse_from(["tether-relay", "--bridge-names", "TencentNews, NewsApp,$app"]).unwrap();
        assert_eq!(c.bridge_names, ["TencentNews", "NewsApp", "$app"]);
        for bad in ["window", "eval", "a.b", "TencentNews,constructor", "x\"><script>", "", "1app"] {
            let e = Config::try_parse_from(["tether-relay", "--bridge-names", bad]).unwrap_err().to_string();
            assert!(e.contains("is not a bridge global's name"), "{bad}: {e}");
        }
    }
}
