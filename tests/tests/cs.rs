//! The legacy CS gateway end to end: the relay in front of the demo XML-RPC server.
//!
//! Long on purpose: one test per behaviour of the CS gateway a user would notice (faults,
//! limits, cross-site refusals), each readable on its own.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tether_demo::cs::{Options, Stats};
use tether_relay::Config;
use tether_relay::cs::xmlrpc;
use tether_tests::{LegacyCsProcess, Relay, http_get, http_post, post_json, wait_metric};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The demo CS server on a port of its own.
struct Legacy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Legacy {
    async fn start(listen: &str, opts: Options) -> Legacy {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(tether_demo::cs::serve(listener, opts, stats.clone(), stop.clone()));
        Legacy { addr, stats, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Waits (bounded) until the legacy server has no open connection.
async fn upstream_connections_close(legacy: &Legacy) {
    upstream_connections_close_to(legacy, 0).await;
}

async fn setup(opts: Options, tweak: impl FnOnce(&mut Config)) -> (Legacy, Relay) {
    let legacy = Legacy::start("127.0.0.1:0", opts).await;
    let upstream = format!("http://{}/RPC2", legacy.addr);
    let relay = Relay::with(|c| {
        c.cs_upstream = Some(upstream);
        tweak(c);
    })
    .await;
    (legacy, relay)
}

async fn login(relay: &Relay, user: &str) -> String {
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": [user, "pw"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["user"], user);
    v["session"].as_str().expect("a session token").to_owned()
}

async fn call(relay: &Relay, token: &str, method: &str, params: Value) -> (u16, Value) {
    let (status, v, _) =
        post_json(relay.addr, "/cs/call", Some(token), &json!({"method": method, "params": params})).await;
    (status, v)
}

#[tokio::test]
async fn two_users_sessions_never_cross() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_queue = 64).await;
    let alice = login(&relay, "alice").await;
    let bob = login(&relay, "bob").await;
    assert_ne!(alice, bob);
    assert_eq!(alice.len(), 32, "128 random bits, hex");
    assert_eq!(legacy.stats.open.load(Relaxed), 2, "a connection per login");
    let mut calls = Vec::new();
    for i in 0..40 {
        let (token, who) = if i % 2 == 0 { (alice.clone(), "alice") } else { (bob.clone(), "bob") };
        let addr = relay.addr;
        calls.push(tokio::spawn(async move {
            let (status, v, _) =
                post_json(addr, "/cs/call", Some(&token), &json!({"method": "whoami"})).await;
            assert_eq!((status, v["result"].as_str()), (200, Some(who)));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn the_cookie_is_http_only_and_works_like_the_bearer_token() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let (status, v, head) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["carol"]})).await;
    assert_eq!(status, 200);
    let cookie = head.iter().find(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).expect("Set-Cookie");
    assert!(cookie.starts_with(&format!("tether_cs={}", v["session"].as_str().unwrap())), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/;"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let body = json!({"method": "whoami"}).to_string();
    let (status, _, text) = http_post(
        relay.addr,
        "/cs/call",
        &[("Content-Type", "application/json"), ("Cookie", pair)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["result"], "carol");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn calls_on_a_session_run_one_at_a_time_in_order() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_queue = 64).await;
    let token = login(&relay, "dave").await;
    // Sequential calls see the connection's counter go up by one each time.
    for want in 1..=3 {
        assert_eq!(call(&relay, &token, "counter", json!([])).await.1["result"], want);
    }
    // Concurrent calls: each gets its own number; none lost, none repeated.
    let mut calls = Vec::new();
    for _ in 0..30 {
        let (addr, token) = (relay.addr, token.clone());
        calls.push(tokio::spawn(async move {
            let (status, v, _) =
                post_json(addr, "/cs/call", Some(&token), &json!({"method": "counter"})).await;
            assert_eq!(status, 200, "{v}");
            v["result"].as_u64().unwrap()
        }));
    }
    let mut got = Vec::new();
    for c in calls {
        got.push(c.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (4..=33).collect::<Vec<_>>());
    assert_eq!(legacy.stats.accepted.load(Relaxed), 1, "all over the one logged-in connection");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn every_type_comes_back_as_json() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "erin").await;
    let (status, v) = call(&relay, &token, "types", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["result"],
        json!({
            "int": 7, "i8": 9_000_000_000i64, "double": 2.5, "string": " spaced ", "bool": true, "nil": null,
            "base64": {"$base64": "aGk="}, "datetime": {"$datetime": "20261121T12:00:00"},
            "array": [1, "a", [false]], "struct": {"k": "v"},
        })
    );
    let sample =
        json!({"deep": [1, 2.5, "x", null, {"$base64": "AA=="}, {"a": [true]}], "big": -5_000_000_000i64});
    assert_eq!(call(&relay, &token, "echo", json!([sample.clone()])).await.1["result"], sample);
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn faults_bad_input_and_bad_upstream_answers() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    // A failed login is a fault and makes no session.
    let (status, v, head) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["x", "wrong"]})).await;
    assert_eq!((status, &v["fault"]), (200, &json!({"code": 403, "message": "bad password"})));
    assert!(v.get("session").is_none() && !head.iter().any(|(k, _)| k == "set-cookie"));

