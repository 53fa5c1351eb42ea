//! The HTTP edge: which browsers may use the relay (`--allow-origin`), how many sockets one
//! address may hold (`--max-conns-per-ip`) and the whole relay (`--max-conns`), and how slow a
//! client may be (`--header-timeout-ms`, `--idle-timeout-ms`).

use std::time::Duration;
use tether_tests::{Client, Relay, WAIT, get_json, http_get, http_get_with, http_post, metric, wait_metric};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Opens `/ws` for a new room member with `origin`, and returns the HTTP status of a refusal
/// (`None`: upgraded).
/// The HTTP status a `/ws` upgrade with query `q` is refused with (`None`: it was taken).
async fn ws_query_status(relay: &Relay, q: &str) -> Option<u16> {
    let req = format!("{}?{q}", relay.ws_url()).into_client_request().unwrap();
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("in time") {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

async fn ws_status(relay: &Relay, origin: Option<&str>, room: &str) -> Option<u16> {
    let mut req = format!("{}?room={room}&role=pc&secret=s-0123456789abcdef", relay.ws_url())
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", HeaderValue::from_str(o).unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await.expect("in time") {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    }
}

#[tokio::test]
async fn only_allowed_origins_may_open_sockets_or_use_the_cs_gateway() {
    let relay = Relay::with(|c| c.allow_origin = vec!["https://tether.example.com".into()]).await;
    assert_eq!(ws_status(&relay, Some("https://tether.example.com"), "o1").await, None);
    assert_eq!(
        ws_status(&relay, Some("https://TETHER.example.com/"), "o2").await,
        None,
        "case and a trailing slash"
    );
    assert_eq!(ws_status(&relay, None, "o3").await, None, "no Origin: not a browser, not affected");
    assert_eq!(ws_status(&relay, Some("https://evil.example"), "o4").await, Some(403));
    assert_eq!(ws_status(&relay, Some("null"), "o5").await, Some(403));

    let (status, _, body) = http_post(
        relay.addr,
        "/cs/call",
        &[("Origin", "https://evil.example"), ("Content-Type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "forbidden");
    // The rest of the relay is not behind the allowlist.
    assert_eq!(http_get(relay.addr, "/healthz").await.0, 200);
    let metrics = http_get(relay.addr, "/metrics").await.2;
    assert!(metrics.contains("tether_refused_origin_total 3"), "{metrics}");
    relay.stop().await;
}

#[tokio::test]
async fn one_address_holds_at_most_max_conns_per_ip_sockets_and_gets_its_slots_back() {
    let relay = Relay::with(|c| c.max_conns_per_ip = 3).await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(Client::join(&relay.ws_url(), &format!("ip{i}"), "pc", "s-0123456789abcdef").await);
    }
    assert_eq!(ws_status(&relay, None, "ip3").await, Some(429), "the fourth is refused");
    // A socket that ends gives its slot back.
    held.pop().unwrap().close().await;
    let deadline = std::time::Instant::now() + WAIT;
    while ws_status(&relay, None, "ip4").await.is_some() {
        assert!(std::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn members_away_keep_their_addresss_slots_until_they_resume_or_their_grace_ends() {
    let relay = Relay::with(|c| {
        c.max_conns_per_ip = 3;
        c.grace_ms = 2_000;
    })
    .await;
    let url = relay.ws_url();
    let secret = "s-0123456789abcdef";
    let mut pc = Client::join(&url, "away", "pc", secret).await;
    let d1 = Client::join(&url, "away", "device", secret).await;
    let d2 = Client::join(&url, "away", "device", secret).await;
    let (id1, token1) = (d1.member.clone(), d1.resume.clone());
    // Both phones lose their network: no socket is open for them, yet they hold their slots.
    d1.drop_connection();
    d2.drop_connection();
    pc.devices_until(|m| m.iter().filter(|m| m["away"] == true).count() == 2).await;
    assert_eq!(ws_status(&relay, None, "elsewhere").await, Some(429), "away members count");
    // At the cap, an away member may still come back: it gives its away self's slot back as
    // it takes a new one, so the address stays at the cap, not over it.
    let d1 = Client::rejoin(&url, "away", "device", secret, &token1).await;
    assert_eq!(d1.member, id1);
    assert_eq!(ws_status(&relay, None, "elsewhere").await, Some(429));
    // Only an away member: a live one's token does not get past the cap.
    let q = format!("room=away&role=device&secret={secret}&resume={}", tether_tests::enc(&d1.resume));
    assert_eq!(ws_query_status(&relay, &q).await, Some(429), "a live member's token");
    // When d2's grace window ends, its slot comes back.
    pc.devices_until(|m| m.len() == 2).await;
    let deadline = std::time::Instant::now() + WAIT;
    while ws_status(&relay, None, "elsewhere").await.is_some() {
        assert!(std::time::Instant::now() < deadline, "the away member's slot never came back");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Nothing else was lost: the PC and the resumed phone still talk.
    let mut d1 = d1;
    pc.send(serde_json::json!({"type": "post", "id": "1", "msg": {"url": "https://ok/"}})).await;
    let req = d1.expect("post").await;
    d1.send(tether_tests::reply_to(&req, serde_json::json!(1))).await;
    assert_eq!(pc.expect("postCb").await["msg"]["result"], 1);
    relay.stop().await;
}

#[tokio::test]
async fn with_no_cap_and_no_allowlist_anything_goes() {
    let relay = Relay::with(|c| c.max_conns_per_ip = 0).await;
    let mut held = Vec::new();
    for i in 0..300 {
        held.push(
            Client::join(&relay.ws_url(), &format!("many{}", i / 50), "pc", "s-0123456789abcdef").await,
        );
    }
    assert_eq!(ws_status(&relay, Some("https://anywhere.example"), "many-more").await, None);
    drop(held);
    relay.stop().await;
}

#[tokio::test]
async fn wrong_secrets_from_one_address_are_answered_ever_more_slowly() {
    let relay = Relay::start().await;
    let _pc = relay.join("vault", "pc", "the-real-secret-0123").await;
    let url = relay.ws_url();
    // The first few wrong guesses are refused as wrong (typos are free) ...
    for i in 0..tether_relay::strikes::FREE + 1 {
        let q = format!("room=vault&role=device&secret=guess-{i:02}-0123456789");
        let refused = Client::join_query(&url, &q).await.err().expect("a wrong secret is refused");
        assert_eq!(refused.error["code"], "unauthorized");
    }
    // ... then every attempt from this address waits, the right secret too: nothing is
    // learnt by guessing faster. The refusal says how long, before any upgrade.
    let req =
        format!("{url}?room=vault&role=device&secret=the-real-secret-0123").into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        other => panic!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    // The history API is slowed for the same address.
    let (status, body) = get_json(relay.addr, "/api/rooms/vault/history?secret=the-real-secret-0123").await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("rate_limited")));
    relay.stop().await;
}

/// Wrong secrets to the history API "from" `ip` (`X-Real-IP`); the status of the last.
async fn guess_from(relay: &Relay, ip: &str, n: u32) -> u16 {
    let mut status = 0;
    for i in 0..n {
        let bearer = format!("Bearer wrong-guess-{i:04}-padding");
        let headers = [("Authorization", bearer.as_str()), ("X-Real-IP", ip)];
        status = http_get_with(relay.addr, "/api/rooms/vault/history", &headers).await.0;
    }
    status
}

#[tokio::test]
async fn behind_a_proxy_the_client_address_comes_from_the_named_header_and_only_then() {
    let n = tether_relay::strikes::FREE + 1;
    // Without --real-ip-header the header is not believed: changing it dodges nothing.
    let relay = Relay::start().await;
    for i in 0..n {
        assert_eq!(guess_from(&relay, &format!("10.9.9.{i}"), 1).await, 401);
    }
    assert_eq!(guess_from(&relay, "10.9.9.200", 1).await, 429, "counted by the socket's address");
    relay.stop().await;
    // With it, each client behind the proxy counts alone.
    let relay = Relay::with(|c| c.real_ip_header = Some("X-Real-IP".into())).await;
    assert_eq!(guess_from(&relay, "10.0.0.1", n).await, 401);
    assert_eq!(guess_from(&relay, "10.0.0.1", 1).await, 429);
    assert_eq!(guess_from(&relay, "10.0.0.2", 1).await, 401, "another client is not slowed");
    relay.stop().await;
}

#[tokio::test]
async fn an_address_creates_at_most_its_minutes_rooms_and_loses_nothing_else() {
    let relay = Relay::with(|c| c.max_new_rooms_per_ip = 3).await;
    let url = relay.ws_url();
    let secret = "rooms-0123456789abcdef";
    let mut pcs = Vec::new();
    for i in 0..3 {
        pcs.push(Client::join(&url, &format!("made-{i}"), "pc", secret).await);
    }
    // The fourth new room is refused, and says why.
    let refused =
        Client::join_query(&url, &format!("room=made-3&role=pc&secret={secret}")).await.err().unwrap();
    assert_eq!(refused.error["code"], "rate_limited", "{}", refused.error);
    assert!(refused.error["message"].as_str().unwrap().contains("--max-new-rooms-per-ip"));
    // Joining rooms that exist costs nothing, and they work as before.
    let mut dev = Client::join(&url, "made-0", "device", secret).await;
    pcs[0].send(tether_tests::post("1", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, serde_json::json!("ok"))).await;
    assert_eq!(pcs[0].expect("postCb").await["id"], "1");
    let metrics = http_get(relay.addr, "/metrics").await.2;
    assert!(metrics.lines().any(|l| l == "tether_rooms_refused_total 1"), "{metrics}");
    assert_eq!(get_json(relay.addr, "/healthz").await.1["rooms"], 3);
    relay.stop().await;
}

/// Reads `s` until the relay closes it (end of stream or reset); what it sent before closing.
/// Panics if it is still open after [`WAIT`].
async fn read_until_closed(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the relay closed the connection within the wait");
    got
}

/// Sends one keep-alive `GET {path}` on `s` and reads its answer; the status.
async fn keep_alive_get(s: &mut TcpStream, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        loop {
            let n = s.read(&mut buf).await.expect("read the answer");
            assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .expect("a content-length");
                if body.len() >= len {
                    return head[9..12].parse().expect("a status");
                }
            }
        }
    })
    .await
    .expect("an answer in time")
}

#[tokio::test]
async fn a_client_sending_its_head_slowly_or_not_at_all_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let timeout = Duration::from_millis(500);
    let relay = Relay::with(|c| c.header_timeout_ms = 500).await;
    let start = std::time::Instant::now();
    let silent = TcpStream::connect(relay.addr).await.unwrap();
    // A byte every 50 ms: the whole head would take about 2 s.
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: 0123456789\r\n\r\n";
    let (mut rd, mut wr) = TcpStream::connect(relay.addr).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        for (i, b) in head.iter().enumerate() {
            if wr.write_all(&[*b]).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        head.len()
    });
    let answer = read_until_closed(&mut rd).await;
    let trickled_for = start.elapsed();
    let sent = trickle.await.unwrap();
    assert!(answer.is_empty(), "no answer to a head never finished: {}", String::from_utf8_lossy(&answer));
    assert!(trickled_for >= timeout, "closed after {trickled_for:?}, before the timeout");
    assert!(sent < head.len(), "the whole head went out before the close");
    let (mut rd, _wr) = silent.into_split();
    assert!(read_until_closed(&mut rd).await.is_empty());
    assert!(start.elapsed() >= timeout);
    wait_metric(relay.addr, "tether_http_timeouts_total{reason=\"head\"} 2").await;
    // Everyone else is served as before.
    assert_eq!(http_get(relay.addr, "/healthz").await.0, 200);
    relay.stop().await;
}

#[tokio::test]
async fn a_keep_alive_connection_idles_until_the_idle_timeout_and_then_a_head_has_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let (header, idle) = (Duration::from_millis(300), Duration::from_millis(2000));
    let relay = Relay::with(|c| {
        c.header_timeout_ms = 300;
        c.idle_timeout_ms = 2000;
    })
    .await;
    let idler = async {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(keep_alive_get(&mut s, "/healthz").await, 200);
        // Idle for longer than the header timeout: still open, the next request is served.
        tokio::time::sleep(header * 2).await;
        assert_eq!(keep_alive_get(&mut s, "/healthz").await, 200, "idle is not a slow head");
        let since = std::time::Instant::now();
        assert!(read_until_closed(&mut s).await.is_empty());
        since.elapsed()
    };
    let late_head = async {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(keep_alive_get(&mut s, "/healthz").await, 200);
        tokio::time::sleep(header * 2).await;
        // The next head begins, and never ends.
        s.write_all(b"GET /healthz HT").await.unwrap();
        let since = std::time::Instant::now();
        assert!(read_until_closed(&mut s).await.is_empty());
        since.elapsed()
    };
    let (idled, head_took) = tokio::join!(idler, late_head);
    assert!(idled >= idle - Duration::from_millis(100), "closed after {idled:?} idle");
    assert!(head_took >= header, "closed {head_took:?} into the head");
    wait_metric(relay.addr, "tether_http_timeouts_total{reason=\"idle\"} 1").await;
    wait_metric(relay.addr, "tether_http_timeouts_total{reason=\"head\"} 1").await;
    relay.stop().await;
}

