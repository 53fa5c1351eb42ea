//! `GET /api/rooms/{room}/history`: a room's stored pairs, newest first, as JSON (the
//! default) or as HAR 1.2 (`?format=har`, oldest first: [`super::har`]), a page at a time.

use super::{AppError, AppState, bearer, too_many_wrong_secrets};
use crate::history::Types;
use crate::token::{secret_digest, tag};
use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    secret: Option<String>,
    limit: Option<String>,
    before: Option<String>,
    /// Comma-separated row types (`post,call,storage,eval,inspect`); default the pairs.
    #[serde(rename = "type")]
    types: Option<String>,
    /// `json` (the default) or `har`.
    format: Option<String>,
}

/// Most rows one page returns.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

fn bad_request(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub(super) async fn history(
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
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| bad_request(format!("limit must be 1 to {MAX_PAGE}")))?,
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => Some(b.parse::<i64>().map_err(|_| bad_request("before must be the id of a history row"))?),
    };
    let har = match q.format.as_deref() {
        None | Some("" | "json") => false,
        Some("har") => true,
        Some(other) => return Err(bad_request(format!("format {other:?} is neither json nor har"))),
    };
    let list = q.types.as_deref().unwrap_or("");
    let types = Types::parse(if har && list.trim().is_empty() { "post,call" } else { list })
        .map_err(|bad| bad_request(format!("type {bad:?} is none of {}", Types::NAMES.join(", "))))?;
    if har {
        if let Some(other) =
            list.split(',').map(str::trim).find(|t| !t.is_empty() && *t != "post" && *t != "call")
        {
            return Err(bad_request(format!(
                "format=har holds requests (post and call pairs): type {other:?} is for the JSON form"
            )));
        }
    }
    if crate::token::is_device_key(&secret) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a device key (the QR link's) cannot read history: use the room's PC secret",
        ));
    }
    let digest = secret_digest(&room, &secret);
    let tag = tag(&digest);
    // Counted as wrong before the store is asked, taken back if right (see Strike::attempt).
    let attempt = strike.attempt();
    let allowed = match s.hub.live_secret_matches(&room, &digest) {
        Some(true) => true,
        // A room live with another secret, or an empty room: ask the store whether this
        // secret ever opened it (history outlives the room).
        _ => s.store.knows_room(&room, &tag).await?,
    };
    if !allowed {
        attempt.wrong();
        return Err(AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", "wrong secret for this room"));
    }
    let items = s.store.page(&room, &tag, limit, before, &types).await?;
    let next = if items.len() as u32 == limit { items.last().map(|i| i.id) } else { None };
    let mut resp = if har {
        Json(super::har::document(&room, &items)).into_response()
    } else {
        Json(items).into_response()
    };
    if let Some(next) = next {
        if let Ok(v) = next.to_string().parse() {
            resp.headers_mut().insert("x-next-before", v);
        }
    }
    resp.headers_mut()
        .insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(resp)
}
