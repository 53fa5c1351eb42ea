//! The legacy CS gateway: `POST /cs/login`, `/cs/call`, `/cs/logout`.
//!
//! The legacy server binds a user to the TCP connection that logged in (seed 000). So a login
//! opens a **new** keep-alive connection, and the session token the browser gets names that
//! connection: the client never names its own uid. Calls go over the session's connection one
//! at a time, in order, through a bounded queue. When the connection ends, so does the session:
//! the next call gets `session_lost`, never a silent retry on a new, un-logged-in connection.
//!
//! JSON bodies (`{"method", "params"}`) are turned into XML-RPC and the reply back into JSON
//! (`{"result"}` or `{"fault": {"code", "message"}}`); `text/xml` bodies pass through unchanged
//! both ways, except that a DOCTYPE or an entity declaration never reaches the legacy server,
//! and its answer is always served as `text/xml` with `nosniff` (never its own content type:
//! a `text/html` answer would be a page of the relay's origin).
//!
//! A browser attaches the session cookie to whatever request a page makes, so the routes take
//! only bodies a cross-site form or `no-cors` fetch cannot send (`application/json`,
//! `text/xml`: see [`media`]) and, in `http`, only the relay's own `Origin`.
//!
//! # Layout
//! - [`xmlrpc`]: the pure XML-RPC ⇄ JSON codec.
//! - [`session`]: one session's upstream connection and the task that owns it.
//! - this module: the sessions by token, and the HTTP handlers.

pub mod session;
pub mod xmlrpc;

use crate::metrics::Metrics;
use crate::util::lock;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use session::{Answer, CallError, Limits, Session, Submit, Upstream};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tether_protocol::ErrorCode;

/// The cookie that carries the session token. Its path is `/`, so the browser also gives it to
/// `/alarms`, which a CS session may read.
pub const COOKIE: &str = "tether_cs";
/// Tokens of ended sessions remembered, so their next call says `session_lost` rather than
/// `unauthorized`.
const LOST_REMEMBERED: usize = 4096;

/// The gateway's settings, from the flags.
#[derive(Debug, Clone)]
pub struct CsConfig {
    /// The legacy server.
    pub upstream: Upstream,
    /// Most sessions at once.
    pub max_sessions: usize,
    /// A session unused this long is closed.
    pub idle: Duration,
    /// Per-session limits.
    pub limits: Limits,
    /// Largest request body.
    pub max_body: usize,
}

/// Every CS session of this relay.
pub struct Gateway {
    cfg: CsConfig,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    lost: Mutex<VecDeque<String>>,
    metrics: Arc<Metrics>,
    me: Weak<Gateway>,
    /// Cluster mode: where this node says which sessions it holds.
    bus: std::sync::OnceLock<Arc<crate::cluster::Bus>>,
}

/// An HTTP error from the gateway: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct CsError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl CsError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        CsError { status, code, message: message.into() }
    }
}

impl IntoResponse for CsError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The body of a request, and whether it is raw XML-RPC to pass through.
enum Body {
    Json { xml: Bytes },
    Xml(Bytes),
}

/// What a `/cs/*` body is, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`.
    Json,
    /// `text/xml` (or `application/xml`): raw XML-RPC, passed through.
    Xml,
}

/// The body's media type, parameters such as `; charset=utf-8` aside; `None` for any other or
/// none. Only these are taken: a cross-site page can send `text/plain`, form encodings and
/// anything in `no-cors` mode without asking, but a JSON or XML content type only after a CORS
/// preflight, which the relay never grants.
pub fn media(headers: &HeaderMap) -> Option<Media> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Some(Media::Json)
    } else if essence.eq_ignore_ascii_case("text/xml") || essence.eq_ignore_ascii_case("application/xml") {
        Some(Media::Xml)
    } else {
        None
    }
}

fn read_body(headers: &HeaderMap, body: Bytes) -> Result<Body, CsError> {
    let bad =
        |e: xmlrpc::CodecError| CsError::new(StatusCode::BAD_REQUEST, ErrorCode::BadFrame, e.to_string());
    if media(headers) == Some(Media::Xml) {
        xmlrpc::check_passthrough(&body).map_err(bad)?;
        return Ok(Body::Xml(body));
    }
    let xml = xmlrpc::call_from_json(&body).map_err(bad)?;
    Ok(Body::Json { xml: Bytes::from(xml) })
}

/// `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The session cookie's token, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == COOKIE).then(|| v.to_owned())
        })
        .filter(|t| !t.is_empty())
}

