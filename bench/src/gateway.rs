//! Scenario 4, the CS gateway: a call through the relay (JSON in, JSON out, the relay keeping
//! the session's keep-alive XML-RPC connection) against the same call made directly to the
//! legacy server over a keep-alive connection; and the XML-RPC codec's throughput, against
//! Python's `xmlrpc.client` on the same payloads (`bench/peers/xmlrpc_codec.py`).

use crate::cpu::Cpu;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tether_relay::cs::xmlrpc;

/// A small structured answer: the common case.
pub fn small() -> Value {
    json!({"id": 42, "name": "alarm zone 7", "ok": true, "ratio": 0.75, "tags": ["a", "b", "c"],
           "owner": {"uid": 1001, "nick": "ops"}})
}

/// About 1 MB of XML-RPC once encoded: a device list.
pub fn large() -> Value {
    let rows: Vec<Value> = (0..2150)
        .map(|i| {
            json!({"id": i, "name": format!("device-{i}"), "online": i % 3 == 0,
                   "load": f64::from(i) / 7.0, "groups": [i % 5, i % 7]})
        })
        .collect();
    json!({ "rows": rows })
}

/// One codec figure.
#[derive(Debug, Serialize)]
pub struct CodecOutcome {
    pub scenario: &'static str,
    pub peer: &'static str,
    pub mode: String,
    pub xml_bytes: usize,
    pub mb_per_s: f64,
}

/// Runs `f` for about a second (at least three times); MB/s over `bytes` per run.
fn throughput(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) || n < 3 {
        f();
        n += 1;
    }
    (bytes as f64 * n as f64) / start.elapsed().as_secs_f64() / 1e6
}

/// The codec both ways on both payloads; writes each payload's XML to `dir` (`small.xml`,
/// `large.xml`) for the Python run.
pub fn codec(dir: &Path) -> Result<Vec<CodecOutcome>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for (name, value) in [("small", small()), ("large", large())] {
        let xml = xmlrpc::encode_response(&value)?;
        std::fs::write(dir.join(format!("{name}.xml")), &xml)?;
        // The decoded value must be the one encoded, or the figures mean nothing.
        if xmlrpc::decode_response(xml.as_bytes())? != xmlrpc::Response::Ok(value.clone()) {
            bail!("the {name} payload does not decode to itself");
        }
        let enc = throughput(xml.len(), || {
            std::hint::black_box(xmlrpc::encode_response(std::hint::black_box(&value)).ok());
        });
        let dec = throughput(xml.len(), || {
            std::hint::black_box(xmlrpc::decode_response(std::hint::black_box(xml.as_bytes())).ok());
        });
        for (way, mb) in [("encode", enc), ("decode", dec)] {
            out.push(CodecOutcome {
                scenario: "codec",
                peer: "tether",
                mode: format!("{way} {name}"),
                xml_bytes: xml.len(),
                mb_per_s: mb,
            });
        }
    }
    Ok(out)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn client(addr: SocketAddr) -> Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(s: &mut Sender, path: &str, ct: &str, auth: Option<&str>, body: Bytes) -> Result<Bytes> {
    let mut req = hyper::Request::post(path).header("host", "bench").header("content-type", ct);
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    send(s, req.body(Full::new(body))?).await
}

