//! `tether-bench`: the load generator for the side-by-side benchmarks, and their report.
//! `bench/run` starts each peer pinned to one core and this generator on the other; see
//! `bench/README.md`.
//!
//! ```sh
//! tether-bench roundtrip --peer seed --base 127.0.0.1:9100 --rate 20000 --server-pid 4242 --out raw.jsonl
//! tether-bench report --raw raw.jsonl --out bench/RESULTS.md
//! ```
//!
//! # Layout
//! - `peer`: how each peer (Tether, PageSpy, the seed's relay, Socket.IO) is joined and spoken to.
//! - `roundtrip`, `presence`, `idle`, `gateway`, `alarms`: one scenario each.
//! - `cpu`: a process's CPU time from `/proc`.
//! - `report`: `raw.jsonl` into `RESULTS.md`.

mod alarms;
mod cpu;
mod gateway;
mod idle;
mod peer;
mod presence;
mod report;
mod roundtrip;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "Tether's side-by-side benchmarks: load generator and report")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Round trips: R rooms × (1 PC + D devices); appends one JSON line to --out.
    Roundtrip {
        #[arg(long, value_enum)]
        peer: peer::Peer,
        /// The peer's `host:port`.
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 20)]
        rooms: usize,
        #[arg(long, default_value_t = 1)]
        devices: usize,
        /// Requests per second over all PCs; omit for saturation.
        #[arg(long)]
        rate: Option<u32>,
        /// Requests in flight per PC at saturation.
        #[arg(long, default_value_t = 8)]
        window: usize,
        #[arg(long, default_value_t = 1.0)]
        warmup_s: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// The server's pid, to report its CPU time.
        #[arg(long)]
        server_pid: Option<u32>,
        /// JSON lines file to append the outcome to.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Idle connections: RSS per connection on the server; appends one JSON line to --out.
    Idle {
        #[arg(long, value_enum)]
        peer: peer::Peer,
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Members per room (one PC, the rest devices).
        #[arg(long, default_value_t = 2)]
        room_size: usize,
        #[arg(long)]
        server_pid: u32,
        /// How long to hold them before reading the server's memory.
        #[arg(long, default_value_t = 3.0)]
        settle_s: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Presence: time from a device leaving to its PC's new list; appends one JSON line.
    Presence {
        #[arg(long, value_enum)]
        peer: peer::Peer,
        #[arg(long)]
        base: String,
        #[arg(long, default_value_t = 20)]
        samples: usize,
        /// A dead peer (stops reading, socket open) instead of a clean close.
        #[arg(long)]
        dead: bool,
        /// Longest wait for one PC to be told, seconds.
        #[arg(long, default_value_t = 120.0)]
        limit_s: f64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The CS gateway: calls through the relay and direct to the legacy server; one JSON line
    /// per figure.
    Gateway {
        /// The relay's `host:port` (started with `--cs-upstream http://LEGACY/RPC2`).
        #[arg(long)]
        relay: std::net::SocketAddr,
        /// The legacy CS server's `host:port` (`tether-legacy-cs`).
        #[arg(long)]
        legacy: std::net::SocketAddr,
        /// Sequential calls on each path.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
        /// Concurrent sessions on each path.
        #[arg(long, default_value_t = 20)]
        sessions: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long)]
        relay_pid: Option<u32>,
        #[arg(long)]
        legacy_pid: Option<u32>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The XML-RPC codec's MB/s both ways; writes the payloads to --dir for the Python run.
    Codec {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Alarms: datagrams at --rate to the relay's --alarm-listen port, forwarded to
    /// --subscribers; appends one JSON line.
    Alarms {
        /// The relay's `host:port`.
        #[arg(long)]
        relay: std::net::SocketAddr,
        /// Its `--alarm-listen` address.
        #[arg(long)]
        udp: std::net::SocketAddr,
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 256)]
        bytes: usize,
        #[arg(long)]
        relay_pid: Option<u32>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes the Markdown report from the JSON lines the runs appended.
    Report {
        #[arg(long)]
        raw: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn append(out: &Option<PathBuf>, line: &str) -> Result<()> {
    println!("{line}");
    if let Some(path) = out {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

// One thread: the generator has one core (`taskset -c 1`), and a second worker thread on it
// would only add scheduling jitter to the latencies.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Roundtrip { peer, base, rooms, devices, rate, window, warmup_s, seconds, server_pid, out } => {
            let plan = roundtrip::Plan {
                peer,
                base,
                rooms,
                devices,
                rate,
                window,
                warmup: Duration::from_secs_f64(warmup_s),
                measure: Duration::from_secs_f64(seconds),
                server_pid,
            };
            let outcome = roundtrip::run(&plan).await?;
            append(&out, &serde_json::to_string(&outcome)?)?;
        }
        Cmd::Idle { peer, base, connections, room_size, server_pid, settle_s, out } => {
            let settle = Duration::from_secs_f64(settle_s);
            let outcome = idle::run(peer, &base, connections, room_size, server_pid, settle).await?;
            append(&out, &serde_json::to_string(&outcome)?)?;
        }
        Cmd::Presence { peer, base, samples, dead, limit_s, out } => {
            let outcome = presence::run(peer, &base, samples, dead, Duration::from_secs_f64(limit_s)).await?;
            append(&out, &serde_json::to_string(&outcome)?)?;
        }
        Cmd::Gateway { relay, legacy, calls, sessions, seconds, relay_pid, legacy_pid, out } => {
            let plan = gateway::GatewayPlan {
                relay,
                legacy,
                calls,
                sessions,
                measure: Duration::from_secs_f64(seconds),
                relay_pid,
                legacy_pid,
            };
            for outcome in gateway::gateway(&plan).await? {
                append(&out, &serde_json::to_string(&outcome)?)?;
            }
        }
        Cmd::Codec { dir, out } => {
            for outcome in gateway::codec(&dir)? {
                append(&out, &serde_json::to_string(&outcome)?)?;
            }
        }
        Cmd::Alarms { relay, udp, subscribers, rate, seconds, bytes, relay_pid, out } => {
            let plan = alarms::Plan {
                relay,
                udp,
                subscribers,
                rate,
                measure: Duration::from_secs_f64(seconds),
                bytes,
                relay_pid,
            };
            let outcome = alarms::run(&plan).await?;
            append(&out, &serde_json::to_string(&outcome)?)?;
        }
        Cmd::Report { raw, out } => {
            let text = std::fs::read_to_string(&raw)?;
            let rows: Vec<serde_json::Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?;
            std::fs::write(&out, report::markdown(&rows))?;
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(())
}
