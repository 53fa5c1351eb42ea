//! The CS gateway's HTTP edge: `POST /cs/login`, `/cs/call`, `/cs/logout`.
//!
//! Everything HTTP about the gateway is here, and only that: the body's media type, the session
//! token (`Authorization: Bearer` or the cookie), the cookie itself, the statuses errors map to
//! ([`AppError`]'s `From<CsError>`), and the responses. The gateway's core (`crate::cs`) takes
//! and gives typed requests and replies. In cluster mode a call or logout for a session another
//! node holds goes there as the same typed request, and its typed outcome comes back to be
//! answered here exactly as a local one.
//!
//! A browser attaches the session cookie to whatever request a page makes, so the routes take
//! only bodies a cross-site form or `no-cors` fetch cannot send (`application/json`,
//! `text/xml`: see [`media`]) and, in `http`, only the relay's own `Origin`. A raw XML answer is
//! always served as `text/xml` with `nosniff` (never the upstream's own content type: a
//! `text/html` answer would be a page of the relay's origin).

use super::{AppError, AppState, bearer};
use crate::cs::session::CallError;
use crate::cs::{CsError, CsReply, CsRequest, Done, LoggedOut, Login, Media, Op, RawXml};
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The cookie that carries the session token. Its path is `/`, so the browser also gives it to
/// `/alarms`, which a CS session may read.
pub const COOKIE: &str = "tether_cs";

/// Before the cookie's path was `/` it was `/cs`; a browser holding such a cookie would send it
/// first to `/cs/*` and shadow the new one, so a login clears it.
const OLD_COOKIE_CLEAR: &str = "tether_cs=; Path=/cs; HttpOnly; SameSite=Strict; Max-Age=0";

/// The status each gateway error is answered with.
impl From<CsError> for AppError {
    fn from(e: CsError) -> Self {
        let status = match &e {
            CsError::BadRequest(_) | CsError::NotLogin { .. } => StatusCode::BAD_REQUEST,
            CsError::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            CsError::NotLoggedIn | CsError::UnknownSession => StatusCode::UNAUTHORIZED,
            CsError::NoUpstreamThere => StatusCode::NOT_FOUND,
            CsError::SessionLost | CsError::NodeStopped | CsError::Upstream(CallError::Lost) => {
                StatusCode::GONE
            }
            CsError::TooManySessions(_) | CsError::Busy(_) | CsError::Cluster(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            CsError::Upstream(CallError::Timeout(_)) | CsError::NodeTimeout => StatusCode::GATEWAY_TIMEOUT,
            CsError::Upstream(_) | CsError::BadUpstream(_) => StatusCode::BAD_GATEWAY,
        };
        let app = AppError::new(status, e.code().as_str(), e.to_string());
        match e {
            CsError::TooManyLogins { wait_s, .. } => app.with_header(header::RETRY_AFTER, wait_s.into()),
            _ => app,
        }
    }
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

/// Whether the browser reached the relay over https, when the relay speaks plain HTTP (with
/// `--tls-cert` it is always https: `AppState::tls`): a proxy's word (`X-Forwarded-Proto:
/// https`) or the page's (`Origin: https://…`). A client
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
fn clear_cookie(https: bool) -> String {
    session_cookie("", https, true)
}

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

/// The raw XML answer: status and bytes as the server sent them, served as `text/xml`
/// ([`xml_content_type`]) with `nosniff`.
fn xml_response(xml: RawXml) -> Response {
    let status = StatusCode::from_u16(xml.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut resp = (status, xml.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, xml_content_type(xml.content_type.as_deref()));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

fn reply_response(reply: CsReply) -> Response {
    match reply {
        CsReply::Json(v) => Json(v).into_response(),
        CsReply::Xml(xml) => xml_response(xml),
    }
}

/// A login's answer: a session's gets the token in the JSON body (or `X-Tether-Session` for
/// raw XML) and as the cookie.
fn logged_in(https: bool, login: Login) -> Response {
    let Some(token) = login.session else { return reply_response(login.reply) };
    let mut resp = match login.reply {
        CsReply::Json(v) => {
            let mut v = serde_json::to_value(v).unwrap_or_default();
            v["session"] = json!(token);
            Json(v).into_response()
        }
        CsReply::Xml(xml) => xml_response(xml),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(&token, https, false)) {
        h.append(header::SET_COOKIE, v);
    }
    h.append(header::SET_COOKIE, HeaderValue::from_static(OLD_COOKIE_CLEAR));
    if let Ok(v) = HeaderValue::from_str(&token) {
        h.insert("x-tether-session", v);
    }
    resp
}

/// A logout's answer, `{"ok": true, "wasLoggedIn", "reply"?, "warning"?}`, ending the cookie
/// (made here, where the browser's request, https or not, is known).
fn logged_out(https: bool, out: LoggedOut) -> Response {
    let mut body = json!({"ok": true, "wasLoggedIn": out.was_logged_in});
    if let Some(reply) = out.reply {
        body["reply"] = serde_json::to_value(reply).unwrap_or_default();
    }
    if let Some(warning) = out.warning {
        body["warning"] = json!(warning);
    }
    let mut resp = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&clear_cookie(https)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn done_response(https: bool, done: Done) -> Response {
    match done {
        Done::Called(reply) => reply_response(reply),
        Done::LoggedOut(out) => logged_out(https, out),
    }
}

/// The gateway, or a clear error when this relay has none.
fn gateway(s: &AppState) -> Result<Arc<crate::cs::Gateway>, AppError> {
    s.cs.clone().ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_configured",
            "this relay has no legacy CS server: start it with --cs-upstream",
        )
    })
}

/// A body too large (or unreadable) is a JSON error like every other.
fn cs_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_frame" };
        AppError::new(status, code, e.body_text())
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// From this client address.
    Login(IpAddr),
    Call,
    Logout,
}

/// What a `/cs/call` or `/cs/logout` body asks of the session. A logout's body may be empty,
/// or JSON without a method: it just closes the session.
fn op(route: Route, media: Media, body: Bytes) -> Result<Op, CsError> {
    if route != Route::Logout {
        return Ok(Op::Call(CsRequest::parse(media, body)?));
    }
    let no_call = body.iter().all(u8::is_ascii_whitespace)
        || (media != Media::Xml
            && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.get("method").is_none()));
    let request = if no_call { None } else { Some(CsRequest::parse(media, body)?) };
    Ok(Op::Logout(request))
}

