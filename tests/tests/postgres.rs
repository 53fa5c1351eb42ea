//! Shared history on PostgreSQL: two relays, one database.

use serde_json::json;
use tether_tests::{Client, Postgres, Relay, get_json, post, reply_to};

#[tokio::test]
async fn two_relays_share_history_secrets_and_the_resume_key() {
    let Some(pg) = Postgres::start() else { return };
    let a = Relay::with(|c| c.db = pg.url.clone()).await;
    let b = Relay::with(|c| c.db = pg.url.clone()).await;

    let mut pc = a.join("shared", "pc", "k3y-0123456789abcdef").await;
    let mut dev = a.join("shared", "device", "k3y-0123456789abcdef").await;
    for i in 0..3 {
        pc.send(post(&format!("q{i}"), &format!("https://x/{i}"))).await;
        let req = dev.expect("post").await;
        dev.send(reply_to(&req, json!({ "n": i }))).await;
        pc.expect("postCb").await;
    }
    // Relay b never saw the room, yet serves its history, with the same secret rules.
    let (status, items) = get_json(b.addr, "/api/rooms/shared/history?secret=k3y-0123456789abcdef").await;
    assert_eq!(status, 200, "{items}");
    let ids: Vec<_> =
        items.as_array().unwrap().iter().map(|i| i["reqId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["q2", "q1", "q0"]);
    assert_eq!(items[0]["result"]["n"], 2);
    assert_eq!(get_json(b.addr, "/api/rooms/shared/history?secret=nope-0123456789abcdef").await.0, 401);

    // One resume key for all: a phone that comes back on the other relay keeps its member id.
    let (id, token) = (dev.member.clone(), dev.resume.clone());
    dev.close().await;
    let back = Client::rejoin(&b.ws_url(), "shared", "device", "k3y-0123456789abcdef", &token).await;
    assert_eq!((back.member.as_str(), back.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_relay_restarted_on_postgresql_gets_its_rooms_back() {
    let Some(pg) = Postgres::start() else { return };
    let a = Relay::with(|c| c.db = pg.url.clone()).await;
    let mut pc = a.join("carried", "pc", "k3y-0123456789abcdef").await;
    let mut dev = a.join("carried", "device", "k3y-0123456789abcdef").await;
    pc.send(post("under-way", "https://x/slow")).await;
    let req = dev.expect("post").await;
    let (pc_tok, dev_tok) = (pc.resume.clone(), dev.resume.clone());
    a.stop().await; // SIGTERM's path: the rooms go into PostgreSQL's meta table
    drop((pc, dev));

    let b = Relay::with(|c| c.db = pg.url.clone()).await;
    let url = b.ws_url();
    let mut dev = Client::rejoin(&url, "carried", "device", "k3y-0123456789abcdef", &dev_tok).await;
    dev.send(reply_to(&req, json!("late"))).await;
    let mut pc = Client::rejoin(&url, "carried", "pc", "k3y-0123456789abcdef", &pc_tok).await;
    let reply = pc.expect("postCb").await;
    assert_eq!((reply["id"].as_str(), reply["msg"]["result"].as_str()), (Some("under-way"), Some("late")));
    b.stop().await;
}

/// A metric's value from `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = tether_tests::http_get(addr, "/metrics").await.2;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `/metrics` until `name` reaches `at_least`; panics after the tests' wait.
async fn metric_reaches(addr: std::net::SocketAddr, name: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + tether_tests::WAIT;
    loop {
        let v = metric(addr, name).await;
        if v >= at_least {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{name} stayed at {v}, below {at_least}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn history_on_postgresql_is_cut_kept_under_its_caps_and_forgets_rooms() {
    let Some(pg) = Postgres::start() else { return };
    const S: &str = "k3y-0123456789abcdef";
    // Cut at 64 KiB, capped at 1 MiB of stored bodies.
    let a = Relay::with(|c| {
        c.db = pg.url.clone();
        c.history_max_bytes = 1 << 20;
        c.history_max_record = 64 * 1024;
    })
    .await;
    let mut pc = a.join("pg-big", "pc", S).await;
    let mut dev = a.join("pg-big", "device", S).await;
    let n = 30;
    for i in 0..n {
        pc.send(post(&format!("q{i}"), "https://x/")).await;
        let req = dev.expect("post").await;
        dev.send(reply_to(&req, json!({"i": i, "pad": "p".repeat(100_000)}))).await;
        let got = pc.expect("postCb").await;
        assert_eq!(got["msg"]["result"]["pad"].as_str().map(str::len), Some(100_000), "whole to the PC");
    }
    assert_eq!(metric(a.addr, "tether_history_cut_total").await, n);
    // 30 rows of 64 KiB: 1.9 MiB stored, over the 1 MiB cap; the oldest go.
    let pruned = metric_reaches(a.addr, "tether_history_pruned_total{reason=\"bytes\"}", 14).await;
    let (status, items) = get_json(a.addr, &format!("/api/rooms/pg-big/history?secret={S}&limit=500")).await;
    assert_eq!(status, 200, "{items}");
    let items = items.as_array().unwrap();
    assert_eq!(items.len() as u64, n - pruned);
    assert_eq!(items[0]["reqId"], format!("q{}", n - 1), "the newest stay");
    let marker = items[0]["cut"]["result"].as_u64().expect("marked as cut");
    assert!(marker > 100_000, "{marker}");
    assert!(items[0]["result"].as_str().unwrap().starts_with(r#"{"i":29,"#), "{}", items[0]["result"]);
    let size = metric(a.addr, "tether_history_db_bytes").await;
    println!(
        "postgres: {n} pairs of 100 KB cut to 64 KiB, {pruned} pruned for the 1 MiB cap, table {size} bytes"
    );
    assert!(size > 0);
    drop((pc, dev));
    a.stop().await;

    // A relay with a 2 s max age on the same database: the pairs above go by age, and the
    // rooms with no history left, once not opened for 2 s, unless open.
    let b = Relay::with(|c| {
        c.db = pg.url.clone();
        c.history_max_age = std::time::Duration::from_secs(2);
        c.max_new_rooms_per_ip = 0;
        c.heartbeat_ms = 60_000;
    })
    .await;
    let live = b.join("pg-live", "pc", S).await;
    for i in 0..5 {
        b.join(&format!("pg-churn-{i}"), "pc", S).await.close().await;
    }
    metric_reaches(b.addr, "tether_history_pruned_total{reason=\"age\"}", n - pruned).await;
    // The five churned rooms. Not pg-live, open all along: it was registered before them, so
    // it was looked at (and found open) in the step that forgot them. Not pg-big either: the
    // restart snapshot brought its members back as away, resumable, so it is open here too.
    metric_reaches(b.addr, "tether_history_rooms_pruned_total", 5).await;
    live.close().await;
    let (status, items) = get_json(b.addr, &format!("/api/rooms/pg-live/history?secret={S}")).await;
    assert_eq!((status, items), (200, json!([])), "an open room's row was kept");
    b.stop().await;
}
