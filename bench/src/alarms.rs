//! Scenario 5, alarms: datagrams pushed to the relay's `--alarm-listen` port at a fixed rate,
//! forwarded to every `/alarms` subscriber, with the accounting: for each subscriber, alarms
//! delivered + alarms counted in `alarmGap` must equal the alarms the relay received, in order.

use crate::cpu::Cpu;
use crate::gateway::get;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How one run is shaped.
pub struct Plan {
    /// The relay's HTTP address (`/alarms`, `/metrics`).
    pub relay: SocketAddr,
    /// Its `--alarm-listen` UDP address.
    pub udp: SocketAddr,
    pub subscribers: usize,
    /// Datagrams per second.
    pub rate: u32,
    pub measure: Duration,
    /// Bytes per datagram (a JSON alarm padded to this size).
    pub bytes: usize,
    pub relay_pid: Option<u32>,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub peer: &'static str,
    pub mode: String,
    pub subscribers: usize,
    pub bytes: usize,
    pub sent: u64,
    /// Datagrams the relay counted (`tether_alarms_received_total`); the kernel may drop
    /// some before the relay reads them.
    pub received: u64,
    /// Per subscriber, the fewest and most alarms delivered, and all `alarmGap` counts.
    pub delivered_min: u64,
    pub delivered_max: u64,
    pub gap_total: u64,
    /// Every subscriber: delivered + gap = received, seqs strictly increasing.
    pub accounting_ok: bool,
    pub received_per_s: f64,
    /// Alarm frames written to subscribers per second, over all of them.
    pub frames_out_per_s: f64,
    pub relay_cpu_us_per_datagram: Option<f64>,
    pub generator_cpu_s: f64,
    /// Sending time.
    pub seconds: f64,
    /// From the first datagram to the relay having read the last: the span both CPU figures
    /// cover.
    pub measured_s: f64,
}

/// A metric's value from the Prometheus text.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(relay: SocketAddr) -> Result<(u64, u64, u64)> {
    let text = String::from_utf8(get(relay, "/metrics").await?.to_vec())?;
    let m = |n: &str| metric(&text, n).with_context(|| format!("{n} in /metrics"));
    Ok((m("tether_alarms_received_total")?, m("tether_alarm_last_seq")?, m("tether_alarm_subscribers")?))
}

