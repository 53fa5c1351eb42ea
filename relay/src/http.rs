//! The HTTP surface: routes, the pages, `/healthz`, `/metrics`, the history API, and the one
//! error type ([`AppError`]) every handler returns. The CS gateway's edge is [`cs`]. Every response carries the browser-facing
//! security headers ([`security_headers`], the policy per path from [`content_security_policy`]).

mod cs;

use crate::room::Hub;
use crate::token::{secret_digest, tag};
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

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
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
    /// Where the npm package `tether-sdk` is.
    pub sdk: PathBuf,
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
}

impl AppState {
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

/// An address that gave too many wrong secrets lately: `429 rate_limited` with `Retry-After`.
fn too_many_wrong_secrets(wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many wrong secrets from this address: try again in {secs} s"),
    )
    .with_header(header::RETRY_AFTER, secs.into())
    .into_response()
}

/// Counts open WebSocket connections per IP address, up to `--max-conns-per-ip`.
pub struct PerIp {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped (with its socket task).
pub struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: std::net::IpAddr,
}

impl PerIp {
    /// A counter allowing `max` connections per address (0: any number).
    pub fn new(max: usize) -> PerIp {
        PerIp { max, open: std::sync::Mutex::default() }
    }

    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<Option<IpSlot>, AppError> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut open = crate::util::lock(&self.open);
        let n = open.entry(ip).or_default();
        if *n >= self.max {
            return Err(AppError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("{} connections are already open from this address (--max-conns-per-ip)", self.max),
            ));
        }
        *n += 1;
        Ok(Some(IpSlot { per_ip: self.clone(), ip }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = crate::util::lock(&self.per_ip.open);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Which browser pages may use `/ws`, `/alarms` and `/cs/*`: a request from another origin
/// is refused 403 `forbidden` ([`origin_allowed`]). `/cs/*` is cookie-authenticated, so it is
/// held to the relay's own origin even when `--allow-origin` is unset; `/ws` is authenticated
/// by its room secret, never a cookie, so the app's H5 pages on their own origins keep joining
/// rooms (and `/alarms` is held to its own origin only when the cookie is what opens it).
async fn check_origin(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let cookie_route = req.uri().path().starts_with("/cs/");
    if let Err(e) = origin_allowed(&s, req.headers(), req.uri(), cookie_route) {
        return e.into_response();
    }
    next.run(req).await
}

/// Whether the request's `Origin`, if any, may use a route: the relay's own origin always, the
/// `--allow-origin` ones always, any other only on a route that no cookie authenticates
/// (`cookie_route` false) while `--allow-origin` is unset. No `Origin` (not a browser, or a
/// same-origin GET): allowed, since no page of another site can make a browser leave it out of
/// a POST or a WebSocket handshake.
fn origin_allowed(s: &AppState, headers: &HeaderMap, uri: &Uri, cookie_route: bool) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let text = origin.to_str().unwrap_or("").trim_end_matches('/');
    if (!cookie_route && s.allow_origin.is_empty())
        || is_own_origin(headers, uri, text)
        || s.allow_origin.iter().any(|a| a.eq_ignore_ascii_case(text))
    {
        return Ok(());
    }
    s.metrics.refused_origin.fetch_add(1, Relaxed);
    let message = if s.allow_origin.is_empty() {
        format!(
            "origin {text:?} is not this relay's own: only the relay's own pages may use this (--allow-origin adds others)"
        )
    } else {
        format!("origin {text:?} may not use this relay (--allow-origin)")
    };
    Err(AppError::new(StatusCode::FORBIDDEN, "forbidden", message))
}

/// Whether `origin` is the relay's own as this request reached it: `http` or `https` (the
/// relay cannot tell which a proxy in front of it serves), and the host and port of the `Host`
/// header (or, in HTTP/2, the URI's authority), default ports aside.
///
/// `X-Forwarded-Host` is not read: a proxy in front is expected to pass `Host` on (the one in
/// docs/deploy.md does), and one header fewer to trust is one fewer to get wrong.
fn is_own_origin(headers: &HeaderMap, uri: &Uri, origin: &str) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let (Some(host), Some((scheme, authority))) = (host, origin.split_once("://")) else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let bare = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_ascii_lowercase();
    !authority.is_empty() && !authority.contains(['/', '@']) && bare(authority) == bare(host)
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
        .route("/api/rooms/{room}/history", get(history))
        .layer(DefaultBodyLimit::max(cs_body_limit))
        .route("/d/{room}", get(device_page))
        .route("/", get(pc_page))
        .nest_service("/sdk", ServeDir::new(&state.sdk))
        .fallback_service(assets)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// The device page's Content-Security-Policy. Its simulated bridge `fetch`es the URLs a PC
/// sends (other origins only, credentials omitted), hence the wide `connect-src`.
const DEVICE_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self' http: https: ws: wss:; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'self'";

/// Every other page's (and asset's): scripts and styles from the relay only, no `eval` (the
/// wasm needs `'wasm-unsafe-eval'` to compile), and connections to the relay only (CSP3's
/// `'self'` covers the relay's own `ws:`/`wss:`).
const PAGE_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'self'";

/// The Content-Security-Policy for a response to `path`: the device page's, or the pages'.
pub fn content_security_policy(path: &str) -> &'static str {
    if path.starts_with("/d/") { DEVICE_CSP } else { PAGE_CSP }
}

