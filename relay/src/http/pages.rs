//! The pages: the PC page, the device page (with the relay's `--bridge-names`), and the
//! security headers every response carries (the Content-Security-Policy per path).

use super::*;

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
pub(super) async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
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
pub(super) fn with_bridges(html: &str, meta: &str) -> String {
    match html.find("<head>") {
        Some(i) => [&html[..i + 6], "\n  ", meta, &html[i + 6..]].concat(),
        None => [meta, "\n", html].concat(),
    }
}

pub(super) async fn pc_page(State(s): State<AppState>) -> Response {
    page(&s.www, "index.html", "PC debug page", |html| html).await
}

pub(super) async fn device_page(State(s): State<AppState>, Path(_room): Path<String>) -> Response {
    page(&s.www, "device.html", "device page", |html| with_bridges(&html, &s.bridges_meta)).await
}

pub(super) async fn page(
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