/// The session token of a request: `Authorization: Bearer`, or the cookie.
pub fn token_of(headers: &HeaderMap) -> Option<String> {
    bearer(headers).or_else(|| cookie_token(headers))
}

/// Whether the browser reached the relay over https. The relay speaks plain HTTP, so that is a
/// proxy's word (`X-Forwarded-Proto: https`) or the page's (`Origin: https://…`). A client
/// that claims it falsely only gets a `Secure` cookie its browser will not send back over http.
pub fn is_https(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).unwrap_or_default();
    let proto = text("x-forwarded-proto").split(',').next().unwrap_or_default().trim();
    proto.eq_ignore_ascii_case("https")
        || text("origin").get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The session cookie. `HttpOnly`: no script reads it. `SameSite=Strict`: the browser sends it
/// on no request another site starts, not even a top-level link (nothing here needs one: the
/// gateway is called by its pages' own scripts). `Secure` over https, so it never travels in
/// clear. `Path=/`: `/alarms` reads it too.
fn session_cookie(value: &str, https: bool, clear: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    let age = if clear { "; Max-Age=0" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{secure}{age}")
}

/// The `Set-Cookie` that ends the session cookie (logout).
pub fn clear_cookie(headers: &HeaderMap) -> String {
    session_cookie("", is_https(headers), true)
}

/// Before the cookie's path was `/` it was `/cs`; a browser holding such a cookie would send it
/// first to `/cs/*` and shadow the new one, so a login clears it.
const OLD_COOKIE_CLEAR: &str = "tether_cs=; Path=/cs; HttpOnly; SameSite=Strict; Max-Age=0";

/// The content type a raw XML answer is served with: `text/xml`, whatever the upstream said
/// (its own type, say `text/html`, would make its bytes a page of the relay's origin), keeping a
/// plain `charset` parameter (not UTF-7) since the XML may rely on it.
pub fn xml_content_type(upstream: Option<&str>) -> HeaderValue {
    let charset = upstream
        .into_iter()
        .flat_map(|ct| ct.split(';').skip(1))
        .find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"'))
        })
        .filter(|c| {
            (1..=40).contains(&c.len())
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !c.to_ascii_lowercase().starts_with("utf-7")
        });
    match charset.and_then(|c| HeaderValue::from_str(&format!("text/xml; charset={c}")).ok()) {
        Some(v) => v,
        None => HeaderValue::from_static("text/xml"),
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
    match e {
        CallError::Lost => CsError::new(StatusCode::GONE, ErrorCode::SessionLost, e.to_string()),
        CallError::Timeout(_) => {
            CsError::new(StatusCode::GATEWAY_TIMEOUT, ErrorCode::UpstreamClosed, e.to_string())
        }
        CallError::TooLarge(_) => CsError::new(StatusCode::BAD_GATEWAY, ErrorCode::TooLarge, e.to_string()),
        CallError::Io(_) | CallError::Connect(_) => {
            CsError::new(StatusCode::BAD_GATEWAY, ErrorCode::UpstreamClosed, e.to_string())
        }
    }
}

/// The JSON answer to a JSON call: `{"result"}` or `{"fault"}`; bad XML is a 502.
fn json_answer(answer: &Answer) -> Result<(Value, bool), CsError> {
    if answer.status != 200 {
        return Err(CsError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::BadUpstream,
            format!("the CS server answered HTTP {}", answer.status),
        ));
    }
    match xmlrpc::decode_response(&answer.body) {
        Ok(xmlrpc::Response::Ok(v)) => Ok((json!({ "result": v }), false)),
        Ok(xmlrpc::Response::Fault { code, message }) => {
            Ok((json!({"fault": {"code": code, "message": message}}), true))
        }
        Err(e) => Err(CsError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::BadUpstream,
            format!("the CS server's answer is {e}"),
        )),
    }
}

