//! The room relay end to end: real WebSocket clients against a relay on port 0.
//!
//! Long on purpose: one test per behaviour of the room protocol a user would notice, each
//! readable on its own; splitting by size would scatter related cases.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tether_tests::{Client, Relay, enc, get_json, http_get, http_get_with, post, reply_to};

fn ids(members: &[Value]) -> Vec<&str> {
    members.iter().map(|m| m["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn welcome_devices_and_hello() {
    let relay = Relay::start().await;
    let mut pc = relay.join("demo", "pc", "s3cret-0123456789abcdef").await;
    assert!(pc.member.starts_with("p-"), "{}", pc.member);
    assert_eq!(pc.welcome["room"], "demo");
    assert_eq!(pc.welcome["role"], "pc");
    assert_eq!(pc.welcome["heartbeatMs"], 2000);
    assert_eq!(pc.welcome["resumed"], false);
    assert!(pc.resume.len() > 20);
    let members = pc.devices_until(|m| m.len() == 1).await;
    assert_eq!(members[0]["role"], "pc");
    assert_eq!(members[0]["away"], false);

    let mut dev = relay.join("demo", "device", "s3cret-0123456789abcdef").await;
    assert!(dev.member.starts_with("d-"));
    let members = pc.devices_until(|m| m.len() == 2).await;
    assert_eq!(ids(&members), [pc.member.as_str(), dev.member.as_str()]);
    assert!(members[1]["since"].as_u64().unwrap() > 1_600_000_000_000);

    dev.send(json!({"type": "hello", "msg": {"name": "Pixel 8", "appInfo": {"app": "news", "v": "7.2"}}}))
        .await;
    let members = pc.devices_until(|m| m.len() == 2 && m[1]["name"] == "Pixel 8").await;
    assert_eq!(members[1]["appInfo"]["v"], "7.2");
    assert_eq!(members[1]["role"], "device");
    relay.stop().await;
}

#[tokio::test]
async fn post_and_call_round_trip_with_from_set_by_the_relay() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;

    pc.send(json!({"type": "post", "id": "1", "from": "forged", "msg": {
        "url": "https://api.example/q?id=5", "method": "POST", "body": {"a": 1.50}
    }}))
    .await;
    let req = dev.expect("post").await;
    assert_eq!(req["from"], pc.member.as_str(), "the relay sets from");
    assert_eq!(req["msg"]["url"], "https://api.example/q?id=5");
    assert_eq!(req["msg"]["body"]["a"], 1.5);
    dev.send(reply_to(&req, json!({"code": 0, "data": [1, 2]}))).await;
    let cb = pc.expect("postCb").await;
    assert_eq!(cb["id"], "1", "the PC sees its own id");
    assert_eq!(cb["from"], dev.member.as_str());
    assert_eq!(cb["msg"]["result"]["data"][1], 2);
    assert_eq!(cb["msg"]["cookie"], "uid=42");
    assert_eq!(cb["msg"]["appInfo"]["app"], "news");

    pc.send(json!({"type": "call", "id": "2", "msg": {"method": "login", "params": ["qqorweixin"]}})).await;
    let req = dev.expect("call").await;
    assert_eq!(req["msg"]["params"][0], "qqorweixin");
    dev.send(reply_to(&req, json!(true))).await;
    let cb = pc.expect("callCb").await;
    assert_eq!(cb["id"], "2");
    assert_eq!(cb["msg"]["method"], "login");
    assert_eq!(cb["msg"]["result"], true);
    relay.stop().await;
}

#[tokio::test]
async fn a_request_without_to_reaches_every_device_and_every_reply_returns() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut a = relay.join("r", "device", "s-0123456789abcdef").await;
    let mut b = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.send(post("all", "https://x/")).await;
    let ra = a.expect("post").await;
    let rb = b.expect("post").await;
    b.send(reply_to(&rb, json!("from b"))).await;
    a.send(reply_to(&ra, json!("from a"))).await;
    let first = pc.expect("postCb").await;
    let second = pc.expect("postCb").await;
    let mut froms = [first["from"].as_str().unwrap(), second["from"].as_str().unwrap()];
    froms.sort();
    let mut want = [a.member.as_str(), b.member.as_str()];
    want.sort();
    assert_eq!(froms, want);
    assert_eq!(first["id"], "all");

    // With `to`, only that device gets it: b's next frame is the marker, not this post.
    pc.send(json!({"type": "post", "id": "only-a", "to": a.member, "msg": {"url": "https://x/a"}})).await;
    assert_eq!(a.expect("post").await["msg"]["url"], "https://x/a");
    pc.send(json!({"type": "post", "id": "marker", "to": b.member, "msg": {"url": "https://x/marker"}}))
        .await;
    assert_eq!(b.expect("post").await["msg"]["url"], "https://x/marker");
    relay.stop().await;
}

