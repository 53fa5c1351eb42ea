//! Inspecting the page, the relay's part, end to end: real WebSocket clients playing the
//! device SDK (sending `inspect` batches, answering `storage`/`eval`) and the PC SDK, against
//! relays on port 0 (and two relays sharing a Redis for cluster mode).

use serde_json::{Value, json};
use std::time::Instant;
use tether_tests::{Client, Redis, Relay, get_json, metric};

const SECRET: &str = "s3cret-0123456789abcdef";

/// An `inspect` frame with one console event numbered `n`, its text padded to about `pad`.
fn batch(n: u64, pad: usize) -> Value {
    json!({"type": "inspect", "msg": {
        "events": [{"k": "console", "at": 1_700_000_000_000u64, "n": n, "level": "log", "args": ["x".repeat(pad)]}],
        "dropped": {"console": 2}, "droppedBytes": 90
    }})
}

/// Reads `c`'s frames until a `devices` push lists a member named `name`; gives the frames
/// read before it (the relay sends a member's frames in order, so anything it queued for `c`
/// before that push is among them).
async fn until_named(c: &mut Client, name: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let f = c.next().await;
        if f["type"] == "devices" && f["msg"]["members"].as_array().unwrap().iter().any(|m| m["name"] == name)
        {
            return before;
        }
        before.push(f);
    }
}

fn of_type<'a>(frames: &'a [Value], ty: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| f["type"] == ty).collect()
}

#[tokio::test]
async fn an_inspect_batch_reaches_the_watching_pc_only_and_only_a_device_sends_one() {
    let relay = Relay::start().await;
    let mut watcher = relay.join("r", "pc", SECRET).await;
    let mut plain = relay.join("r", "pc", SECRET).await;
    let mut dev = relay.join("r", "device", SECRET).await;
    watcher.send(json!({"type": "hello", "msg": {"inspect": "live"}})).await;
    dev.send(json!({"type": "hello", "msg": {"name": "phone", "inspect": {"console": true, "allow": true}}}))
        .await;
    let members = plain.devices_until(|m| m.iter().any(|x| x["name"] == "phone")).await;
    let of = |id: &str| members.iter().find(|m| m["id"] == id).unwrap()["inspect"].clone();
    assert_eq!(of(&watcher.member), "live");
    assert_eq!(of(&plain.member), Value::Null);
    assert_eq!(of(&dev.member), json!({"console": true, "network": false, "storage": false, "allow": true}));

    dev.send(batch(1, 10)).await;
    let got = watcher.expect("inspect").await;
    assert_eq!(got["from"], dev.member.as_str());
    assert_eq!(got["msg"], batch(1, 10)["msg"], "forwarded as sent");
    // The PC that did not ask sees none of it (the next push comes after it, in order).
    dev.send(json!({"type": "hello", "msg": {"name": "phone 2"}})).await;
    let before = until_named(&mut plain, "phone 2").await;
    assert!(of_type(&before, "inspect").is_empty(), "{before:?}");

    // A PC cannot send one; a malformed one is refused; a device cannot watch.
    watcher.send(batch(2, 10)).await;
    let (e, _) = watcher.expect_error().await;
    assert_eq!(
        (e["code"].as_str(), e["message"].as_str()),
        (Some("bad_frame"), Some("only a device sends inspect"))
    );
    dev.send(json!({"type": "inspect", "id": "x", "msg": {"events": {"k": "console"}}})).await;
    let (e, id) = dev.expect_error().await;
    assert_eq!((e["code"].as_str(), id.as_str()), (Some("bad_frame"), Some("x")));
    assert!(e["message"].as_str().unwrap().contains("msg.events, an array"), "{e}");
    dev.send(json!({"type": "hello", "id": "h", "msg": {"inspect": "keep"}})).await;
    let (e, _) = dev.expect_error().await;
    assert!(e["message"].as_str().unwrap().contains("what its page captures"), "{e}");
    let m = metric(relay.addr, "tether_frames_in_total{type=\"inspect\"}").await;
    assert_eq!(m, Some(3));
    relay.stop().await;
}