/// Sends `req`; its body, when the status is 200.
async fn send(s: &mut Sender, req: hyper::Request<Full<Bytes>>) -> Result<Bytes> {
    let path = req.uri().path().to_owned();
    s.ready().await?;
    let resp = s.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != 200 {
        bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// A GET on a fresh connection; the body, when the status is 200.
pub async fn get(addr: SocketAddr, path: &str) -> Result<Bytes> {
    let mut s = client(addr).await?;
    send(&mut s, hyper::Request::get(path).header("host", "bench").body(Full::new(Bytes::new()))?).await
}

/// One caller: a keep-alive connection with a logged-in session, direct or through the relay.
struct Caller {
    sender: Sender,
    /// Through the relay: the session token.
    token: Option<String>,
    call: Bytes,
}

impl Caller {
    async fn direct(legacy: SocketAddr, user: &str) -> Result<Caller> {
        let mut sender = client(legacy).await?;
        let login = xmlrpc::encode_call("login", &[json!(user)])?;
        post(&mut sender, "/RPC2", "text/xml", None, login.into()).await?;
        let call = xmlrpc::encode_call("echo", &[small()])?.into();
        Ok(Caller { sender, token: None, call })
    }

    async fn relay(relay: SocketAddr, user: &str) -> Result<Caller> {
        let mut sender = client(relay).await?;
        let login = json!({"method": "login", "params": [user]}).to_string();
        let answer = post(&mut sender, "/cs/login", "application/json", None, login.into()).await?;
        let v: Value = serde_json::from_slice(&answer)?;
        let token = v["session"].as_str().with_context(|| format!("no session in {v}"))?.to_owned();
        let call = json!({"method": "echo", "params": [small()]}).to_string().into();
        Ok(Caller { sender, token: Some(token), call })
    }

    async fn call(&mut self) -> Result<()> {
        let answer = match &self.token {
            None => post(&mut self.sender, "/RPC2", "text/xml", None, self.call.clone()).await?,
            Some(t) => {
                post(&mut self.sender, "/cs/call", "application/json", Some(t), self.call.clone()).await?
            }
        };
        // An answer that is not the echo is an error, not a fast call.
        if !answer.windows(12).any(|w| w == b"alarm zone 7") {
            bail!("unexpected answer: {}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    }
}

/// One gateway figure.
#[derive(Debug, Serialize)]
pub struct GatewayOutcome {
    pub scenario: &'static str,
    /// `direct` or `relay`.
    pub peer: &'static str,
    pub mode: String,
    pub calls: u64,
    pub calls_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// CPU per call of the relay and of the legacy server, when their pids are given.
    pub relay_cpu_us_per_call: Option<f64>,
    pub legacy_cpu_us_per_call: Option<f64>,
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() { 0 } else { sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] }
}

/// Where the gateway run goes and how long.
pub struct GatewayPlan {
    pub relay: SocketAddr,
    pub legacy: SocketAddr,
    /// Sequential calls on each path.
    pub calls: usize,
    /// Concurrent sessions on each path, and for how long.
    pub sessions: usize,
    pub measure: Duration,
    pub relay_pid: Option<u32>,
    pub legacy_pid: Option<u32>,
}

/// Sequential calls (interleaved, so both paths see the same conditions), then `sessions`
/// callers calling back to back on each path in turn.
pub async fn gateway(plan: &GatewayPlan) -> Result<Vec<GatewayOutcome>> {
    let mut out = Vec::new();
    let mut direct = Caller::direct(plan.legacy, "bench-seq").await?;
    let mut via = Caller::relay(plan.relay, "bench-seq").await?;
    let (mut d, mut r) = (Vec::with_capacity(plan.calls), Vec::with_capacity(plan.calls));
    for _ in 0..plan.calls {
        let t = Instant::now();
        direct.call().await?;
        d.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        via.call().await?;
        r.push(t.elapsed().as_micros() as u64);
    }
    for (peer, mut lat) in [("direct", d), ("relay", r)] {
        lat.sort_unstable();
        let total: u64 = lat.iter().sum();
        out.push(GatewayOutcome {
            scenario: "gateway",
            peer,
            mode: "sequential calls, one session".into(),
            calls: lat.len() as u64,
            calls_per_s: lat.len() as f64 / (total as f64 / 1e6),
            p50_us: pct(&lat, 0.5),
            p99_us: pct(&lat, 0.99),
            relay_cpu_us_per_call: None,
            legacy_cpu_us_per_call: None,
        });
    }
    for peer in ["direct", "relay"] {
        let mut callers = Vec::with_capacity(plan.sessions);
        for i in 0..plan.sessions {
            let user = format!("bench-{peer}-{i}");
            callers.push(match peer {
                "direct" => Caller::direct(plan.legacy, &user).await?,
                _ => Caller::relay(plan.relay, &user).await?,
            });
        }
        let cpu = |pid: Option<u32>| pid.map(Cpu::of_pid).transpose();
        let (relay_before, legacy_before) = (cpu(plan.relay_pid)?, cpu(plan.legacy_pid)?);
        let until = Instant::now() + plan.measure;
        let tasks: Vec<_> = callers
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        c.call().await?;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    anyhow::Ok(lat)
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let (relay_after, legacy_after) = (cpu(plan.relay_pid)?, cpu(plan.legacy_pid)?);
        lat.sort_unstable();
        let calls = lat.len() as u64;
        let per_call = |b: Option<Cpu>, a: Option<Cpu>| {
            b.zip(a).map(|(b, a)| a.seconds_since(&b) * 1e6 / calls.max(1) as f64)
        };
        out.push(GatewayOutcome {
            scenario: "gateway",
            peer,
            mode: format!("{} sessions, back to back", plan.sessions),
            calls,
            calls_per_s: calls as f64 / plan.measure.as_secs_f64(),
            p50_us: pct(&lat, 0.5),
            p99_us: pct(&lat, 0.99),
            relay_cpu_us_per_call: if peer == "relay" { per_call(relay_before, relay_after) } else { None },
            legacy_cpu_us_per_call: per_call(legacy_before, legacy_after),
        });
    }
    Ok(out)
}
