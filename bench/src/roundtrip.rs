//! Scenario 1, round trips: R rooms × (1 PC + D devices). Each PC posts, each device answers
//! at once, the PC reads the answer.
//!
//! At a fixed offered load every PC sends on a schedule (total rate / R per second) and the
//! latency is measured from when the request was *due*, so a generator or server that falls
//! behind shows it in the figures (no coordinated omission). At saturation every PC keeps a
//! window of requests in flight. Only requests due after the warm-up are counted; a request
//! with no answer by the end of the drain counts as lost.

use crate::cpu::Cpu;
use crate::peer::{Frame, Peer, answer_forever};
use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;

/// How one run is shaped.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which relay.
    pub peer: Peer,
    /// `host:port`.
    pub base: String,
    /// Rooms.
    pub rooms: usize,
    /// Devices per room.
    pub devices: usize,
    /// Requests per second over all PCs; `None` for saturation.
    pub rate: Option<u32>,
    /// Requests in flight per PC at saturation.
    pub window: usize,
    /// Warm-up, then measurement.
    pub warmup: Duration,
    pub measure: Duration,
    /// The server's pid, for its CPU time.
    pub server_pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub peer: Peer,
    pub mode: String,
    pub rooms: usize,
    pub devices: usize,
    pub offered_per_s: Option<u32>,
    pub round_trips_per_s: f64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub seconds: f64,
    /// CPU seconds the server used during the measurement, and per round trip.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_rt: Option<f64>,
    /// CPU seconds this load generator used during the measurement.
    pub generator_cpu_s: f64,
}

/// Per-PC tallies.
#[derive(Default)]
struct Tally {
    sent: u64,
    answered: u64,
    latencies_us: Vec<u64>,
}

/// Runs one plan.
pub async fn run(plan: &Plan) -> Result<Outcome> {
    let run_tag = format!("{:x}{}", std::process::id(), Instant::now().elapsed().subsec_nanos() % 10_000);
    let mut pcs = Vec::new();
    for r in 0..plan.rooms {
        let room = format!("rt{run_tag}x{r}");
        let pc = plan.peer.join(&plan.base, &room, "pc").await?;
        for _ in 0..plan.devices {
            let dev = plan.peer.join(&plan.base, &room, "device").await?;
            tokio::spawn(answer_forever(plan.peer, dev));
        }
        pcs.push(pc);
    }
    // Every device is in its room before the first request (Tether's devices list, Socket.IO's
    // room join, the seed's set are all updated on connect).
    let start = Instant::now() + Duration::from_millis(200);
    let counted_from = start + plan.warmup;
    let stop_sending = counted_from + plan.measure;
    let drain_until = stop_sending + Duration::from_secs(2);
    let per_pc_rate = plan.rate.map(|r| f64::from(r) / plan.rooms as f64);
    let tasks: Vec<_> = pcs
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let (peer, window, devices) = (plan.peer, plan.window, plan.devices as u64);
            // Stagger the PCs' schedules across one period.
            let offset = per_pc_rate
                .map_or(Duration::ZERO, |r| Duration::from_secs_f64(i as f64 / plan.rooms as f64 / r));
            tokio::spawn(pc_loop(
                peer,
                ws,
                start + offset,
                counted_from,
                stop_sending,
                drain_until,
                per_pc_rate,
                window,
                devices,
            ))
        })
        .collect();
    // CPU is read over the measurement: from the end of the warm-up until sending stops.
    sleep_until(counted_from.into()).await;
    let server_before = plan.server_pid.map(Cpu::of_pid).transpose()?;
    let gen_before = Cpu::of_self()?;
    sleep_until(stop_sending.into()).await;
    let server_after = plan.server_pid.map(Cpu::of_pid).transpose()?;
    let gen_after = Cpu::of_self()?;
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await??;
        total.sent += t.sent;
        total.answered += t.answered;
        total.latencies_us.extend(t.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> u64 {
        let l = &total.latencies_us;
        if l.is_empty() { 0 } else { l[((l.len() as f64 * p) as usize).min(l.len() - 1)] }
    };
    let secs = plan.measure.as_secs_f64();
    let server_cpu = server_before.zip(server_after).map(|(b, a)| a.seconds_since(&b));
    let rts = total.answered / plan.devices.max(1) as u64;
    Ok(Outcome {
        scenario: "roundtrip",
        peer: plan.peer,
        mode: plan.rate.map_or("saturation".into(), |r| format!("{r}/s")),
        rooms: plan.rooms,
        devices: plan.devices,
        offered_per_s: plan.rate,
        round_trips_per_s: rts as f64 / secs,
        sent: total.sent,
        answered: total.answered,
        lost: (total.sent * plan.devices as u64).saturating_sub(total.answered),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: total.latencies_us.last().copied().unwrap_or(0),
        seconds: secs,
        server_cpu_s: server_cpu,
        server_cpu_us_per_rt: server_cpu.filter(|_| rts > 0).map(|c| c * 1e6 / rts as f64),
        generator_cpu_s: gen_after.seconds_since(&gen_before),
    })
}

