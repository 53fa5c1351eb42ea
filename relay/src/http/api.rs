//! The HTTP API: a room driven from a program (a script, a CI job, the CLI, an agent) as a PC
//! member would drive it. `GET /api/rooms/{room}/devices`, `POST …/post`, `POST …/call`, and
//! the stored history, `GET …/history` (JSON, or HAR 1.2 with `?format=har`: [`super::har`]).
//!
//! # Who may
//! The holder of the room's PC secret, given as `Authorization: Bearer` (the history route
//! still takes `?secret=` too). A device key (the QR link's) is `403 forbidden`; a missing
//! secret `401`; a wrong one `401` and a strike against the address (shared with `/ws`: past
//! five, every attempt waits, `429` with `Retry-After`). A browser page of another origin gets
//! no CORS headers unless `--allow-origin` lists it, and `403` if `--allow-origin` is set and
//! does not.
//!
//! # How a request travels
//! `post` and `call` join the room as a PC member named `api` (listed in `devices` while its
//! request is under way), dispatch the request as that member ([`Hub::dispatch`]: the same
//! routing, pending table, limits, history rows and cluster bus as a PC's), feed what the
//! member's queue receives to a [`Collect`] until it has the answer or the deadline passes,
//! and leave. The member is held by a guard ([`ApiMember`]): when the client goes away, hyper
//! drops the handler's future, the guard leaves the room, and its pending requests go with it.
//! A request answered with its first reply keeps its member (in a tracked task, until its
//! deadline at most) until the other devices have answered, so their pairs reach history.
//!
//! # Layout
//! - this file: the routes, who may, the handlers, the member.
//! - [`body`]: a request's body, checked, into the device's `msg`.
//! - [`answer`]: the answers as JSON, and the status of each error.

mod answer;
mod body;

use super::{AppError, AppState, IpSlot, bearer, origin_allowed};
use crate::ratelimit::Verdict;
use crate::room::collect::{Collect, Mode};
use crate::room::{Hub, Inbox, JoinRequest, Joined, Kick, Leave, Now, RemoteMember};
use crate::token::{Credential, is_device_key, secret_digest, tag};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tether_protocol::msg::MemberInfo;
use tether_protocol::{Kind, Role, limits};
use tokio_util::sync::CancellationToken;

pub use body::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};

/// How long the relay waits on Redis to learn whether a room is open on another node; past it,
/// it answers from what it knows here.
const CLUSTER_WAIT: Duration = Duration::from_secs(2);
/// A preflight's answer is good this long.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The `/api/rooms/…` routes, with their body limit (`--max-frame`: a body is one frame) and
/// their origin rules ([`cross_origin`]).
pub(super) fn routes(state: &AppState) -> Router<AppState> {
    let max_frame = state.hub.limits().max_frame;
    Router::new()
        .route("/api/rooms/{room}/devices", get(devices))
        .route("/api/rooms/{room}/post", post(post_request))
        .route("/api/rooms/{room}/call", post(call_request))
        .route("/api/rooms/{room}/history", get(super::history::history))
        .layer(DefaultBodyLimit::max(max_frame))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cross_origin))
}

/// A browser page's `Origin`: refused (`403`) where `--allow-origin` is set and lists neither
/// it nor the relay's own origin, as for `/ws`; given CORS headers only when `--allow-origin`
/// lists it (a preflight is answered for it, and refused for any other). Programs send no
/// `Origin` and are not affected. The API is authenticated by a Bearer secret, never a cookie,
/// so another site's page cannot borrow a visitor's access; the CORS headers only let a page
/// the operator named read the answers.
async fn cross_origin(
    State(s): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(e) = origin_allowed(&s, req.headers(), req.uri(), false) {
        return e.into_response();
    }
    let listed = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            let text = o.to_str().unwrap_or("").trim_end_matches('/');
            s.allow_origin.iter().any(|a| a.eq_ignore_ascii_case(text))
        })
        .cloned();
    if req.method() == Method::OPTIONS {
        let Some(origin) = listed else {
            let message = "cross-origin use of the API needs the page's origin in --allow-origin";
            return AppError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
        };
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(PREFLIGHT_MAX_AGE));
        h.insert(header::VARY, HeaderValue::from_static("origin"));
        return resp;
    }
    let mut resp = next.run(req).await;
    if let Some(origin) = listed {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-next-before, retry-after"),
        );
        h.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    resp
}