/// Adds to every response: the Content-Security-Policy of its path, `nosniff`, no `Referer`
/// (a device link carries its room's key), and no framing by other origins.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::HeaderValue;
    let csp = content_security_policy(req.uri().path());
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    resp
}

/// `--bridge-names` as the tag the device page reads them from (HTML-escaped, although the
/// names are identifiers already).
pub fn bridges_meta(names: &[String]) -> String {
    let mut content = String::new();
    for c in names.join(",").chars() {
        match c {
            '&' => content.push_str("&amp;"),
            '<' => content.push_str("&lt;"),
            '>' => content.push_str("&gt;"),
            '"' => content.push_str("&quot;"),
            '\'' => content.push_str("&#39;"),
            c => content.push(c),
        }
    }
    format!("<meta name=\"tether-bridges\" content=\"{content}\">")
}

/// The device page with the relay's bridge names in its `<head>` (ahead of any tag of the
/// same name the file may carry, so the page reads the relay's).
fn with_bridges(html: &str, meta: &str) -> String {
    match html.find("<head>") {
        Some(i) => [&html[..i + 6], "\n  ", meta, &html[i + 6..]].concat(),
        None => [meta, "\n", html].concat(),
    }
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
        .and_then(|v| v.strip_prefix("Bearer "))
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
        Err(e) => {
            s.metrics.error(tether_protocol::ErrorCode::RateLimited);
            return e.into_response();
        }
    };
    let max = s.hub.limits().max_frame;
    // Frames up to OVERSIZE_TOLERANCE × --max-frame are read and answered `too_large`
    // (the socket stays open); beyond that tungstenite stops reading and the socket closes.
    let hard = max.saturating_mul(limits::OVERSIZE_TOLERANCE).max(64 * 1024);
    let AppState { hub, store, metrics, shutdown, tasks, cluster, .. } = s;
    let cx = ws::Context { hub, metrics, store, cluster, shutdown };
    upgrade
        .max_message_size(hard)
        .max_frame_size(hard)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            // No `async` block around it: one would hold the serving future twice (as what it
            // captured and as what it awaits), and this future lives as long as the socket.
            tasks.track_future(ws::serve(socket, cx, q, strike).map(move |()| drop(slot)))
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
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    secret: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// Most rows one page returns.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

