//! `bench/RESULTS.md` from the JSON lines of the runs: one table per scenario, a column per
//! peer, and Tether's ratio to each.

use serde_json::Value;
use std::fmt::Write;

/// The peers in column order, with their column titles.
const PEERS: [(&str, &str); 3] =
    [("tether", "Tether"), ("seed", "seed relay (Node ws)"), ("socketio", "Socket.IO 4")];

/// A figure: its row title, how to read it from an outcome, and its decimals.
struct Figure {
    title: &'static str,
    get: fn(&Value) -> Option<f64>,
    decimals: usize,
}

const ROUNDTRIP: [Figure; 7] = [
    Figure { title: "round trips/s", get: |v| v["round_trips_per_s"].as_f64(), decimals: 0 },
    Figure { title: "p50 latency, ms", get: |v| ms(v, "p50_us"), decimals: 2 },
    Figure { title: "p99 latency, ms", get: |v| ms(v, "p99_us"), decimals: 2 },
    Figure { title: "p99.9 latency, ms", get: |v| ms(v, "p999_us"), decimals: 2 },
    Figure {
        title: "server CPU per round trip, µs",
        get: |v| v["server_cpu_us_per_rt"].as_f64(),
        decimals: 1,
    },
    Figure {
        title: "load generator CPU, share of its core",
        get: |v| Some(v["generator_cpu_s"].as_f64()? / v["seconds"].as_f64()?),
        decimals: 2,
    },
    Figure { title: "requests lost", get: |v| v["lost"].as_f64(), decimals: 0 },
];

fn ms(v: &Value, key: &str) -> Option<f64> {
    v[key].as_f64().map(|us| us / 1000.0)
}

fn fmt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) if decimals == 0 => {
            // Thousands separated, as the rest of the docs write figures.
            let n = x.round() as i64;
            let s = n.abs().to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            if n < 0 { format!("-{out}") } else { out }
        }
        Some(x) => format!("{x:.decimals$}"),
        None => "—".into(),
    }
}

/// Tether's figure over the peer's, said the way that reads right: "2.1× more" or "0.3×".
fn ratio(tether: Option<f64>, peer: Option<f64>) -> String {
    match (tether, peer) {
        (Some(t), Some(p)) if p > 0.0 => format!("{:.2}×", t / p),
        _ => "—".into(),
    }
}

/// A table's header: `first` and "figure", a column per peer, and with `ratios` Tether's
/// ratio to each other peer.
fn table_head(out: &mut String, first: &str, ratios: bool) {
    let mut header = format!("| {first} | figure |");
    let mut rule = String::from("|---|---|");
    let others: &[(&str, &str)] = if ratios { &PEERS[1..] } else { &[] };
    for title in
        PEERS.iter().map(|(_, t)| t.to_string()).chain(others.iter().map(|(_, t)| format!("Tether ÷ {t}")))
    {
        let _ = write!(header, " {title} |");
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
}

/// The runs of one scenario and mode, by peer.
fn pick<'a>(rows: &'a [Value], scenario: &str, mode: &str, peer: &str) -> Option<&'a Value> {
    rows.iter().rev().find(|r| r["scenario"] == scenario && r["mode"] == mode && r["peer"] == peer)
}

/// The report.
pub fn markdown(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks: Tether and its peers\n");
    let _ = writeln!(
        out,
        "Written by `bench/run` from `bench/results/raw.jsonl` (one JSON line per run, kept beside \
         this file). Each server runs alone on core 0 (`taskset -c 0`), the load generator \
         (`tether-bench`, one Rust program speaking each peer's protocol) on core 1, all inside \
         a loopback-only network namespace. Ratios are Tether's figure over the peer's: above 1 \
         is better for throughput, below 1 is better for latency and CPU. A load generator using \
         ~1.0 of its core is the limit of that run, not the server.\n"
    );
    if let Some(m) = rows.iter().find(|r| r["scenario"] == "machine") {
        let s = |k: &str| m[k].as_str().unwrap_or("?").to_owned();
        let _ = writeln!(
            out,
            "Machine: {} ({} cores), Linux {}, Node {}; `bench/run {}` on {}.\n",
            s("cpu"),
            m["cores"],
            s("kernel"),
            s("node"),
            s("mode"),
            s("date")
        );
    }
    let mut modes: Vec<(Option<u64>, String)> = Vec::new();
    for r in rows.iter().filter(|r| r["scenario"] == "roundtrip") {
        let key = (r["offered_per_s"].as_u64(), r["mode"].as_str().unwrap_or_default().to_owned());
        if !modes.contains(&key) {
            modes.push(key);
        }
    }
    // Fixed loads ascending, then saturation.
    modes.sort_by_key(|(rate, _)| rate.unwrap_or(u64::MAX));
    if !modes.is_empty() {
        let shape = rows.iter().find(|r| r["scenario"] == "roundtrip");
        let (rooms, devices) =
            shape.map_or((0, 0), |r| (r["rooms"].as_u64().unwrap_or(0), r["devices"].as_u64().unwrap_or(0)));
        let _ = writeln!(out, "## 1. Round trips\n");
        let _ = writeln!(
            out,
            "{rooms} rooms × (1 PC + {devices} device). The PC posts, the device answers at once, the PC \
             reads the answer. At a fixed load latency counts from when each request was due; at \
             saturation every PC keeps 8 requests in flight. Tether stores every pair in SQLite \
             history before forwarding the answer; the peers keep no history.\n"
        );
        table_head(&mut out, "load", true);
        for (_, mode) in &modes {
            for f in &ROUNDTRIP {
                let vals: Vec<Option<f64>> = PEERS
                    .iter()
                    .map(|(p, _)| pick(rows, "roundtrip", mode, p).and_then(|v| (f.get)(v)))
                    .collect();
                let mut line = format!("| {mode} | {} |", f.title);
                for v in &vals {
                    let _ = write!(line, " {} |", fmt(*v, f.decimals));
                }
                for v in &vals[1..] {
                    let shown = if f.title == "requests lost" { "—".into() } else { ratio(vals[0], *v) };
                    let _ = write!(line, " {shown} |");
                }
                let _ = writeln!(out, "{line}");
            }
        }
        out.push('\n');
    }
    idle_table(&mut out, rows);
    presence_table(&mut out, rows);
    out
}