pub(super) async fn login(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let from = s.client_ip(peer, &headers);
    cs(&s, &headers, body, Route::Login(from)).await
}

pub(super) async fn call(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    cs(&s, &headers, body, Route::Call).await
}

pub(super) async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    cs(&s, &headers, body, Route::Logout).await
}

async fn cs(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> Response {
    let mut resp = answer(s, headers, body, route).await.unwrap_or_else(IntoResponse::into_response);
    // Every answer is what it says it is: JSON, or XML served as `text/xml`, never sniffed
    // into something a browser would run.
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

async fn answer(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> Result<Response, AppError> {
    let Some(media) = media(headers) else {
        // A cross-site form or `no-cors` fetch can send only other types (see `media`).
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "/cs/* takes Content-Type: application/json (or text/xml to pass XML-RPC through)",
        ));
    };
    // Whether the session cookie gets `Secure`.
    let https = s.tls || is_https(headers);
    if let (Some(cluster), Route::Call | Route::Logout, Ok(bytes)) = (&s.cluster, route, &body) {
        if let Some(done) = forward(s, cluster, headers, media, bytes, route).await {
            return Ok(done_response(https, done?));
        }
    }
    let (g, body) = match (gateway(s), cs_body(body)) {
        (Ok(g), Ok(b)) => (g, b),
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    if let Route::Login(from) = route {
        let login = g.login(CsRequest::parse(media, body)?, from).await?;
        return Ok(logged_in(https, login));
    }
    let op = op(route, media, body)?;
    let token = token_of(headers).ok_or(CsError::NotLoggedIn)?;
    Ok(done_response(https, g.run(&token, op).await?))
}

/// Cluster mode: a call or logout for a session another node holds is run there. `None`: the
/// session is not another node's (the local gateway answers).
async fn forward(
    s: &AppState,
    cluster: &crate::cluster::Cluster,
    headers: &HeaderMap,
    media: Media,
    body: &Bytes,
    route: Route,
) -> Option<Result<Done, AppError>> {
    use crate::cluster::CsOwner;
    let token = token_of(headers).filter(|t| !s.cs.as_ref().is_some_and(|g| g.knows(t)))?;
    let node = match cluster.cs_owner(&token).await {
        Ok(CsOwner::Unknown) => return None,
        Ok(CsOwner::Node(node)) => node,
        // Messages say what failed, not where: node names and Redis's errors are for the log.
        Ok(CsOwner::Dead(node)) => {
            tracing::info!(%node, "a CS call for a session whose relay stopped");
            return Some(Err(CsError::NodeStopped.into()));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach Redis to find a CS session's relay");
            let message = "cannot reach the other relays to find this session's relay; try again shortly";
            return Some(Err(CsError::Cluster(message.into()).into()));
        }
    };
    let op = match op(route, media, body.clone()) {
        Ok(op) => op,
        Err(e) => return Some(Err(e.into())),
    };
    let wait = s.cs.as_ref().map_or(std::time::Duration::from_secs(60), |g| g.forward_wait());
    Some(cluster.forward_cs(&node, &token, op, wait).await.map_err(AppError::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_gateway_error_keeps_its_status_and_code() {
        let cases = [
            (CsError::BadRequest("x".into()), 400, "bad_frame"),
            (CsError::NotLoggedIn, 401, "unauthorized"),
            (CsError::UnknownSession, 401, "unauthorized"),
            (CsError::NoUpstreamThere, 404, "unauthorized"),
            (CsError::SessionLost, 410, "session_lost"),
            (CsError::Upstream(CallError::Lost), 410, "session_lost"),
            (CsError::NodeStopped, 410, "session_lost"),
            (CsError::TooManySessions(1), 503, "rate_limited"),
            (CsError::TooManyLogins { per_minute: 1, wait_s: 7 }, 429, "rate_limited"),
            (CsError::NotLogin { expected: "login".into(), got: "x".into() }, 400, "bad_frame"),
            (CsError::Busy(1), 503, "rate_limited"),
            (CsError::Cluster("x".into()), 503, "cluster_unavailable"),
            (CsError::NodeTimeout, 504, "cluster_unavailable"),
            (CsError::Upstream(CallError::Timeout(1)), 504, "upstream_closed"),
            (CsError::Upstream(CallError::TooLarge(1)), 502, "too_large"),
            (CsError::Upstream(CallError::Io("detail".into())), 502, "upstream_closed"),
            (CsError::Upstream(CallError::Connect("detail".into())), 502, "upstream_closed"),
            (CsError::BadUpstream("x".into()), 502, "bad_upstream"),
        ];
        for (e, status, code) in cases {
            let what = format!("{e:?}");
            let app = AppError::from(e);
            assert_eq!((app.status.as_u16(), app.code), (status, code), "{what}");
            assert!(!app.message.contains("detail"), "{what}: the detail is for the log");
        }
        let app = AppError::from(CsError::TooManyLogins { per_minute: 30, wait_s: 7 });
        assert_eq!(app.headers, [(header::RETRY_AFTER, HeaderValue::from(7u64))], "how long to wait");
    }

    #[test]
    fn a_logout_body_without_a_method_only_closes_the_session() {
        for (media, body) in
            [(Media::Json, "{}"), (Media::Json, " "), (Media::Xml, ""), (Media::Json, "{\"x\":1}")]
        {
            assert_eq!(op(Route::Logout, media, Bytes::from(body)), Ok(Op::Logout(None)), "{body:?}");
        }
        assert!(matches!(
            op(Route::Logout, Media::Json, Bytes::from(r#"{"method": "logout"}"#)),
            Ok(Op::Logout(Some(CsRequest::Json { .. })))
        ));
        assert!(matches!(op(Route::Logout, Media::Json, Bytes::from("{bad")), Err(CsError::BadRequest(_))));
        assert!(matches!(op(Route::Call, Media::Json, Bytes::from("{}")), Err(CsError::BadRequest(_))));
    }
}
