//! The legacy alarm service: UDP, point to point, as in seed 000.
//!
//! Whoever sends it a datagram starting with `SUBSCRIBE` is registered for `ttl`, and must renew
//! before that runs out. Alarms go to every registered subscriber at `rate` per second, numbered
//! from 1, cycling through four payload kinds: JSON, XML, plain text, and non-UTF-8 binary.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// How the service behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Alarms per second.
    pub rate: u32,
    /// How long a subscription lasts unless renewed.
    pub ttl: Duration,
    /// Stop after this many alarms (each sent to every subscriber then).
    pub count: Option<u64>,
    /// Bytes of padding in each alarm (to make them large).
    pub pad: usize,
    /// Send nothing until there is a subscriber.
    pub wait_for_subscriber: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { rate: 10, ttl: Duration::from_secs(30), count: None, pad: 0, wait_for_subscriber: true }
    }
}

/// What a test can observe.
#[derive(Debug, Default)]
pub struct Stats {
    /// Alarms generated (numbered 1..=this).
    pub alarms: AtomicU64,
    /// Datagrams sent, all subscribers together.
    pub datagrams: AtomicU64,
    /// Subscribe datagrams received.
    pub subscribes: AtomicU64,
}

/// Alarm number `n`, as kind `n % 4`: JSON, XML, text, binary.
pub fn payload(n: u64, pad: usize) -> Vec<u8> {
    let padding = "x".repeat(pad);
    match n % 4 {
        0 => format!(r#"{{"seq": {n}, "level": "warn", "zone": {}, "pad": "{padding}"}}"#, n % 10).into_bytes(),
        1 => format!(r#"<?xml version="1.0"?><alarm seq="{n}" level="high"><zone>{}</zone><pad>{padding}</pad></alarm>"#, n % 10).into_bytes(),
        2 => format!("ALARM {n} zone={} {padding}", n % 10).into_bytes(),
        _ => {
            let mut b = vec![0xFF, 0xFE];
            b.extend_from_slice(&n.to_be_bytes());
            b.extend(std::iter::repeat_n(0x80, pad));
            b
        }
    }
}

/// Serves on `sock` until `stop`, or until `count` alarms were sent.
pub async fn serve(sock: UdpSocket, opts: Options, stats: Arc<Stats>, stop: CancellationToken) {
    let mut subscribers: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    // Alarms are sent in small batches every 5 ms, so high rates work with a coarse timer.
    let tick = Duration::from_millis(5);
    let mut every = tokio::time::interval(tick);
    let mut owed = 0.0f64;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => if let Ok((n, from)) = r {
                if buf[..n].starts_with(b"SUBSCRIBE") {
                    subscribers.insert(from, Instant::now() + opts.ttl);
                    stats.subscribes.fetch_add(1, Relaxed);
                }
            },
            _ = every.tick() => {
                let now = Instant::now();
                subscribers.retain(|_, until| *until > now);
                if opts.wait_for_subscriber && subscribers.is_empty() {
                    continue;
                }
                owed += f64::from(opts.rate) * tick.as_secs_f64();
                while owed >= 1.0 {
                    owed -= 1.0;
                    let n = stats.alarms.load(Relaxed) + 1;
                    if opts.count.is_some_and(|c| n > c) {
                        break;
                    }
                    stats.alarms.store(n, Relaxed);
                    let p = payload(n, opts.pad);
                    for to in subscribers.keys() {
                        if sock.send_to(&p, to).await.is_ok() {
                            stats.datagrams.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        }
    }
}