    let token = login(&relay, "frank").await;
    let (status, v) = call(&relay, &token, "fault", json!([7, "nope"])).await;
    assert_eq!((status, &v), (200, &json!({"fault": {"code": 7, "message": "nope"}})));

    // Bad JSON from the client: 400, nothing sent upstream.
    let before = legacy.stats.calls.load(Relaxed);
    for body in ["{not json", r#"{"params": []}"#, r#"{"method": "echo", "params": {"a": 1}}"#] {
        let (status, _, text) = http_post(
            relay.addr,
            "/cs/call",
            &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {token}"))],
            body.as_bytes(),
        )
        .await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_frame")), "{body}: {text}");
    }
    assert_eq!(legacy.stats.calls.load(Relaxed), before);

    // Malformed XML from upstream: 502 with a clear error; the session still works.
    let (status, v) = call(&relay, &token, "badXml", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (502, Some("bad_upstream")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("XML"), "{v}");
    assert_eq!(call(&relay, &token, "whoami", json!([])).await.1["result"], "frank");

    // No session, or an unknown one.
    let (status, v, _) = post_json(relay.addr, "/cs/call", None, &json!({"method": "whoami"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (status, v) = call(&relay, "0123456789abcdef0123456789abcdef", "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")));
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn text_xml_passes_through_unchanged() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let login_xml = xmlrpc::encode_call("login", &[json!("gina")]).unwrap();
    let (status, head, body) =
        http_post(relay.addr, "/cs/login", &[("Content-Type", "text/xml")], login_xml.as_bytes()).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("<?xml") && body.contains("<name>user</name>"), "{body}");
    let token =
        head.iter().find(|(k, _)| k == "x-tether-session").map(|(_, v)| v.clone()).expect("X-Tether-Session");
    let value = json!({"odd": "  spaced & <escaped> ", "n": [1, 2.5]});
    let call_xml = xmlrpc::encode_call("echo", std::slice::from_ref(&value)).unwrap();
    let auth = format!("Bearer {token}");
    let (status, head, body) = http_post(
        relay.addr,
        "/cs/call",
        &[("Content-Type", "text/xml"), ("Authorization", &auth)],
        call_xml.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(head.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/xml")));
    assert_eq!(body, xmlrpc::encode_response(&value).unwrap(), "byte for byte what the server sent");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn an_upstream_restart_loses_the_session_and_nothing_retries_silently() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let listen = legacy.addr.to_string();
    let token = login(&relay, "hana").await;
    wait_metric(relay.addr, "tether_cs_sessions 1").await;
    legacy.stop().await;
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    let legacy = Legacy::start(&listen, Options::default()).await;
    let (status, v) = call(&relay, &token, "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")), "{v}");
    assert_eq!(legacy.stats.accepted.load(Relaxed), 0, "no new, un-logged-in connection was opened");
    // Logging in again works on the restarted server.
    let again = login(&relay, "hana").await;
    assert_eq!(call(&relay, &again, "whoami", json!([])).await.1["result"], "hana");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_cs_server_killed_mid_call_fails_that_call_and_the_queue_clearly_and_a_new_one_works() {
    let mut legacy = LegacyCsProcess::start("127.0.0.1:0").await;
    let listen = legacy.addr.to_string();
    let relay = Relay::with(|c| c.cs_upstream = Some(format!("http://{listen}/RPC2"))).await;
    let (hana, kai) = (login(&relay, "hana").await, login(&relay, "kai").await);
    // hana's call is under way on the server; a second one waits in her session's queue.
    let in_flight = {
        let (addr, token) = (relay.addr, hana.clone());
        tokio::spawn(async move {
            post_json(addr, "/cs/call", Some(&token), &json!({"method": "sleep", "params": [30_000]})).await
        })
    };
    legacy.wait_call("sleep").await;
    let queued = {
        let (addr, token) = (relay.addr, hana.clone());
        tokio::spawn(async move {
            post_json(addr, "/cs/call", Some(&token), &json!({"method": "whoami", "params": []})).await
        })
    };
    wait_metric(relay.addr, "tether_cs_calls_total 2").await; // logins are not calls

    assert!(!legacy.signal("KILL").await.success());
    for (what, task) in [("the call under way", in_flight), ("the queued call", queued)] {
        let (status, v, _) = task.await.unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")), "{what}: {v}");
    }
    // Every session on the dead server is over, and says so; nothing is retried elsewhere.
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    let (status, v) = call(&relay, &kai, "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")), "{v}");
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["hana", "pw"]})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (502, Some("upstream_closed")), "server down: {v}");

    // The server comes back on its port: logging in again works, the old tokens stay dead.
    let legacy = LegacyCsProcess::start(&listen).await;
    let again = login(&relay, "hana").await;
    assert_eq!(call(&relay, &again, "whoami", json!([])).await.1["result"], "hana");
    assert_eq!(call(&relay, &hana, "whoami", json!([])).await.0, 410);
    relay.stop().await;
    legacy.signal("TERM").await;
}

