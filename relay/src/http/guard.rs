//! Who may use the relay from where: per-address socket caps ([`PerIp`]), the wrong-secret
//! throttle's answer, and the `Origin` rules for `/ws`, `/alarms` and `/cs/*`.

use super::*;

/// An address that gave too many wrong secrets lately: `429 rate_limited` with `Retry-After`.
pub(super) fn too_many_wrong_secrets(wait: std::time::Duration) -> Response {
    wrong_secret_wait(wait).into_response()
}

/// The same, as an error to return.
pub(super) fn wrong_secret_wait(wait: std::time::Duration) -> AppError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    AppError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many wrong secrets from this address: try again in {secs} s"),
    )
    .with_header(header::RETRY_AFTER, secs.into())
}

/// Counts WebSocket connections per IP address, up to `--max-conns-per-ip`: open ones, and
/// room members whose connection was lost, until they resume or their grace window ends.
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

    pub(super) fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Result<Option<IpSlot>, AppError> {
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

    /// A slot even at the cap: for a member resuming, whose away self gives its slot back.
    pub(super) fn take_over(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return None;
        }
        *crate::util::lock(&self.open).entry(ip).or_default() += 1;
        Some(IpSlot { per_ip: self.clone(), ip })
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
pub(super) async fn check_origin(
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
pub(super) fn origin_allowed(
    s: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    cookie_route: bool,
) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let text = origin.to_str().unwrap_or("").trim_end_matches('/');
    if (!cookie_route && s.allow_origin.is_empty())
        || is_own_origin(headers, uri, text, s.tls)
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
/// relay cannot tell which a proxy in front of it serves; with `tls`, the relay's own
/// `--tls-cert`, only `https`), and the host and port of the `Host` header (or, in HTTP/2, the
/// URI's authority), default ports aside.
///
/// `X-Forwarded-Host` is not read: a proxy in front is expected to pass `Host` on (the one in
/// docs/deploy.md does), and one header fewer to trust is one fewer to get wrong.
pub(super) fn is_own_origin(headers: &HeaderMap, uri: &Uri, origin: &str, tls: bool) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let (Some(host), Some((scheme, authority))) = (host, origin.split_once("://")) else { return false };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" if !tls => ":80",
        "https" => ":443",
        _ => return false,
    };
    let bare = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_ascii_lowercase();
    !authority.is_empty() && !authority.contains(['/', '@']) && bare(authority) == bare(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_origin_is_either_scheme_behind_a_proxy_and_only_https_with_the_relays_own_tls() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "relay.lan:8443".parse().unwrap());
        let uri: Uri = "/cs/login".parse().unwrap();
        let own = |origin: &str, tls: bool| is_own_origin(&headers, &uri, origin, tls);
        assert!(own("http://relay.lan:8443", false));
        assert!(own("https://relay.lan:8443", false));
        assert!(own("https://relay.lan:8443", true));
        assert!(!own("http://relay.lan:8443", true), "no plain page is served on a TLS port");
        assert!(!own("https://relay.lan:9443", true));
        headers.insert(header::HOST, "relay.lan".parse().unwrap());
        let own = |origin: &str, tls: bool| is_own_origin(&headers, &uri, origin, tls);
        assert!(own("https://relay.lan:443", true), "default port");
        assert!(!own("http://relay.lan", true), "port 80 is another server's");
    }
}
