//! Scenario 3, presence: how long from a device leaving to its PC holding a list without it.
//! A clean leave is a close frame; a dead peer is a device that stops reading (so it answers
//! no ping) with its socket left open, found only by the peer's own heartbeat.

use crate::peer::{Peer, Ws, next_text};
use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub peer: Peer,
    pub mode: String,
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Leaves the PC was not told of within the limit (counted at the limit in the
    /// percentiles): a peer with no heartbeat of its own never notices a dead peer.
    pub not_told: usize,
    pub limit_s: f64,
}

/// Reads the PC's frames until a devices list satisfies `done`, within `limit`.
async fn until_list(peer: Peer, pc: &mut Ws, limit: Duration, done: impl Fn(usize) -> bool) -> Result<()> {
    tokio::time::timeout(limit, async {
        loop {
            let text = next_text_patient(pc).await?;
            if text == "2" {
                pc.send(tokio_tungstenite::tungstenite::Message::text("3")).await?;
            }
            if peer.live_devices(&text).is_some_and(&done) {
                return anyhow::Ok(());
            }
        }
    })
    .await
    .context("no such devices list in time")?
}

/// Like `next_text`, for waits longer than a join's (a dead peer takes a heartbeat or two).
async fn next_text_patient(ws: &mut Ws) -> Result<String> {
    loop {
        match next_text(ws).await {
            Ok(t) => return Ok(t),
            Err(e) if e.to_string().contains("no frame in time") => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `samples` leaves, each in a fresh room: `dead` picks a dead peer over a clean close.
pub async fn run(peer: Peer, base: &str, samples: usize, dead: bool, limit: Duration) -> Result<Outcome> {
    let tag = format!("{:x}", std::process::id());
    let mut ms = Vec::with_capacity(samples);
    let mut held = Vec::new(); // dead devices stay open until the end
    let mut not_told = 0;
    for i in 0..samples {
        let room = format!("pr{tag}x{i}{}", if dead { "d" } else { "c" });
        let mut pc = peer.join(base, &room, "pc").await?;
        let dev = peer.join(base, &room, "device").await?;
        until_list(peer, &mut pc, limit, |n| n == 1).await.context("the device never showed up")?;
        let left = Instant::now();
        if dead {
            held.push(dev); // never read again: no pong, no close
        } else {
            // As a browser does: a close frame, then reading until the server's close and
            // the end of the stream (the closing handshake).
            let mut dev = dev;
            dev.close(None).await?;
            tokio::spawn(async move { while dev.next().await.is_some() {} });
        }
        match until_list(peer, &mut pc, limit, |n| n == 0).await {
            Ok(()) => ms.push(left.elapsed().as_secs_f64() * 1000.0),
            Err(e) if e.to_string().contains("in time") => {
                not_told += 1;
                ms.push(limit.as_secs_f64() * 1000.0);
            }
            Err(e) => return Err(e.context("the PC's socket failed while waiting")),
        }
    }
    drop(held);
    if ms.is_empty() {
        bail!("no samples");
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    Ok(Outcome {
        scenario: "presence",
        peer,
        mode: if dead { "dead peer".into() } else { "clean leave".into() },
        samples: ms.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: ms[ms.len() - 1],
        not_told,
        limit_s: limit.as_secs_f64(),
    })
}