#[tokio::test]
async fn replies_with_cookies_and_app_info_reach_only_the_pc_that_asked_even_with_the_same_id() {
    let relay = Relay::start().await;
    let mut pc1 = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut pc2 = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;
    // Both PCs' SDKs count from 1.
    pc1.send(post("1", "https://x/pc1")).await;
    pc2.send(post("1", "https://x/pc2")).await;
    let r1 = dev.expect("post").await;
    let r2 = dev.expect("post").await;
    assert_ne!(r1["id"], r2["id"], "the device sees distinct ids");
    // Each reply carries the device's cookies and app info for that request.
    for r in [&r1, &r2] {
        let url = r["msg"]["url"].as_str().unwrap().to_owned();
        let msg =
            json!({"result": {"for": url}, "cookie": format!("sid=for-{url}"), "appInfo": {"for": url}});
        dev.send(json!({"type": "postCb", "id": r["id"], "msg": msg})).await;
    }
    let c1 = pc1.expect("postCb").await;
    let c2 = pc2.expect("postCb").await;
    assert_eq!((c1["id"].as_str(), c1["msg"]["result"]["for"].as_str()), (Some("1"), Some("https://x/pc1")));
    assert_eq!((c2["id"].as_str(), c2["msg"]["result"]["for"].as_str()), (Some("1"), Some("https://x/pc2")));
    assert_eq!(c1["msg"]["cookie"], "sid=for-https://x/pc1");
    assert_eq!(c2["msg"]["appInfo"]["for"], "https://x/pc2");
    // Nothing else was queued for either PC: a marker error is the next thing each sees.
    for pc in [&mut pc1, &mut pc2] {
        pc.send_text("not json").await;
        let v = pc.next_skipping_devices().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["msg"]["code"], "bad_frame");
    }
    relay.stop().await;
}

