//! UDP alarms through the relay to `/alarms` subscribers, against the demo alarm service.
//!
//! Long on purpose: one test per behaviour of the alarm stream a user would notice, with the
//! demo service and raw clients they share.

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_demo::alarm::{Options, Stats};
use tether_tests::{Relay, WAIT, get_json, http_get, post_json, wait_metric};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The demo alarm service, bound now and serving once `start` is called.
struct Service {
    addr: SocketAddr,
    sock: Option<UdpSocket>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Service {
    async fn bind(addr: &str) -> Service {
        let sock = UdpSocket::bind(addr).await.unwrap();
        Service {
            addr: sock.local_addr().unwrap(),
            sock: Some(sock),
            stats: Arc::default(),
            stop: CancellationToken::new(),
            task: None,
        }
    }

    fn start(&mut self, opts: Options) {
        let sock = self.sock.take().expect("not started yet");
        self.task =
            Some(tokio::spawn(tether_demo::alarm::serve(sock, opts, self.stats.clone(), self.stop.clone())));
    }

    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// The `--alarm-token` of the test relays.
const TOKEN: &str = "alarm-test-token";

async fn relay_for(service: SocketAddr, tweak: impl FnOnce(&mut tether_relay::Config)) -> Relay {
    Relay::with(|c| {
        c.alarm_udp = Some(service.to_string());
        c.alarm_renew_ms = 50;
        c.alarm_token = Some(TOKEN.into());
        tweak(c);
    })
    .await
}

/// Subscribes with the relay's `--alarm-token`.
async fn subscribe(relay: &Relay, query: &str) -> Ws {
    let auth = format!("Bearer {TOKEN}");
    open(relay.addr, query, &[("authorization", &auth)]).await.unwrap_or_else(|e| panic!("subscribe: {e:?}"))
}

/// Opens `/alarms{query}` with these headers; a refusal's status and body.
async fn open(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}/alarms{query}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("in time") {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((resp.status().as_u16(), serde_json::from_slice(&body).unwrap_or(Value::Null)))
        }
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

/// The next alarm or alarmGap frame (pings are answered by reading).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg =
            tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// The relay's last alarm seq, from `/metrics` (seqs start at the relay's start time × 1000).
async fn last_seq(relay: &Relay) -> u64 {
    let m = http_get(relay.addr, "/metrics").await.2;
    m.lines()
        .find_map(|l| l.strip_prefix("tether_alarm_last_seq "))
        .and_then(|v| v.parse().ok())
        .expect("tether_alarm_last_seq")
}

/// Reads until alarm `last`, which may be learnt while reading (0 until then: the watch is
/// sent it later, and a reader already past it returns then); returns the seqs delivered and
/// the total said dropped.
async fn read_to(ws: &mut Ws, mut last: watch::Receiver<u64>) -> (Vec<u64>, u64) {
    let (mut seqs, mut dropped) = (Vec::new(), 0);
    let mut may_change = true; // until the sender is gone: then the value is final
    loop {
        let target = *last.borrow_and_update();
        if target != 0 && seqs.last() == Some(&target) {
            return (seqs, dropped);
        }
        let f = tokio::select! {
            f = next(ws) => f,
            changed = last.changed(), if may_change => {
                may_change = changed.is_ok();
                continue;
            }
        };
        match f["type"].as_str() {
            Some("alarm") => seqs.push(f["msg"]["seq"].as_u64().unwrap()),
            Some("alarmGap") => dropped += f["msg"]["dropped"].as_u64().unwrap(),
            other => panic!("unexpected frame {other:?}: {f}"),
        }
    }
}

/// A `last` that is known from the start.
fn known(last: u64) -> watch::Receiver<u64> {
    watch::channel(last).1
}

#[tokio::test]
async fn every_payload_kind_arrives_decoded() {
    let mut service = Service::bind("127.0.0.1:0").await;
    let relay = relay_for(service.addr, |_| {}).await;
    service.start(Options { rate: 1000, count: Some(8), ..Options::default() });
    wait_metric(relay.addr, "tether_alarms_received_total 8").await;
    let mut ws = subscribe(&relay, "?since=0").await;
    let first = last_seq(&relay).await - 7;
    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(next(&mut ws).await);
    }
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f["type"], "alarm");
        assert_eq!(f["msg"]["seq"], first + i as u64);
        assert_eq!(f["msg"]["from"], service.addr.to_string());
        assert!(f["msg"]["at"].as_u64().unwrap() > 1_600_000_000_000);
    }
    // The service's alarm n is kind n % 4: JSON, XML, text, binary.
    let data: Vec<&Value> = got.iter().map(|f| &f["msg"]["data"]).collect();
    assert_eq!(data[3]["seq"], 4, "JSON stays JSON: {}", data[3]);
    assert_eq!(data[0]["alarm"]["@seq"], "1", "XML becomes JSON: {}", data[0]);
    assert_eq!(data[0]["alarm"]["zone"], "1");
    assert!(data[1].as_str().unwrap().starts_with("ALARM 2 zone=2"), "text stays text: {}", data[1]);
    let b64 = data[2]["$base64"].as_str().expect("binary is base64");
    assert_eq!(b64, "//4AAAAAAAAAAw==", "0xFF 0xFE then 3 as u64");
    relay.stop().await;
    service.stop().await;
}