#[tokio::test]
async fn room_sockets_outlive_the_header_and_idle_timeouts() {
    let relay = Relay::with(|c| {
        c.header_timeout_ms = 100;
        c.idle_timeout_ms = 200;
    })
    .await;
    let secret = "s-0123456789abcdef";
    let mut pc = relay.join("quiet", "pc", secret).await;
    let mut dev = relay.join("quiet", "device", secret).await;
    // Quiet for several times both timeouts (and less than the heartbeat, 2 s: these clients
    // read nothing meanwhile, so they answer no ping).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    pc.send(tether_tests::post("after-quiet", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, serde_json::json!("ok"))).await;
    assert_eq!(pc.expect("postCb").await["id"], "after-quiet");
    assert_eq!(metric(relay.addr, "tether_http_timeouts_total{reason=\"head\"}").await, Some(0));
    assert_eq!(metric(relay.addr, "tether_http_timeouts_total{reason=\"idle\"}").await, Some(0));
    relay.stop().await;
}

/// Opens a room socket (a device of room `full`) as soon as the relay has a slot for it.
async fn socket_when_a_slot_is_free(relay: &Relay) -> impl Sized {
    let url = format!("{}?room=full&role=device&secret=s-0123456789abcdef", relay.ws_url());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => return ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
            Err(e) => panic!("unexpected handshake failure: {e}"),
        }
        assert!(std::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn at_the_connection_cap_healthz_still_answers_the_rest_is_refused_and_slots_come_back() {
    const CAP: usize = 8;
    let relay = Relay::with(|c| {
        c.max_conns = Some(CAP as u64);
        // These clients read only when the test looks: no ping may mark them away meanwhile.
        c.heartbeat_ms = 60_000;
    })
    .await;
    let secret = "s-0123456789abcdef";
    // Room sockets hold slots, as do keep-alive connections between requests.
    let mut pc = relay.join("full", "pc", secret).await;
    let mut dev = relay.join("full", "device", secret).await;
    let spare = relay.join("spare", "pc", secret).await;
    let mut held = Vec::new();
    for _ in 0..CAP - 3 {
        let mut s = TcpStream::connect(relay.addr).await.unwrap();
        assert_eq!(keep_alive_get(&mut s, "/healthz").await, 200);
        held.push(s);
    }
    // (A /metrics read holds a slot of its own while there is one: at the cap it does not.)
    wait_metric(relay.addr, &format!("tether_conns_open {CAP}")).await;
    // Full: /healthz (and /metrics, which wait_metric read) still answer ...
    let (status, health) = get_json(relay.addr, "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    // ... anything else is refused, and says why.
    let (status, headers, body) = http_get(relay.addr, "/").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "at_capacity");
    assert!(v["error"]["message"].as_str().unwrap().contains("--max-conns"), "{v}");
    assert!(headers.iter().any(|(k, _)| k == "retry-after"), "{headers:?}");
    assert_eq!(ws_status(&relay, None, "full").await, Some(503), "no new room socket");
    // The room goes on as before.
    pc.send(tether_tests::post("at-cap", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, serde_json::json!("ok"))).await;
    assert_eq!(pc.expect("postCb").await["id"], "at-cap");
    let refused = metric(relay.addr, "tether_conns_refused_total").await.unwrap();
    assert!(refused >= 4, "{refused} refused");

    // A socket that closes gives its slot back, upgraded or not.
    drop(held.pop());
    let mut sockets = vec![socket_when_a_slot_is_free(&relay).await];
    spare.close().await;
    sockets.push(socket_when_a_slot_is_free(&relay).await);
    assert_eq!(ws_status(&relay, None, "full").await, Some(503), "full again");

    // Past the cap and the overflow pool a connection is closed at once, unanswered.
    let mut overflow = Vec::new();
    for _ in 0..tether_relay::http::serve::OVERFLOW {
        overflow.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    assert_eq!(tether_tests::try_http_get(relay.addr, "/healthz").await, None, "closed unanswered");
    // The overflow pool's connections live a short while only; then /healthz answers again.
    let deadline = std::time::Instant::now() + WAIT;
    while tether_tests::try_http_get(relay.addr, "/healthz").await != Some(200) {
        assert!(std::time::Instant::now() < deadline, "/healthz never answered again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pc.send(tether_tests::post("after", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, serde_json::json!("ok"))).await;
    assert_eq!(pc.expect("postCb").await["id"], "after");
    // Every slot comes back: what is left is the /metrics read's own.
    drop((overflow, held, sockets, pc, dev));
    wait_metric(relay.addr, "tether_conns_open 1").await;
    relay.stop().await;
}

#[tokio::test]
async fn a_head_over_32_kib_is_refused_431_and_the_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let relay = Relay::start().await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let big = "a".repeat(tether_relay::http::serve::MAX_HEAD);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The relay may stop reading (and close) before all of it is written.
    let _ = s.write_all(head.as_bytes()).await;
    let answer = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(http_get(relay.addr, "/healthz").await.0, 200);
    relay.stop().await;
}

#[tokio::test]
async fn a_request_body_that_stalls_is_cut_off_and_its_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let relay = Relay::with(|c| {
        c.header_timeout_ms = 300;
        // /cs/login reads its body (nothing listens there: the body never gets that far).
        c.cs_upstream = Some("http://127.0.0.1:9/RPC2".into());
    })
    .await;
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let start = std::time::Instant::now();
    // A head announcing 100 kB, ten bytes of it, then nothing.
    let head = "POST /cs/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"method\":").await.unwrap();
    let answer = read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("slower than"), "says why: {text}");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(metric(relay.addr, "tether_http_timeouts_total{reason=\"body\"}").await, Some(1));
    relay.stop().await;
}