/// Where a room is open, as far as a secret's holder may know.
enum Open {
    /// On this relay.
    Here,
    /// Only on other relays (cluster mode): its members there.
    Elsewhere(Vec<RemoteMember>),
    /// Nowhere: the secret is right (the room has history under it), but nobody is in it.
    Nowhere,
}

/// Checks an API request's secret for `room`, as `/ws` and the history route do: the holder
/// of the room's PC secret only (`Authorization: Bearer`). A wrong secret counts against the
/// address in [`crate::strikes`]; an address that gave too many waits.
async fn authorize(
    s: &AppState,
    room: &str,
    ip: IpAddr,
    headers: &HeaderMap,
) -> Result<(String, Open), AppError> {
    let strike = crate::strikes::Strike::new(s.strikes.clone(), ip);
    if let Err(wait) = strike.check() {
        s.metrics.error(tether_protocol::ErrorCode::RateLimited);
        return Err(super::guard::wrong_secret_wait(wait));
    }
    if !limits::valid_room(room) {
        let message =
            format!("room must be 1 to {} bytes with no '/' or control characters", limits::MAX_ROOM_LEN);
        return Err(answer::error("bad_request", message));
    }
    let Some(secret) = bearer(headers) else {
        return Err(answer::error(
            "unauthorized",
            "the API needs the room's PC secret: Authorization: Bearer <secret>",
        ));
    };
    if is_device_key(&secret) {
        let message = "a device key (the QR link's) cannot drive a room: use the room's PC secret";
        return Err(answer::error("forbidden", message));
    }
    // Counted as a wrong secret from here, before any await, and taken back if it proves
    // right: a burst of guesses at once cannot all pass the check above.
    let attempt = strike.attempt();
    let wrong = |attempt: crate::strikes::Attempt| {
        attempt.wrong();
        s.metrics.error(tether_protocol::ErrorCode::Unauthorized);
        answer::error("unauthorized", "wrong secret for this room")
    };
    let Ok(cred) = Credential::of(room, &secret) else { return Err(wrong(attempt)) };
    let digest = secret_digest(room, &secret);
    match s.hub.live_secret_matches(room, &digest) {
        Some(true) => return Ok((secret, Open::Here)),
        Some(false) => return Err(wrong(attempt)),
        None => {}
    }
    let mut cluster_unknown = false;
    if let Some(cluster) = &s.cluster {
        match tokio::time::timeout(CLUSTER_WAIT, cluster.open_room(room)).await {
            Ok(Ok(Some((held, members)))) => {
                return if held == tag(&cred.key) {
                    Ok((secret, Open::Elsewhere(members)))
                } else {
                    Err(wrong(attempt))
                };
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot ask Redis where a room is open; answering from here");
                cluster_unknown = true;
            }
            Err(_) => {
                tracing::warn!(
                    "cluster: Redis did not say in time where a room is open; answering from here"
                );
                cluster_unknown = true;
            }
        }
    }
    // Open nowhere (that this relay can tell): the store knows whether this secret ever
    // opened the room (history outlives the room).
    if s.store.knows_room(room, &tag(&digest)).await? {
        Ok((secret, Open::Nowhere))
    } else if cluster_unknown {
        // The room may be open on another relay: maybe not a wrong secret, but it counts as
        // one (the right holder's first ones are free), else guesses would cost nothing while
        // Redis is down, and a right one would be told apart by its answer.
        attempt.wrong();
        let message = "cannot reach the other relays to check this room (Redis); try again shortly";
        Err(answer::error("cluster_unavailable", message))
    } else {
        Err(wrong(attempt))
    }
}