#[tokio::test]
async fn at_a_high_rate_every_alarm_is_delivered_or_counted_for_each_subscriber() {
    const N: u64 = 10_000;
    let mut service = Service::bind("127.0.0.1:0").await;
    // A slow machine may take longer than two heartbeats to send it all, and a subscriber
    // that reads nothing for that long is closed (tested below): this test is about the count.
    let relay = relay_for(service.addr, |c| {
        c.alarm_queue = 64;
        c.heartbeat_ms = 60_000;
    })
    .await;
    let mut fast = subscribe(&relay, "").await;
    let mut slow = subscribe(&relay, "").await; // reads nothing until the end
    wait_metric(relay.addr, "tether_alarm_subscribers 2").await;
    let (last, learnt) = watch::channel(0);
    let reader = {
        let learnt = learnt.clone();
        tokio::spawn(async move { read_to(&mut fast, learnt).await })
    };
    // About 20 MB of alarms: more than the slow subscriber's socket buffers can hold.
    service.start(Options { rate: 20_000, count: Some(N), pad: 2000, ..Options::default() });
    wait_metric(relay.addr, &format!("tether_alarms_received_total {N}")).await;
    assert_eq!(service.stats.datagrams.load(Relaxed), N, "the service sent each alarm once, to the relay");
    last.send_replace(last_seq(&relay).await);

    for (name, (seqs, dropped)) in
        [("fast", reader.await.unwrap()), ("slow", read_to(&mut slow, learnt).await)]
    {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{name}: in order, no repeats");
        assert_eq!(
            seqs.len() as u64 + dropped,
            N,
            "{name}: {} delivered + {dropped} said dropped",
            seqs.len()
        );
        eprintln!("{name} subscriber: {} delivered, {dropped} in alarmGap frames", seqs.len());
        if name == "slow" {
            assert!(dropped > 0, "the slow subscriber fell behind");
        }
    }
    let m = http_get(relay.addr, "/metrics").await.2;
    assert!(!m.contains("tether_alarms_dropped_total{reason=\"lagging\"} 0\n"), "{m}");
    relay.stop().await;
    service.stop().await;
}

