//! Helpers for Tether's end-to-end tests: relays on port 0 (in-process or as a real
//! `tether-relay` process), WebSocket clients that speak the room protocol, and a tiny HTTP
//! client. Every wait is bounded: a helper that waits too long panics and says what for.
//!
//! # Layout
//! - [`Relay`]: an in-process relay with its own temporary database.
//! - [`RelayProcess`]: the real binary, for restarts, SIGTERM and `kill -9`.
//! - [`Client`]: one room member over a real WebSocket.
//! - [`http_get`]: `GET` returning status, headers and body.
//! - [`Postgres`], [`Redis`]: servers of the test's own, on free ports, stopped by their pid.
//! - [`cert`]: self-signed certificates for the TLS tests (and the `test-cert` tool).
//!
//! One file of ~780 lines on purpose: every test binary includes this crate whole, and the
//! helpers call each other (a relay, its clients, the HTTP helpers they read it with).

pub mod cert;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tether_relay::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// An in-process relay on `127.0.0.1:0` with a fresh SQLite file.
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The temporary folder holding its database (kept for the relay's lifetime).
    pub dir: tempfile::TempDir,
}

impl Relay {
    /// A relay with default settings.
    pub async fn start() -> Relay {
        Relay::with(|_| {}).await
    }

    /// A relay whose config `tweak` adjusts.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Relay {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::defaults();
        config.db = format!("sqlite://{}", dir.path().join("tether.db").display());
        config.www = Some(dir.path().join("www"));
        // No SDK package unless a test gives one (reading the built one would cost every relay).
        config.sdk = Some(dir.path().join("sdk"));
        tweak(&mut config);
        Relay::on(config, dir).await
    }

    async fn on(config: Config, dir: tempfile::TempDir) -> Relay {
        // `TETHER_TEST_LOG=debug cargo test …` shows the in-process relays' logs.
        if let Ok(filter) = std::env::var("TETHER_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let task = tokio::spawn(async move {
            tether_relay::run(listener, config, async move { signal.cancelled().await })
                .await
                .expect("relay ran");
        });
        Relay { addr, stop, task, dir }
    }

    /// `ws://addr/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Joins as `role` and returns the member (its `welcome` already read).
    pub async fn join(&self, room: &str, role: &str, secret: &str) -> Client {
        Client::join(&self.ws_url(), room, role, secret).await
    }

    /// Shuts it down gracefully and waits until it has.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("relay stopped in time").expect("relay task");
    }
}

/// The `tether-relay` binary, built by `cargo build -p tether-relay` (the test script does
/// that first). `TETHER_RELAY_BIN` overrides where it is looked for.
pub fn relay_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TETHER_RELAY_BIN") {
        return PathBuf::from(p);
    }
    built_binary("tether-relay", "tether-relay")
}

/// A binary of this workspace, built next to the tests (`target/<profile>/<name>`).
pub fn built_binary(name: &str, package: &str) -> PathBuf {
    // tests run from target/<profile>/deps/<test>; the binary is in target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {package}` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Spawns `cmd` with stdout piped, and waits until it prints where it listens
/// (`… on http://ADDR/…`, or `https://` with TLS). Gives the child, the address and the rest of its stdout, by line.
async fn spawn_listening(
    mut cmd: tokio::process::Command,
    what: &str,
) -> (tokio::process::Child, SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = log.recv().await {
            if let Some(rest) = line.split("on http://").nth(1).or_else(|| line.split("on https://").nth(1)) {
                let addr = rest.split('/').next().unwrap_or_default();
                return addr.parse::<SocketAddr>().expect("address in the startup line");
            }
        }
        panic!("{what} exited before saying where it listens");
    })
    .await
    .unwrap_or_else(|_| panic!("{what} started in time"));
    (child, addr, log)
}

/// Sends `kill -<sig>` to `child` and waits for it to exit.
async fn signal_child(child: &mut tokio::process::Child, sig: &str) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} failed");
    tokio::time::timeout(WAIT, child.wait()).await.expect("exited in time").expect("wait")
}

