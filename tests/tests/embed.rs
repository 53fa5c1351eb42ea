//! `/sdk/` for pages on other origins (#21): every file with CORS and CORP, the type browsers
//! insist on, an ETag answered 304, entry points revalidated and a build's own paths immutable,
//! another build's paths 404; the relay's own pages keep their CSP and get no CORS.

use serde_json::Value;
use tether_tests::{Relay, http_get, http_get_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header<'a>(head: &'a [(String, String)], name: &str) -> Option<&'a str> {
    head.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// A package folder like the one scripts/build-sdk writes, small.
fn package() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("index.js"), "import init from './tether_sdk.js';").unwrap();
    std::fs::write(p.join("tether_sdk.js"), "export default function init() {}").unwrap();
    std::fs::write(p.join("tether_sdk_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(p.join("tether.js"), "var BUILD = \"__TETHER_BUILD__\";").unwrap();
    std::fs::create_dir_all(p.join("snippets/tether-sdk-inspect-0/src")).unwrap();
    std::fs::write(p.join("snippets/tether-sdk-inspect-0/src/hooks.js"), "export {}").unwrap();
    dir
}

#[tokio::test]
async fn sdk_files_load_from_any_origin_with_types_etags_and_caching_that_fit() {
    let pkg = package();
    let path = pkg.path().to_owned();
    let relay = Relay::with(|c| c.sdk = Some(path)).await;
    let (_, _, health) = http_get(relay.addr, "/healthz").await;
    let build = serde_json::from_str::<Value>(&health).unwrap()["sdk"].as_str().unwrap().to_owned();
    assert_eq!(build.len(), 16, "{health}");

    // The entry point, asked from another origin.
    let origin = [("Origin", "https://news.example")];
    let (status, head, body) = http_get_with(relay.addr, "/sdk/index.js", &origin).await;
    assert_eq!(status, 200);
    assert_eq!(body, "import init from './tether_sdk.js';");
    assert_eq!(header(&head, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&head, "cross-origin-resource-policy"), Some("cross-origin"));
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let etag = header(&head, "etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    // Revalidated: 304, nothing sent again, still loadable cross-origin.
    let (status, head, body) =
        http_get_with(relay.addr, "/sdk/index.js", &[("If-None-Match", &etag), origin[0]]).await;
    assert_eq!((status, body.as_str()), (304, ""));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    let (status, _, _) = http_get_with(relay.addr, "/sdk/index.js", &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(status, 200);

    // The wasm, under the build's own path: application/wasm (instantiateStreaming insists), a year.
    let (status, head, body) = http_get(relay.addr, &format!("/sdk/@{build}/tether_sdk_bg.wasm")).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_bytes(), b"\0asm\x01\0\0\0");
    assert_eq!(header(&head, "content-type"), Some("application/wasm"));
    assert_eq!(header(&head, "cache-control"), Some("public, max-age=31536000, immutable"));
    let (status, head, _) =
        http_get(relay.addr, &format!("/sdk/@{build}/snippets/tether-sdk-inspect-0/src/hooks.js")).await;
    assert_eq!((status, header(&head, "content-type")), (200, Some("text/javascript; charset=utf-8")));
    // Another build's path: gone, said so (a page never mixes two builds).
    let (status, head, body) = http_get(relay.addr, "/sdk/@0123456789abcdef/index.js").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("reload the page"), "{body}");
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));

    // The loader carries the build id it loads from.
    let (_, _, loader) = http_get(relay.addr, "/sdk/tether.js").await;
    assert_eq!(loader, format!("var BUILD = \"{build}\";"));

    // Only the package: nothing above it, nothing made up.
    for path in ["/sdk/../Cargo.toml", "/sdk/%2e%2e/Cargo.toml", "/sdk/nope.js", "/sdk/snippets"] {
        let (status, _, _) = http_get(relay.addr, path).await;
        assert_eq!(status, 404, "{path}");
    }

    // HEAD: the headers without the body.
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let req = format!("HEAD /sdk/index.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", relay.addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.to_ascii_lowercase().contains("etag:"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "no body: {out}");

    // The relay's own pages: their CSP, and no CORS.
    let (_, head, _) = http_get_with(relay.addr, "/", &origin).await;
    assert!(header(&head, "content-security-policy").is_some());
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    relay.stop().await;
}

#[tokio::test]
async fn without_a_package_sdk_paths_are_404_and_the_relay_runs() {
    let relay = Relay::start().await;
    let (status, _, _) = http_get(relay.addr, "/sdk/index.js").await;
    assert_eq!(status, 404);
    let (_, _, health) = http_get(relay.addr, "/healthz").await;
    assert_eq!(serde_json::from_str::<Value>(&health).unwrap()["sdk"], "");
    relay.stop().await;
}