#[tokio::test]
async fn since_replays_what_is_held_and_says_what_is_not() {
    let mut service = Service::bind("127.0.0.1:0").await;
    let relay = relay_for(service.addr, |c| c.alarm_history = 100).await;
    service.start(Options { rate: 10_000, count: Some(300), ..Options::default() });
    wait_metric(relay.addr, "tether_alarms_received_total 300").await;
    let last = last_seq(&relay).await;
    let first = last - 299;
    // since=0 (or any seq before this relay started): everything this relay still holds, and
    // the count of what it no longer does.
    let mut ws = subscribe(&relay, "?since=0").await;
    let gap = next(&mut ws).await;
    assert_eq!((gap["type"].as_str(), gap["msg"]["dropped"].as_u64()), (Some("alarmGap"), Some(200)));
    let (seqs, dropped) = read_to(&mut ws, known(last)).await;
    assert_eq!((seqs.first(), seqs.len(), dropped), (Some(&(first + 200)), 100, 0));
    let mut ws = subscribe(&relay, &format!("?since={}", first + 249)).await;
    let (seqs, dropped) = read_to(&mut ws, known(last)).await;
    assert_eq!((seqs.first(), seqs.len(), dropped), (Some(&(first + 250)), 50, 0));
    relay.stop().await;
    service.stop().await;
}

/// A service sending 200 alarms/s to a relay with one subscriber, which has had its first.
async fn flowing() -> (Service, Relay, Ws) {
    let mut service = Service::bind("127.0.0.1:0").await;
    let relay = relay_for(service.addr, |_| {}).await;
    let mut ws = subscribe(&relay, "").await;
    service.start(Options { rate: 200, ..Options::default() });
    assert_eq!(next(&mut ws).await["type"], "alarm");
    (service, relay, ws)
}

