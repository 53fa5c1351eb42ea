//! The HTTP surface: the router ([`app`]), what every handler shares ([`AppState`]), the one
//! error body ([`AppError`]), and the routes that fit in a few lines: `/ws`'s upgrade,
//! `/healthz`, `/metrics`.
//!
//! # Layout
//! - [`guard`]: per-address caps, the wrong-secret throttle's answer, the `Origin` rules.
//! - [`pages`]: the PC and device pages, and the security headers on every response.
//! - [`alarms`]: who may open `/alarms`.
//! - [`cs`]: the CS gateway's edge (media types, cookies, statuses).
//! - [`api`]: the HTTP API under `/api/rooms/{room}/`: devices, post, call (a room driven
//!   from a program, as a PC member), and its origin rules.
//! - [`history`]: `/api/rooms/{room}/history`, JSON or HAR ([`har`]).
//! - [`serve`]: the accept loop: `--max-conns`, the header and idle timeouts.

mod alarms;
pub mod api;
mod cs;
mod guard;
pub mod har;
mod history;
mod pages;
mod sdk;
pub mod serve;

use alarms::alarms_upgrade;
pub use guard::{IpSlot, PerIp};
use guard::{check_origin, origin_allowed, too_many_wrong_secrets};
pub use pages::{bridges_meta, content_security_policy};
use pages::{device_page, pc_page, security_headers};
pub use sdk::SdkFiles;

use crate::room::Hub;
use crate::ws::{self, JoinQuery};
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::FutureExt as _;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::limits;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::services::ServeDir;

/// What every handler shares: one allocation behind an `Arc`, so the clone axum makes for each
/// extractor and middleware of each request is one atomic increment (it was a clone of every
/// field: a dozen increments and a `PathBuf` allocated and freed, ~4% of the relay's CPU per
/// CS call in a profile).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct Shared {
    /// What each room socket's task needs, shared by all of them.
    pub rooms: Arc<ws::Context>,
    /// The rooms.
    pub hub: Arc<Hub>,
    /// The history store.
    pub store: crate::history::Store,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the relay shuts down; every socket task watches it.
    pub shutdown: CancellationToken,
    /// Tracks socket tasks so shutdown can wait for their goodbyes.
    pub tasks: TaskTracker,
    /// Where the pages are.
    pub www: PathBuf,
    /// The npm package `tether-sdk`, served at `/sdk/` from memory ([`sdk`]).
    pub sdk: Arc<SdkFiles>,
    /// The legacy CS gateway, when `--cs-upstream` is given.
    pub cs: Option<Arc<crate::cs::Gateway>>,
    /// Alarms, when `--alarm-udp` or `--alarm-listen` is given.
    pub alarms: Option<Arc<crate::alarm::Alarms>>,
    /// The ping interval (for `/alarms` too).
    pub heartbeat: std::time::Duration,
    /// Cluster mode's Redis side.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `--allow-origin`: origins allowed besides the relay's own ([`check_origin`]).
    pub allow_origin: Arc<[String]>,
    /// Who may read `/alarms` besides a CS session's holder.
    pub alarm_access: crate::alarm::Access,
    /// WebSocket connections open per IP address.
    pub per_ip: Arc<PerIp>,
    /// Wrong secrets per address (room joins and the history API).
    pub strikes: Arc<crate::strikes::Strikes>,
    /// `--real-ip-header`: where a trusted proxy puts the client's address.
    pub real_ip_header: Option<axum::http::HeaderName>,
    /// `--bridge-names`, as the `<meta name="tether-bridges">` tag put into the device page.
    pub bridges_meta: Arc<str>,
    /// HTTP API requests per address (`--rate-limit`, `--rate-burst`).
    pub api_rate: Arc<crate::ratelimit::PerAddress>,
    /// Whether `--listen` serves TLS (`--tls-cert`): its own origin is then `https://host`.
    pub tls: bool,
}

impl Shared {
    /// The client's address: from `--real-ip-header` when set and readable, else the peer's.
    fn client_ip(&self, peer: std::net::SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
        self.real_ip_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok())
            .unwrap_or(peer.ip())
    }
}

