//! UDP alarms through the relay to `/alarms` subscribers, against the demo alarm service.

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_demo::alarm::{Options, Stats};
use tether_tests::{Relay, WAIT, get_json, http_get, wait_metric};
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

async fn relay_for(service: SocketAddr, tweak: impl FnOnce(&mut tether_relay::Config)) -> Relay {
    Relay::with(|c| {
        c.alarm_udp = Some(service.to_string());
        c.alarm_renew_ms = 50;
        tweak(c);
    })
    .await
}

async fn subscribe(relay: &Relay, query: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/alarms{query}", relay.addr))
        .await
        .expect("subscribe");
    ws
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
    let relay = relay_for(service.addr, |c| c.alarm_queue = 64).await;
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
    loop {
        let f = next(&mut ws).await;
        if f["type"] == "alarm" && f["msg"]["data"].to_string().contains("ALARM 2 ") {
            break; // alarm 2 of the new process
        }
    }
    assert!(again.stats.subscribes.load(Relaxed) >= 1);
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

#[tokio::test]
async fn pushed_alarms_are_taken_up_to_the_largest_datagram() {
    let free = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let listen = free.local_addr().unwrap();
    drop(free);
    let relay = Relay::with(|c| c.alarm_listen = Some(listen)).await;
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