#[tokio::test]
async fn rooms_are_isolated() {
    let relay = Relay::start().await;
    let mut pc_a = relay.join("a", "pc", "s-0123456789abcdef").await;
    let mut dev_a = relay.join("a", "device", "s-0123456789abcdef").await;
    let mut pc_b = relay.join("b", "pc", "s-0123456789abcdef").await;
    let mut dev_b = relay.join("b", "device", "s-0123456789abcdef").await;

    pc_b.send(post("b1", "https://x/b")).await;
    let req = dev_b.expect("post").await;
    dev_b.send(reply_to(&req, json!("b"))).await;
    pc_b.expect("postCb").await;
    // Room a's members saw none of it: their next request-frame is room a's own marker.
    pc_a.send(post("a1", "https://x/a-marker")).await;
    let got = dev_a.expect("post").await;
    assert_eq!(got["msg"]["url"], "https://x/a-marker");
    // And their member lists never named room b's members.
    let members = pc_a.devices_until(|m| m.len() == 2).await;
    assert_eq!(ids(&members), [pc_a.member.as_str(), dev_a.member.as_str()]);
    relay.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_secret_is_refused_and_closes() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", "right-0123456789abcdef").await;
    let url = relay.ws_url();
    let refused = Client::join_query(&url, "room=r&role=device&secret=wrong-0123456789abcdef")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.error["code"], "unauthorized");
    assert_eq!(refused.close_code, Some(4401));
    let refused = Client::join_query(&url, "room=r&role=device").await.err().expect("refused");
    assert_eq!(refused.error["code"], "unauthorized");
    assert_eq!(refused.close_code, Some(4401));
    // The stranger never appeared in the room.
    pc.send(post("x", "https://x/")).await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("no_target"), Some("x")));

    // Bad join parameters: a clear error and a close, never a panic.
    for q in [
        "role=pc&secret=s-0123456789abcdef",
        "room=r&role=admin&secret=right-0123456789abcdef",
        "room=a%2Fb&role=pc&secret=s-0123456789abcdef",
    ] {
        let refused = Client::join_query(&url, q).await.err().expect("refused");
        assert_eq!(refused.error["code"], "bad_frame", "{q}");
        assert_eq!(refused.close_code, Some(4400), "{q}");
    }
    // Once the room empties, the next first joiner sets a new secret.
    pc.close().await;
    let again = relay.join("r", "pc", "new-secret-0123456789abcdef").await;
    assert!(again.member.starts_with("p-"));
    relay.stop().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_stays_open() {
    let relay = Relay::with(|c| c.max_frame = 4096).await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;

    let cases: Vec<(String, &str, Value)> = vec![
        ("{not json".into(), "bad_frame", Value::Null),
        ("[1,2]".into(), "bad_frame", Value::Null),
        (json!({"type": "teleport", "id": "t1"}).to_string(), "unknown_type", json!("t1")),
        (json!({"type": "welcome", "id": "w"}).to_string(), "bad_frame", json!("w")),
        (json!({"type": "postCb", "id": "p", "msg": {}}).to_string(), "bad_frame", json!("p")),
        (
            json!({"type": "post", "id": "nourl", "msg": {"method": "GET"}}).to_string(),
            "bad_frame",
            json!("nourl"),
        ),
        (json!({"type": "call", "id": "nomsg"}).to_string(), "bad_frame", json!("nomsg")),
        (json!({"type": "hello", "msg": {"name": 5}}).to_string(), "bad_frame", Value::Null),
        (
            json!({"type": "post", "id": "big", "msg": {"url": "x".repeat(5000)}}).to_string(),
            "too_large",
            Value::Null,
        ),
    ];
    for (frame, code, id) in &cases {
        pc.send_text(frame).await;
        let (err, got_id) = pc.expect_error().await;
        assert_eq!(err["code"], *code, "for {frame:.60}");
        assert_eq!(got_id, *id, "for {frame:.60}");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    pc.send_binary(vec![1, 2, 3]).await;
    assert_eq!(pc.expect_error().await.0["code"], "bad_frame");
    // A device may not send requests.
    dev.send(post("d", "https://x/")).await;
    assert_eq!(dev.expect_error().await.0["code"], "bad_frame");

    // After all that, both connections still work.
    pc.send(post("ok", "https://x/ok")).await;
    let req = dev.expect("post").await;
    dev.send(reply_to(&req, json!(1))).await;
    assert_eq!(pc.expect("postCb").await["id"], "ok");
    relay.stop().await;
}

#[tokio::test]
async fn a_frame_far_beyond_the_limit_closes_with_4413() {
    let relay = Relay::with(|c| c.max_frame = 1024).await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    // 64 KiB is the floor of the hard limit; go past it.
    pc.send_text(&format!("{{\"type\":\"hello\",\"msg\":{{\"name\":\"{}\"}}}}", "x".repeat(200_000))).await;
    let (frames, code) = pc.drain_until_close().await;
    assert!(frames.iter().any(|f| f["type"] == "error" && f["msg"]["code"] == "too_large"), "{frames:?}");
    // The relay stops reading at the oversized frame's header, so the rest of it is unread
    // when the socket closes; the kernel may then reset the connection before the close
    // frame is read. If the close frame does arrive, it says 4413.
    assert!(matches!(code, None | Some(4413)), "{code:?}");
    relay.stop().await;
}

#[tokio::test]
async fn no_target_cases() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    pc.send(post("1", "https://x/")).await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("no_target"), Some("1")));

    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.send(json!({"type": "post", "id": "2", "to": "d-nobody", "msg": {"url": "u"}})).await;
    assert_eq!(pc.expect_error().await.0["code"], "no_target");
    pc.send(json!({"type": "call", "id": "3", "to": pc.member, "msg": {"method": "m"}})).await;
    assert_eq!(pc.expect_error().await.0["code"], "no_target", "a pc is not a device");

    // A reply to nothing, and a reply of the wrong kind.
    dev.send(json!({"type": "postCb", "id": "ghost", "msg": {"result": 1}})).await;
    assert_eq!(dev.expect_error().await.0["code"], "no_target");
    pc.send(post("4", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(json!({"type": "callCb", "id": req["id"], "msg": {"method": "m"}})).await;
    assert_eq!(dev.expect_error().await.0["code"], "bad_frame");
    dev.send(json!({"type": "postCb", "msg": {}})).await;
    assert_eq!(dev.expect_error().await.0["code"], "bad_frame", "a reply without an id");
    // The request is still answerable after the wrong-kind reply.
    dev.send(reply_to(&req, json!("late but right"))).await;
    assert_eq!(pc.expect("postCb").await["msg"]["result"], "late but right");

    // A device that leaves with a request pending: the PC hears of it.
    pc.send(post("5", "https://x/")).await;
    dev.expect("post").await;
    dev.close().await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("no_target"), Some("5")));
    relay.stop().await;
}