/// The demo legacy CS server (`tether-legacy-cs --log-calls`) as a real process.
pub struct LegacyCsProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: tokio::process::Child,
    log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl LegacyCsProcess {
    /// Starts it on `listen` and waits until it listens.
    pub async fn start(listen: &str) -> LegacyCsProcess {
        let mut cmd = tokio::process::Command::new(built_binary("tether-legacy-cs", "tether-demo"));
        cmd.arg("--listen").arg(listen).arg("--log-calls");
        let (child, addr, log) = spawn_listening(cmd, "tether-legacy-cs").await;
        LegacyCsProcess { addr, child, log }
    }

    /// Waits (bounded) until it has received a call of `method`.
    pub async fn wait_call(&mut self, method: &str) {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.log.recv().await {
                if line.starts_with("call ") && line.ends_with(&format!(" {method}")) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the CS server never received {method}");
    }

    /// Sends a signal (`"KILL"`, `"TERM"`) and waits for the process to exit.
    pub async fn signal(mut self, sig: &str) -> std::process::ExitStatus {
        signal_child(&mut self.child, sig).await
    }
}

/// A real relay process.
pub struct RelayProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: tokio::process::Child,
    /// What it printed, line by line, as it prints.
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl RelayProcess {
    /// Starts `tether-relay --listen <listen> --db sqlite://<db>` plus `args`, and waits
    /// until it says where it listens.
    pub async fn start(listen: &str, db: &Path, args: &[&str]) -> RelayProcess {
        RelayProcess::start_logging(listen, db, args, "info").await
    }

    /// Like [`RelayProcess::start`], with `RUST_LOG=<log>`.
    pub async fn start_logging(listen: &str, db: &Path, args: &[&str], log: &str) -> RelayProcess {
        let mut cmd = tokio::process::Command::new(relay_binary());
        cmd.arg("--listen")
            .arg(listen)
            .arg("--db")
            .arg(format!("sqlite://{}", db.display()))
            .args(args)
            .env("RUST_LOG", log);
        let (child, addr, log) = spawn_listening(cmd, "tether-relay").await;
        RelayProcess { addr, child, log }
    }

    /// Like [`RelayProcess::start`], under an open-file limit of `nofile` (soft and hard, set
    /// by `sh`'s `ulimit -n` before it execs the relay, so the pid is the relay's).
    pub async fn start_with_open_files(listen: &str, db: &Path, args: &[&str], nofile: u32) -> RelayProcess {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(relay_binary())
            .arg("--listen")
            .arg(listen)
            .arg("--db")
            .arg(format!("sqlite://{}", db.display()))
            .args(args)
            .env("RUST_LOG", "info");
        let (child, addr, log) = spawn_listening(cmd, "tether-relay").await;
        RelayProcess { addr, child, log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// `ws://addr/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Sends a signal (`"TERM"`, `"KILL"`) and waits for the process to exit.
    pub async fn signal(mut self, sig: &str) -> std::process::ExitStatus {
        signal_child(&mut self.child, sig).await
    }

    /// Resident memory of the process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One room member over a real WebSocket.
pub struct Client {
    ws: Ws,
    /// The `welcome` body.
    pub welcome: Value,
    /// The member id.
    pub member: String,
    /// The resume token.
    pub resume: String,
}

/// How a join that was refused ended.
#[derive(Debug)]
pub struct Refused {
    /// The `error` frame's body.
    pub error: Value,
    /// The close frame's code, if one came.
    pub close_code: Option<u16>,
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// Joins `room` as `role` with `secret`; panics if refused.
    pub async fn join(url: &str, room: &str, role: &str, secret: &str) -> Client {
        let q = format!("room={}&role={role}&secret={}", enc(room), enc(secret));
        Client::join_query(url, &q).await.unwrap_or_else(|r| panic!("join refused: {r:?}"))
    }

    /// Joins with a raw query string; `Err` with the error and close code if refused.
    pub async fn join_query(url: &str, query: &str) -> Result<Client, Refused> {
        let (mut ws, _) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(format!("{url}?{query}")))
                .await
                .expect("connect in time")
                .expect("WebSocket handshake");
        let first = next_text(&mut ws).await.expect("a first frame");
        match first["type"].as_str() {
            Some("welcome") => {
                let welcome = first["msg"].clone();
                Ok(Client {
                    member: welcome["member"].as_str().expect("member").to_owned(),
                    resume: welcome["resume"].as_str().expect("resume").to_owned(),
                    welcome,
                    ws,
                })
            }
            Some("error") => {
                let close_code = wait_close(&mut ws).await;
                Err(Refused { error: first["msg"].clone(), close_code })
            }
            other => panic!("unexpected first frame {other:?}: {first}"),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: Vec<u8>) {
        self.ws.send(Message::binary(data)).await.expect("send");
    }

    /// The next text frame, parsed; panics if none comes within [`WAIT`] or the socket ends.
    pub async fn next(&mut self) -> Value {
        next_text(&mut self.ws).await.unwrap_or_else(|| panic!("{}: socket ended while waiting", self.member))
    }

    /// The next text frame, or `None` once the socket has ended.
    pub async fn try_next(&mut self) -> Option<Value> {
        next_text(&mut self.ws).await
    }

    /// The next frame that is not a `devices` push (those come whenever presence changes).
    pub async fn next_skipping_devices(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] != "devices" {
                return v;
            }
        }
    }

    /// The next frame of type `ty`, skipping `devices` pushes; panics on any other type.
    pub async fn expect(&mut self, ty: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == ty {
                return v;
            }
            assert_eq!(v["type"], "devices", "{}: expected {ty}, got {v}", self.member);
        }
    }

    /// Reads `devices` pushes until one satisfies `pred`; returns its member list.
    pub async fn devices_until(&mut self, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        loop {
            let v = self.next().await;
            if v["type"] == "devices" {
                let members = v["msg"]["members"].as_array().expect("members").clone();
                if pred(&members) {
                    return members;
                }
            } else {
                panic!("{}: expected devices, got {v}", self.member);
            }
        }
    }

    /// The next `error` frame's body and id, skipping `devices` pushes.
    pub async fn expect_error(&mut self) -> (Value, Value) {
        let v = self.expect("error").await;
        (v["msg"].clone(), v["id"].clone())
    }

    /// Closes cleanly (close frame, then waits for the relay's close).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Drops the TCP connection without a close frame, as a phone losing its network does.
    pub fn drop_connection(self) {
        drop(self.ws);
    }

    /// Reads until the relay closes the socket; returns the close code.
    pub async fn wait_close(mut self) -> Option<u16> {
        wait_close(&mut self.ws).await
    }

    /// Reads until the relay closes the socket, collecting the text frames that came first.
    pub async fn drain_until_close(mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        let code = tokio::time::timeout(WAIT, async {
            while let Some(msg) = self.ws.next().await {
                match msg {
                    Ok(Message::Text(t)) => frames.push(serde_json::from_str(t.as_str()).expect("JSON")),
                    Ok(Message::Close(c)) => return c.map(|c: CloseFrame| u16::from(c.code)),
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            None
        })
        .await
        .expect("relay closed the socket in time");
        (frames, code)
    }

    /// Joins again with this member's resume token.
    pub async fn rejoin(url: &str, room: &str, role: &str, secret: &str, resume: &str) -> Client {
        let q = format!("room={}&role={role}&secret={}&resume={}", enc(room), enc(secret), enc(resume));
        Client::join_query(url, &q).await.unwrap_or_else(|r| panic!("rejoin refused: {r:?}"))
    }
}

async fn next_text(ws: &mut Ws) -> Option<Value> {
    tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("relay sends JSON"));
                }
                Ok(Message::Close(c)) => {
                    // Said here so that a test failing on an ended socket shows why it ended.
                    eprintln!("socket closed by the relay: {c:?}");
                    return None;
                }
                Err(e) => {
                    eprintln!("socket failed: {e}");
                    return None;
                }
                Ok(_) => {}
            }
        }
        None
    })
    .await
    .expect("a frame within the wait")
}

