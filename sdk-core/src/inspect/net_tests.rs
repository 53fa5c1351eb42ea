//! Network events from what the shim reports, over the model of JS values.

use super::*;
use crate::inspect::EVENT;
use crate::inspect::model::*;
use serde_json::{Value as J, json};

fn parse(d: Option<Draft>) -> J {
    let text = d.expect("an event").text;
    assert!(text.len() <= EVENT, "{} bytes", text.len());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn undef() -> V {
    v(M::Undef)
}

fn b(x: bool) -> V {
    v(M::Bool(x))
}

fn pairs(list: &[(&str, &str)]) -> V {
    arr(list.iter().map(|(k, x)| arr(vec![s(k), s(x)])).collect())
}

/// `[id, type, method, url, headers, body]` as the shim makes it.
fn info(id: f64, ty: f64, method: Option<&str>, url: &str, headers: V, body: V) -> V {
    arr(vec![n(id), n(ty), method.map_or_else(undef, s), s(url), headers, body])
}

fn own() -> Own {
    Own(vec!["ws://relay/ws".into(), "http://relay/sdk/".into()])
}

const FETCH: f64 = 0.0;
const XHR: f64 = 1.0;
const BEACON: f64 = 2.0;
const WS_: f64 = 3.0;
const SSE: f64 = 4.0;

#[test]
fn a_fetch_starts_with_its_method_url_headers_and_body_with_secrets_masked() {
    let headers =
        pairs(&[("content-type", "application/json"), ("authorization", "Bearer abc"), ("x-req", "7")]);
    let i = info(3.0, FETCH, Some("post"), "http://app/api/echo", headers, s(r#"{"a":1}"#));
    let e = parse(start(&Model, 10, 4, &i, &undef(), &own(), &Masks::default()));
    assert_eq!(
        e,
        json!({"k": "network", "at": 10, "n": 4, "id": 3, "type": "fetch", "phase": "start", "method": "POST",
            "url": "http://app/api/echo",
            "requestHeaders": [["content-type", "application/json"], ["authorization", "‹redacted 10 chars›"], ["x-req", "7"]],
            "requestBody": "{\"a\":1}"})
    );
    // A method the browser does not normalise goes as the page wrote it (and so is shown).
    let i = info(4.0, FETCH, Some("patch"), "http://app/x", arr(vec![]), undef());
    assert_eq!(parse(start(&Model, 10, 6, &i, &undef(), &own(), &Masks::default()))["method"], "patch");
    // No method, no headers, no body (a WebSocket's start): only what there is.
    let i = info(4.0, WS_, None, "ws://app/ws-echo", arr(vec![]), undef());
    let e = parse(start(&Model, 10, 5, &i, &undef(), &own(), &Masks::default()));
    assert_eq!(
        e,
        json!({"k": "network", "at": 10, "n": 5, "id": 4, "type": "ws", "phase": "start", "url": "ws://app/ws-echo"})
    );
    // The page's own masks replace the default ones.
    let i = info(
        5.0,
        XHR,
        Some("GET"),
        "http://app/",
        pairs(&[("X-Token", "t0k"), ("Cookie", "a=1")]),
        v(M::Null),
    );
    let e = parse(start(&Model, 1, 1, &i, &undef(), &own(), &Masks::new(Some(vec!["x-token".into()]))));
    assert_eq!(e["requestHeaders"], json!([["X-Token", "‹redacted 3 chars›"], ["Cookie", "a=1"]]));
    assert_eq!(e.get("requestBody"), None, "a null body is no body");
}

#[test]
fn the_sdks_own_traffic_and_what_the_shim_never_makes_are_not_recorded() {
    let m = Masks::default();
    for url in ["ws://relay/ws?room=r&role=device&secret=k", "http://relay/sdk/tether_inspect_bg.wasm"] {
        let i = info(1.0, WS_, None, url, arr(vec![]), undef());
        assert!(start(&Model, 1, 1, &i, &undef(), &own(), &m).is_none(), "{url}");
    }
    // Another path on the relay's host is the page's, also one that only begins like the
    // SDK's socket.
    for url in ["http://relay/healthz", "ws://relay/ws-chat", "ws://relay/wsx?room=r"] {
        let i = info(1.0, FETCH, Some("GET"), url, arr(vec![]), undef());
        assert!(start(&Model, 1, 1, &i, &undef(), &own(), &m).is_some(), "{url}");
    }
    for url in ["ws://relay/ws", "ws://relay/ws#x"] {
        let i = info(1.0, WS_, None, url, arr(vec![]), undef());
        assert!(start(&Model, 1, 1, &i, &undef(), &own(), &m).is_none(), "{url}");
    }
    // A type the shim does not number, no id, no URL: nothing.
    for bad in [
        info(1.0, 5.0, None, "http://app/", arr(vec![]), undef()),
        arr(vec![s("x"), n(0.0), undef(), s("http://app/")]),
        arr(vec![n(1.0), n(0.0), undef(), undef()]),
        arr(vec![]),
    ] {
        assert!(start(&Model, 1, 1, &bad, &undef(), &own(), &m).is_none());
    }
}

#[test]
fn request_bodies_text_binary_forms_and_beacons() {
    let m = Masks::default();
    let body = |x: V| {
        let i = info(1.0, FETCH, Some("POST"), "http://app/", arr(vec![]), x);
        parse(start(&Model, 1, 1, &i, &undef(), &own(), &m))["requestBody"].clone()
    };
    // A string is text, whatever its content type; cut at BODY bytes, its length said.
    assert_eq!(body(s("a=1&b=2")), json!("a=1&b=2"));
    let long = "é".repeat(BODY);
    let cut = body(s(&long));
    assert_eq!(cut["$"], "str");
    assert_eq!(cut["len"], BODY);
    let head = cut["head"].as_str().unwrap();
    assert!(head.len() <= BODY && head.len() > BODY - 2 && head.chars().all(|c| c == 'é'), "{}", head.len());
    // Binary is described, never read: a Blob's MIME type, a typed array's class.
    assert_eq!(
        body(v(M::Bin("image/png".into(), 2048))),
        json!({"$": "bin", "type": "image/png", "len": 2048})
    );
    assert_eq!(body(v(M::Bin("Uint8Array".into(), 4))), json!({"$": "bin", "type": "Uint8Array", "len": 4}));
    // FormData and other objects: as the walker writes them.
    let form = v(M::Obj(Some("FormData".into()), Default::default()));
    assert_eq!(body(form), json!({"$": "obj", "class": "FormData", "v": {}}));

    // A beacon: one start, `queued: false` only when the browser refused it.
    let i = info(2.0, BEACON, Some("POST"), "http://app/b", arr(vec![]), s("ping"));
    let ok = parse(start(&Model, 1, 1, &i, &b(true), &own(), &m));
    assert_eq!(
        (ok["type"].clone(), ok["requestBody"].clone(), ok.get("queued")),
        (json!("beacon"), json!("ping"), None)
    );
    let refused = parse(start(&Model, 1, 2, &i, &b(false), &own(), &m));
    assert_eq!(refused["queued"], false);
}

#[test]
fn which_bodies_are_read_as_text() {
    for yes in [
        "text/plain",
        "text/html; charset=utf-8",
        "TEXT/CSS",
        "application/json",
        "application/problem+json; charset=utf-8",
        "application/xml",
        "image/svg+xml",
        "application/javascript",
        "text/javascript",
        "application/x-www-form-urlencoded",
    ] {
        assert!(text_like(yes), "{yes}");
    }
    for no in [
        "text/event-stream",
        "Text/Event-Stream; charset=utf-8",
        "application/octet-stream",
        "image/png",
        "multipart/form-data; boundary=x",
        "application/pdf",
        "",
        "jso",
        "text/",
        " text/plain",
    ] {
        assert!(!text_like(no), "{no}");
    }
    let head = |ct: Option<&str>| {
        let h = ct.map_or_else(|| arr(vec![]), |ct| pairs(&[("x-a", "1"), ("Content-Type", ct)]));
        to_read(&Model, &arr(vec![n(200.0), s("OK"), h, n(5.0)]))
    };
    assert_eq!(head(Some("application/json")), BODY);
    assert_eq!(head(Some("text/event-stream")), 0, "an event stream is never read");
    assert_eq!(head(Some("image/png")), 0);
    assert_eq!(head(None), 0, "without a content type: not read");
}

/// `[status, statusText, headers, ms, body, cut]`.
fn res(headers: V, body: V, cut: bool) -> V {
    arr(vec![n(200.0), s("OK"), headers, n(12.0), body, b(cut)])
}

fn end_of(r: V) -> J {
    let i = info(9.0, FETCH, Some("GET"), "http://app/x", arr(vec![]), undef());
    parse(end(&Model, 20, 7, &i, &r, &Masks::default()))
}

#[test]
fn an_end_with_status_headers_time_and_body() {
    let h = pairs(&[("content-type", "application/json"), ("set-cookie", "sid=1"), ("x-echo", "1")]);
    let e = end_of(res(h, s(r#"{"ok":true}"#), false));
    assert_eq!(
        e,
        json!({"k": "network", "at": 20, "n": 7, "id": 9, "type": "fetch", "phase": "end", "status": 200,
            "statusText": "OK",
            "responseHeaders": [["content-type", "application/json"], ["set-cookie", "‹redacted 5 chars›"], ["x-echo", "1"]],
            "ms": 12, "responseBody": "{\"ok\":true}"})
    );
    // No headers, no status text: what there is.
    let e = end_of(arr(vec![n(204.0), s(""), arr(vec![]), n(1.0), s(""), b(false)]));
    assert_eq!(
        (e["status"].clone(), e["statusText"].clone(), e.get("responseHeaders")),
        (json!(204), json!(""), None)
    );
}

#[test]
fn response_bodies_cut_described_or_walked() {
    let json_h = pairs(&[("content-type", "application/json")]);
    // Fetch read more than BODY bytes and stopped: the head, without a length it does not know.
    let e = end_of(res(json_h.clone(), s(&"x".repeat(BODY + 10)), true));
    assert_eq!(e["responseBody"], json!({"$": "str", "head": "x".repeat(BODY)}));
    // Even a short text is said to be cut when the reading stopped (the decoder's last char).
    let e = end_of(res(json_h.clone(), s("abc"), true));
    assert_eq!(e["responseBody"], json!({"$": "str", "head": "abc"}));
    // XHR's whole responseText over BODY: cut, its whole length known.
    let e = end_of(res(json_h.clone(), s(&"y".repeat(BODY * 2)), false));
    assert_eq!(e["responseBody"], json!({"$": "str", "head": "y".repeat(BODY), "len": BODY * 2}));

    // Not read (fetch of a binary type): its type and Content-Length.
    let png = pairs(&[("content-type", "image/png"), ("content-length", "5120")]);
    assert_eq!(
        end_of(res(png, undef(), false))["responseBody"],
        json!({"$": "bin", "type": "image/png", "len": 5120})
    );
    let sse = pairs(&[("content-type", "text/event-stream")]);
    assert_eq!(
        end_of(res(sse, undef(), false))["responseBody"],
        json!({"$": "bin", "type": "text/event-stream"})
    );
    assert_eq!(end_of(res(arr(vec![]), undef(), false))["responseBody"], json!({"$": "bin", "type": ""}));
    // XHR's responseText of a binary type: described, not sent.
    let bin = pairs(&[("content-type", "application/octet-stream"), ("content-length", "12")]);
    assert_eq!(
        end_of(res(bin.clone(), s("\u{fffd}PNG garbage"), false))["responseBody"],
        json!({"$": "bin", "type": "application/octet-stream", "len": 12})
    );
    // XHR's arraybuffer or blob: its own size, the response's type.
    assert_eq!(
        end_of(res(bin, v(M::Bin("ArrayBuffer".into(), 3)), false))["responseBody"],
        json!({"$": "bin", "type": "application/octet-stream", "len": 3})
    );
    assert_eq!(
        end_of(res(arr(vec![]), v(M::Bin("ArrayBuffer".into(), 3)), false))["responseBody"],
        json!({"$": "bin", "type": "ArrayBuffer", "len": 3})
    );
    // A Content-Length that is not a number is left out.
    let odd = pairs(&[("content-type", "image/gif"), ("content-length", "12a")]);
    assert_eq!(end_of(res(odd, undef(), false))["responseBody"], json!({"$": "bin", "type": "image/gif"}));
    // XHR's responseType "json": the parsed value, walked; a failed parse is null.
    let e = end_of(res(json_h.clone(), obj(vec![("ok", b(true))]), false));
    assert_eq!(e["responseBody"], json!({"ok": true}));
    assert_eq!(end_of(res(json_h, v(M::Null), false))["responseBody"], J::Null);
}

#[test]
fn an_event_with_everything_large_stays_within_the_cap() {
    let big = "h".repeat(8_000);
    let many: Vec<(&str, &str)> = (0..40).map(|_| ("x-big", big.as_str())).collect();
    let i = info(
        1.0,
        FETCH,
        Some("PUT"),
        &["http://app/?q=", &"u".repeat(20_000)].concat(),
        pairs(&many),
        s(&"b".repeat(BODY)),
    );
    let e = parse(start(&Model, 1, 1, &i, &undef(), &own(), &Masks::default()));
    assert_eq!(e["url"]["$"], "str", "a URL is a string, cut like one");
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        text.contains(r#"{"$":"cut"}"#) || text.contains(r#""$":"more""#),
        "something said where it was cut"
    );
    let e = end_of(res(pairs(&many), s(&"r".repeat(BODY)), false));
    assert_eq!(e["ms"], 12, "the time is written before the body and the budget");
}

#[test]
fn a_failed_request() {
    let i = info(2.0, XHR, Some("GET"), "http://app/x", arr(vec![]), undef());
    let e = parse(fail(&Model, 5, 3, &i, &arr(vec![s("timeout"), n(3000.0)])));
    assert_eq!(
        e,
        json!({"k": "network", "at": 5, "n": 3, "id": 2, "type": "xhr", "phase": "error", "message": "timeout", "ms": 3000})
    );
    let e = parse(fail(&Model, 5, 4, &i, &arr(vec![undef(), n(-1.0)])));
    assert_eq!((e["message"].clone(), e.get("ms")), (json!(""), None));
}

#[test]
fn what_sockets_do() {
    let ws = info(6.0, WS_, None, "ws://app/ws-echo", arr(vec![]), undef());
    let sse = info(7.0, SSE, None, "http://app/sse", arr(vec![]), undef());
    let on = |i: &V, b: Vec<V>| parse(socket(&Model, 1, 1, i, &arr(b)));
    let head = |id: u64, ty: &str, phase: &str| json!({"k": "network", "at": 1, "n": 1, "id": id, "type": ty, "phase": phase});
    assert_eq!(on(&ws, vec![n(2.0)]), head(6, "ws", "open"));
    assert_eq!(on(&ws, vec![n(5.0)]), head(6, "ws", "error"));
    let mut m = head(6, "ws", "message");
    m["dir"] = json!("send");
    m["data"] = json!("hi");
    assert_eq!(on(&ws, vec![n(3.0), s("hi"), b(false)]), m);
    let e = on(&ws, vec![n(3.0), v(M::Bin("Blob".into(), 3)), b(true)]);
    assert_eq!(
        (e["dir"].clone(), e["data"].clone()),
        (json!("recv"), json!({"$": "bin", "type": "Blob", "len": 3}))
    );
    let mut c = head(6, "ws", "close");
    c["code"] = json!(1000);
    c["reason"] = json!("bye");
    assert_eq!(on(&ws, vec![n(4.0), n(1000.0), s("bye")]), c);
    assert_eq!(on(&ws, vec![n(4.0), n(1005.0), s("")]).get("reason"), None, "an empty reason is left out");

    let mut m = head(7, "sse", "message");
    m["event"] = json!("tick");
    m["data"] = json!("1");
    assert_eq!(on(&sse, vec![n(3.0), s("1"), s("tick")]), m);
    assert_eq!(on(&sse, vec![n(4.0)]), head(7, "sse", "close"));
    // A start or an end is not a socket's report; nor is a phase past the list.
    for phase in [0.0, 1.0, 6.0, 2.5] {
        assert!(socket(&Model, 1, 1, &ws, &arr(vec![n(phase)])).is_none(), "{phase}");
    }
}