#[tokio::test]
async fn a_flood_is_limited_then_closed() {
    let relay = Relay::with(|c| {
        c.rate_limit = 5;
        c.rate_burst = 5;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut other = relay.join("r", "pc", "s-0123456789abcdef").await;
    for i in 0..40 {
        pc.send(json!({"type": "hello", "msg": {"name": format!("n{i}")}})).await;
    }
    let (frames, code) = pc.drain_until_close().await;
    assert_eq!(code, Some(4429));
    let limited = frames.iter().filter(|f| f["msg"]["code"] == "rate_limited").count();
    assert!(limited >= 5, "told to slow down before being closed: {limited}");
    // The flooder is gone; the other member is untouched.
    other.devices_until(|m| m.len() == 1).await;
    other.send(json!({"type": "hello", "msg": {"name": "still here"}})).await;
    other.devices_until(|m| m[0]["name"] == "still here").await;
    relay.stop().await;
}

#[tokio::test]
async fn a_device_that_does_not_read_is_closed_as_a_slow_consumer() {
    let relay = Relay::with(|c| {
        c.max_frame = 256 * 1024;
        c.queue_frames = 16;
        c.queue_bytes = 1024 * 1024;
        c.rate_limit = 10_000;
        c.rate_burst = 10_000;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let dev = relay.join("r", "device", "s-0123456789abcdef").await; // never read from again
    let dev_id = dev.member.clone();
    pc.devices_until(|m| m.len() == 2).await;
    let body = "x".repeat(200 * 1024);
    let mut told = None;
    let mut gone = false; // a devices list without the slow device seen
    let without_dev = |v: &Value| {
        v["type"] == "devices" && !ids(v["msg"]["members"].as_array().unwrap()).contains(&dev_id.as_str())
    };
    for i in 0..400 {
        pc.send(json!({"type": "post", "id": format!("{i}"), "msg": {"url": "u", "body": body}})).await;
        // Any error the PC got so far?
        if i % 20 == 19 {
            pc.send_text("{").await; // marker: one bad_frame per batch
            loop {
                let v = pc.next().await;
                gone |= without_dev(&v);
                if v["msg"]["code"] == "bad_frame" {
                    break;
                }
                if v["msg"]["code"] == "slow_consumer" && told.is_none() {
                    told = Some(v["id"].clone());
                }
            }
            if told.is_some() {
                break;
            }
        }
    }
    let id = told.expect("the PC was told its frame could not be delivered");
    assert!(id.is_string());
    // The slow device is gone from the room, not merely away; its unanswered requests fail
    // toward the PC with no_target meanwhile.
    while !gone {
        let v = pc.next().await;
        gone = without_dev(&v);
        assert!(
            v["type"] == "devices"
                || ["no_target", "slow_consumer"].contains(&v["msg"]["code"].as_str().unwrap()),
            "{v}"
        );
    }
    let m = http_get(relay.addr, "/metrics").await.2;
    assert!(m.contains("tether_drops_total{reason=\"slow_consumer\"} "), "{m}");
    assert!(!m.contains("tether_drops_total{reason=\"slow_consumer\"} 0\n"));
    drop(dev);
    relay.stop().await;
}

#[tokio::test]
async fn presence_clean_leave_drop_and_grace() {
    let relay = Relay::with(|c| {
        c.heartbeat_ms = 1000;
        c.grace_ms = 600;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let dev = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| m.len() == 2).await;

    // A close frame: gone at once, long before any heartbeat.
    let t = Instant::now();
    dev.close().await;
    pc.devices_until(|m| m.len() == 1).await;
    assert!(t.elapsed() < Duration::from_millis(500), "clean leave took {:?}", t.elapsed());

    // A dropped connection: away at once, removed when the grace window ends.
    let dev = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| m.len() == 2).await;
    let t = Instant::now();
    dev.drop_connection();
    let members = pc.devices_until(|m| m.len() == 2 && m[1]["away"] == true).await;
    assert_eq!(members[1]["role"], "device");
    assert!(t.elapsed() < Duration::from_millis(500), "drop noticed after {:?}", t.elapsed());
    pc.devices_until(|m| m.len() == 1).await;
    let gone = t.elapsed();
    assert!(gone >= Duration::from_millis(600), "removed before the grace window ended: {gone:?}");
    assert!(gone < Duration::from_millis(1600), "removed {gone:?} after dropping");
    relay.stop().await;
}

#[tokio::test]
async fn a_dead_peer_is_marked_away_within_two_heartbeats() {
    let hb = 300u64;
    let relay = Relay::with(|c| {
        c.heartbeat_ms = hb;
        c.grace_ms = 60_000;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    // This device answers nothing from now on: no pongs, no FIN, like a phone in a tunnel.
    let t = Instant::now();
    let dead = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| m.len() == 2).await;
    pc.devices_until(|m| m.len() == 2 && m[1]["away"] == true).await;
    let took = t.elapsed();
    // The PC itself answered every ping while it waited, and was never marked away.
    assert!(took >= Duration::from_millis(hb * 3 / 2), "marked away too early: {took:?}");
    assert!(took <= Duration::from_millis(2 * hb + 400), "marked away after {took:?}");
    drop(dead);
    relay.stop().await;
}

#[tokio::test]
async fn resume_keeps_the_member_id_and_delivers_what_was_sent_meanwhile_in_order() {
    let relay = Relay::with(|c| c.grace_ms = 10_000).await;
    let url = relay.ws_url();
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let dev = relay.join("r", "device", "s-0123456789abcdef").await;
    let (id, token) = (dev.member.clone(), dev.resume.clone());
    pc.devices_until(|m| m.len() == 2).await;
    dev.drop_connection();
    pc.devices_until(|m| m.len() == 2 && m[1]["away"] == true).await;

    for n in ["a", "b", "c"] {
        pc.send(json!({"type": "post", "id": n, "to": id, "msg": {"url": format!("https://x/{n}")}})).await;
    }
    // Buffered, not refused: the PC's next frame is the presence change when the device is back.
    let mut dev = Client::rejoin(&url, "r", "device", "s-0123456789abcdef", &token).await;
    assert_eq!(dev.member, id);
    assert_eq!(dev.welcome["resumed"], true);
    let got: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(dev.expect("post").await["msg"]["url"].as_str().unwrap().to_owned());
        }
        v
    };
    assert_eq!(got, ["https://x/a", "https://x/b", "https://x/c"]);
    let members = pc.devices_until(|m| m.len() == 2 && m[1]["away"] == false).await;
    assert_eq!(members[1]["id"], id.as_str());

    // Answers still find the PC.
    pc.send(post("after", "https://x/after")).await;
    let req = dev.expect("post").await;
    dev.send(reply_to(&req, json!("ok"))).await;
    assert_eq!(pc.expect("postCb").await["id"], "after");
    relay.stop().await;
}

#[tokio::test]
async fn a_full_resume_buffer_is_told_to_the_sender() {
    let relay = Relay::with(|c| {
        c.grace_ms = 10_000;
        c.resume_buffer = 2;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let dev = relay.join("r", "device", "s-0123456789abcdef").await;
    let id = dev.member.clone();
    pc.devices_until(|m| m.len() == 2).await;
    dev.drop_connection();
    pc.devices_until(|m| m.len() == 2 && m[1]["away"] == true).await;
    for n in ["1", "2", "3"] {
        pc.send(json!({"type": "post", "id": n, "to": id, "msg": {"url": "u"}})).await;
    }
    let (err, rid) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), rid.as_str()), (Some("buffer_full"), Some("3")));
    relay.stop().await;
}

#[tokio::test]
async fn resume_edge_cases() {
    let relay = Relay::with(|c| c.grace_ms = 400).await;
    let url = relay.ws_url();
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let old = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| m.len() == 2).await;

    // The phone reconnects before the relay noticed the old socket died: the old socket is
    // closed as replaced, the member keeps its id, and the list shows it once.
    let new = Client::rejoin(&url, "r", "device", "s-0123456789abcdef", &old.resume).await;
    assert_eq!(new.member, old.member);
    assert_eq!(old.wait_close().await, Some(4409));
    let members = pc.devices_until(|m| m.len() == 2 && m[1]["away"] == false).await;
    assert_eq!(members[1]["id"], new.member.as_str());

    // A token for another room or role, or a forged one, just joins afresh.
    let other = Client::rejoin(&url, "r", "pc", "s-0123456789abcdef", &new.resume).await;
    assert_ne!(other.member, new.member);
    assert_eq!(other.welcome["resumed"], false);
    let forged = Client::rejoin(&url, "r", "device", "s-0123456789abcdef", "v1.AAAA.BBBB").await;
    assert_eq!(forged.welcome["resumed"], false);

    // After the grace window, the token no longer restores the id.
    let token = new.resume.clone();
    let gone_id = new.member.clone();
    new.drop_connection();
    pc.devices_until(|m| !ids(m).contains(&gone_id.as_str())).await;
    let late = Client::rejoin(&url, "r", "device", "s-0123456789abcdef", &token).await;
    assert_ne!(late.member, gone_id);
    assert_eq!(late.welcome["resumed"], false);
    relay.stop().await;
}

#[tokio::test]
async fn a_full_room_refuses_the_next_member() {
    let relay = Relay::with(|c| c.max_room_members = 2).await;
    let _a = relay.join("r", "pc", "s-0123456789abcdef").await;
    let _b = relay.join("r", "device", "s-0123456789abcdef").await;
    let refused = Client::join_query(&relay.ws_url(), "room=r&role=device&secret=s-0123456789abcdef")
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.error["code"], "room_full");
    assert_eq!(refused.close_code, Some(4403));
    relay.stop().await;
}