async fn history(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(room): Path<String>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let strike = crate::strikes::Strike::new(s.strikes.clone(), s.client_ip(peer, &headers));
    if let Err(wait) = strike.check() {
        return Ok(too_many_wrong_secrets(wait));
    }
    let Some(secret) = q.secret.or_else(|| bearer(&headers)).filter(|s| !s.is_empty()) else {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "history needs the room's secret (?secret=)",
        ));
    };
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(l) => l.parse::<u32>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| {
            AppError::new(StatusCode::BAD_REQUEST, "bad_request", format!("limit must be 1 to {MAX_PAGE}"))
        })?,
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| {
            AppError::new(StatusCode::BAD_REQUEST, "bad_request", "before must be the id of a history row")
        })?),
    };
    if crate::token::is_device_key(&secret) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a device key (the QR link's) cannot read history: use the room's PC secret",
        ));
    }
    let digest = secret_digest(&room, &secret);
    let tag = tag(&digest);
    let allowed = match s.hub.live_secret_matches(&room, &digest) {
        Some(true) => true,
        // A room live with another secret, or an empty room: ask the store whether this
        // secret ever opened it (history outlives the room).
        _ => s.store.knows_room(&room, &tag).await?,
    };
    if !allowed {
        strike.fail();
        return Err(AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong secret for this room"));
    }
    let items = s.store.page(&room, &tag, limit, before).await?;
    let next = if items.len() as u32 == limit { items.last().map(|i| i.id) } else { None };
    let mut resp = Json(items).into_response();
    if let Some(next) = next {
        if let Ok(v) = next.to_string().parse() {
            resp.headers_mut().insert("x-next-before", v);
        }
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct AlarmsQuery {
    since: Option<String>,
    /// `--alarm-token`, for clients that cannot set a header (a browser's WebSocket).
    token: Option<String>,
}

/// Whether this request may read `/alarms`: `--alarms-public`; `--alarm-token` as a Bearer
/// token or `?token=`; or a live CS session, as a Bearer token or the cookie. The cookie is
/// the browser's, sent whatever page opens the socket, so with it the page must be the relay's
/// own (or `--allow-origin`'s): cross-site WebSocket hijacking gets 403.
///
/// In cluster mode a session held by another node counts when Redis says a live node holds it:
/// that record is made at login, renewed on use and deleted when the session ends, so it is as
/// good as the owner's own word, without a round trip to it.
async fn alarms_allowed(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    q: &AlarmsQuery,
) -> Result<(), AppError> {
    if s.alarm_access.public {
        return Ok(());
    }
    let bearer = bearer(headers);
    if [bearer.as_deref(), q.token.as_deref()].into_iter().flatten().any(|t| s.alarm_access.token_matches(t))
    {
        return Ok(());
    }
    let unauthorized = || {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "alarms need a CS session (log in at /cs/login) or the relay's --alarm-token (Bearer or ?token=)",
        )
    };
    let session = match bearer {
        Some(token) => token,
        None => {
            let token = cs::cookie_token(headers).ok_or_else(unauthorized)?;
            origin_allowed(s, headers, uri, true)?;
            token
        }
    };
    if s.cs.as_ref().is_some_and(|g| g.holds(&session)) {
        return Ok(());
    }
    if let Some(cluster) = &s.cluster {
        match cluster.cs_owner(&session).await {
            Ok(crate::cluster::CsOwner::Node(_)) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach Redis to find a CS session's relay");
                return Err(AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cluster_unavailable",
                    "cannot check this CS session with the other relays now; try again shortly",
                ));
            }
        }
    }
    Err(unauthorized())
}

