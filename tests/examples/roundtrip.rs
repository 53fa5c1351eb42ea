//! Round trips through a running relay: R rooms, each with one PC and one device; every PC
//! keeps W posts in flight, every device answers at once. Prints throughput and latency.
//! Bounded: it stops after `--seconds` (default 5) or `--max` round trips.
//!
//! ```sh
//! target/release/tether-relay --listen 127.0.0.1:9000 --db sqlite:///tmp/rt.db \
//!     --rate-limit 1000000 --rate-burst 1000000 &
//! cargo run --release -p tether-tests --example roundtrip -- --url ws://127.0.0.1:9000/ws --rooms 20
//! (add `--device-url ws://127.0.0.1:9001/ws` to put the devices on another relay of a cluster)
//! ```
//! The full side-by-side benchmark lives in `bench/`; this is the quick look.

use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tether_tests::{Client, reply_to};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    let url = arg("--url", "ws://127.0.0.1:9000/ws");
    // Cluster mode: devices join through another relay (`--device-url ws://…/ws`).
    let device_url = arg("--device-url", &url);
    let rooms: usize = arg("--rooms", "20").parse().expect("--rooms N");
    let window: usize = arg("--window", "8").parse().expect("--window N");
    let seconds: u64 = arg("--seconds", "5").parse().expect("--seconds N");
    let max: usize = arg("--max", "5000000").parse().expect("--max N");
    let run_id = format!("{:x}", std::process::id());

    let mut tasks = Vec::new();
    for r in 0..rooms {
        let room = format!("rt-{run_id}-{r}");
        let mut pc = Client::join(&url, &room, "pc", "s-0123456789abcdef").await;
        let mut dev = Client::join(&device_url, &room, "device", "s-0123456789abcdef").await;
        // Through another relay, the device shows up at the PC's relay a moment later.
        let id = dev.member.clone();
        pc.devices_until(|m| m.iter().any(|d| d["id"] == id.as_str())).await;
        tokio::spawn(async move {
            while let Some(v) = dev.try_next().await {
                if v["type"] == "post" {
                    dev.send(reply_to(&v, json!({"ok": true}))).await;
                }
            }
        });
        let per_room_max = max / rooms;
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut sent_at: HashMap<u64, Instant> = HashMap::new();
            let mut lat = Vec::with_capacity(100_000);
            let mut next_id = 0u64;
            for _ in 0..window {
                pc.send(json!({"type": "post", "id": next_id.to_string(), "msg": {"url": "https://x/"}}))
                    .await;
                sent_at.insert(next_id, Instant::now());
                next_id += 1;
            }
            while !sent_at.is_empty() {
                let v = pc.next().await;
                if v["type"] != "postCb" {
                    assert_ne!(v["type"], "error", "{v}");
                    continue;
                }
                let id: u64 = v["id"].as_str().unwrap().parse().unwrap();
                let t = sent_at.remove(&id).expect("known id");
                lat.push(t.elapsed());
                if Instant::now() < deadline && lat.len() + sent_at.len() < per_room_max {
                    pc.send(json!({"type": "post", "id": next_id.to_string(), "msg": {"url": "https://x/"}}))
                        .await;
                    sent_at.insert(next_id, Instant::now());
                    next_id += 1;
                }
            }
            pc.close().await;
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("room task"));
    }
    let took = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "{} round trips in {:.2} s = {:.0}/s over {rooms} rooms × window {window}; latency p50 {:?} p99 {:?} p999 {:?}",
        all.len(),
        took.as_secs_f64(),
        all.len() as f64 / took.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}