/// One PC: sends on its schedule (or keeps `window` in flight), reads replies, and tallies
/// the requests due inside the measurement. Request ids carry the time they were due, in µs
/// from `start`, so a reply tells its own latency.
#[allow(clippy::too_many_arguments)]
async fn pc_loop(
    peer: Peer,
    ws: crate::peer::Ws,
    start: Instant,
    counted_from: Instant,
    stop_sending: Instant,
    drain_until: Instant,
    per_pc_rate: Option<f64>,
    window: usize,
    devices: u64,
) -> Result<Tally> {
    let (mut tx, mut rx) = ws.split();
    let mut tally = Tally::default();
    let mut seq = 0u64;
    let mut replies = 0u64;
    let id_for =
        |due: Instant, seq: u64| format!("{}.{seq}", due.saturating_duration_since(start).as_micros());
    let counted = |due: Instant| due >= counted_from && due < stop_sending;
    sleep_until(start.into()).await;
    let mut next_due = start;
    let period = per_pc_rate.map(|r| Duration::from_secs_f64(1.0 / r));
    if period.is_none() {
        for _ in 0..window {
            let now = Instant::now();
            tx.feed(Message::text(peer.post(&id_for(now, seq)))).await?;
            seq += 1;
            tally.sent += u64::from(counted(now));
        }
        tx.flush().await?;
    }
    // What is still awaited from requests that count, so the drain can end early.
    loop {
        let sending = Instant::now() < stop_sending;
        let awaited = tally.sent * devices > tally.answered;
        if !sending && (!awaited || Instant::now() >= drain_until) {
            break;
        }
        let wake = match period {
            Some(_) if sending => next_due,
            _ => {
                if sending {
                    stop_sending
                } else {
                    drain_until
                }
            }
        };
        tokio::select! {
            () = sleep_until(wake.into()) => {
                if let (Some(p), true) = (period, Instant::now() < stop_sending) {
                    // Send what is due (more than one if this task fell behind).
                    while next_due <= Instant::now() && next_due < stop_sending {
                        tx.feed(Message::text(peer.post(&id_for(next_due, seq)))).await?;
                        tally.sent += u64::from(counted(next_due));
                        seq += 1;
                        next_due += p;
                    }
                    tx.flush().await?;
                }
            }
            msg = rx.next() => {
                let Some(msg) = msg else { break };
                let Message::Text(t) = msg? else { continue };
                match peer.classify(t.as_str()) {
                    Frame::Reply(id) => {
                        let now = Instant::now();
                        let due_us: u64 = id.split('.').next().and_then(|d| d.parse().ok()).unwrap_or(0);
                        let due = start + Duration::from_micros(due_us);
                        if counted(due) {
                            tally.answered += 1;
                            tally.latencies_us.push(now.saturating_duration_since(due).as_micros() as u64);
                        }
                        // At saturation a request is replaced once all its answers are in
                        // (one per device), keeping the window full.
                        replies += 1;
                        if period.is_none() && now < stop_sending && replies % devices == 0 {
                            tx.send(Message::text(peer.post(&id_for(now, seq)))).await?;
                            tally.sent += u64::from(counted(now));
                            seq += 1;
                        }
                    }
                    Frame::Ping => tx.send(Message::text("3")).await?,
                    Frame::Request(_) | Frame::Other => {}
                }
            }
        }
    }
    Ok(tally)
}