async fn wait_close(ws: &mut Ws) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(c)) => return c.map(|c| u16::from(c.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("socket closed within the wait")
}

/// A post body in the seed's shape.
pub fn post(id: &str, url: &str) -> Value {
    json!({"type": "post", "id": id, "msg": {"url": url}})
}

/// The reply a well-behaved device sends to a request frame it received.
pub fn reply_to(request: &Value, result: Value) -> Value {
    let ty = if request["type"] == "post" { "postCb" } else { "callCb" };
    let method = if request["type"] == "post" { json!("post") } else { request["msg"]["method"].clone() };
    json!({"type": ty, "id": request["id"], "msg": {
        "method": method, "result": result, "cookie": "uid=42", "appInfo": {"app": "news", "v": "7.2"}
    }})
}

/// `GET http://addr{path}` over a fresh connection: status, lower-cased headers, body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_get_with(addr, path, &[]).await
}

/// `GET http://addr{path}` with these extra headers: status, lower-cased headers, body.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("response in time").expect("read");
    let text = String::from_utf8(buf).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header/body split");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let body = if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, headers, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `GET http://addr{path}` over a fresh connection, for a relay that may refuse it: the
/// status, or `None` if the connection closed (or nothing came within [`WAIT`]) without one.
pub async fn try_http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    // A reset after part of the answer still leaves its status line in `buf`.
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// `GET` and parse the body as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = http_get(addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}