#[tokio::test]
async fn history_is_stored_paged_and_needs_the_secret() {
    let relay = Relay::start().await;
    let mut pc = relay.join("hist room", "pc", "k3y-0123456789abcdef").await;
    let mut dev = relay.join("hist room", "device", "k3y-0123456789abcdef").await;
    dev.send(json!({"type": "hello", "msg": {"name": "Pixel"}})).await;
    for i in 0..5 {
        if i % 2 == 0 {
            pc.send(post(&format!("p{i}"), &format!("https://x/{i}"))).await;
        } else {
            pc.send(json!({"type": "call", "id": format!("c{i}"), "msg": {"method": "getAppInfo", "params": [i]}}))
                .await;
        }
        let req = dev.next_skipping_devices().await;
        dev.send(reply_to(&req, json!({ "n": i }))).await;
        pc.next_skipping_devices().await;
    }
    let base = "/api/rooms/hist%20room/history";
    let (status, items) = get_json(relay.addr, &format!("{base}?secret=k3y-0123456789abcdef")).await;
    assert_eq!(status, 200);
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 5);
    let req_ids: Vec<_> = items.iter().map(|i| i["reqId"].as_str().unwrap()).collect();
    assert_eq!(req_ids, ["p4", "c3", "p2", "c1", "p0"], "newest first, with the PC's ids");
    let newest = &items[0];
    assert_eq!(newest["type"], "post");
    assert_eq!(newest["url"], "https://x/4");
    assert_eq!(newest["result"]["n"], 4);
    assert_eq!(newest["cookie"], "uid=42");
    assert_eq!(newest["appInfo"]["app"], "news");
    assert_eq!(newest["device"], dev.member.as_str());
    assert_eq!(newest["deviceName"], "Pixel");
    assert_eq!(newest["pc"], pc.member.as_str());
    assert!(newest["ms"].as_u64().is_some());
    assert_eq!(items[1]["method"], "getAppInfo");
    assert_eq!(items[1]["request"]["params"][0], 3);

    // Paging with a cursor.
    let (status, head, body) =
        http_get(relay.addr, &format!("{base}?secret=k3y-0123456789abcdef&limit=2")).await;
    assert_eq!(status, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    let next =
        head.iter().find(|(k, _)| k == "x-next-before").map(|(_, v)| v.clone()).expect("a next cursor");
    assert_eq!(next, page[1]["id"].to_string());
    let (_, older) =
        get_json(relay.addr, &format!("{base}?secret=k3y-0123456789abcdef&limit=2&before={next}")).await;
    assert_eq!(older[0]["reqId"], "p2");

    // No secret, a wrong one, an unknown room: 401 with a JSON error.
    for q in [
        base.to_string(),
        format!("{base}?secret=nope-0123456789abcdef"),
        "/api/rooms/nowhere/history?secret=k3y-0123456789abcdef".into(),
    ] {
        let (status, body) = get_json(relay.addr, &q).await;
        assert_eq!(status, 401, "{q}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, body) = get_json(relay.addr, &format!("{base}?secret=k3y-0123456789abcdef&limit=0")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");

    // History outlives the room.
    pc.close().await;
    dev.close().await;
    let (status, items) = get_json(relay.addr, &format!("{base}?secret=k3y-0123456789abcdef")).await;
    assert_eq!(status, 200);
    assert_eq!(items.as_array().unwrap().len(), 5);
    relay.stop().await;
}

#[tokio::test]
async fn healthz_and_metrics_count_without_revealing_rooms() {
    let relay = Relay::start().await;
    let mut pc = relay.join("secret-project-x", "pc", "hunter2-0123456789abcdef").await;
    let _dev = relay.join("secret-project-x", "device", "hunter2-0123456789abcdef").await;
    pc.send(post("1", "https://x/")).await;
    pc.send_text("nope").await;
    pc.expect_error().await;
    let (status, h) = get_json(relay.addr, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["rooms"], 1);
    assert_eq!(h["connections"], 2);
    assert!(h["version"].is_string());

    let (status, head, m) = http_get(relay.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/plain")));
    assert!(m.contains("tether_connections 2\n"), "{m}");
    assert!(m.contains("tether_rooms 1\n"));
    assert!(m.contains("tether_frames_in_total{type=\"post\"} 1\n"));
    assert!(m.contains("tether_errors_total{code=\"bad_frame\"} 1\n"));
    assert!(!m.contains("secret-project-x") && !m.contains("hunter2"));
    assert!(!h.to_string().contains("secret-project-x"));
    relay.stop().await;
}

#[tokio::test]
async fn pages_are_served_from_www_or_explained() {
    let relay = Relay::start().await;
    let (status, _, body) = http_get(relay.addr, "/").await;
    assert_eq!(status, 503);
    assert!(body.contains("not built yet"), "{body}");

    let www = relay.dir.path().join("www");
    std::fs::create_dir_all(www.join("assets")).unwrap();
    std::fs::write(www.join("index.html"), "<title>pc</title>").unwrap();
    std::fs::write(www.join("device.html"), "<head><title>device</title>").unwrap();
    std::fs::write(www.join("assets/app.js"), "console.log(1)").unwrap();
    assert_eq!(http_get(relay.addr, "/").await.2, "<title>pc</title>");
    // The device page gets the relay's --bridge-names (the link never names the bridge).
    assert_eq!(
        http_get(relay.addr, "/d/my%20room?bridge=window").await.2,
        "<head>\n  <meta name=\"tether-bridges\" content=\"TencentNews\"><title>device</title>"
    );
    let (status, _, js) = http_get(relay.addr, "/assets/app.js").await;
    assert_eq!((status, js.as_str()), (200, "console.log(1)"));
    assert_eq!(http_get(relay.addr, "/nope.js").await.0, 404);
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_sends_every_member_a_close_frame() {
    let relay = Relay::start().await;
    let pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let dev = relay.join("r", "device", "s-0123456789abcdef").await;
    let stopping = tokio::spawn(relay.stop());
    let (pc_code, dev_code) = tokio::join!(pc.wait_close(), dev.wait_close());
    assert_eq!(pc_code, Some(1012));
    assert_eq!(dev_code, Some(1012));
    stopping.await.unwrap();
}

#[tokio::test]
async fn requests_awaiting_replies_are_bounded_per_room() {
    let relay = Relay::with(|c| {
        c.max_pending = 2;
        c.max_pending_bytes = 10_000;
    })
    .await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;
    for n in ["1", "2", "3"] {
        pc.send(post(n, "https://x/")).await;
    }
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("rate_limited"), Some("3")));
    // Answering one frees its place.
    let r1 = dev.expect("post").await;
    let r2 = dev.expect("post").await;
    dev.send(reply_to(&r1, json!(1))).await;
    assert_eq!(pc.expect("postCb").await["id"], "1");
    pc.send(post("4", "https://x/4")).await;
    let r4 = dev.expect("post").await;
    assert_eq!(r4["msg"]["url"], "https://x/4");
    dev.send(reply_to(&r2, json!(2))).await;
    dev.send(reply_to(&r4, json!(4))).await;
    pc.expect("postCb").await;
    pc.expect("postCb").await;
    // The byte budget: a body that would not fit is refused even with places free.
    pc.send(json!({"type": "post", "id": "big", "msg": {"url": "u", "body": "z".repeat(20_000)}})).await;
    let (err, id) = pc.expect_error().await;
    assert_eq!((err["code"].as_str(), id.as_str()), (Some("rate_limited"), Some("big")));
    relay.stop().await;
}

#[tokio::test]
async fn a_huge_app_info_is_refused_because_everyone_would_receive_it() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("r", "device", "s-0123456789abcdef").await;
    pc.devices_until(|m| m.len() == 2).await;
    dev.send(json!({"type": "hello", "msg": {"name": "big", "appInfo": {"blob": "b".repeat(40_000)}}})).await;
    let (err, _) = dev.expect_error().await;
    assert_eq!(err["code"], "bad_frame");
    assert!(err["message"].as_str().unwrap().contains("appInfo"));
    dev.send(json!({"type": "hello", "msg": {"name": "small", "appInfo": {"v": 1}}})).await;
    let members = pc.devices_until(|m| m[1]["name"] == "small").await;
    assert_eq!(members[1]["appInfo"]["v"], 1);
    relay.stop().await;
}

