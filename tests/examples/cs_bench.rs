//! The CS gateway's costs: the XML-RPC codec's throughput both ways, on a small and a 1 MB
//! payload, and the latency a call through the relay adds over a direct keep-alive call to the
//! legacy server. Bounded: each codec figure runs about a second, each latency figure a fixed
//! number of calls.
//!
//! ```sh
//! cargo run --release -p tether-tests --example cs_bench
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_relay::cs::xmlrpc;

fn small() -> Value {
    json!({"id": 42, "name": "alarm zone 7", "ok": true, "ratio": 0.75, "tags": ["a", "b", "c"], "owner": {"uid": 1001, "nick": "ops"}})
}

fn large() -> Value {
    // About 1 MB of XML-RPC once encoded.
    let rows: Vec<Value> = (0..2150)
        .map(|i| json!({"id": i, "name": format!("device-{i}"), "online": i % 3 == 0, "load": i as f64 / 7.0, "groups": [i % 5, i % 7]}))
        .collect();
    json!({ "rows": rows })
}

/// Runs `f` for about a second; returns MB/s over `bytes` per iteration.
fn throughput(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) || n < 3 {
        f();
        n += 1;
    }
    (bytes as f64 * n as f64) / start.elapsed().as_secs_f64() / 1e6
}

async fn client(addr: std::net::SocketAddr) -> http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn post(
    s: &mut http1::SendRequest<Full<Bytes>>,
    path: &str,
    ct: &str,
    auth: Option<&str>,
    body: String,
) -> Bytes {
    s.ready().await.unwrap();
    let mut req = hyper::Request::post(path).header("host", "bench").header("content-type", ct);
    if let Some(a) = auth {
        req = req.header("authorization", format!("Bearer {a}"));
    }
    let resp = s.send_request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Logs in as "bench" through a relay; the session token.
async fn login(via: &mut http1::SendRequest<Full<Bytes>>) -> String {
    let body = json!({"method": "login", "params": ["bench"]}).to_string();
    let answer = post(via, "/cs/login", "application/json", None, body).await;
    serde_json::from_slice::<Value>(&answer).unwrap()["session"].as_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    println!("XML-RPC codec (one core):");
    for (label, value) in [("small", small()), ("1 MB", large())] {
        let xml = xmlrpc::encode_response(&value).unwrap();
        let json_len = value.to_string().len();
        let enc = throughput(xml.len(), || {
            std::hint::black_box(xmlrpc::encode_response(std::hint::black_box(&value)).unwrap());
        });
        let dec = throughput(xml.len(), || {
            std::hint::black_box(xmlrpc::decode_response(std::hint::black_box(xml.as_bytes())).unwrap());
        });
        println!(
            "  {label:>5}: {} B of XML ({json_len} B of JSON): JSON→XML {enc:.0} MB/s, XML→JSON {dec:.0} MB/s",
            xml.len()
        );
    }

    // The legacy server and a relay in front of it, in this process.
    let legacy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let legacy_addr = legacy.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(tether_demo::cs::serve(legacy, Default::default(), Arc::default(), stop.clone()));
    let relay =
        tether_tests::Relay::with(|c| c.cs_upstream = Some(format!("http://{legacy_addr}/RPC2"))).await;

    const N: usize = 3000;
    let call = xmlrpc::encode_call("echo", &[small()]).unwrap();
    // Direct: login, then N calls on the same keep-alive connection.
    let mut direct = client(legacy_addr).await;
    post(&mut direct, "/RPC2", "text/xml", None, xmlrpc::encode_call("login", &[json!("bench")]).unwrap())
        .await;
    // Through the relay: JSON in, JSON out, over one keep-alive connection to the relay.
    let mut via = client(relay.addr).await;
    let token = login(&mut via).await;
    let json_call = json!({"method": "echo", "params": [small()]}).to_string();

    let (mut d, mut r) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for i in 0..2 * N {
        // Interleaved, so both paths see the same machine conditions.
        let t = Instant::now();
        if i % 2 == 0 {
            post(&mut direct, "/RPC2", "text/xml", None, call.clone()).await;
            d.push(t.elapsed());
        } else {
            post(&mut via, "/cs/call", "application/json", Some(&token), json_call.clone()).await;
            r.push(t.elapsed());
        }
    }
    d.sort();
    r.sort();
    println!("Gateway, {N} sequential calls each, small payload:");
    println!("  direct keep-alive XML-RPC: p50 {:?} p99 {:?}", percentile(&d, 0.5), percentile(&d, 0.99));
    println!("  through the relay (JSON):  p50 {:?} p99 {:?}", percentile(&r, 0.5), percentile(&r, 0.99));
    println!(
        "  added by the relay:        p50 {:?} p99 {:?}",
        percentile(&r, 0.5).saturating_sub(percentile(&d, 0.5)),
        percentile(&r, 0.99).saturating_sub(percentile(&d, 0.99))
    );
    relay.stop().await;

    // Cluster mode: log in on relay a, call through relay b, which forwards over Redis.
    if let Some(redis) = tether_tests::Redis::start() {
        let node = |name: &'static str| {
            let (upstream, url) = (format!("http://{legacy_addr}/RPC2"), redis.url.clone());
            tether_tests::Relay::with(move |c| {
                c.cs_upstream = Some(upstream);
                c.redis = Some(url);
                c.node_id = Some(name.into());
            })
        };
        let (a, b) = (node("a").await, node("b").await);
        let mut on_a = client(a.addr).await;
        let token = login(&mut on_a).await;
        let mut on_b = client(b.addr).await;
        let (mut own, mut fwd) = (Vec::with_capacity(N), Vec::with_capacity(N));
        for i in 0..2 * N {
            let t = Instant::now();
            if i % 2 == 0 {
                post(&mut on_a, "/cs/call", "application/json", Some(&token), json_call.clone()).await;
                own.push(t.elapsed());
            } else {
                post(&mut on_b, "/cs/call", "application/json", Some(&token), json_call.clone()).await;
                fwd.push(t.elapsed());
            }
        }
        own.sort();
        fwd.sort();
        println!("Cluster mode, {N} calls each on one session:");
        println!(
            "  on the session's relay:    p50 {:?} p99 {:?}",
            percentile(&own, 0.5),
            percentile(&own, 0.99)
        );
        println!(
            "  via another relay (Redis): p50 {:?} p99 {:?}",
            percentile(&fwd, 0.5),
            percentile(&fwd, 0.99)
        );
        a.stop().await;
        b.stop().await;
    }
    stop.cancel();
}
