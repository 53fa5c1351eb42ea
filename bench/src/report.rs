//! `bench/RESULTS.md` from the JSON lines of the runs: one table per scenario, a column per
//! peer, and Tether's ratio to each.
//!
//! Over 500 lines: one section of text per scenario, read from the same raw lines; kept
//! together so RESULTS.md reads as one document.

use serde_json::Value;
use std::fmt::Write;

/// The peers in column order, with their column titles.
const PEERS: [(&str, &str); 4] = [
    ("tether", "Tether"),
    ("pagespy", "PageSpy"),
    ("seed", "seed relay (Node ws)"),
    ("socketio", "Socket.IO 4"),
];

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

/// The round-trip runs of one load, by peer (several in full mode: one per round).
fn runs<'a>(rows: &'a [Value], mode: &str, peer: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["scenario"] == "roundtrip" && r["mode"] == mode && r["peer"] == peer).collect()
}

/// Of several runs of one load, the median one, every figure taken from that run: by
/// throughput at saturation, by server CPU per round trip at a fixed load (where throughput
/// is the offered load).
fn median_run<'a>(mut runs: Vec<&'a Value>, mode: &str) -> Option<&'a Value> {
    let key = if mode == "saturation" { "round_trips_per_s" } else { "server_cpu_us_per_rt" };
    runs.sort_by(|a, b| a[key].as_f64().unwrap_or(0.0).total_cmp(&b[key].as_f64().unwrap_or(0.0)));
    runs.get(runs.len() / 2).copied()
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
        let rounds = PEERS.iter().map(|(p, _)| runs(rows, &modes[0].1, p).len()).max().unwrap_or(1);
        let _ = writeln!(
            out,
            "{rooms} rooms × (1 PC + {devices} device). The PC posts, the device answers at once, the PC \
             reads the answer. At a fixed load latency counts from when each request was due; at \
             saturation every PC keeps 8 requests in flight. Tether stores every pair in SQLite \
             history before forwarding the answer; the peers keep no history.{}\n",
            if rounds > 1 {
                format!(
                    " Each load ran {rounds} times, the peers taking turns within each round; each \
                     column shows its median run (by throughput at saturation, by server CPU at a \
                     fixed load), and the last row of each load the range of throughput or CPU \
                     over the runs."
                )
            } else {
                String::new()
            }
        );
        table_head(&mut out, "load", true);
        for (_, mode) in &modes {
            let chosen: Vec<Option<&Value>> =
                PEERS.iter().map(|(p, _)| median_run(runs(rows, mode, p), mode)).collect();
            for f in &ROUNDTRIP {
                let vals: Vec<Option<f64>> = chosen.iter().map(|v| v.and_then(|v| (f.get)(v))).collect();
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
            if rounds > 1 {
                let (key, title, d) = if mode == "saturation" {
                    ("round_trips_per_s", "range over runs, round trips/s", 0)
                } else {
                    ("server_cpu_us_per_rt", "range over runs, server CPU per round trip, µs", 1)
                };
                let mut line = format!("| {mode} | {title} |");
                for (p, _) in PEERS {
                    let xs: Vec<f64> = runs(rows, mode, p).iter().filter_map(|r| r[key].as_f64()).collect();
                    let lo = xs.iter().copied().reduce(f64::min);
                    let hi = xs.iter().copied().reduce(f64::max);
                    let cell = match (lo, hi) {
                        (Some(lo), Some(hi)) => format!("{}–{}", fmt(Some(lo), d), fmt(Some(hi), d)),
                        _ => "—".into(),
                    };
                    let _ = write!(line, " {cell} |");
                }
                let _ = writeln!(out, "{line}{}", " — |".repeat(PEERS.len() - 1));
            }
        }
        out.push('\n');
    }
    idle_table(&mut out, rows);
    presence_table(&mut out, rows);
    gateway_tables(&mut out, rows);
    alarms_table(&mut out, rows);
    sdk_table(&mut out, rows);
    inspect_table(&mut out, rows);
    out
}

/// A plain table: a header, then rows of cells.
fn table(out: &mut String, head: &[&str], body: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(head.len() - 1));
    for row in body {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn of<'a>(rows: &'a [Value], scenario: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    rows.iter().filter(move |r| r["scenario"] == scenario)
}