/// A device answers many requests back to back without waiting (the relay does not hold its
/// socket while a reply is committed): the PC gets every reply, in the order sent, and each
/// one is in history by the time the PC sees it.
#[tokio::test]
async fn replies_sent_back_to_back_arrive_in_order_each_already_in_history() {
    let relay = Relay::start().await;
    let mut pc = relay.join("pipe", "pc", "s-0123456789abcdef").await;
    let mut dev = relay.join("pipe", "device", "s-0123456789abcdef").await;
    let n = 200;
    for i in 0..n {
        pc.send(post(&format!("q{i}"), &format!("https://x/{i}"))).await;
    }
    let mut requests = Vec::new();
    while requests.len() < n {
        requests.push(dev.next_skipping_devices().await);
    }
    for req in &requests {
        dev.send(reply_to(req, json!({ "url": req["msg"]["url"] }))).await;
    }
    for i in 0..n {
        let cb = pc.next_skipping_devices().await;
        assert_eq!(cb["type"], "postCb");
        assert_eq!(cb["id"], format!("q{i}"), "replies keep their order");
        if i % 50 == 0 {
            // Seen by the PC, so committed: the newest row is this one or a later one.
            let (status, items) =
                get_json(relay.addr, "/api/rooms/pipe/history?secret=s-0123456789abcdef&limit=1").await;
            assert_eq!(status, 200);
            let newest: usize = items[0]["reqId"].as_str().unwrap()[1..].parse().unwrap();
            assert!(newest >= i, "reply q{i} reached the PC before its row was committed (newest {newest})");
        }
    }
    let (_, items) =
        get_json(relay.addr, &format!("/api/rooms/pipe/history?secret=s-0123456789abcdef&limit={n}")).await;
    assert_eq!(items.as_array().unwrap().len(), n);
    // Commits are counted, so records per commit can be read off /metrics.
    let (_, _, m) = http_get(relay.addr, "/metrics").await;
    let value = |name: &str| -> u64 {
        m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).expect(name)
    };
    assert_eq!(value("tether_history_writes_total"), n as u64);
    let commits = value("tether_history_commits_total");
    assert!((1..=n as u64 + 1).contains(&commits), "{commits} commits");
    relay.stop().await;
}