/// The raw XML answer: status and bytes as the server sent them, served as `text/xml`
/// ([`xml_content_type`]) with `nosniff`.
fn xml_answer(answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = (status, answer.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, xml_content_type(answer.content_type.as_deref()));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

impl Gateway {
    /// A gateway with no sessions.
    pub fn new(cfg: CsConfig, metrics: Arc<Metrics>) -> Arc<Gateway> {
        Arc::new_cyclic(|me| Gateway {
            cfg,
            sessions: Mutex::new(HashMap::new()),
            lost: Mutex::new(VecDeque::new()),
            metrics,
            me: me.clone(),
            bus: std::sync::OnceLock::new(),
        })
    }

    /// Cluster mode: sessions held here are made known to the other nodes, which forward
    /// their calls here.
    pub fn attach_bus(&self, bus: Arc<crate::cluster::Bus>) {
        let _ = self.bus.set(bus);
    }

    /// Says (again) that this node holds `token`, for a while past the idle timeout.
    fn held(&self, token: &str) {
        if let Some(bus) = self.bus.get() {
            bus.cs_session(token, Some(self.cfg.idle + Duration::from_secs(60)));
        }
    }

    /// Whether `token` is a live session of this node.
    pub fn holds(&self, token: &str) -> bool {
        lock(&self.sessions).get(token).is_some_and(|s| s.is_alive())
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

    fn forget(&self, token: &str) {
        if lock(&self.sessions).remove(token).is_some() {
            if let Some(bus) = self.bus.get() {
                bus.cs_session(token, None);
            }
            let mut lost = lock(&self.lost);
            lost.push_back(token.to_owned());
            if lost.len() > LOST_REMEMBERED {
                lost.pop_front();
            }
        }
    }

    fn session(&self, headers: &HeaderMap) -> Result<(String, Arc<Session>), CsError> {
        let Some(token) = token_of(headers) else {
            return Err(CsError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "log in first: POST /cs/login",
            ));
        };
        let found = lock(&self.sessions).get(&token).cloned();
        match found {
            Some(s) if s.is_alive() => Ok((token, s)),
            Some(_) => {
                self.forget(&token);
                Err(lost_error())
            }
            None if lock(&self.lost).contains(&token) => Err(lost_error()),
            None => Err(CsError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "unknown session: log in again",
            )),
        }
    }

    async fn run(&self, session: &Session, xml: Bytes) -> Result<Answer, CsError> {
        let answer = match session.submit(xml, "text/xml") {
            Ok(a) => a,
            Err(Submit::Busy) => {
                return Err(CsError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::RateLimited,
                    format!(
                        "{} calls are already queued on this session; try again shortly",
                        self.cfg.limits.queue
                    ),
                ));
            }
            Err(Submit::Lost) => return Err(lost_error()),
        };
        answer.await.map_err(|_| lost_error())?.map_err(call_error)
    }

    /// `POST /cs/login`: a new connection, the login call on it, and a session if it worked.
    pub async fn login(&self, headers: &HeaderMap, body: Bytes) -> Result<Response, CsError> {
        let body = read_body(headers, body)?;
        if lock(&self.sessions).len() >= self.cfg.max_sessions {
            return Err(CsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::RateLimited,
                format!("this relay already holds {} CS sessions (--cs-max-sessions)", self.cfg.max_sessions),
            ));
        }
        let token = new_token();
        let ended = {
            let (me, token, metrics) = (self.me.clone(), token.clone(), self.metrics.clone());
            move || {
                metrics.cs_sessions.fetch_sub(1, Relaxed);
                if let Some(g) = me.upgrade() {
                    g.forget(&token);
                }
            }
        };
        let session = Session::open(&self.cfg.upstream, self.cfg.limits, ended).await.map_err(call_error)?;
        self.metrics.cs_sessions.fetch_add(1, Relaxed);
        let session = Arc::new(session);
        let (xml, is_json) = match &body {
            Body::Json { xml, .. } => (xml.clone(), true),
            Body::Xml(xml) => (xml.clone(), false),
        };
        let answer = match self.run(&session, xml).await {
            Ok(a) => a,
            Err(e) => {
                session.abort();
                return Err(e);
            }
        };
        // Only a login that is not a fault (nor garbage) gets a session.
        let fault = answer.status != 200
            || !matches!(xmlrpc::decode_response(&answer.body), Ok(xmlrpc::Response::Ok(_)));
        if fault {
            session.close();
            return if is_json {
                Ok(axum::Json(json_answer(&answer)?.0).into_response())
            } else {
                Ok(xml_answer(answer))
            };
        }
        lock(&self.sessions).insert(token.clone(), session);
        if let Some(bus) = self.bus.get() {
            bus.cs_session_new(&token, self.cfg.idle + Duration::from_secs(60)).await;
        }
        let cookie = session_cookie(&token, is_https(headers), false);
        let mut resp = if is_json {
            let (mut v, _) = json_answer(&answer)?;
            v["session"] = json!(token);
            axum::Json(v).into_response()
        } else {
            xml_answer(answer)
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
        h.append(header::SET_COOKIE, HeaderValue::from_static(OLD_COOKIE_CLEAR));
        if let Ok(v) = HeaderValue::from_str(&token) {
            h.insert("x-tether-session", v);
        }
        Ok(resp)
    }

    /// `POST /cs/call`: the call on the session's own connection.
    pub async fn call(&self, headers: &HeaderMap, body: Bytes) -> Result<Response, CsError> {
        let body = read_body(headers, body)?;
        let (token, session) = self.session(headers)?;
        self.metrics.cs_calls.fetch_add(1, Relaxed);
        self.held(&token);
        let result = match body {
            Body::Json { xml, .. } => {
                let answer = self.run(&session, xml).await;
                answer.and_then(|a| json_answer(&a)).map(|(v, _)| axum::Json(v).into_response())
            }
            Body::Xml(xml) => self.run(&session, xml).await.map(xml_answer),
        };
        if let Err(e) = &result {
            if e.code == ErrorCode::SessionLost || !session.is_alive() {
                self.forget(&token);
            }
        }
        result
    }

    /// `POST /cs/logout`: runs the call in the body, if any, then closes the session's
    /// connection.
    pub async fn logout(&self, headers: &HeaderMap, body: Bytes) -> Result<Response, CsError> {
        // An empty body, or JSON without a method, just closes the session.
        let no_call = body.iter().all(u8::is_ascii_whitespace)
            || (media(headers) != Some(Media::Xml)
                && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.get("method").is_none()));
        let call = if no_call { None } else { Some(read_body(headers, body)?) };
        let (token, session) = match self.session(headers) {
            Ok(s) => s,
            // Logging out of a session that is already gone is not an error.
            Err(e) if e.code == ErrorCode::SessionLost => {
                return Ok(logged_out(headers, json!({"ok": true, "wasLoggedIn": false})));
            }
            Err(e) => return Err(e),
        };
        let mut out = json!({"ok": true, "wasLoggedIn": true});
        if let Some(Body::Json { xml, .. } | Body::Xml(xml)) = call {
            // The upstream may close the connection in answer to its own logout: that is fine.
            match self.run(&session, xml).await {
                Ok(a) => {
                    if let Ok((v, _)) = json_answer(&a) {
                        out["reply"] = v;
                    }
                }
                Err(e) if e.code == ErrorCode::SessionLost => {}
                Err(e) => out["warning"] = json!(e.message),
            }
        }
        session.close();
        self.forget(&token);
        Ok(logged_out(headers, out))
    }

    /// Closes sessions unused for longer than the idle timeout.
    pub fn sweep(&self) {
        let cutoff = crate::now_ms().saturating_sub(self.cfg.idle.as_millis() as u64);
        let idle: Vec<(String, Arc<Session>)> = lock(&self.sessions)
            .iter()
            .filter(|(_, s)| s.last_used.load(Relaxed) < cutoff)
            .map(|(t, s)| (t.clone(), s.clone()))
            .collect();
        for (token, s) in idle {
            s.close();
            self.forget(&token);
        }
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }
}