/// `POST http://addr{path}` with these extra headers, over a fresh connection: status,
/// lower-cased headers, body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    s.write_all(body).await.expect("write body");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.expect("response in time").expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header/body split");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, headers, body)
}

/// `POST` a JSON body; the answer parsed as JSON.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Value, Vec<(String, String)>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, head, text) = http_post(addr, path, &headers, body.to_string().as_bytes()).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
    (status, v, head)
}

/// Polls `/metrics` until `line` (e.g. `"tether_cs_sessions 0"`) appears; panics after [`WAIT`].
pub async fn wait_metric(addr: SocketAddr, line: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let m = http_get(addr, "/metrics").await.2;
        if m.lines().any(|l| l == line) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "/metrics never showed {line:?}:\n{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metric line starting `name ` (e.g. `tether_conns_open`, or
/// `tether_http_timeouts_total{reason="head"}`) on `/metrics`, if there is one.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let text = http_get(addr, "/metrics").await.2;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A PostgreSQL server of the test's own: a fresh data folder, a free port, trust auth on
/// 127.0.0.1, stopped (by its pid) when dropped.
pub struct Postgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts one; `None` (with the reason printed) where PostgreSQL is not installed.
    pub fn start() -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            return skip("PostgreSQL is not installed here (apt-get install postgresql)");
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        // PostgreSQL refuses to run as root: run it as the postgres user the package created.
        let as_pg = |program: &Path| {
            let mut c;
            if root {
                c = std::process::Command::new("setpriv");
                c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
            } else {
                c = std::process::Command::new(program);
            }
            c
        };
        if root {
            let ok = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status()
                .map(|s| s.success());
            assert_eq!(ok.ok(), Some(true), "chown the temp dir to postgres");
        }
        let init = as_pg(&bin.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run initdb");
        assert!(init.success(), "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = as_pg(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let pg = Postgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), child, _dir: dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::process::Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Some(pg);
            }
            assert!(std::time::Instant::now() < deadline, "PostgreSQL did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test needing a service that is not installed: skipped with the reason printed, or failed
/// where `TETHER_REQUIRE_SERVICES=1` (`scripts/test` sets it after installing them, so CI never
/// passes by skipping).
fn skip<T>(why: &str) -> Option<T> {
    if std::env::var_os("TETHER_REQUIRE_SERVICES").is_some_and(|v| v == "1") {
        panic!("{why}, and TETHER_REQUIRE_SERVICES=1");
    }
    eprintln!("{why}: skipping");
    None
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (its backends end with it).
        let _ = std::process::Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// A `redis-server` of the test's own on a free port (no persistence), stopped by its pid when
/// dropped.
pub struct Redis {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    child: std::process::Child,
}

impl Redis {
    /// Starts one; `None` (with the reason printed) where Redis is not installed.
    pub fn start() -> Option<Redis> {
        // A port found free can be taken again before redis-server binds it (tests run in
        // parallel): a server that is not ours answering there means try another port.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let redis = Redis::start_on(port)?;
            if redis.answers_as_itself() {
                return Some(redis);
            }
        }
        panic!("redis-server: no free port after 5 tries");
    }

    /// Whether the server answering on its port is this one (its pid, from `INFO server`).
    fn answers_as_itself(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", self.port())) else { return false };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
        if tcp.write_all(b"INFO server\r\n").is_err() {
            return false;
        }
        let (mut text, mut buf) = (String::new(), [0u8; 4096]);
        while !text.contains("process_id:") || !text[text.find("process_id:").unwrap()..].contains('\n') {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return false,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let pid = text.split("process_id:").nth(1).and_then(|t| t.lines().next()).map(str::trim);
        pid == Some(self.child.id().to_string().as_str())
    }

    /// Its pid (to stop it with SIGSTOP, as a hung Redis).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL")
    }

    /// Starts one on `port` (to restart a stopped one where it was).
    pub fn start_on(port: u16) -> Option<Redis> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return skip("redis-server is not installed here (apt-get install redis-server)");
        };
        let redis = Redis { url: format!("redis://127.0.0.1:{port}"), child };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