#[tokio::test]
async fn the_qr_links_device_key_joins_as_a_device_and_nothing_more() {
    const PC_SECRET: &str = "pc-only-0123456789abcdef";
    let relay = Relay::start().await;
    let url = relay.ws_url();
    let mut pc = relay.join("qr", "pc", PC_SECRET).await;
    let key = pc.welcome["deviceKey"].as_str().expect("the PC is told its room's device key").to_owned();
    assert!(key.starts_with("dk.") && !key.contains(PC_SECRET));

    // The key joins as a device, is not told the key, and works like any device.
    let mut dev = relay.join("qr", "device", &key).await;
    assert!(dev.welcome.get("deviceKey").is_none());
    pc.send(post("1", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(reply_to(&req, json!({"cookie": "uid=42"}))).await;
    assert_eq!(pc.expect("postCb").await["id"], "1");

    // Never as a PC, even with the PC's own resume token.
    let q = format!("room=qr&role=pc&secret={}&resume={}", enc(&key), enc(&pc.resume));
    let refused = Client::join_query(&url, &q).await.err().expect("a device key is not a PC");
    assert_eq!((refused.error["code"].as_str(), refused.close_code), (Some("unauthorized"), Some(4401)));
    // Never reads history: not in the query, not as a Bearer token.
    let (status, body) = get_json(relay.addr, &format!("/api/rooms/qr/history?secret={}", enc(&key))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let bearer = format!("Bearer {key}");
    let (status, _, _) =
        http_get_with(relay.addr, "/api/rooms/qr/history", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 403);
    // The PC secret does, as a Bearer token.
    let bearer = format!("Bearer {PC_SECRET}");
    let (status, _, body) =
        http_get_with(relay.addr, "/api/rooms/qr/history", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(), 1);

    // A secret too short to be one is refused, and says why.
    let refused = Client::join_query(&url, "room=short&role=pc&secret=s3cret").await.err().unwrap();
    assert!(refused.error["message"].as_str().unwrap().contains("16 to 256 bytes"), "{}", refused.error);
    relay.stop().await;
}

#[tokio::test]
async fn a_resume_token_once_used_cannot_be_replayed() {
    const SECRET: &str = "replay-0123456789abcdef";
    let relay = Relay::start().await;
    let url = relay.ws_url();
    let mut pc = relay.join("r", "pc", SECRET).await;
    let dev = relay.join("r", "device", SECRET).await;
    let (id, seen) = (dev.member.clone(), dev.resume.clone());
    dev.drop_connection();
    pc.devices_until(|m| m.iter().any(|d| d["id"] == id.as_str() && d["away"] == true)).await;
    // The phone comes back with its token, gets a new one, and is heard from.
    let mut back = Client::rejoin(&url, "r", "device", SECRET, &seen).await;
    assert_eq!((back.member.as_str(), back.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    assert_ne!(back.resume, seen, "every welcome carries a new token");
    back.send(json!({"type": "hello", "msg": {"name": "heard"}})).await;
    pc.devices_until(|m| m.iter().any(|d| d["name"] == "heard")).await;
    // Someone who saw the old token (say, in a proxy's log) cannot take the member over.
    let refused =
        Client::join_query(&url, &format!("room=r&role=device&secret={SECRET}&resume={}", enc(&seen)))
            .await
            .err()
            .expect("a spent token is refused");
    assert_eq!(refused.error["code"], "unauthorized");
    assert!(refused.error["message"].as_str().unwrap().contains("already used"));
    // The phone still holds its member.
    pc.send(post("2", "https://x/")).await;
    let req = back.expect("post").await;
    back.send(reply_to(&req, json!(1))).await;
    assert_eq!(pc.expect("postCb").await["from"], id.as_str());
    relay.stop().await;
}