/// Scenario 3: a row per kind of leave and percentile, a column per peer.
fn presence_table(out: &mut String, rows: &[Value]) {
    let modes = ["clean leave", "dead peer"];
    if !rows.iter().any(|r| r["scenario"] == "presence") {
        return;
    }
    let _ = writeln!(out, "## 3. Presence\n");
    let _ = writeln!(
        out,
        "From a device leaving to its PC holding a list without it (Tether: gone or away), each \
         sample in a fresh room. A clean leave is a close frame and the closing handshake; a dead \
         peer stops reading with its socket open, found by each peer's own heartbeat at its \
         default settings (Tether: away after two missed pings of its 2 s heartbeat; the seed: its 2 s \
         `isAlive` sweep; Socket.IO: 25 s ping interval + 20 s timeout).\n"
    );
    table_head(out, "leave", false);
    for mode in modes {
        let pick = |peer: &str| {
            rows.iter().rev().find(|r| r["scenario"] == "presence" && r["peer"] == peer && r["mode"] == mode)
        };
        if PEERS.iter().all(|(p, _)| pick(p).is_none()) {
            continue;
        }
        for (key, title) in
            [("samples", "samples"), ("p50_ms", "p50, ms"), ("p99_ms", "p99, ms"), ("max_ms", "max, ms")]
        {
            let mut line = format!("| {mode} | {title} |");
            for (p, _) in PEERS {
                let v = pick(p).and_then(|v| v[key].as_f64());
                let _ = write!(line, " {} |", fmt(v, if key == "samples" { 0 } else { 2 }));
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
}

/// Scenario 2: a row per connection count, a column per peer.
fn idle_table(out: &mut String, rows: &[Value]) {
    let mut counts: Vec<u64> =
        rows.iter().filter(|r| r["scenario"] == "idle").filter_map(|r| r["connections"].as_u64()).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 2. Idle connections\n");
    let _ = writeln!(
        out,
        "N sockets held open (half PCs, half devices, in rooms of two, from 127.0.0.2–201, each \
         read so pings are answered); the server's RSS growth over its own baseline, per socket.\n"
    );
    table_head(out, "connections", true);
    for n in counts {
        let pick = |peer: &str| {
            rows.iter().rev().find(|r| r["scenario"] == "idle" && r["peer"] == peer && r["connections"] == n)
        };
        let vals: Vec<Option<f64>> =
            PEERS.iter().map(|(p, _)| pick(p).and_then(|v| v["kib_per_connection"].as_f64())).collect();
        let mut line = format!("| {} | RSS per connection, KiB |", fmt(Some(n as f64), 0));
        for v in &vals {
            let _ = write!(line, " {} |", fmt(*v, 1));
        }
        for v in &vals[1..] {
            let _ = write!(line, " {} |", ratio(vals[0], *v));
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_put_each_peer_in_its_column_with_ratios() {
        let run = |peer: &str, rts: f64, p99: u64| {
            json!({"scenario": "roundtrip", "peer": peer, "mode": "saturation", "offered_per_s": null,
                   "rooms": 20, "devices": 1, "round_trips_per_s": rts, "p50_us": 1000, "p99_us": p99,
                   "p999_us": 9000, "server_cpu_us_per_rt": 10.0, "generator_cpu_s": 5.0, "seconds": 5.0, "lost": 0})
        };
        let md = markdown(&[
            run("tether", 60000.0, 2000),
            run("seed", 30000.0, 8000),
            run("socketio", 20000.0, 4000),
        ]);
        assert!(
            md.contains("| saturation | round trips/s | 60,000 | 30,000 | 20,000 | 2.00× | 3.00× |"),
            "{md}"
        );
        assert!(md.contains("| saturation | p99 latency, ms | 2.00 | 8.00 | 4.00 | 0.25× | 0.50× |"), "{md}");
        assert!(md.contains("| saturation | load generator CPU, share of its core | 1.00 |"), "{md}");
        let idle = |peer: &str, kib: f64| json!({"scenario": "idle", "peer": peer, "connections": 2000, "kib_per_connection": kib});
        let md = markdown(&[idle("tether", 3.0), idle("seed", 6.0), idle("socketio", 12.0)]);
        assert!(
            md.contains("| 2,000 | RSS per connection, KiB | 3.0 | 6.0 | 12.0 | 0.50× | 0.25× |"),
            "{md}"
        );
    }
}