async fn alarms_upgrade(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<AlarmsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(alarms) = s.alarms.clone() else {
        return AppError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this relay has no alarm source: start it with --alarm-udp or --alarm-listen",
        )
        .into_response();
    };
    // Before anything else, the upgrade included: a stranger gets a refusal and nothing more,
    // and one who keeps guessing tokens waits ever longer (as for room secrets).
    let ip = s.client_ip(peer, &headers);
    let strike = crate::strikes::Strike::new(s.strikes.clone(), ip);
    if let Err(wait) = strike.check() {
        return too_many_wrong_secrets(wait);
    }
    if let Err(e) = alarms_allowed(&s, &headers, &uri, &q).await {
        // A guess is a credential that was wrong; asking with none is not.
        let guessed = q.token.is_some()
            || headers.contains_key(header::AUTHORIZATION)
            || cs::cookie_token(&headers).is_some();
        if e.status == StatusCode::UNAUTHORIZED && guessed {
            strike.fail();
        }
        return e.into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let since = match q.since.as_deref().filter(|s| !s.is_empty()).map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return AppError::new(StatusCode::BAD_REQUEST, "bad_request", "since must be an alarm seq")
                .into_response();
        }
    };
    let slot = match s.per_ip.take(ip) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let (stop, tasks, heartbeat) = (s.shutdown.clone(), s.tasks.clone(), s.heartbeat);
    upgrade.read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER).on_upgrade(move |socket| {
        tasks.track_future(
            crate::alarm::serve(socket, alarms, since, heartbeat, stop).map(move |()| drop(slot)),
        )
    })
}

async fn pc_page(State(s): State<AppState>) -> Response {
    page(&s.www, "index.html", "PC debug page", |html| html).await
}

async fn device_page(State(s): State<AppState>, Path(_room): Path<String>) -> Response {
    page(&s.www, "device.html", "device page", |html| with_bridges(&html, &s.bridges_meta)).await
}

async fn page(
    www: &std::path::Path,
    file: &str,
    what: &str,
    fill: impl FnOnce(String) -> String,
) -> Response {
    match tokio::fs::read_to_string(www.join(file)).await {
        Ok(html) => Html(fill(html)).into_response(),
        Err(e) => {
            // Where the relay looked is for its operator's log, not for every visitor.
            tracing::warn!(path = %www.join(file).display(), error = %e, "the {what} is not built");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(format!(
                    "<!doctype html><meta charset=utf-8><title>Tether</title>\
                     <h1>Tether relay is running</h1>\
                     <p>The {what} is not built yet (<code>scripts/build-www</code>, or <code>--www</code>; \
                     the relay's log says where it looked).</p>\
                     <p>The relay's WebSocket is at <code>/ws</code>; health at <a href=/healthz>/healthz</a>.</p>"
                )),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_page_may_fetch_other_origins_and_every_page_is_locked_down() {
        let device = content_security_policy("/d/news-debug");
        assert!(device.contains("connect-src 'self' http: https: ws: wss:;"), "{device}");
        for path in
            ["/", "/index.html", "/assets/pc-1a2b.js", "/sdk/index.js", "/sdk/tether_sdk_bg.wasm", "/d"]
        {
            let csp = content_security_policy(path);
            assert!(csp.contains("connect-src 'self';"), "{path}: {csp}");
        }
        for csp in [device, content_security_policy("/")] {
            assert!(!csp.replace("'wasm-unsafe-eval'", "").contains("unsafe-eval"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
            assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
            assert!(csp.contains("object-src 'none'"), "{csp}");
        }
    }

    #[test]
    fn the_bridge_names_go_into_the_device_pages_head_escaped() {
        let meta = bridges_meta(&["TencentNews".into(), "NewsApp".into()]);
        assert_eq!(meta, r#"<meta name="tether-bridges" content="TencentNews,NewsApp">"#);
        let page = with_bridges("<!doctype html>\n<html><head>\n<title>t</title></head></html>", &meta);
        assert!(page.starts_with("<!doctype html>\n<html><head>\n  <meta name=\"tether-bridges\""), "{page}");
        assert!(page.ends_with("<title>t</title></head></html>"));
        // Never reached with --bridge-names (identifiers only), but an embedder's names cannot
        // break out of the attribute either.
        let odd = bridges_meta(&["a\"><script>x</script>".into()]);
        assert_eq!(
            odd,
            r#"<meta name="tether-bridges" content="a&quot;&gt;&lt;script&gt;x&lt;/script&gt;">"#
        );
        assert!(with_bridges("<p>no head</p>", &meta).starts_with("<meta name=\"tether-bridges\""));
    }
}