/// Scenario 4: calls direct and through the relay; the codec against Python's.
fn gateway_tables(out: &mut String, rows: &[Value]) {
    let calls: Vec<&Value> = of(rows, "gateway").collect();
    let codec: Vec<&Value> = of(rows, "codec").collect();
    if calls.is_empty() && codec.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 4. CS gateway\n");
    if !calls.is_empty() {
        let _ = writeln!(
            out,
            "An `echo` call with a small structured payload: **direct** is XML-RPC over a keep-alive \
             connection to the legacy server (`tether-legacy-cs`); **relay** is JSON to `/cs/call`, \
             which the relay turns into XML-RPC on the session's own keep-alive connection and back. \
             Both servers share core 0. Sequential: one session, one call at a time (the two paths \
             interleaved); back to back: each session calls again as soon as answered.\n"
        );
        let mut body = Vec::new();
        for mode in dedup(calls.iter().map(|r| r["mode"].as_str().unwrap_or_default())) {
            let pick = |peer: &str| calls.iter().rev().find(|r| r["mode"] == mode && r["peer"] == peer);
            for (title, key, d) in [
                ("calls/s", "calls_per_s", 0),
                ("p50, µs", "p50_us", 0),
                ("p99, µs", "p99_us", 0),
                ("relay CPU per call, µs", "relay_cpu_us_per_call", 1),
                ("legacy server CPU per call, µs", "legacy_cpu_us_per_call", 1),
            ] {
                let (dv, rv) = (
                    pick("direct").and_then(|v| v[key].as_f64()),
                    pick("relay").and_then(|v| v[key].as_f64()),
                );
                if dv.is_none() && rv.is_none() {
                    continue;
                }
                body.push(vec![mode.to_owned(), title.to_owned(), fmt(dv, d), fmt(rv, d), ratio(rv, dv)]);
            }
        }
        table(out, &["calls", "figure", "direct", "through the relay", "relay ÷ direct"], &body);
    }
    if !codec.is_empty() {
        let _ = writeln!(
            out,
            "The XML-RPC codec alone, one core: MB of XML per second, encoding a `methodResponse` \
             from JSON and decoding one to JSON, on a 769 B structured answer and a 980 KB device \
             list; Python 3's `xmlrpc.client` (`dumps`/`loads`) on the same payloads \
             (`bench/peers/xmlrpc_codec.py`).\n"
        );
        let mut body = Vec::new();
        for mode in dedup(codec.iter().map(|r| r["mode"].as_str().unwrap_or_default())) {
            let pick = |peer: &str| {
                codec
                    .iter()
                    .rev()
                    .find(|r| r["mode"] == mode && r["peer"] == peer)
                    .and_then(|v| v["mb_per_s"].as_f64())
            };
            let (t, p) = (pick("tether"), pick("python"));
            body.push(vec![mode.to_owned(), fmt(t, 0), fmt(p, 0), ratio(t, p)]);
        }
        table(out, &["payload", "Tether, MB/s", "Python xmlrpc.client, MB/s", "Tether ÷ Python"], &body);
    }
}

/// Distinct values, in first-seen order.
fn dedup<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for v in it {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

/// Scenario 5: a row per offered rate.
fn alarms_table(out: &mut String, rows: &[Value]) {
    let runs: Vec<&Value> = of(rows, "alarms").collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 5. Alarms\n");
    let _ = writeln!(
        out,
        "JSON datagrams of {} B pushed to the relay's `--alarm-listen` port at a fixed rate, \
         forwarded to {} `/alarms` subscribers read by the load generator. **Accounting**: for \
         every subscriber, alarms delivered + alarms counted in `alarmGap` = alarms the relay \
         received, in order. A subscriber that falls behind (here: the generator, reading every \
         subscriber on one core) is told exactly what it missed; the others are not held up. \
         Datagrams the kernel dropped before the relay read them are the difference between \
         sent and received.\n",
        runs[0]["bytes"], runs[0]["subscribers"]
    );
    let body: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let f = |k: &str, d| fmt(r[k].as_f64(), d);
            vec![
                r["mode"].as_str().unwrap_or_default().to_owned(),
                f("sent", 0),
                f("received", 0),
                format!("{}–{}", f("delivered_min", 0), f("delivered_max", 0)),
                f("gap_total", 0),
                if r["accounting_ok"] == true { "holds".into() } else { "**broken**".into() },
                f("frames_out_per_s", 0),
                f("relay_cpu_us_per_datagram", 1),
                fmt(
                    Some(
                        r["generator_cpu_s"].as_f64().unwrap_or(0.0)
                            / r["measured_s"].as_f64().or(r["seconds"].as_f64()).unwrap_or(1.0),
                    ),
                    2,
                ),
            ]
        })
        .collect();
    table(
        out,
        &[
            "offered",
            "sent",
            "received by the relay",
            "delivered per subscriber",
            "told in alarmGap (all)",
            "accounting",
            "frames out/s",
            "relay CPU per datagram, µs",
            "generator CPU, share of its core",
        ],
        &body,
    );
}