#[tokio::test]
async fn an_idle_close_upstream_ends_the_session() {
    let (legacy, relay) =
        setup(Options { idle_close: Some(Duration::from_millis(300)), ..Options::default() }, |_| {}).await;
    let token = login(&relay, "ivan").await;
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    let (status, v) = call(&relay, &token, "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")));
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn logout_closes_the_upstream_connection() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "judy").await;
    assert_eq!(legacy.stats.open.load(Relaxed), 1);
    let (status, v, head) =
        post_json(relay.addr, "/cs/logout", Some(&token), &json!({"method": "logout"})).await;
    assert_eq!((status, &v["ok"], &v["reply"]["result"]), (200, &json!(true), &json!(true)), "{v}");
    assert!(head.iter().any(|(k, v)| k == "set-cookie" && v.contains("Max-Age=0")));
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    upstream_connections_close(&legacy).await;
    assert_eq!(call(&relay, &token, "whoami", json!([])).await.1["error"]["code"], "session_lost");
    let (_, v, _) = post_json(relay.addr, "/cs/logout", Some(&token), &json!({})).await;
    assert_eq!(v, json!({"ok": true, "wasLoggedIn": false}));
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_a_clear_503() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_queue = 2).await;
    let token = login(&relay, "kim").await;
    let mut calls = Vec::new();
    for _ in 0..6 {
        let (addr, token) = (relay.addr, token.clone());
        calls.push(tokio::spawn(async move {
            post_json(addr, "/cs/call", Some(&token), &json!({"method": "sleep", "params": [1000]})).await
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for c in calls {
        let (status, v, _) = c.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert_eq!(v["error"]["code"], "rate_limited");
                assert!(v["error"]["message"].as_str().unwrap().contains("queued"), "{v}");
                busy += 1;
            }
            other => panic!("{other}: {v}"),
        }
    }
    // The queue holds two; the task may or may not have taken the first call off it yet when
    // the others arrive, so two or three are accepted and the rest are told to wait.
    assert!((2..=3).contains(&ok) && ok + busy == 6, "accepted {ok}, refused {busy}");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_browser_that_goes_away_mid_call_does_not_break_the_connection() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "leo").await;
    // Send a slow call and hang up at once.
    let body = json!({"method": "sleep", "params": [300]}).to_string();
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let req = format!(
        "POST /cs/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    drop(s);
    // The next call queues behind it on the same connection and works.
    let (status, v) = call(&relay, &token, "counter", json!([])).await;
    assert_eq!((status, &v["result"]), (200, &json!(1)), "{v}");
    assert_eq!(legacy.stats.slept.load(Relaxed), 1, "the abandoned call ran to its end first");
    assert_eq!(legacy.stats.accepted.load(Relaxed), 1);
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_call_that_hangs_times_out_and_ends_the_session() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_timeout_ms = 200).await;
    let token = login(&relay, "mia").await;
    let (status, v) = call(&relay, &token, "sleep", json!([2000])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (504, Some("upstream_closed")), "{v}");
    assert_eq!(call(&relay, &token, "whoami", json!([])).await.1["error"]["code"], "session_lost");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn limits_and_misconfiguration_are_clear_errors() {
    let (legacy, relay) = setup(Options::default(), |c| {
        c.cs_max_sessions = 2;
        c.cs_max_body = 2048;
    })
    .await;
    login(&relay, "a").await;
    login(&relay, "b").await;
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["c"]})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (503, Some("rate_limited")), "{v}");
    let big = json!({"method": "echo", "params": ["x".repeat(10_000)]});
    let (status, v, _) = post_json(relay.addr, "/cs/call", Some("t"), &big).await;
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    relay.stop().await;
    legacy.stop().await;

    // A relay without --cs-upstream, and one whose upstream is down.
    let plain = Relay::start().await;
    let (status, v, _) = post_json(plain.addr, "/cs/login", None, &json!({"method": "login"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("not_configured")));
    plain.stop().await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let relay = Relay::with(|c| c.cs_upstream = Some(format!("http://{dead}/"))).await;
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["z"]})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (502, Some("upstream_closed")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("cannot connect"), "{v}");
    relay.stop().await;
}