/// A frame's kind and number, read without a full parse (the generator reads every frame of
/// every subscriber): `alarm` → its seq, `alarmGap` → its count. The relay writes the bodies
/// of `tether_protocol::msg` in their field order (`type` first; in an alarm's `msg`, `seq`
/// first), so both are found from the start, before anything the alarm's data holds. Relays
/// before that wrote keys sorted (`msg` before `type`, `seq` after `data`): read from the end.
fn read_frame(text: &str) -> Option<(bool, u64)> {
    let number = |rest: &str| -> Option<u64> {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    if let Some(rest) = text.strip_prefix(r#"{"type":"alarm","msg":{"seq":"#) {
        return Some((true, number(rest)?));
    }
    if let Some(rest) = text.strip_prefix(r#"{"type":"alarmGap","msg":{"dropped":"#) {
        return Some((false, number(rest)?));
    }
    let field = |key: &str| -> Option<u64> { number(&text[text.rfind(key)? + key.len()..]) };
    if text.ends_with(r#","type":"alarm"}"#) {
        Some((true, field(r#""seq":"#)?))
    } else if text.ends_with(r#","type":"alarmGap"}"#) {
        Some((false, field(r#""dropped":"#)?))
    } else {
        None
    }
}

/// One `/alarms` subscriber's socket, upgraded by hand: the generator reads every frame of
/// every subscriber on one core, so it parses the WebSocket frames itself from large reads
/// (tungstenite's per-message path made the generator, not the relay, the limit at ~150k
/// frames/s). Returns the socket and any bytes read past the handshake.
async fn subscribe(relay: SocketAddr) -> Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(relay).await.context("connect to /alarms")?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET /alarms HTTP/1.1\r\nHost: {relay}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("/alarms closed during the handshake");
        }
        got.extend_from_slice(&chunk[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got.len() > 16 * 1024 {
            bail!("/alarms answered no HTTP head");
        }
    };
    if !got.starts_with(b"HTTP/1.1 101") {
        bail!("/alarms refused: {}", String::from_utf8_lossy(&got[..end]).lines().next().unwrap_or(""));
    }
    Ok((s, got[end..].to_vec()))
}

/// One server frame at the start of `b`: its opcode, payload and length in all; `None` until
/// it is whole.
fn frame(b: &[u8]) -> Result<Option<(u8, &[u8], usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x80 == 0 {
        bail!("a fragmented frame (the relay writes whole ones)");
    }
    if b[1] & 0x80 != 0 {
        bail!("a masked frame from the server");
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
        127 if b.len() >= 10 => (usize::try_from(u64::from_be_bytes(b[2..10].try_into()?))?, 10),
        126 | 127 => return Ok(None),
        n => (usize::from(n), 2),
    };
    if b.len() < head + len {
        return Ok(None);
    }
    Ok(Some((b[0] & 0x0f, &b[head..head + len], head + len)))
}

/// One subscriber's reading: alarms after `after`, until it has seen `last` (once known). Pings
/// are answered (a masked pong), as a browser would.
async fn subscriber(
    mut s: TcpStream,
    mut pending: Vec<u8>,
    after: u64,
    mut last: watch::Receiver<u64>,
) -> Result<(u64, u64, bool)> {
    let (mut delivered, mut gap, mut prev, mut in_order) = (0u64, 0u64, after, true);
    let mut may_change = true;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut at = 0;
        let mut pongs = Vec::new();
        while let Some((op, payload, len)) = frame(&pending[at..])? {
            match op {
                1 => match read_frame(std::str::from_utf8(payload)?) {
                    Some((true, seq)) if seq > after => {
                        in_order &= seq > prev;
                        prev = seq;
                        delivered += 1;
                    }
                    Some((false, n)) => gap += n,
                    _ => {}
                },
                8 => bail!("the relay closed the subscription"),
                9 if payload.len() < 126 => {
                    pongs.extend_from_slice(&[0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0]);
                    pongs.extend_from_slice(payload); // masked with a zero key: as it is
                }
                _ => {}
            }
            at += len;
        }
        pending.drain(..at);
        if !pongs.is_empty() {
            s.write_all(&pongs).await?;
        }
        let target = *last.borrow_and_update();
        if target != 0 && prev >= target {
            return Ok((delivered, gap, in_order));
        }
        tokio::select! {
            n = s.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    bail!("subscriber closed");
                }
                pending.extend_from_slice(&buf[..n]);
            }
            changed = last.changed(), if may_change => may_change = changed.is_ok(),
        }
    }
}

/// A JSON alarm of about `bytes` bytes.
fn datagram(n: u64, bytes: usize) -> Vec<u8> {
    let head = format!(r#"{{"n":{n},"zone":7,"level":"major","text":""#);
    let pad = bytes.saturating_sub(head.len() + 2);
    let mut d = head.into_bytes();
    d.extend(std::iter::repeat_n(b'x', pad));
    d.extend_from_slice(b"\"}");
    d
}

/// Runs one plan.
pub async fn run(plan: &Plan) -> Result<Outcome> {
    let mut subs = Vec::with_capacity(plan.subscribers);
    for _ in 0..plan.subscribers {
        subs.push(subscribe(plan.relay).await?);
    }
    // Every subscriber registered before the first datagram.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (received0, last0) = loop {
        let (received, last, n) = metrics(plan.relay).await?;
        if n as usize >= plan.subscribers {
            break (received, last);
        }
        if Instant::now() > deadline {
            bail!("{n} of {} subscribers registered after 10 s", plan.subscribers);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (last_tx, last_rx) = watch::channel(0u64);
    let readers: Vec<_> =
        subs.into_iter().map(|(s, rest)| tokio::spawn(subscriber(s, rest, last0, last_rx.clone()))).collect();

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    sock.connect(plan.udp).await?;
    let total = (f64::from(plan.rate) * plan.measure.as_secs_f64()) as u64;
    let relay_before = plan.relay_pid.map(Cpu::of_pid).transpose()?;
    let gen_before = Cpu::of_self()?;
    let start = Instant::now();
    // Paced per millisecond: the datagrams due by now go out together.
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * f64::from(plan.rate)) as u64 + 1).min(total);
        while sent < due {
            sock.send(&datagram(sent, plan.bytes)).await?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Until the relay has read what the kernel holds: its count stops moving.
    let mut seen = metrics(plan.relay).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = metrics(plan.relay).await?;
        if now.0 == seen.0 {
            break;
        }
        seen = now;
    }
    let relay_after = plan.relay_pid.map(Cpu::of_pid).transpose()?;
    let gen_after = Cpu::of_self()?;
    let measured_s = start.elapsed().as_secs_f64();
    let (received1, last1, _) = seen;
    let received = received1 - received0;
    last_tx.send(if received == 0 { last0 } else { last1 })?;
    let mut per = Vec::new();
    for r in readers {
        per.push(
            tokio::time::timeout(Duration::from_secs(30), r)
                .await
                .context("a subscriber did not get the last alarm within 30 s")???,
        );
    }
    let delivered: Vec<u64> = per.iter().map(|p| p.0).collect();
    let accounting_ok = per.iter().all(|&(d, g, ordered)| d + g == received && ordered);
    Ok(Outcome {
        scenario: "alarms",
        peer: "tether",
        mode: format!("{}/s", plan.rate),
        subscribers: plan.subscribers,
        bytes: plan.bytes,
        sent,
        received,
        delivered_min: delivered.iter().copied().min().unwrap_or(0),
        delivered_max: delivered.iter().copied().max().unwrap_or(0),
        gap_total: per.iter().map(|p| p.1).sum(),
        accounting_ok,
        received_per_s: received as f64 / seconds,
        frames_out_per_s: delivered.iter().sum::<u64>() as f64 / seconds,
        relay_cpu_us_per_datagram: relay_before
            .zip(relay_after)
            .map(|(b, a)| a.seconds_since(&b) * 1e6 / received.max(1) as f64),
        generator_cpu_s: gen_after.seconds_since(&gen_before),
        seconds,
        measured_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_metrics_are_read_as_the_relay_writes_them() {
        use tether_protocol::{Kind, OutEnvelope, msg};
        // Built as the relay builds them (relay/src/alarm.rs), with data that looks like a seq.
        let data = serde_json::json!({"seq": 3, "type": "alarmGap", "dropped": 4});
        let body =
            msg::Alarm { seq: 1795262400000001, at: 1, from: "127.0.0.1:5".into(), data: data.clone() };
        let alarm = OutEnvelope::new(Kind::Alarm, body).to_text();
        assert_eq!(read_frame(&alarm), Some((true, 1795262400000001)));
        let gap = OutEnvelope::new(Kind::AlarmGap, msg::AlarmGap { dropped: 37 }).to_text();
        assert_eq!(read_frame(&gap), Some((false, 37)));
        let source = msg::AlarmSource { state: "up".into(), service: None };
        assert_eq!(read_frame(&OutEnvelope::new(Kind::AlarmSource, source).to_text()), None);
        // And as relays before the protocol's bodies wrote them: keys sorted.
        let alarm = serde_json::json!({"type": "alarm", "msg": {"seq": 1795262400000001u64, "at": 1, "from": "127.0.0.1:5", "data": data}});
        assert_eq!(read_frame(&alarm.to_string()), Some((true, 1795262400000001)));
        let gap = serde_json::json!({"type": "alarmGap", "msg": {"dropped": 37}});
        assert_eq!(read_frame(&gap.to_string()), Some((false, 37)));
        assert_eq!(read_frame(r#"{"msg":{"state":"up"},"type":"alarmSource"}"#), None);
        let text =
            "# TYPE tether_alarm_last_seq gauge\ntether_alarm_last_seq 12\ntether_alarm_last_seq_x 3\n";
        assert_eq!(metric(text, "tether_alarm_last_seq"), Some(12));
        // Frames as a server writes them: short, 16-bit and 64-bit lengths, and partial ones.
        let mut wire = vec![0x81, 3, b'a', b'b', b'c', 0x89, 0];
        wire.extend_from_slice(&[0x81, 126, 0x01, 0x00]);
        wire.extend(std::iter::repeat_n(b'x', 256));
        let (op, p, n) = frame(&wire).unwrap().unwrap();
        assert_eq!((op, p, n), (1, &b"abc"[..], 5));
        let (op, p, n) = frame(&wire[5..]).unwrap().unwrap();
        assert_eq!((op, p.len(), n), (9, 0, 2));
        let (op, p, n) = frame(&wire[7..]).unwrap().unwrap();
        assert_eq!((op, p.len(), n), (1, 256, 260));
        assert!(frame(&wire[7..100]).unwrap().is_none(), "not whole yet");
        assert!(frame(&wire[7..9]).unwrap().is_none());
        let mut long = vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        long.extend(std::iter::repeat_n(b'y', 65536));
        assert_eq!(frame(&long).unwrap().unwrap().1.len(), 65536);
        assert!(frame(&[0x01, 1, b'a']).is_err(), "fragmented");
        assert!(frame(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_err(), "masked");
        let d = datagram(5, 256);
        assert_eq!(d.len(), 256);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&d).unwrap()["n"], 5);
    }
}