#[tokio::test]
async fn storage_and_eval_round_trip_and_reach_history_only_while_a_pc_keeps() {
    let relay = Relay::start().await;
    let mut pc = relay.join("r", "pc", SECRET).await;
    let mut dev = relay.join("r", "device", SECRET).await;
    let history = format!("/api/rooms/r/history?secret={SECRET}");

    pc.send(json!({"type": "storage", "id": "s1", "to": dev.member, "msg": {"op": "read", "area": "local"}}))
        .await;
    let req = dev.expect("storage").await;
    assert_eq!(
        (req["id"].as_str(), req["from"].as_str()),
        (Some(format!("{}:s1", pc.member).as_str()), Some(pc.member.as_str()))
    );
    assert_eq!(req["msg"], json!({"op": "read", "area": "local"}));
    let local = json!({"local": [["theme", "dark"]], "session": [], "cookie": []});
    dev.send(json!({"type": "storageCb", "id": req["id"], "msg": {"result": local}})).await;
    let cb = pc.expect("storageCb").await;
    assert_eq!((cb["id"].as_str(), cb["msg"]["result"].clone()), (Some("s1"), local));

    // The device's page refused: the PC gets the device's answer as it is.
    pc.send(json!({"type": "eval", "id": "e1", "msg": {"code": "document.title"}})).await;
    let req = dev.expect("eval").await;
    let refused = json!({"error": {"code": "not_allowed", "message": "eval is off on this phone"}});
    dev.send(json!({"type": "evalCb", "id": req["id"], "msg": refused})).await;
    assert_eq!(pc.expect("evalCb").await["msg"], refused);
    let (status, items) = get_json(relay.addr, &history).await;
    assert_eq!((status, items.as_array().unwrap().len()), (200, 0), "nothing kept: {items}");

    // Wrong sides and oversized code are refused.
    dev.send(json!({"type": "eval", "id": "x", "msg": {"code": "1"}})).await;
    assert_eq!(dev.expect_error().await.0["message"], "only a pc sends eval");
    pc.send(json!({"type": "storageCb", "id": "y", "msg": {}})).await;
    assert_eq!(pc.expect_error().await.0["message"], "only a device sends storageCb");
    pc.send(json!({"type": "eval", "id": "big", "msg": {"code": "x".repeat(64 * 1024 + 1)}})).await;
    let (e, id) = pc.expect_error().await;
    assert_eq!((e["code"].as_str(), id.as_str()), (Some("bad_frame"), Some("big")));
    assert!(e["message"].as_str().unwrap().contains("65536-byte limit"), "{e}");
    pc.send(json!({"type": "storage", "id": "z", "msg": {"area": "local"}})).await;
    let (e, _) = pc.expect_error().await;
    assert!(e["message"].as_str().unwrap().starts_with("bad storage"), "{e}");

    // The PC keeps: the next pair is stored.
    pc.send(json!({"type": "hello", "msg": {"inspect": "keep"}})).await;
    pc.send(json!({"type": "eval", "id": "e2", "msg": {"code": "1 + 1"}})).await;
    let req = dev.expect("eval").await;
    dev.send(json!({"type": "evalCb", "id": req["id"], "msg": {"result": 2}})).await;
    assert_eq!(pc.expect("evalCb").await["msg"]["result"], 2);
    let (_, items) = get_json(relay.addr, &history).await;
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!((items[0]["type"].as_str(), items[0]["method"].as_str()), (Some("eval"), Some("1 + 1")));
    assert_eq!((items[0]["reqId"].as_str(), items[0]["result"].as_i64()), (Some("e2"), Some(2)));

    // While it keeps, the device's batches are stored too: listed with `type=inspect`, never
    // among the pairs by default; an unknown type is refused.
    dev.send(batch(7, 0)).await;
    assert_eq!(pc.expect("inspect").await["msg"]["events"][0]["n"], 7);
    let rows = wait_rows(relay.addr, &format!("{history}&type=inspect"), 1).await;
    assert_eq!(
        (rows[0]["type"].as_str(), rows[0]["result"]["events"][0]["n"].as_u64()),
        (Some("inspect"), Some(7))
    );
    let (_, items) = get_json(relay.addr, &history).await;
    assert_eq!(items.as_array().unwrap().len(), 1, "the pairs only: {items}");
    let (_, items) = get_json(relay.addr, &format!("{history}&type=eval,inspect")).await;
    assert_eq!(items.as_array().unwrap().len(), 2, "{items}");
    let (status, e) = get_json(relay.addr, &format!("{history}&type=post,pcap")).await;
    assert_eq!((status, e["error"]["code"].as_str()), (400, Some("bad_request")), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("\"pcap\""), "{e}");
    relay.stop().await;
}