#[tokio::test]
async fn error_bodies_say_what_failed_not_where() {
    // An upstream that is down: the browser learns that, not the internal address.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let relay = Relay::with(|c| c.cs_upstream = Some(format!("http://{dead}/RPC2"))).await;
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": ["z"]})).await;
    let message = v["error"]["message"].as_str().unwrap();
    assert_eq!(status, 502, "{v}");
    assert!(message.contains("cannot connect to the CS server"), "{v}");
    assert!(!message.contains(&dead.port().to_string()) && !message.contains("127.0.0.1"), "{v}");
    // A page that is not built: no path on the relay's disk.
    let (status, _, body) = http_get(relay.addr, "/").await;
    assert_eq!(status, 503);
    let dir = relay.dir.path().to_string_lossy().into_owned();
    assert!(!body.contains(&dir) && !body.contains("/tmp"), "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn cross_site_requests_never_reach_the_cs_server() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "olga").await;
    let cookie = format!("tether_cs={token}");
    let body = json!({"method": "whoami"}).to_string();
    let post = |path: &'static str, headers: Vec<(&'static str, String)>| {
        let (addr, body) = (relay.addr, body.clone());
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, head, text) = http_post(addr, path, &h, body.as_bytes()).await;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            (status, v, head)
        }
    };
    let (calls, accepted) = (legacy.stats.calls.load(Relaxed), legacy.stats.accepted.load(Relaxed));
    // What another site's page makes a browser send without asking: a form (text/plain,
    // urlencoded, multipart) or a `no-cors` fetch, with the victim's cookie.
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        for path in ["/cs/login", "/cs/call", "/cs/logout"] {
            let mut h = vec![("Cookie", cookie.clone())];
            h.extend(ct.map(|ct| ("Content-Type", ct.to_owned())));
            let (status, v, _) = post(path, h).await;
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (415, Some("unsupported_media_type")),
                "{path} {ct:?}: {v}"
            );
        }
    }
    // JSON from a page of another origin: another site, a sandboxed frame, or another port of
    // the same host (cookies do not tell ports apart).
    let other_port = format!("http://127.0.0.1:{}", relay.addr.port() ^ 1);
    for origin in ["https://evil.example", "null", other_port.as_str(), "http://localhost"] {
        for path in ["/cs/login", "/cs/call", "/cs/logout"] {
            let h = vec![
                ("Cookie", cookie.clone()),
                ("Content-Type", "application/json".to_owned()),
                ("Origin", origin.to_owned()),
            ];
            let (status, v, _) = post(path, h).await;
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{path} from {origin}: {v}"
            );
        }
    }
    assert_eq!(legacy.stats.calls.load(Relaxed), calls, "no call reached the CS server");
    assert_eq!(legacy.stats.accepted.load(Relaxed), accepted, "no login connection was opened");
    // The relay's own pages (http, or https behind a proxy), and clients that send no Origin.
    for origin in [Some(format!("http://{}", relay.addr)), Some(format!("https://{}", relay.addr)), None] {
        let mut h =
            vec![("Cookie", cookie.clone()), ("Content-Type", "Application/JSON; charset=utf-8".to_owned())];
        h.extend(origin.clone().map(|o| ("Origin", o)));
        let (status, v, _) = post("/cs/call", h).await;
        assert_eq!((status, &v["result"]), (200, &json!("olga")), "{origin:?}: {v}");
    }
    relay.stop().await;

    // `--allow-origin` adds origins; the relay's own stays allowed.
    let relay = Relay::with(|c| {
        c.cs_upstream = Some(format!("http://{}/RPC2", legacy.addr));
        c.allow_origin = vec!["https://ops.example".into()];
    })
    .await;
    let token = login(&relay, "pia").await;
    let bearer = format!("Bearer {token}");
    for (origin, want) in [
        ("https://ops.example", 200),
        (&*format!("http://{}", relay.addr), 200),
        ("https://evil.example", 403),
    ] {
        let h =
            [("Authorization", bearer.as_str()), ("Content-Type", "application/json"), ("Origin", origin)];
        let (status, _, text) = http_post(relay.addr, "/cs/call", &h, body.as_bytes()).await;
        assert_eq!(status, want, "{origin}: {text}");
    }
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn the_room_socket_still_takes_the_apps_own_origins_by_default() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let relay = Relay::with(|c| c.cs_upstream = Some("http://127.0.0.1:9/".into())).await;
    let mut req = format!("{}?room=app&role=device&secret=s", relay.ws_url()).into_client_request().unwrap();
    req.headers_mut().insert("origin", "https://news.app.example".parse().unwrap());
    let joined =
        tokio::time::timeout(tether_tests::WAIT, tokio_tungstenite::connect_async(req)).await.unwrap();
    assert!(joined.is_ok(), "an H5 page on its own origin joins its room: {joined:?}");
    relay.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_same_site_strict_and_secure_over_https() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let cookies = |head: &[(String, String)]| -> Vec<String> {
        head.iter().filter(|(k, _)| k == "set-cookie").map(|(_, v)| v.clone()).collect()
    };
    let body = json!({"method": "login", "params": ["quinn"]}).to_string();
    let plain = [("Content-Type", "application/json")];
    let (_, head, _) = http_post(relay.addr, "/cs/login", &plain, body.as_bytes()).await;
    let set = cookies(&head);
    assert!(set[0].contains("SameSite=Strict") && set[0].contains("HttpOnly"), "{set:?}");
    assert!(!set[0].contains("Secure"), "plain http: a Secure cookie would not come back: {set:?}");
    assert!(
        set.iter().any(|c| c.contains("Path=/cs;") && c.contains("Max-Age=0")),
        "the old path is cleared: {set:?}"
    );
    for https in [("X-Forwarded-Proto", "https".to_owned()), ("Origin", format!("https://{}", relay.addr))] {
        let h = [plain[0], (https.0, https.1.as_str())];
        let (status, head, text) = http_post(relay.addr, "/cs/login", &h, body.as_bytes()).await;
        assert_eq!(status, 200, "{text}");
        let set = cookies(&head);
        assert!(set[0].starts_with("tether_cs=") && set[0].contains("; Secure"), "{https:?}: {set:?}");
        let token = serde_json::from_str::<Value>(&text).unwrap()["session"].as_str().unwrap().to_owned();
        let bearer = format!("Bearer {token}");
        let h = [plain[0], (https.0, https.1.as_str()), ("Authorization", &bearer)];
        let (_, head, _) = http_post(relay.addr, "/cs/logout", &h, b"{}").await;
        let set = cookies(&head);
        assert!(
            set[0].contains("Max-Age=0") && set[0].contains("; Secure"),
            "cleared over https too: {set:?}"
        );
    }
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn raw_xml_with_a_doctype_never_reaches_the_cs_server() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "rita").await;
    let bearer = format!("Bearer {token}");
    let (calls, accepted) = (legacy.stats.calls.load(Relaxed), legacy.stats.accepted.load(Relaxed));
    let call = "<methodCall><methodName>whoami</methodName><params/></methodCall>";
    for doc in [
        format!(
            "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]>{call}"
        ),
        format!("<!doctype methodCall SYSTEM \"http://10.0.0.5/x.dtd\">{call}"),
        format!("<!-- x --><!ENTITY x SYSTEM \"file:///etc/passwd\">{call}"),
    ] {
        for (path, auth) in [("/cs/login", None), ("/cs/call", Some(bearer.as_str()))] {
            let mut h = vec![("Content-Type", "text/xml")];
            h.extend(auth.map(|a| ("Authorization", a)));
            let (status, _, text) = http_post(relay.addr, path, &h, doc.as_bytes()).await;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (400, Some("bad_frame")),
                "{path} {doc}: {text}"
            );
        }
    }
    assert_eq!(legacy.stats.calls.load(Relaxed), calls, "nothing reached the CS server");
    assert_eq!(legacy.stats.accepted.load(Relaxed), accepted, "no connection was opened for a login");
    relay.stop().await;
    legacy.stop().await;
}

