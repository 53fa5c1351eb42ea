//! History's budget end to end (#17): large replies reach the PC whole but are stored cut and
//! marked; the byte cap keeps the database file under it with the newest pairs readable; the
//! rows of forgotten rooms are collected, never those of an open room.

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tether_tests::{Client, Relay, WAIT, get_json, http_get, post};

const SECRET: &str = "s-0123456789abcdef";

/// A metric's value from `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = http_get(addr, "/metrics").await.2;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls until `check` holds; panics after [`WAIT`] saying `what`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One pair: the PC posts, the device answers with `result`; returns the reply the PC got.
async fn pair(pc: &mut Client, dev: &mut Client, id: &str, result: Value) -> Value {
    pc.send(post(id, &format!("https://x/{id}"))).await;
    let req = dev.expect("post").await;
    dev.send(json!({"type": "postCb", "id": req["id"], "msg": {"method": "post", "result": result, "cookie": "c=1"}}))
        .await;
    pc.expect("postCb").await
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_large_reply_reaches_the_pc_whole_and_is_stored_cut_and_marked() {
    let relay = Relay::start().await; // default --history-max-record: 256 KiB
    let mut pc = relay.join("big", "pc", SECRET).await;
    let mut dev = relay.join("big", "device", SECRET).await;
    let data = "x".repeat(1000 * 1024);
    let got = pair(&mut pc, &mut dev, "big-1", json!({"data": data})).await;
    // Live forwarding is never cut.
    assert_eq!(got["msg"]["result"]["data"].as_str().map(str::len), Some(data.len()));
    let small = pair(&mut pc, &mut dev, "small-1", json!({"ok": true})).await;
    assert_eq!(small["msg"]["result"]["ok"], true);

    let (status, items) = get_json(relay.addr, &format!("/api/rooms/big/history?secret={SECRET}")).await;
    assert_eq!(status, 200, "{items}");
    assert!(items[0].get("cut").is_none(), "a small pair is whole: {}", items[0]);
    assert_eq!(items[0]["result"]["ok"], true);
    let stored = &items[1];
    let original = json!({"data": data}).to_string();
    assert_eq!(stored["cut"], json!({"result": original.len()}), "marked with the original size");
    let kept = stored["result"].as_str().expect("a cut result is a JSON string");
    assert!(original.starts_with(kept), "the start of the original JSON text");
    assert!(kept.len() > 200 * 1024 && kept.len() <= 256 * 1024, "{}", kept.len());
    assert_eq!((stored["cookie"].as_str(), stored["url"].as_str()), (Some("c=1"), Some("https://x/big-1")));
    assert_eq!(metric(relay.addr, "tether_history_cut_total").await, 1);
    relay.stop().await;
}

#[tokio::test]
async fn the_byte_cap_keeps_the_file_under_it_and_the_newest_pairs_readable() {
    let cap: u64 = 4 << 20;
    let relay = Relay::with(|c| c.history_max_bytes = cap).await;
    let db = relay.dir.path().join("tether.db");
    let wal = relay.dir.path().join("tether.db-wal");
    let mut pc = relay.join("capped", "pc", SECRET).await;
    let mut dev = relay.join("capped", "device", SECRET).await;
    // 48 pairs of 200 KB: 9.6 MB written, more than twice the cap.
    let n = 48;
    let mut peak = 0;
    for i in 0..n {
        pair(&mut pc, &mut dev, &format!("p{i}"), json!({"i": i, "pad": "y".repeat(200_000)})).await;
        peak = peak.max(file_len(&db));
    }
    let written = n * 200_000;
    until("the store is under its cap", || async {
        metric(relay.addr, "tether_history_db_bytes").await <= cap
    })
    .await;
    until("the database file is under the cap", || async { file_len(&db) <= cap }).await;
    let (file, wal_len) = (file_len(&db), file_len(&wal));
    // The newest pairs are all there, the oldest went first. A prune step may still be under
    // way when the file is under the cap: the count and the page are read until they agree
    // with each other (the same count before and after the page), at most 50 times.
    let pruned_now = || metric(relay.addr, "tether_history_pruned_total{reason=\"bytes\"}");
    let (mut pruned, mut items) = (0, json!(null));
    for _ in 0..50 {
        let before = pruned_now().await;
        let (status, page) =
            get_json(relay.addr, &format!("/api/rooms/capped/history?secret={SECRET}&limit=500")).await;
        assert_eq!(status, 200);
        (pruned, items) = (pruned_now().await, page);
        if pruned == before {
            break;
        }
    }
    println!(
        "history cap {cap}: {written} bytes in {n} pairs written, {pruned} pairs pruned; \
         database file {file} bytes (peak {peak}), WAL {wal_len}"
    );
    assert!(pruned >= n as u64 / 2, "{pruned}");
    let ids: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["reqId"].as_str().unwrap()).collect();
    assert_eq!(ids.len() as u64, n as u64 - pruned);
    let newest: Vec<String> = (0..n).rev().take(ids.len()).map(|i| format!("p{i}")).collect();
    assert_eq!(ids, newest);
    assert_eq!(items[0]["result"]["i"], n - 1);
    relay.stop().await;
}

#[tokio::test]
async fn forgotten_rooms_rows_are_collected_but_never_an_open_ones() {
    let relay = Relay::with(|c| {
        c.history_max_age = Duration::from_secs(3);
        c.max_new_rooms_per_ip = 0;
        // The members below are not read while the test waits: no pings to miss.
        c.heartbeat_ms = 60_000;
    })
    .await;
    // Open for the whole test, with no history: seen open, its row stays.
    let live = relay.join("live", "pc", SECRET).await;
    // A room with a pair.
    let mut pc = relay.join("kept", "pc", SECRET).await;
    let mut dev = relay.join("kept", "device", SECRET).await;
    pair(&mut pc, &mut dev, "k1", json!(1)).await;
    // Join/leave cycles: each leaves a room row behind.
    let cycles = 40;
    for i in 0..cycles {
        relay.join(&format!("churn-{i}"), "pc", SECRET).await.close().await;
    }
    let started = Instant::now();
    // Their rows go after the max age (3 s). "kept"'s pair goes by age too, but its room is
    // open: its row stays, like "live"'s.
    until("the churned rooms' rows are collected", || async {
        metric(relay.addr, "tether_history_rooms_pruned_total").await >= cycles
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    println!("history: {cycles} rooms joined and left, their rows collected {secs:.1} s later");
    assert_eq!(
        metric(relay.addr, "tether_history_rooms_pruned_total").await,
        cycles,
        "only the churned ones"
    );
    until("the pair is pruned by age", || async {
        metric(relay.addr, "tether_history_pruned_total{reason=\"age\"}").await >= 1
    })
    .await;
    // "live" has been open longer than the max age; closed now, its history is still readable
    // (empty), not refused as an unknown room.
    live.close().await;
    let (status, items) = get_json(relay.addr, &format!("/api/rooms/live/history?secret={SECRET}")).await;
    assert_eq!((status, items), (200, json!([])));
    // A forgotten room is unknown: 401.
    let (status, body) = get_json(relay.addr, &format!("/api/rooms/churn-0/history?secret={SECRET}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    // And once it too is forgotten, "live"'s row goes.
    until("the closed room's row goes", || async {
        metric(relay.addr, "tether_history_rooms_pruned_total").await > cycles
    })
    .await;
    drop((pc, dev));
    relay.stop().await;
}