/// The rows of history page `path` once it has `n` of them (a kept batch is written after it
/// is forwarded, so a PC may see it before it is committed). Bounded: 5 s.
async fn wait_rows(addr: std::net::SocketAddr, path: &str, n: usize) -> Vec<Value> {
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, items) = get_json(addr, path).await;
        let rows = items.as_array().cloned().unwrap_or_default();
        if rows.len() >= n || tokio::time::Instant::now() > end {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_device_over_its_inspect_rate_loses_the_excess_is_told_once_a_second_and_stays() {
    let relay = Relay::with(|c| c.inspect_rate = 10_000).await;
    let mut pc = relay.join("r", "pc", SECRET).await;
    let mut dev = relay.join("r", "device", SECRET).await;
    assert_eq!(dev.welcome["inspectRate"], 10_000, "the device is told, to pace itself");
    pc.send(json!({"type": "hello", "msg": {"inspect": "live"}})).await;
    dev.devices_until(|m| m.iter().any(|x| x["inspect"] == "live")).await;
    // 40 batches of ~2 KB at once: 80 KB against 10 KB/s.
    let started = Instant::now();
    for n in 0..40 {
        dev.send(batch(n, 2_000)).await;
    }
    dev.send(json!({"type": "hello", "msg": {"name": "after"}})).await;
    let to_dev = until_named(&mut dev, "after").await;
    let to_pc = until_named(&mut pc, "after").await;
    let secs = started.elapsed().as_secs() + 1;
    let told = of_type(&to_dev, "error");
    assert!(!told.is_empty() && told.len() as u64 <= secs, "{told:?} in about {secs} s");
    assert_eq!(told[0]["msg"]["code"], "rate_limited");
    assert!(told[0]["msg"]["message"].as_str().unwrap().contains("--inspect-rate"), "{told:?}");
    let passed = of_type(&to_pc, "inspect").len() as u64;
    println!(
        "inspect rate: 40 batches of ~2 KB at once against --inspect-rate 10000: {passed} delivered, \
         {} dropped, the device told {} time(s), in {} ms",
        40 - passed,
        told.len(),
        started.elapsed().as_millis()
    );
    // A second's worth at once (10 KB: about 5), one more into debt, and the rate meanwhile.
    assert!((5..=6 + 5 * secs).contains(&passed), "{passed} of 40 in about {secs} s");
    let ns: Vec<u64> =
        of_type(&to_pc, "inspect").iter().map(|f| f["msg"]["events"][0]["n"].as_u64().unwrap()).collect();
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "in order, with gaps: {ns:?}");
    assert_eq!(metric(relay.addr, "tether_drops_total{reason=\"inspect_rate\"}").await, Some(40 - passed));
    // Not kicked: the device still answers the PC.
    pc.send(tether_tests::post("1", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, json!(1))).await;
    assert_eq!(pc.expect("postCb").await["id"], "1");
    relay.stop().await;
}