/// A legacy server that answers every request with the same XML-RPC value, but labelled
/// `text/html`, and whose value is a script a browser would run if it took the label.
async fn html_labelling_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut r = BufReader::new(tcp);
                loop {
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    r.read_exact(&mut body).await.unwrap();
                    let answer = "<?xml version=\"1.0\"?><methodResponse><params><param><value><string><![CDATA[<script>alert(document.cookie)</script>]]></string></value></param></params></methodResponse>";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    r.get_mut().write_all(resp.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn an_upstream_answer_is_served_as_xml_never_as_its_own_content_type() {
    let (upstream, task) = html_labelling_upstream().await;
    let redis = tether_tests::Redis::start();
    let node = |name: &'static str| {
        let url = redis.as_ref().map(|r| r.url.clone());
        Relay::with(move |c| {
            c.cs_upstream = Some(format!("http://{upstream}/RPC2"));
            c.redis = url;
            c.node_id = Some(name.into());
        })
    };
    let (a, b) = (node("a").await, node("b").await);
    let xml = b"<?xml version=\"1.0\"?><methodCall><methodName>login</methodName><params/></methodCall>";
    let (status, head, text) = http_post(a.addr, "/cs/login", &[("Content-Type", "text/xml")], xml).await;
    assert_eq!(status, 200, "{text}");
    let header = |head: &[(String, String)], name: &str| {
        head.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let served =
        |head: &[(String, String)]| (header(head, "content-type"), header(head, "x-content-type-options"));
    let want = ("text/xml; charset=utf-8".to_owned(), "nosniff".to_owned());
    assert_eq!(served(&head), want, "a login's answer");
    let bearer = format!("Bearer {}", header(&head, "x-tether-session"));
    // On the session's own relay, and (in cluster mode, where Redis is installed) through another.
    let relays = if redis.is_some() { vec![&a, &b] } else { vec![&a] };
    for relay in relays {
        let h = [("Content-Type", "text/xml"), ("Authorization", bearer.as_str())];
        let (status, head, text) = http_post(relay.addr, "/cs/call", &h, xml).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(served(&head), want, "{}: {text}", relay.addr);
        assert!(text.contains("<script>"), "the bytes are the server's, unchanged: {text}");
    }
    // JSON answers stay JSON, with nosniff too.
    let (_, _, head) = post_json(b.addr, "/cs/call", Some(&bearer[7..]), &json!({"method": "x"})).await;
    assert_eq!(served(&head), ("application/json".to_owned(), "nosniff".to_owned()));
    a.stop().await;
    b.stop().await;
    task.abort();
}

#[tokio::test]
async fn values_xml_rpc_cannot_carry_exactly_never_reach_the_cs_server() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let token = login(&relay, "sven").await;
    let bearer = format!("Bearer {token}");
    let calls = legacy.stats.calls.load(Relaxed);
    for (body, says) in [
        (r#"{"method": "echo", "params": [123456789012345678901234567890]}"#, "64-bit"),
        (r#"{"method": "echo", "params": [-9223372036854775809]}"#, "64-bit"),
        (r#"{"method": "echo", "params": [{"n": [18446744073709551616]}]}"#, "64-bit"),
        (r#"{"method": "echo\u0000", "params": []}"#, "U+0000"),
        (r#"{"method": "echo", "params": ["a\u0000b"]}"#, "U+0000"),
        (r#"{"method": "echo", "params": [{"k\u0000": 1}]}"#, "U+0000"),
        (r#"{"method": "echo", "params": ["\u000b"]}"#, "U+000B"),
        (r#"{"method": "echo", "params": [["\u001f"]]}"#, "U+001F"),
        (r#"{"method": "echo", "params": ["\uffff"]}"#, "U+FFFF"),
    ] {
        let h = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
        let (status, _, text) = http_post(relay.addr, "/cs/call", &h, body.as_bytes()).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_frame")), "{body}: {text}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{body}: {text}");
    }
    assert_eq!(legacy.stats.calls.load(Relaxed), calls, "nothing reached the CS server");
    // What XML carries still goes through, exactly.
    let fine = json!(["tab\tnewline\ncr\r", i64::MAX, i64::MIN, 1e300]);
    assert_eq!(call(&relay, &token, "echo", json!([fine.clone()])).await, (200, json!({"result": fine})));
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_session_idle_past_its_timeout_is_closed_with_its_connection() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_idle_ms = 300).await;
    let token = login(&relay, "nina").await;
    assert_eq!(legacy.stats.open.load(Relaxed), 1);
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    upstream_connections_close(&legacy).await;
    let (status, v) = call(&relay, &token, "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")));
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_a_call_landing_on_another_relay_runs_on_the_sessions_own_connection() {
    let Some(redis) = tether_tests::Redis::start() else { return };
    let legacy = Legacy::start("127.0.0.1:0", Options::default()).await;
    let node = |name: &'static str| {
        let (upstream, url) = (format!("http://{}/RPC2", legacy.addr), redis.url.clone());
        Relay::with(move |c| {
            c.cs_upstream = Some(upstream);
            c.redis = Some(url);
            c.node_id = Some(name.into());
        })
    };
    let (a, b) = (node("a").await, node("b").await);
    let alice = login(&a, "alice").await;
    let bob = login(&b, "bob").await;
    // Each call, wherever it lands, runs on the connection its user logged in on.
    for _ in 0..3 {
        assert_eq!(call(&b, &alice, "whoami", json!([])).await, (200, json!({"result": "alice"})));
        assert_eq!(call(&a, &bob, "whoami", json!([])).await.1["result"], "bob");
    }
    assert_eq!(legacy.stats.open.load(Relaxed), 2, "no connection opened for a forwarded call");
    // Raw XML-RPC passes through a forward unchanged, with its content type.
    let xml = b"<?xml version=\"1.0\"?><methodCall><methodName>whoami</methodName><params/></methodCall>";
    let bearer = format!("Bearer {alice}");
    let (status, head, text) =
        http_post(b.addr, "/cs/call", &[("Content-Type", "text/xml"), ("Authorization", &bearer)], xml).await;
    assert_eq!(status, 200, "{text}");
    assert!(head.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/xml")), "{head:?}");
    assert!(text.contains("<string>alice</string>") || text.contains("<value>alice</value>"), "{text}");
    // A logout through the other relay closes the session where it lives.
    let (status, v, head) = post_json(b.addr, "/cs/logout", Some(&alice), &json!({})).await;
    assert_eq!((status, &v["wasLoggedIn"]), (200, &json!(true)), "{v}");
    assert!(
        head.iter().any(|(k, v)| k == "set-cookie" && v.contains("Max-Age=0")),
        "the cookie is cleared: {head:?}"
    );
    upstream_connections_close_to(&legacy, 1).await;
    assert_eq!(call(&a, &alice, "whoami", json!([])).await.1["error"]["code"], "session_lost");
    // The relay holding bob's session stops: a call for it elsewhere says the session is lost.
    b.stop().await;
    let (status, v) = call(&a, &bob, "whoami", json!([])).await;
    assert_eq!((status, v["error"]["code"].as_str()), (410, Some("session_lost")), "{v}");
    a.stop().await;
    legacy.stop().await;
}

/// Waits (bounded) until the legacy server has `n` open connections.
async fn upstream_connections_close_to(legacy: &Legacy, n: u64) {
    let deadline = std::time::Instant::now() + tether_tests::WAIT;
    while legacy.stats.open.load(Relaxed) as u64 != n {
        assert!(std::time::Instant::now() < deadline, "the upstream connections stayed open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A JSON login of `user` from address `ip` (`X-Real-IP`: the relay runs with
/// `--real-ip-header X-Real-IP`, as behind a proxy).
async fn login_from(relay: &Relay, ip: &str, user: &str) -> (u16, Value, Vec<(String, String)>) {
    let body = json!({"method": "login", "params": [user, "pw"]}).to_string();
    let headers = [("Content-Type", "application/json"), ("X-Real-IP", ip)];
    let (status, head, text) = http_post(relay.addr, "/cs/login", &headers, body.as_bytes()).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")), head)
}

#[tokio::test]
async fn concurrent_slow_logins_never_exceed_the_session_cap() {
    // 60 logins at once to a server that takes 300 ms to answer each: the place under
    // --cs-max-sessions is taken before connecting, so no more than 10 connections ever open.
    let slow = Options { login_delay: Some(Duration::from_millis(300)), ..Options::default() };
    let (legacy, relay) = setup(slow, |c| {
        c.cs_max_sessions = 10;
        c.cs_logins_per_ip = 0;
    })
    .await;
    let logins: Vec<_> = (0..60)
        .map(|i| {
            let addr = relay.addr;
            tokio::spawn(async move {
                let user = format!("u{i}");
                let body = json!({"method": "login", "params": [user, "pw"]});
                let (status, v, _) = post_json(addr, "/cs/login", None, &body).await;
                (user, status, v)
            })
        })
        .collect();
    let (mut made, mut refused) = (Vec::new(), 0);
    for l in logins {
        let (user, status, v) = l.await.unwrap();
        if status == 200 {
            made.push((user, v["session"].as_str().expect("a session").to_owned()));
        } else {
            assert_eq!((status, v["error"]["code"].as_str()), (503, Some("rate_limited")), "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("--cs-max-sessions"), "{v}");
            refused += 1;
        }
    }
    assert_eq!((made.len(), refused), (10, 50));
    assert!(legacy.stats.peak_open.load(Relaxed) <= 10, "{:?} connections", legacy.stats.peak_open);
    wait_metric(relay.addr, "tether_cs_sessions 10").await;
    wait_metric(relay.addr, "tether_cs_logins_refused_total{reason=\"full\"} 50").await;
    // The sessions made work; one that ends makes room for a new login.
    for (user, token) in &made {
        assert_eq!(call(&relay, token, "whoami", json!([])).await, (200, json!({"result": user})));
    }
    let (status, _, _) = post_json(relay.addr, "/cs/logout", Some(&made[0].1), &json!({})).await;
    assert_eq!(status, 200);
    wait_metric(relay.addr, "tether_cs_sessions 9").await;
    login(&relay, "late").await;
    assert!(legacy.stats.peak_open.load(Relaxed) <= 10);
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn logins_per_address_are_capped_and_other_addresses_are_not_slowed() {
    let (legacy, relay) = setup(Options::default(), |c| {
        c.cs_logins_per_ip = 3;
        c.real_ip_header = Some("X-Real-IP".into());
    })
    .await;
    let (status, first, _) = login_from(&relay, "198.51.100.7", "olga").await;
    assert_eq!(status, 200, "{first}");
    // A failed login (a fault: wrong password) counts too.
    let body = json!({"method": "login", "params": ["olga", "wrong"]}).to_string();
    let headers = [("Content-Type", "application/json"), ("X-Real-IP", "198.51.100.7")];
    let (status, _, text) = http_post(relay.addr, "/cs/login", &headers, body.as_bytes()).await;
    assert!(status == 200 && text.contains("fault"), "{status} {text}");
    assert_eq!(login_from(&relay, "198.51.100.7", "olga").await.0, 200);
    let (status, v, head) = login_from(&relay, "198.51.100.7", "olga").await;
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--cs-logins-per-ip"), "{v}");
    let retry = head.iter().find(|(k, _)| k == "retry-after").map(|(_, v)| v.parse::<u64>().unwrap());
    assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{head:?}");
    assert_eq!(legacy.stats.accepted.load(Relaxed), 3, "the refused login never reached the server");
    // Another address logs in; the sessions made keep working.
    let (status, v, _) = login_from(&relay, "198.51.100.8", "pia").await;
    assert_eq!(status, 200, "{v}");
    let token = first["session"].as_str().unwrap();
    assert_eq!(call(&relay, token, "whoami", json!([])).await.1["result"], "olga");
    wait_metric(relay.addr, "tether_cs_logins_refused_total{reason=\"rate\"} 1").await;
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn only_the_login_method_reaches_the_cs_server_at_login() {
    let (legacy, relay) = setup(Options::default(), |_| {}).await;
    let (status, v, _) = post_json(relay.addr, "/cs/login", None, &json!({"method": "whoami"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_frame")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--cs-login-method"), "{v}");
    let xml = xmlrpc::encode_call("echo", &[json!(1)]).unwrap();
    let (status, _, text) =
        http_post(relay.addr, "/cs/login", &[("Content-Type", "text/xml")], xml.as_bytes()).await;
    let message = serde_json::from_str::<Value>(&text).unwrap()["error"]["message"].clone();
    assert!(status == 400 && message.as_str().unwrap().contains("not \"echo\""), "{status} {text}");
    assert_eq!(legacy.stats.accepted.load(Relaxed), 0, "no connection was opened");
    wait_metric(relay.addr, "tether_cs_logins_refused_total{reason=\"method\"} 2").await;
    login(&relay, "quinn").await;
    relay.stop().await;
    // Another legacy server's login method: that one goes through (the demo server faults it,
    // as it knows only `login`), and `login` no longer does.
    let upstream = format!("http://{}/RPC2", legacy.addr);
    let relay = Relay::with(|c| {
        c.cs_upstream = Some(upstream);
        c.cs_login_method = "signIn".into();
    })
    .await;
    let (status, v, _) = post_json(relay.addr, "/cs/login", None, &json!({"method": "login"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_frame")), "{v}");
    let (status, v, _) = post_json(relay.addr, "/cs/login", None, &json!({"method": "signIn"})).await;
    assert_eq!((status, v["fault"]["code"].as_i64()), (200, Some(401)), "{v}");
    relay.stop().await;
    legacy.stop().await;
}

#[tokio::test]
async fn a_session_past_its_max_age_is_closed_however_busy() {
    let (legacy, relay) = setup(Options::default(), |c| c.cs_max_age_ms = 400).await;
    let token = login(&relay, "rita").await;
    // Calls keep a session from idling, not from ageing: one of them gets `session_lost`.
    let deadline = std::time::Instant::now() + tether_tests::WAIT;
    loop {
        let (status, v) = call(&relay, &token, "whoami", json!([])).await;
        if status == 410 {
            assert_eq!(v["error"]["code"], "session_lost", "{v}");
            break;
        }
        assert_eq!((status, &v["result"]), (200, &json!("rita")), "{v}");
        assert!(std::time::Instant::now() < deadline, "the session outlived its age");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_metric(relay.addr, "tether_cs_sessions_expired_total 1").await;
    wait_metric(relay.addr, "tether_cs_sessions 0").await;
    upstream_connections_close(&legacy).await;
    login(&relay, "rita").await;
    relay.stop().await;
    legacy.stop().await;
}