/// `--rate-limit`/`--rate-burst` per address, for the API's requests.
fn within_rate(s: &AppState, ip: IpAddr) -> Result<(), AppError> {
    match s.api_rate.take(ip, std::time::Instant::now()) {
        Verdict::Allow => Ok(()),
        Verdict::Limit | Verdict::Flood => {
            s.metrics.dropped(crate::metrics::Dropped::RateLimited);
            s.metrics.error(tether_protocol::ErrorCode::RateLimited);
            Err(answer::error(
                "rate_limited",
                "too many API requests from this address (--rate-limit); slow down",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")))
        }
    }
}

/// `GET /api/rooms/{room}/devices`: `{members: […]}`, the room's member list as `devices`
/// shows it (an empty list for a room nobody has open).
async fn devices(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let ip = s.client_ip(peer, &headers);
    within_rate(&s, ip)?;
    let members: Vec<MemberInfo> = match authorize(&s, &room, ip, &headers).await?.1 {
        Open::Here => s.hub.members(&room).unwrap_or_default(),
        Open::Elsewhere(members) => members.into_iter().map(|m| m.info).collect(),
        Open::Nowhere => Vec::new(),
    };
    let mut resp = Json(json!({ "members": members })).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

async fn post_request(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    request(s, peer, room, headers, body, Kind::Post).await
}

async fn call_request(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AppError> {
    request(s, peer, room, headers, body, Kind::Call).await
}

/// `POST …/post` or `…/call`: the first reply, `{replies: […]}` with `all`, or an error.
async fn request(
    s: AppState,
    peer: SocketAddr,
    room: String,
    headers: HeaderMap,
    body: axum::body::Body,
    kind: Kind,
) -> Result<Response, AppError> {
    let ip = s.client_ip(peer, &headers);
    within_rate(&s, ip)?;
    let (secret, open) = authorize(&s, &room, ip, &headers).await?;
    // Read only now, for the secret's holder: a stranger's body is never read (at most
    // --max-frame of it would be held while the secret is checked).
    let max = s.hub.limits().max_frame;
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let message = format!("the body is over {max} bytes (a request is one frame: --max-frame)");
            return Err(answer::error("too_large", message));
        }
        Err(e) => return Err(answer::error("bad_request", format!("could not read the body: {e}"))),
    };
    let req = body::parse(kind, &body, s.hub.limits().max_frame).map_err(|e| match e {
        body::BodyError::Bad(m) => answer::error("bad_request", m),
        body::BodyError::TooLarge { size, max } => answer::error(
            "too_large",
            format!("the request's frame would be {size} bytes, over the relay's --max-frame of {max}"),
        ),
    })?;
    if matches!(open, Open::Nowhere) {
        return Err(answer::error("no_target", "no device in this room: nobody has it open"));
    }
    let slot = s.per_ip.take(ip)?;
    let mut member = ApiMember::join(&s, &room, secret, open, slot).await?;
    let now = Now::read();
    let to = req.to.as_deref();
    let (id, dispatched) = s.hub.dispatch(&member.joined, kind, to, &req.msg, req.target, req.timeout, now);
    if let Some((_, r)) = dispatched.refused.iter().find(|(device, _)| device.is_none()) {
        s.metrics.error(r.code);
        return Err(answer::error(r.code.as_str(), r.message.clone()));
    }
    s.metrics.api_requests_total.fetch_add(1, Relaxed);
    let mode = if req.all { Mode::All } else { Mode::First };
    let mut collect = Collect::new(id, kind, mode, dispatched, now, req.timeout);
    let now = member.wait(&mut collect, &s.shutdown).await?;
    let id = collect.id().to_owned();
    let answer = collect.answer(now).ok_or_else(|| answer::error("internal", "no answer"))?;
    let resp = answer::respond(&id, answer, req.timeout.as_millis());
    tracing::debug!(room = %room, member = %member.joined.member, ok = resp.is_ok(), "api request answered");
    // Answered: the member leaves now (dropped), as a PC that closed. Staying for the other
    // devices' replies would hold a place in the room (`--max-room-members`) and their bodies
    // for as long as the timeout, per request: a script's loop could fill the room. `all`
    // waits for every device.
    drop(member);
    resp
}

/// The room member an API request acts as, for as long as the request is under way. Dropped
/// (the answer is sent, the client went away, the relay stops), it leaves the room cleanly:
/// the requests it was awaiting leave the pending table, and the room's `devices` list loses
/// it at once.
struct ApiMember {
    hub: Arc<Hub>,
    joined: Joined,
    inbox: Inbox,
    kick: Arc<Kick>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Its place under `--max-conns-per-ip`, as a socket's.
    _slot: Option<IpSlot>,
}

impl ApiMember {
    /// Joins `room` as a PC named `api`: into the room open here, or (cluster mode) a room open
    /// only on other relays, whose members are learnt from Redis at once.
    async fn join(
        s: &AppState,
        room: &str,
        secret: String,
        open: Open,
        slot: Option<IpSlot>,
    ) -> Result<ApiMember, AppError> {
        let (outbox, inbox) = s.hub.outbox();
        let kick = outbox.kick.clone();
        let member_secret = secret.clone();
        let req = JoinRequest {
            room: room.to_owned(),
            role: Role::Pc,
            secret,
            name: Some("api".into()),
            resume: None,
            cluster_resume: false,
            // Not counted against --max-new-rooms-per-ip: it opens no room cluster-wide.
            from: None,
            existing_only: matches!(open, Open::Here),
        };
        let joined = s.hub.join(req, outbox, Now::read()).map_err(|r| {
            s.metrics.error(r.code);
            let message = if r.code == tether_protocol::ErrorCode::NoTarget {
                "no device in this room: nobody has it open".to_owned()
            } else {
                r.message
            };
            answer::error(r.code.as_str(), message)
        })?;
        s.metrics.api_requests.fetch_add(1, Relaxed);
        let member =
            ApiMember { hub: s.hub.clone(), joined, inbox, kick, metrics: s.metrics.clone(), _slot: slot };
        if let Some(tag) = &member.joined.new_room_tag {
            // The room was opened with its device key; this is the first holder of its PC
            // secret: history learns the secret's tag, as for a PC's join.
            s.store.register_room(room, tag).await?;
        }
        if let (Open::Elsewhere(_), Some(cluster)) = (open, &s.cluster) {
            // The members on other relays now, so the request reaches them at once.
            // Only while the room is still the one this secret opened (it may have emptied and
            // been opened again with another secret since it was checked).
            let ours = |held: &str| Credential::of(room, &member_secret).is_ok_and(|c| held == tag(&c.key));
            if let Ok(Ok(Some((held, members)))) =
                tokio::time::timeout(CLUSTER_WAIT, cluster.open_room(room)).await
            {
                if ours(&held) {
                    s.hub.set_remote(room, members, Now::read());
                }
            }
        }
        Ok(member)
    }

    /// Reads the member's queue into `c` until the answer is ready (at its deadline at the
    /// latest); returns the time it was ready at.
    async fn wait(&mut self, c: &mut Collect, shutdown: &CancellationToken) -> Result<Now, AppError> {
        let deadline = tokio::time::Instant::from_std(c.deadline());
        loop {
            let now = Now::read();
            if now.at >= c.deadline() {
                // What is queued already came before the deadline: read it before a `timeout`.
                while let Some(frame) = self.inbox.try_recv() {
                    c.on_frame(frame.as_str(), now);
                }
            }
            if c.answer(now).is_some() {
                return Ok(now);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return Err(answer::error("shutting_down", "the relay is restarting; try again shortly"));
                }
                () = self.kick.fired() => {
                    let r = self.kick.reason();
                    return Err(answer::error(r.code.as_str(), r.message));
                }
                frame = self.inbox.recv() => c.on_frame(frame.as_str(), Now::read()),
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

impl Drop for ApiMember {
    fn drop(&mut self) {
        self.hub.leave(&self.joined, self.joined.conn, Leave::Clean, Now::read());
        self.metrics.api_requests.fetch_sub(1, Relaxed);
    }
}