/// Scenario 6: the SDK's size and its timings in Chromium.
fn sdk_table(out: &mut String, rows: &[Value]) {
    let runs: Vec<&Value> = of(rows, "sdk").collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 6. SDK\n");
    if let Some(size) = runs.iter().find(|r| r["mode"] == "size") {
        let _ = writeln!(
            out,
            "Size, gzip -9: {} B of wasm + {} B of JS = **{} B** (budget 49,152 B).\n",
            fmt(size["wasm_gzip"].as_f64(), 0),
            fmt(size["js_gzip"].as_f64(), 0),
            fmt(size["total_gzip"].as_f64(), 0)
        );
    }
    let _ = writeln!(
        out,
        "Headless Chromium (Debian's), the relay on the same machine: loading is from navigation \
         start to the SDK's module and wasm ready, each in a fresh browser context; connecting is \
         from the call to its promise resolving linked, each in a fresh room (the first sample \
         includes the page's first WebSocket).\n"
    );
    let body: Vec<Vec<String>> = runs
        .iter()
        .filter(|r| r["mode"] != "size")
        .map(|r| {
            let f = |k: &str, d| fmt(r[k].as_f64(), d);
            vec![
                r["mode"].as_str().unwrap_or_default().to_owned(),
                f("samples", 0),
                f("p50_ms", 1),
                f("p99_ms", 1),
                f("max_ms", 1),
            ]
        })
        .collect();
    table(out, &["from … to …", "samples", "p50, ms", "p99, ms", "max, ms"], &body);
}

