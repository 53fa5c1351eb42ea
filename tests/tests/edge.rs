//! The HTTP edge: which browsers may use the relay (`--allow-origin`), and how many sockets one
//! address may hold (`--max-conns-per-ip`).

use tether_tests::{Client, Relay, WAIT, get_json, http_get, http_get_with, http_post};
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