#[tokio::test]
async fn a_restarted_service_registers_the_relay_again() {
    let (service, relay, mut ws) = flowing().await;
    let addr = service.addr;
    service.stop().await;
    // A new process on the same port knows no subscriber until the relay renews.
    let mut again = Service::bind(&addr.to_string()).await;
    again.start(Options { rate: 200, ..Options::default() });
    let deadline = std::time::Instant::now() + WAIT;
    while again.stats.subscribes.load(Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the relay never registered with the new process");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Every alarm of the old process was taken in long before this (it stopped before the new
    // one bound); what comes after is the new process's. (Waiting for its "ALARM 2" instead
    // could stop at the old process's alarm 2, still unread on this socket.)
    let after = last_seq(&relay).await;
    loop {
        let f = next(&mut ws).await;
        if f["type"] == "alarm" && f["msg"]["seq"].as_u64() > Some(after) {
            break;
        }
    }
    relay.stop().await;
    again.stop().await;
}

#[tokio::test]
async fn a_vanished_service_is_told_to_subscribers_who_stay_connected_until_it_returns() {
    let (service, relay, mut ws) = flowing().await;
    let addr = service.addr;
    assert_eq!(get_json(relay.addr, "/healthz").await.1["alarmSource"], "up");
    service.stop().await;

    // The next renewal meets a closed port: every subscriber is told, once.
    let told = loop {
        let f = next(&mut ws).await;
        if f["type"] == "alarmSource" {
            break f;
        }
    };
    assert_eq!(told["msg"], json!({"state": "unreachable", "service": addr.to_string()}));
    assert_eq!(get_json(relay.addr, "/healthz").await.1["alarmSource"], "unreachable");
    wait_metric(relay.addr, "tether_alarm_source_unreachable 1").await;
    // A subscriber arriving now hears it first; the relay keeps both and keeps renewing.
    let mut late = subscribe(&relay, "").await;
    assert_eq!(next(&mut late).await["msg"]["state"], "unreachable");
    wait_metric(relay.addr, "tether_alarm_subscribers 2").await;

    // The service returns on its port: "up" comes before its first alarm, on both sockets.
    let mut again = Service::bind(&addr.to_string()).await;
    again.start(Options { rate: 200, ..Options::default() });
    for ws in [&mut ws, &mut late] {
        let f = next(ws).await;
        assert_eq!(f["msg"], json!({"state": "up", "service": addr.to_string()}), "{f}");
        assert_eq!(next(ws).await["type"], "alarm");
    }
    wait_metric(relay.addr, "tether_alarm_source_unreachable 0").await;
    relay.stop().await;
    again.stop().await;
}

/// A relay taking alarms pushed to a free UDP port (its address returned), set up by `tweak`.
async fn listening(tweak: impl FnOnce(&mut tether_relay::Config)) -> (Relay, SocketAddr) {
    let free = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let listen = free.local_addr().unwrap();
    drop(free);
    let relay = Relay::with(|c| {
        c.alarm_listen = Some(listen);
        tweak(c);
    })
    .await;
    (relay, listen)
}

#[tokio::test]
async fn pushed_alarms_are_taken_up_to_the_largest_datagram() {
    let (relay, listen) = listening(|c| c.alarm_token = Some(TOKEN.into())).await;
    let mut ws = subscribe(&relay, "").await;
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sender.send_to(b"{\"door\": \"open\"}", listen).await.unwrap();
    let f = next(&mut ws).await;
    assert_eq!(f["msg"]["data"]["door"], "open");
    assert_eq!(f["msg"]["from"], sender.local_addr().unwrap().to_string());
    let big = vec![b'x'; tether_relay::alarm::MAX_DATAGRAM];
    sender.send_to(&big, listen).await.unwrap();
    let f = next(&mut ws).await;
    assert_eq!(f["msg"]["data"].as_str().unwrap().len(), tether_relay::alarm::MAX_DATAGRAM);
    relay.stop().await;
}

#[tokio::test]
async fn without_an_alarm_source_alarms_is_a_clear_404() {
    let relay = Relay::start().await;
    let err =
        tokio_tungstenite::connect_async(format!("ws://{}/alarms", relay.addr)).await.expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 404);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("not_configured"), "{body}");
        }
        other => panic!("{other:?}"),
    }
    relay.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_each_subscriber_gets_each_alarm_once_whichever_node_it_is_on() {
    const N: u64 = 400;
    let Some(redis) = tether_tests::Redis::start() else { return };
    let mut service = Service::bind("127.0.0.1:0").await;
    let on = |name: &'static str| {
        let url = redis.url.clone();
        move |c: &mut tether_relay::Config| {
            c.redis = Some(url);
            c.node_id = Some(name.into());
        }
    };
    // Each node subscribes to the alarm service itself and serves its own subscribers: no alarm
    // crosses the bus, so none is doubled or lost on the way.
    let (a, b) = (relay_for(service.addr, on("a")).await, relay_for(service.addr, on("b")).await);
    let mut on_a = subscribe(&a, "").await;
    let mut on_b = subscribe(&b, "").await;
    let mut also_on_b = subscribe(&b, "").await;
    wait_metric(a.addr, "tether_alarm_subscribers 1").await;
    wait_metric(b.addr, "tether_alarm_subscribers 2").await;
    service.start(Options { rate: 2_000, count: Some(N), ..Options::default() });
    wait_metric(a.addr, &format!("tether_alarms_received_total {N}")).await;
    wait_metric(b.addr, &format!("tether_alarms_received_total {N}")).await;
    assert_eq!(service.stats.datagrams.load(Relaxed), 2 * N, "the service sent each alarm to each node");
    for (name, relay, ws) in [("a", &a, &mut on_a), ("b", &b, &mut on_b), ("b'", &b, &mut also_on_b)] {
        let (seqs, dropped) = read_to(ws, known(last_seq(relay).await)).await;
        assert_eq!((seqs.len() as u64, dropped), (N, 0), "{name}: every alarm once, none dropped");
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{name}: in order, no repeats, no holes");
    }
    a.stop().await;
    b.stop().await;
    service.stop().await;
}

/// A relay taking pushed alarms, with a CS gateway in front of the demo server and these flags.
async fn guarded(tweak: impl FnOnce(&mut tether_relay::Config)) -> (Relay, Legacy) {
    let legacy = Legacy::start().await;
    let upstream = format!("http://{}/RPC2", legacy.addr);
    let relay = Relay::with(|c| {
        c.alarm_listen = Some("127.0.0.1:0".parse().unwrap());
        c.cs_upstream = Some(upstream);
        tweak(c);
    })
    .await;
    (relay, legacy)
}

