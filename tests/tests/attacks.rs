//! The attacks of issue #17 ("bounded"), each run against a real relay process started with
//! its default budgets: each test drives the attack past the cap it meets, checks the refusal
//! and that nothing else was lost, and prints what the attack reached (memory, disk, sockets)
//! as a line starting `attack:`, the figure docs/reliability.md ("Budgets") quotes.
//!
//! `TETHER_RELAY_BIN=<an older tether-relay> cargo test -p tether-tests --test attacks -- --nocapture`
//! measures an older relay the same way (its assertions then fail, after the figures print).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tether_tests::{Client, RelayProcess, WAIT, metric, reply_to, try_http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A PC and a device in a room, joined before an attack and busy during it: the PC sends a
/// request every 200 ms and the device answers, until `stop`. Gives the round trips made.
fn bystanders(url: &str, stop: tokio_util::sync::CancellationToken) -> tokio::task::JoinHandle<usize> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut pc = Client::join(&url, "bystander", "pc", "s-0123456789abcdef").await;
        let mut dev = Client::join(&url, "bystander", "device", "s-0123456789abcdef").await;
        let mut trips = 0;
        while !stop.is_cancelled() {
            let id = format!("trip-{trips}");
            pc.send(tether_tests::post(&id, "https://x/")).await;
            let req = dev.expect("post").await;
            dev.send(reply_to(&req, serde_json::json!("ok"))).await;
            assert_eq!(pc.expect("postCb").await["id"], id.as_str());
            trips += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        trips
    })
}

// Slowloris: 300 connections each trickling its request head, a byte a second, so no head
// ever completes. The relay closes each once its head is later than --header-timeout-ms (10 s
// by default); /healthz answers throughout.
#[tokio::test]
async fn slow_headers_are_closed_after_the_header_timeout() {
    const SOCKETS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let relay = RelayProcess::start("127.0.0.1:0", &dir.path().join("t.db"), &[]).await;
    let stop = CancellationToken::new();
    let room = bystanders(&relay.ws_url(), stop.clone());
    let open = Arc::new(AtomicUsize::new(0));
    let mut tricklers = Vec::new();
    for _ in 0..SOCKETS {
        let (mut rd, mut wr) = TcpStream::connect(relay.addr).await.expect("connect").into_split();
        let open = open.clone();
        open.fetch_add(1, Relaxed);
        tricklers.push(tokio::spawn(async move {
            let head = b"GET /healthz HTTP/1.1\r\nHost: relay\r\nX-Slow: 0123456789abcdef0123456789\r\n\r\n";
            let mut next = head.iter();
            let mut buf = [0u8; 64];
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    // Closed by the relay (end of stream or reset): nothing else comes.
                    _ = rd.read(&mut buf) => break,
                    _ = tick.tick() => match next.next() {
                        Some(b) => if wr.write_all(&[*b]).await.is_err() { break },
                        None => break,
                    },
                }
            }
            open.fetch_sub(1, Relaxed);
        }));
    }
    let start = Instant::now();
    // The default header timeout, and a margin for a busy machine.
    let bound = Duration::from_secs(10) + Duration::from_secs(6);
    let (mut asked, mut answered, mut peak_kib) = (0, 0, 0);
    while open.load(Relaxed) > 0 && start.elapsed() < bound {
        asked += 1;
        if tokio::time::timeout(Duration::from_secs(2), try_http_get(relay.addr, "/healthz")).await
            == Ok(Some(200))
        {
            answered += 1;
        }
        peak_kib = peak_kib.max(relay.rss_kib());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = open.load(Relaxed);
    println!(
        "attack: slow headers: {SOCKETS} sockets trickling a head byte a second: {left} still open after {:.1} s \
         (default --header-timeout-ms 10000); /healthz answered {answered}/{asked}; relay RSS peak {:.1} MB",
        start.elapsed().as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    for t in tricklers {
        t.abort();
    }
    assert_eq!(left, 0, "slow heads still open");
    assert_eq!(answered, asked, "/healthz missed answers during the attack");
    assert_eq!(metric(relay.addr, "tether_http_timeouts_total{reason=\"head\"}").await, Some(SOCKETS as u64));
    stop.cancel();
    assert!(room.await.expect("the room's requests all answered") > 0);
    relay.signal("TERM").await;
}

// Connection flood at the open-file limit: a relay under `ulimit -n 512` gets 600 silent
// connections. It holds --max-conns of them (by default the limit less 128 for its own files),
// refuses the rest, and never runs out of files: /healthz answers, the room joined before goes
// on, and every slot comes back when the attacker lets go.
#[tokio::test]
async fn a_connection_flood_at_the_open_file_limit_leaves_healthz_answering() {
    const NOFILE: u32 = 512;
    const SOCKETS: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start_with_open_files("127.0.0.1:0", &dir.path().join("t.db"), &[], NOFILE).await;
    let stop = CancellationToken::new();
    let room = bystanders(&relay.ws_url(), stop.clone());
    // The room is under way before the flood.
    tether_tests::wait_metric(relay.addr, "tether_connections 2").await;
    let mut flood = Vec::new();
    for _ in 0..SOCKETS {
        flood.push(TcpStream::connect(relay.addr).await.expect("connect"));
    }
    // How long until /healthz answers (the overflow pool fills with silent sockets too, and
    // lets them go after 2 s).
    let start = Instant::now();
    let mut answered_after = None;
    while start.elapsed() < WAIT {
        if tokio::time::timeout(Duration::from_secs(2), try_http_get(relay.addr, "/healthz")).await
            == Ok(Some(200))
        {
            answered_after = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (held, cap, refused) = if answered_after.is_some() {
        (
            metric(relay.addr, "tether_conns_open").await,
            metric(relay.addr, "tether_conns_max").await,
            metric(relay.addr, "tether_conns_refused_total").await,
        )
    } else {
        (None, None, None)
    };
    println!(
        "attack: connection flood: {SOCKETS} sockets at a {NOFILE}-file limit: /healthz answered {}; relay holds \
         {held:?} of --max-conns {cap:?}, refused {refused:?}; RSS {:.1} MB",
        answered_after.map_or("never within 10 s".into(), |d| format!("after {:.1} s", d.as_secs_f64())),
        relay.rss_kib() as f64 / 1024.0
    );
    assert!(answered_after.is_some(), "/healthz never answered");
    let cap = cap.expect("tether_conns_max");
    assert_eq!(cap, u64::from(NOFILE) - 128, "the default --max-conns");
    assert!(held.expect("tether_conns_open") <= cap);
    assert!(refused.expect("tether_conns_refused_total") >= (SOCKETS as u64) - cap);
    drop(flood);
    // All slots come back (what is left: the room's two sockets and the /metrics read's own).
    let deadline = Instant::now() + WAIT;
    while metric(relay.addr, "tether_conns_open").await != Some(3) {
        assert!(Instant::now() < deadline, "slots did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    assert!(room.await.expect("the room's requests all answered") > 0);
    relay.signal("TERM").await;
}