/// The router, apart from `main` so tests can serve it on port 0.
pub fn app(state: AppState) -> Router {
    let assets = ServeDir::new(&state.www);
    let cs_body_limit = state.cs.as_ref().map_or(64 * 1024, |g| g.max_body());
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/alarms", get(alarms_upgrade))
        .route("/cs/login", post(cs::login))
        .route("/cs/call", post(cs::call))
        .route("/cs/logout", post(cs::logout))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), check_origin))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(cs_body_limit))
        .merge(api::routes(&state))
        .route("/d/{room}", get(device_page))
        .route("/", get(pc_page))
        .route("/sdk/{*path}", get(sdk::file))
        .fallback_service(assets)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// An error at the HTTP edge: a status and `{"error": {"code", "message"}}`, plus any headers
/// that go with it (`Retry-After`). The one error body of every route; the CS gateway's errors
/// become one through `From<CsError>` (in [`cs`]).
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Few and rare (a `Vec`, not a `HeaderMap`, keeps every `Result<_, AppError>` small).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError { status, code, message: message.into(), headers: Vec::new() }
    }

    /// Sends `name: value` with the error.
    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().extend(self.headers);
        resp
    }
}

/// `Authorization: Bearer <token>`, if any (trimmed, never empty).
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme's name is case-insensitive (RFC 9110): `bearer x` is as good.
        .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).map(|_| &v[7..]))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl From<crate::history::StoreError> for AppError {
    fn from(e: crate::history::StoreError) -> Self {
        tracing::error!(error = %e, "history read failed");
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "internal", "the history store is unavailable")
    }
}

/// Per-socket buffers. tungstenite's defaults (128 KiB each) are allocated, and the read one
/// zero-filled, for every socket: 1000 idle sockets held 128 MB. The read buffer is what every
/// idle socket keeps (1 KiB rather than 4 KiB: 3 KiB less per idle phone, measured with the
/// bench's idle scenario); a larger frame grows it for as long as it needs, and is read in
/// chunks of this size (a 1 MiB frame: about 1,000 reads, ~2 ms here). Writes go out once
/// 16 KiB is queued or on flush.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 16 * 1024;

async fn ws_upgrade(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<JoinQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ip = s.client_ip(peer, &headers);
    let strike = crate::strikes::Strike::new(s.strikes.clone(), ip);
    if let Err(wait) = strike.check() {
        s.metrics.error(tether_protocol::ErrorCode::RateLimited);
        return too_many_wrong_secrets(wait);
    }
    let slot = match s.per_ip.take(ip) {
        Ok(slot) => slot,
        // A member coming back gives back the slot its away self holds as it resumes: at the
        // cap, it may still come back (its address stays at the cap, not over it).
        Err(_) if q.resumes_away(&s.hub) => s.per_ip.take_over(ip),
        Err(e) => {
            s.metrics.error(tether_protocol::ErrorCode::RateLimited);
            return e.into_response();
        }
    };
    let max = s.hub.limits().max_frame;
    // Frames up to OVERSIZE_TOLERANCE × --max-frame are read and answered `too_large`
    // (the socket stays open); beyond that tungstenite stops reading and the socket closes.
    let hard = max.saturating_mul(limits::OVERSIZE_TOLERANCE).max(64 * 1024);
    let (cx, tasks) = (s.rooms.clone(), s.tasks.clone());
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            // No `async` block around it: one would hold the serving future twice (as what it
            // captured and as what it awaits), and this future lives as long as the socket.
            let slot = slot.map(|s| Box::new(s) as crate::room::Holding);
            tasks.track_future(ws::serve(socket, cx, q, strike, slot))
        })
}

async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "rooms": s.hub.room_count(),
        "connections": s.metrics.connections.load(Relaxed),
        // Which optional parts this relay runs, so pages can show what works.
        "alarms": s.alarms.is_some(),
        // What is known of the --alarm-udp service: unknown, up or unreachable.
        "alarmSource": s.alarms.as_ref().map(|a| a.source().as_str()),
        "cs": s.cs.is_some(),
        // The SDK package's build id (`/sdk/@BUILD/…`); empty when none is served.
        "sdk": s.sdk.build(),
        // Whether this relay serves https:// itself (--tls-cert).
        "tls": s.tls,
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_whatever_the_schemes_case() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer(&h)
        };
        for v in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            assert_eq!(with(v).as_deref(), Some("s3cret"), "{v}");
        }
        for v in ["Basic s3cret", "Bearer", "Bearer   ", "Bearers3cret", "Bé"] {
            assert_eq!(with(v), None, "{v}");
        }
    }
}