/// The demo CS server, in this process.
struct Legacy {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Legacy {
    async fn start() -> Legacy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, stop) = (listener.local_addr().unwrap(), CancellationToken::new());
        let opts = tether_demo::cs::Options::default();
        tokio::spawn(tether_demo::cs::serve(listener, opts, Arc::default(), stop.clone()));
        Legacy { addr, stop }
    }
}

impl Drop for Legacy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A CS session's token on `relay`.
async fn cs_login(relay: &Relay, user: &str) -> String {
    let (status, v, _) =
        post_json(relay.addr, "/cs/login", None, &json!({"method": "login", "params": [user]})).await;
    assert_eq!(status, 200, "{v}");
    v["session"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn alarms_need_a_cs_session_or_the_alarm_token() {
    let (relay, _legacy) = guarded(|c| c.alarm_token = Some(TOKEN.into())).await;
    let session = cs_login(&relay, "uma").await;
    let (bearer, cookie) = (format!("Bearer {session}"), format!("tether_cs={session}"));
    let own = format!("http://{}", relay.addr);
    // Refused before the upgrade: 401 with a clear error.
    for (what, query, headers) in [
        ("nothing", "", vec![]),
        ("a wrong token", "", vec![("authorization", "Bearer not-the-token")]),
        ("a wrong ?token=", "?token=not-the-token", vec![]),
        ("a token's prefix", "?token=alarm-test", vec![]),
        ("an unknown session", "", vec![("cookie", "tether_cs=0123456789abcdef0123456789abcdef")]),
        ("since= alone", "?since=0", vec![]),
    ] {
        let refused = open(relay.addr, query, &headers).await.err();
        let (status, v) = refused.unwrap_or_else(|| panic!("{what}: opened"));
        assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{what}: {v}");
    }
    // Let in: the token (header or query), a live session (Bearer, or the cookie from the
    // relay's own page or from a client sending no Origin).
    let with_token = format!("Bearer {TOKEN}");
    let q_token = format!("?since=0&token={TOKEN}");
    for (what, query, headers) in [
        ("the token", "", vec![("authorization", with_token.as_str())]),
        ("?token=", q_token.as_str(), vec![]),
        ("a session's Bearer", "", vec![("authorization", bearer.as_str())]),
        ("the cookie, no Origin", "", vec![("cookie", cookie.as_str())]),
        ("the cookie from the relay's page", "", vec![("cookie", cookie.as_str()), ("origin", own.as_str())]),
        // The token is not ambient: a page that has it was given it, whatever its origin.
        ("?token= from another origin", q_token.as_str(), vec![("origin", "https://dash.example")]),
    ] {
        assert!(open(relay.addr, query, &headers).await.is_ok(), "{what}: refused");
    }
    // A session that ended opens nothing.
    let (status, _, _) = post_json(relay.addr, "/cs/logout", Some(&session), &json!({})).await;
    assert_eq!(status, 200);
    let (status, v) =
        open(relay.addr, "", &[("authorization", &bearer)]).await.map(drop).expect_err("refused");
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    relay.stop().await;
}

#[tokio::test]
async fn alarms_opened_with_the_cs_cookie_take_only_the_relays_own_pages() {
    let (relay, _legacy) = guarded(|_| {}).await;
    let session = cs_login(&relay, "vera").await;
    let cookie = format!("tether_cs={session}");
    // Cross-site WebSocket hijacking: another page opens the socket, the browser adds the cookie.
    let other_port = format!("http://127.0.0.1:{}", relay.addr.port() ^ 1);
    for origin in ["https://evil.example", "null", other_port.as_str()] {
        let (status, v) = open(relay.addr, "", &[("cookie", &cookie), ("origin", origin)])
            .await
            .map(drop)
            .expect_err("refused");
        assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{origin}: {v}");
    }
    let own = format!("http://{}", relay.addr);
    let ws = open(relay.addr, "", &[("cookie", &cookie), ("origin", &own)]).await.expect("own page");
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    drop(ws);
    relay.stop().await;
}

#[tokio::test]
async fn alarms_public_opens_them_on_purpose_and_says_so_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let free = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let listen = free.local_addr().unwrap().to_string();
    drop(free);
    let mut relay = tether_tests::RelayProcess::start(
        "127.0.0.1:0",
        &dir.path().join("t.db"),
        &["--alarm-listen", &listen, "--alarms-public"],
    )
    .await;
    let warned = tokio::time::timeout(WAIT, async {
        while let Some(line) = relay.log.recv().await {
            if line.contains("WARN") && line.contains("--alarms-public") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(warned, Ok(true), "a warning at start");
    assert!(open(relay.addr, "", &[]).await.is_ok(), "anyone may read");
    relay.signal("TERM").await;

    // --alarm-token's value never shows in --help, even from the environment.
    let help = std::process::Command::new(tether_tests::relay_binary())
        .arg("--help")
        .env("TETHER_ALARM_TOKEN", "a-secret-value")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--alarm-token") && !text.contains("a-secret-value"), "{text}");
}

#[tokio::test]
async fn in_cluster_mode_a_cs_session_held_by_another_relay_opens_alarms() {
    let Some(redis) = tether_tests::Redis::start() else { return };
    let legacy = Legacy::start().await;
    let node = |name: &'static str| {
        let (url, upstream) = (redis.url.clone(), format!("http://{}/RPC2", legacy.addr));
        Relay::with(move |c| {
            c.alarm_listen = Some("127.0.0.1:0".parse().unwrap());
            c.cs_upstream = Some(upstream);
            c.redis = Some(url);
            c.node_id = Some(name.into());
        })
    };
    let (a, b) = (node("a").await, node("b").await);
    let session = cs_login(&a, "wes").await;
    let bearer = format!("Bearer {session}");
    assert!(open(b.addr, "", &[("authorization", &bearer)]).await.is_ok(), "held by a, read on b");
    // Once it ends (logged out on a), b lets it in no more.
    let (status, _, _) = post_json(a.addr, "/cs/logout", Some(&session), &json!({})).await;
    assert_eq!(status, 200);
    // (a tells Redis as it forgets the session, without waiting for it: b may hear it a moment later)
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match open(b.addr, "", &[("authorization", &bearer)]).await {
            Err((status, v)) => {
                assert_eq!(status, 401, "{v}");
                break;
            }
            Ok(_) => assert!(std::time::Instant::now() < deadline, "b still lets the ended session in"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn guessing_the_alarm_token_is_answered_ever_more_slowly() {
    let (relay, _legacy) = guarded(|c| c.alarm_token = Some(TOKEN.into())).await;
    for i in 0..=tether_relay::strikes::FREE {
        let (status, _) =
            open(relay.addr, &format!("?token=guess-{i}"), &[]).await.map(drop).expect_err("wrong");
        assert_eq!(status, 401);
    }
    // Now even the right token waits: nothing is learnt by guessing faster.
    let (status, v) =
        open(relay.addr, &format!("?token={TOKEN}"), &[]).await.map(drop).expect_err("throttled");
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    relay.stop().await;
}

/// A relay open to any subscriber, pinging every 100 ms, taking pushed alarms.
async fn pushed_relay() -> (Relay, SocketAddr) {
    listening(|c| {
        c.alarms_public = true;
        c.heartbeat_ms = 100;
    })
    .await
}

#[tokio::test]
async fn a_subscriber_that_answers_no_ping_is_closed_within_two_heartbeats() {
    let (relay, _) = pushed_relay().await;
    // Connected, then never read again: no pong ever goes back.
    let silent = open(relay.addr, "", &[]).await.expect("opened");
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    wait_metric(relay.addr, "tether_alarm_subscribers 0").await;
    drop(silent);
    relay.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_closed_not_waited_for() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (relay, listen) = pushed_relay().await;
    // A raw subscriber with a small receive buffer that reads nothing after the handshake, yet
    // keeps saying it is there (a pong every 50 ms): only a write that gives up can end it.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(relay.addr).await.unwrap();
    let req = format!(
        "GET /alarms HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        relay.addr
    );
    stuck.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        stuck.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    let (_, mut write) = stuck.into_split();
    let alive = tokio::spawn(async move {
        // An empty, masked pong, until the relay closes the socket (bounded: longer than the
        // test waits, so a stuck relay is never let off by the pongs stopping).
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        while tokio::time::Instant::now() < deadline {
            if write.write_all(&[0x8a, 0x80, 1, 2, 3, 4]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    // Far more than the socket buffers hold (at most 800 × 60 KB), two datagrams at a time so
    // the relay's UDP buffer takes them, until the relay lets the subscriber go.
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let big = vec![b'x'; 60_000];
    for _ in 0..400 {
        sender.send_to(&big, listen).await.unwrap();
        sender.send_to(&big, listen).await.unwrap();
        if http_get(relay.addr, "/metrics").await.2.lines().any(|l| l == "tether_alarm_subscribers 0") {
            break;
        }
    }
    wait_metric(relay.addr, "tether_alarm_subscribers 0").await;
    alive.abort();
    relay.stop().await;
}

#[tokio::test]
async fn pushed_alarms_are_taken_only_from_the_listed_senders() {
    let (relay, listen) = listening(|c| {
        c.alarms_public = true;
        c.alarm_from = vec!["127.0.0.2".parse().unwrap()];
    })
    .await;
    let mut ws = open(relay.addr, "", &[]).await.expect("opened");
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    // A stranger's datagram is dropped and counted, never stored or sent on ...
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    stranger.send_to(b"{\"forged\": true}", listen).await.unwrap();
    wait_metric(relay.addr, "tether_alarms_refused_total 1").await;
    // ... while the listed sender's is.
    let service = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    service.send_to(b"{\"door\": \"open\"}", listen).await.unwrap();
    let f = next(&mut ws).await;
    assert_eq!(f["msg"]["data"], json!({"door": "open"}), "the first frame is the listed sender's: {f}");
    assert_eq!(f["msg"]["from"], service.local_addr().unwrap().to_string());
    wait_metric(relay.addr, "tether_alarms_received_total 1").await;
    relay.stop().await;
}

#[tokio::test]
async fn the_alarm_ring_is_bounded_in_bytes_and_since_says_what_it_no_longer_holds() {
    // Each datagram of 1,000 control bytes is a frame of ~6 KB (each byte JSON-escaped as six):
    // 20 KB of ring holds 3 of them.
    let (relay, listen) = listening(|c| {
        c.alarm_token = Some(TOKEN.into());
        c.alarm_buffer_bytes = 20_000;
    })
    .await;
    let mut live = subscribe(&relay, "").await;
    wait_metric(relay.addr, "tether_alarm_subscribers 1").await;
    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..50u8 {
        let mut payload = vec![1u8; 1000];
        payload[0] = b'a' + i % 26;
        sender.send_to(&payload, listen).await.unwrap();
        // A subscriber that keeps up loses nothing, whatever the ring keeps.
        let f = next(&mut live).await;
        assert_eq!(f["type"], "alarm", "{f}");
        assert_eq!(f["msg"]["data"].as_str().unwrap().as_bytes(), payload.as_slice());
        seqs.push(f["msg"]["seq"].as_u64().unwrap());
    }
    let m = http_get(relay.addr, "/metrics").await.2;
    let figure = |name: &str| -> u64 {
        m.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).expect(name)
    };
    assert!(figure("tether_alarm_ring_bytes ") <= 20_000, "{m}");
    assert_eq!(figure("tether_alarms_evicted_total "), 47, "{m}");
    // A replay from the start: the 47 no longer held are said, then the 3 kept come, in order.
    let mut ws = subscribe(&relay, "?since=0").await;
    let gap = next(&mut ws).await;
    assert_eq!((gap["type"].as_str(), gap["msg"]["dropped"].as_u64()), (Some("alarmGap"), Some(47)));
    let (replayed, dropped) = read_to(&mut ws, known(seqs[49])).await;
    assert_eq!((replayed.as_slice(), dropped), (&seqs[47..], 0));
    relay.stop().await;
}