/// Scenario 7: the inspector beside vConsole and eruda; a row per figure, a column per tool.
fn inspect_table(out: &mut String, rows: &[Value]) {
    let runs: Vec<&Value> = of(rows, "inspect").collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 7. Inspector\n");
    let _ = writeln!(
        out,
        "One test page in headless Chromium, each tool from its own files (vConsole 3.15.1 and eruda \
         3.4.3 from npm): what the page downloads for it (gzip -9), navigation start to the tool \
         ready (fresh contexts), and the page's main-thread time per `console.log` of a small \
         object and per `fetch` of a small JSON, a second of settling included, less the same page \
         with no tool (the floor). `bench/inspect.mjs`.\n"
    );
    let tools: Vec<&str> = ["none", "tether", "vconsole", "eruda"]
        .into_iter()
        .filter(|t| runs.iter().any(|r| r["peer"] == *t && r["mode"] != "skipped"))
        .collect();
    let pick = |tool: &str, mode: &str| runs.iter().rev().find(|r| r["peer"] == tool && r["mode"] == mode);
    let figures: [(&str, &str, &str, usize); 7] = [
        ("bytes", "gzip", "bytes loaded, gzip -9", 0),
        ("ready", "p50_ms", "ready, p50 ms", 1),
        ("ready", "p99_ms", "ready, p99 ms", 1),
        ("per call", "log_over_floor_us", "per console.log over the floor, µs", 1),
        ("per call", "fetch_over_floor_us", "per fetch over the floor, µs", 1),
        ("per call", "fetch_p50_ms", "fetch latency p50, ms", 1),
        ("per call", "heap_after_logs", "JS heap after the logs, bytes", 0),
    ];
    let body: Vec<Vec<String>> = figures
        .iter()
        .map(|(mode, key, title, digits)| {
            std::iter::once((*title).to_owned())
                .chain(
                    tools
                        .iter()
                        .map(|t| pick(t, mode).map_or("–".into(), |r| fmt(r[*key].as_f64(), *digits))),
                )
                .collect()
        })
        .collect();
    let head: Vec<&str> = std::iter::once("figure").chain(tools.iter().copied()).collect();
    table(out, &head, &body);
    for r in runs.iter().filter(|r| r["mode"] == "skipped" || r["mode"] == "warning") {
        let _ = writeln!(
            out,
            "- {}: {}",
            r["peer"].as_str().unwrap_or_default(),
            r["why"].as_str().unwrap_or_default()
        );
    }
    let _ = writeln!(out);
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
        for (key, title) in [
            ("samples", "samples"),
            ("p50_ms", "p50, ms"),
            ("p99_ms", "p99, ms"),
            ("max_ms", "max, ms"),
            ("not_told", "PC not told within the limit"),
        ] {
            let mut line = format!("| {mode} | {title} |");
            for (p, _) in PEERS {
                let run = pick(p);
                let v = run.and_then(|v| v[key].as_f64());
                let shown = match (run, v) {
                    // A percentile that landed on a sample counted at the limit is a bound.
                    (Some(r), Some(x))
                        if key.ends_with("_ms")
                            && r["not_told"].as_u64() > Some(0)
                            && r["limit_s"].as_f64().is_some_and(|l| x >= l * 1000.0) =>
                    {
                        format!("> {}", fmt(Some(x), 0))
                    }
                    _ => fmt(v, if key.ends_with("_ms") { 2 } else { 0 }),
                };
                let _ = write!(line, " {shown} |");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
}

/// Scenario 2: a row per room size and connection count, a column per peer (rows written
/// before room sizes were recorded are rooms of two).
fn idle_table(out: &mut String, rows: &[Value]) {
    let size = |r: &Value| r["room_size"].as_u64().unwrap_or(2);
    let mut keys: Vec<(u64, u64)> = rows
        .iter()
        .filter(|r| r["scenario"] == "idle")
        .filter_map(|r| Some((size(r), r["connections"].as_u64()?)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    let _ = writeln!(out, "## 2. Idle connections\n");
    let _ = writeln!(
        out,
        "N sockets held open (rooms of one PC and the rest devices, from 127.0.0.2–201, each \
         read so pings are answered); the server's RSS growth over its own baseline, per socket.\n"
    );
    table_head(out, "connections", true);
    for (room, n) in keys {
        let pick = |peer: &str| {
            rows.iter().rev().find(|r| {
                r["scenario"] == "idle" && r["peer"] == peer && r["connections"] == n && size(r) == room
            })
        };
        let vals: Vec<Option<f64>> =
            PEERS.iter().map(|(p, _)| pick(p).and_then(|v| v["kib_per_connection"].as_f64())).collect();
        let mut line = format!("| {}, rooms of {room} | RSS per connection, KiB |", fmt(Some(n as f64), 0));
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

    /// A saturation round-trip run of `peer`.
    fn run(peer: &str, rts: f64, p99: u64) -> Value {
        json!({"scenario": "roundtrip", "peer": peer, "mode": "saturation", "offered_per_s": null,
               "rooms": 20, "devices": 1, "round_trips_per_s": rts, "p50_us": 1000, "p99_us": p99,
               "p999_us": 9000, "server_cpu_us_per_rt": 10.0, "generator_cpu_s": 5.0, "seconds": 5.0, "lost": 0})
    }

    #[test]
    fn tables_put_each_peer_in_its_column_with_ratios() {
        let md = markdown(&[
            run("tether", 60000.0, 2000),
            run("pagespy", 15000.0, 40000),
            run("seed", 30000.0, 8000),
            run("socketio", 20000.0, 4000),
        ]);
        assert!(
            md.contains(
                "| saturation | round trips/s | 60,000 | 15,000 | 30,000 | 20,000 | 4.00× | 2.00× | 3.00× |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| saturation | p99 latency, ms | 2.00 | 40.00 | 8.00 | 4.00 | 0.05× | 0.25× | 0.50× |"
            ),
            "{md}"
        );
        assert!(md.contains("| saturation | load generator CPU, share of its core | 1.00 |"), "{md}");
        let idle = |peer: &str, kib: f64| json!({"scenario": "idle", "peer": peer, "connections": 2000, "kib_per_connection": kib});
        let md = markdown(&[idle("tether", 3.0), idle("seed", 6.0), idle("socketio", 12.0)]);
        assert!(
            md.contains(
                "| 2,000, rooms of 2 | RSS per connection, KiB | 3.0 | — | 6.0 | 12.0 | — | 0.50× | 0.25× |"
            ),
            "{md}"
        );
        // Rooms of ten are their own rows.
        let ten = |peer: &str, kib: f64| json!({"scenario": "idle", "peer": peer, "connections": 2000, "room_size": 10, "kib_per_connection": kib});
        let md = markdown(&[idle("tether", 3.0), ten("tether", 5.0), ten("seed", 10.0)]);
        assert!(md.contains("| 2,000, rooms of 2 | RSS per connection, KiB | 3.0 | — | — | — |"), "{md}");
        assert!(
            md.contains(
                "| 2,000, rooms of 10 | RSS per connection, KiB | 5.0 | — | 10.0 | — | — | 0.50× | — |"
            ),
            "{md}"
        );
        let dead = |peer: &str, p99: f64, not_told: u64| {
            json!({"scenario": "presence", "peer": peer,
            "mode": "dead peer", "samples": 3, "p50_ms": p99, "p99_ms": p99, "max_ms": p99,
            "not_told": not_told, "limit_s": 120.0})
        };
        let md = markdown(&[dead("tether", 4100.0, 0), dead("pagespy", 120000.0, 3)]);
        assert!(md.contains("| dead peer | p99, ms | 4100.00 | > 120,000 | — | — |"), "{md}");
        assert!(md.contains("| dead peer | PC not told within the limit | 0 | 3 | — | — |"), "{md}");
    }

    #[test]
    fn repeated_runs_show_the_median_run_and_the_range() {
        let md = markdown(&[
            run("tether", 10000.0, 1000),
            run("seed", 20000.0, 1000),
            run("tether", 30000.0, 3000),
            run("seed", 20000.0, 1000),
            run("tether", 20000.0, 2000),
            run("seed", 20000.0, 1000),
        ]);
        // The median run's figures together: 20,000/s went with a 2 ms p99.
        assert!(
            md.contains("| saturation | round trips/s | 20,000 | — | 20,000 | — | — | 1.00× | — |"),
            "{md}"
        );
        assert!(md.contains("| saturation | p99 latency, ms | 2.00 | — | 1.00 |"), "{md}");
        assert!(
            md.contains(
                "| saturation | range over runs, round trips/s | 10,000–30,000 | — | 20,000–20,000 | — |"
            ),
            "{md}"
        );
        assert!(md.contains("Each load ran 3 times"), "{md}");
    }

    #[test]
    fn the_inspector_table_has_a_column_per_tool_and_says_what_was_skipped() {
        let rows = vec![
            json!({"scenario": "inspect", "peer": "tether", "mode": "skipped", "why": "no inspector yet"}),
            json!({"scenario": "inspect", "peer": "none", "mode": "bytes", "gzip": 0}),
            json!({"scenario": "inspect", "peer": "vconsole", "mode": "bytes", "gzip": 78149}),
            json!({"scenario": "inspect", "peer": "vconsole", "mode": "per call", "log_over_floor_us": 530.9,
                   "fetch_over_floor_us": 12.0, "fetch_p50_ms": 6.7, "heap_after_logs": 4577456}),
        ];
        let mut out = String::new();
        inspect_table(&mut out, &rows);
        assert!(out.contains("| figure | none | vconsole |"), "{out}");
        assert!(out.contains("| bytes loaded, gzip -9 | 0 | 78,149 |"), "{out}");
        assert!(out.contains("530.9"), "{out}");
        assert!(out.contains("- tether: no inspector yet"), "{out}");
    }

    #[test]
    fn gateway_alarms_and_sdk_tables_show_each_figure() {
        let call = |peer: &str, cps: f64| {
            json!({"scenario": "gateway", "peer": peer, "mode": "20 sessions",
            "calls_per_s": cps, "p50_us": 100, "p99_us": 200, "relay_cpu_us_per_call": if peer == "relay" { json!(30.0) } else { json!(null) },
            "legacy_cpu_us_per_call": 10.0})
        };
        let codec = |peer: &str, mb: f64| json!({"scenario": "codec", "peer": peer, "mode": "decode large", "mb_per_s": mb});
        let alarm = json!({"scenario": "alarms", "mode": "1000/s", "bytes": 256, "subscribers": 100, "sent": 3000,
            "received": 3000, "delivered_min": 2990, "delivered_max": 3000, "gap_total": 10, "accounting_ok": true,
            "frames_out_per_s": 99000.0, "relay_cpu_us_per_datagram": 250.0, "generator_cpu_s": 1.5, "seconds": 3.0});
        let sdk = json!({"scenario": "sdk", "mode": "connectPc to linked", "samples": 20, "p50_ms": 5.2, "p99_ms": 86.3, "max_ms": 86.3});
        let size = json!({"scenario": "sdk", "mode": "size", "wasm_gzip": 36334, "js_gzip": 4582, "total_gzip": 40916});
        let md = markdown(&[
            call("direct", 70000.0),
            call("relay", 24000.0),
            codec("tether", 133.0),
            codec("python", 22.0),
            alarm,
            sdk,
            size,
        ]);
        assert!(md.contains("| 20 sessions | calls/s | 70,000 | 24,000 | 0.34× |"), "{md}");
        assert!(md.contains("| 20 sessions | relay CPU per call, µs | — | 30.0 | — |"), "{md}");
        assert!(md.contains("| decode large | 133 | 22 | 6.05× |"), "{md}");
        assert!(
            md.contains("| 1000/s | 3,000 | 3,000 | 2,990–3,000 | 10 | holds | 99,000 | 250.0 | 0.50 |"),
            "{md}"
        );
        assert!(md.contains("| connectPc to linked | 20 | 5.2 | 86.3 | 86.3 |"), "{md}");
        assert!(md.contains("**40,916 B**"), "{md}");
    }
}