fn lost_error() -> CsError {
    CsError::new(
        StatusCode::GONE,
        ErrorCode::SessionLost,
        "the CS server closed this session's connection (logout, idle close, restart): log in again",
    )
}

fn logged_out(headers: &HeaderMap, body: Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// Runs a CS request another node forwarded here (its session is held here) and gives the
/// answer to send back.
pub async fn run_forwarded(g: Option<&Gateway>, req: crate::cluster::CsForward) -> crate::cluster::CsAnswer {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", req.token)) {
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Some(v) = req.content_type.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let body = Bytes::from(b64.decode(&req.body).unwrap_or_default());
    let outcome = match (g, req.action.as_str()) {
        (None, _) => Err(CsError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unauthorized,
            "the relay holding this session has no legacy CS server",
        )),
        (Some(g), "logout") => g.logout(&headers, body).await,
        (Some(g), _) => g.call(&headers, body).await,
    };
    let resp = outcome.unwrap_or_else(IntoResponse::into_response);
    let (parts, body) = resp.into_parts();
    let text = |name| parts.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    crate::cluster::CsAnswer {
        id: req.id,
        status: parts.status.as_u16(),
        content_type: text(header::CONTENT_TYPE),
        set_cookie: text(header::SET_COOKIE),
        body: b64.encode(&body),
    }
}