#[tokio::test]
async fn a_pc_that_does_not_read_loses_inspect_frames_never_its_connection() {
    // A small queue toward the PC (128 KiB of it for inspect frames), and rates that let the
    // device flood.
    let relay = Relay::with(|c| {
        c.queue_bytes = 256 * 1024;
        c.queue_frames = 64;
        c.inspect_rate = 1 << 30;
        c.rate_limit = 100_000;
        c.rate_burst = 100_000;
    })
    .await;
    let mut pc = relay.join("r", "pc", SECRET).await;
    let mut dev = relay.join("r", "device", SECRET).await;
    pc.send(json!({"type": "hello", "msg": {"inspect": "live"}})).await;
    dev.devices_until(|m| m.iter().any(|x| x["inspect"] == "live")).await;
    // The PC reads nothing while 2,000 batches of ~8 KB (16 MB, more than the socket buffers
    // hold) come; then the device says a name, a frame the PC must get.
    let sent = 2_000u64;
    let flood = Instant::now();
    for n in 0..sent {
        dev.send(batch(n, 8_000)).await;
    }
    dev.send(json!({"type": "hello", "msg": {"name": "after"}})).await;
    until_named(&mut dev, "after").await;
    let to_pc = until_named(&mut pc, "after").await;
    let got = of_type(&to_pc, "inspect").len() as u64;
    println!(
        "inspect to a PC reading nothing: {sent} batches of ~8 KB, {got} delivered once it read, {} dropped, \
         no kick; {} ms",
        sent - got,
        flood.elapsed().as_millis()
    );
    assert!(got > 0 && got < sent, "{got} of {sent}");
    let dropped = metric(relay.addr, "tether_drops_total{reason=\"inspect_queue\"}").await.unwrap()
        + metric(relay.addr, "tether_drops_total{reason=\"inspect_budget\"}").await.unwrap();
    assert_eq!(dropped, sent - got, "every batch was delivered or counted as dropped");
    assert_eq!(metric(relay.addr, "tether_inspect_frames_total").await, Some(got));
    assert_eq!(metric(relay.addr, "tether_drops_total{reason=\"slow_consumer\"}").await, Some(0));
    assert!(of_type(&to_pc, "error").is_empty(), "the PC is told nothing");
    // Both still connected: a request and its reply go through.
    pc.send(tether_tests::post("1", "https://x/")).await;
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, json!(1))).await;
    assert_eq!(pc.expect("postCb").await["id"], "1");
    relay.stop().await;
}

#[tokio::test]
async fn in_cluster_mode_a_batch_reaches_a_watching_pc_on_another_relay() {
    let Some(redis) = Redis::start() else { return };
    let node = |name: &'static str| {
        let url = redis.url.clone();
        Relay::with(move |c| {
            c.redis = Some(url);
            c.node_id = Some(name.into());
        })
    };
    let (a, b) = (node("a").await, node("b").await);
    let mut pc = a.join("spanning", "pc", SECRET).await;
    let mut dev = b.join("spanning", "device", SECRET).await;
    pc.send(json!({"type": "hello", "msg": {"inspect": "keep"}})).await;
    // Once node b lists the PC as watching, the device's batches go to it over the bus.
    let pc_id = pc.member.clone();
    dev.devices_until(|m| m.iter().any(|x| x["id"] == pc_id.as_str() && x["inspect"] == "keep")).await;
    dev.send(batch(7, 10)).await;
    let got = pc.expect("inspect").await;
    assert_eq!(
        (got["from"].as_str(), got["msg"].clone()),
        (Some(dev.member.as_str()), batch(7, 10)["msg"].clone())
    );
    // And an eval from node a is kept, since its PC keeps (stored where the reply arrives).
    pc.send(json!({"type": "eval", "id": "e", "msg": {"code": "2 * 3"}})).await;
    let req = dev.expect("eval").await;
    dev.send(json!({"type": "evalCb", "id": req["id"], "msg": {"result": 6}})).await;
    assert_eq!(pc.expect("evalCb").await["msg"]["result"], 6);
    let (_, items) = get_json(b.addr, &format!("/api/rooms/spanning/history?secret={SECRET}")).await;
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(metric(b.addr, "tether_inspect_frames_total").await, Some(1));
    pc.close().await;
    dev.close().await;
    a.stop().await;
    b.stop().await;
}
