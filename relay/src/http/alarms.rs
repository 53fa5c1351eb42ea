//! `/alarms`: who may subscribe (a CS session, `--alarm-token`, or `--alarms-public`), checked
//! before the upgrade; the subscriber itself is served by [`crate::alarm::serve`].

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct AlarmsQuery {
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

pub(super) async fn alarms_upgrade(
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
