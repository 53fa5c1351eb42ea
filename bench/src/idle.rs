//! Scenario 2, idle connections: N sockets held open (rooms of one PC and `room_size - 1`
//! devices: 2 and 10 in `bench/run`, spread over 127.0.0.x source addresses), and what each
//! costs the server in resident memory.

use crate::peer::{Peer, answer_forever};
use anyhow::{Context, Result};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub peer: Peer,
    pub mode: String,
    pub connections: usize,
    /// Members per room: one PC, the rest devices.
    pub room_size: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_connection: f64,
    pub open_seconds: f64,
}

/// Source addresses: 127.0.0.2 … 127.0.0.(1 + `n`).
fn source(i: usize, n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % n) as u8))
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc status")
}

/// Opens `connections` sockets (rooms of `room_size`: a PC and devices), waits `settle`, reads
/// the server's RSS, and closes them.
pub async fn run(
    peer: Peer,
    base: &str,
    connections: usize,
    room_size: usize,
    server_pid: u32,
    settle: Duration,
) -> Result<Outcome> {
    let room_size = room_size.max(2);
    let before = rss_kib(server_pid)?;
    let started = Instant::now();
    let tag = format!("{:x}", std::process::id());
    // Each socket is read (so pings are answered, as a live page would) until it is dropped.
    let mut held = Vec::with_capacity(connections);
    // A few at a time: fast, without a thundering herd on the accept queue.
    for chunk in (0..connections).collect::<Vec<_>>().chunks(64) {
        let joins = chunk.iter().map(|&i| {
            let room = format!("idle{tag}x{}", i / room_size);
            let role = if i % room_size == 0 { "pc" } else { "device" };
            async move { peer.join_from(base, &room, role, Some(source(i, 200))).await }
        });
        for ws in futures_util::future::join_all(joins).await {
            let ws = ws.with_context(|| format!("after {} connections", held.len()))?;
            held.push(tokio::spawn(answer_forever(peer, ws)));
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    // Whatever the server does once everyone is in (devices lists, its heartbeat) settles.
    tokio::time::sleep(settle).await;
    let after = rss_kib(server_pid)?;
    for task in held {
        task.abort();
    }
    Ok(Outcome {
        scenario: "idle",
        peer,
        mode: format!("{connections} connections, rooms of {room_size}"),
        connections,
        room_size,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection: after.saturating_sub(before) as f64 / connections as f64,
        open_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_over_loopback_addresses() {
        assert_eq!(source(0, 200), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source(201, 200), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
