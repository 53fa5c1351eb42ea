//! The relay's own TLS (#21: `--tls-cert`, `--tls-key`) and the `tether` CLI over https: a
//! device joined over wss answers a `post` sent by the CLI with `--cacert`; without it, or for
//! another name, the CLI refuses (exit 4); a plain-HTTP client on the TLS port gets no HTTP
//! answer and gives its slot back; a silent client is closed after the header timeout; at the
//! connection cap `/healthz` still answers over TLS; the relay's own origin is https only and
//! the CS cookie `Secure`; and the startup errors name the flag, the file and what is wrong.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_tests::{Relay, WAIT, built_binary, cert, enc, relay_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "tls-secret-0123456789abcdef";

/// A relay over TLS with the certificate in `dir` (header timeout `header_ms`).
async fn tls_relay(dir: &Path, header_ms: u64) -> Relay {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    Relay::with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.header_timeout_ms = header_ms;
    })
    .await
}

/// TLS to `addr`, trusting only `cert`, checking the name `name`.
async fn tls_connect(addr: SocketAddr, cert: &Path, name: &str) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cert).expect("the test certificate")).expect("a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("a server name");
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// `GET path` over https (one request, `Connection: close`): the status and the body.
async fn https_get(addr: SocketAddr, cert: &Path, path: &str) -> (u16, String) {
    let (status, _, body) = https_request(addr, cert, &format!("GET {path}"), &[], "").await;
    (status, body)
}

/// `line` (`METHOD PATH`) with `headers` and `body` over https, one request: the status, the
/// head and the body.
async fn https_request(
    addr: SocketAddr,
    cert: &Path,
    line: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut tls = tls_connect(addr, cert, "127.0.0.1").await.expect("TLS handshake");
    let mut req = format!("{line} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut raw)).await.expect("answered in time").unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a status line: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

/// The value of the `/metrics` line starting `name ` (read over https).
async fn metric(addr: SocketAddr, cert: &Path, name: &str) -> Option<u64> {
    let text = https_get(addr, cert, "/metrics").await.1;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `/metrics` over https until `name` reads `want`; panics after [`WAIT`].
async fn wait_metric(addr: SocketAddr, cert: &Path, name: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = metric(addr, cert, name).await;
        if now == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never read {want} (last {now:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one run of `tether` ended with.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tether --relay URL --room R --secret S ARGS…` (no env of the caller's).
fn tether(relay: &str, room: &str, args: &[&str]) -> tokio::task::JoinHandle<Run> {
    let mut cmd = tokio::process::Command::new(built_binary("tether", "tether-cli"));
    for var in ["TETHER_RELAY", "TETHER_ROOM", "TETHER_SECRET", "TETHER_CACERT"] {
        cmd.env_remove(var);
    }
    cmd.args(["--relay", relay, "--room", room, "--secret", SECRET])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let out =
            tokio::time::timeout(WAIT, cmd.output()).await.expect("tether ended in time").expect("runs");
        Run {
            code: out.status.code().expect("an exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

/// A device of `room` over wss, its `welcome` read and its name said.
async fn wss_device(
    addr: SocketAddr,
    cert: &Path,
    room: &str,
    name: &str,
) -> (tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>, String) {
    let tls = tls_connect(addr, cert, "127.0.0.1").await.expect("TLS handshake");
    let url = format!("wss://{addr}/ws?room={}&role=device&secret={}", enc(room), enc(SECRET));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tls))
        .await
        .expect("upgraded in time")
        .expect("the WebSocket handshake over TLS");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let member = welcome["msg"]["member"].as_str().expect("a member id").to_owned();
    let hello = json!({"type": "hello", "msg": {"name": name}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    (ws, member)
}

/// The next JSON text frame, skipping `devices` and pings.
async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>) -> Value {
    loop {
        let msg =
            tokio::time::timeout(WAIT, ws.next()).await.expect("a frame in time").expect("open").unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            if v["type"] != "devices" {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn the_cli_with_cacert_drives_a_device_joined_over_wss() {
    // The certificate comes from the test-cert tool, as the Chromium tests get theirs.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_test-cert")).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let cert = dir.path().join("cert.pem");
    assert_eq!(made["cert"], cert.to_str().unwrap());
    assert_eq!(made["spki"].as_str().map(str::len), Some(44), "base64 of 32 bytes: {made}");

    let relay = tls_relay(dir.path(), 10_000).await;
    let (status, body) = https_get(relay.addr, &cert, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["tls"], true, "{body}");

    let (mut dev, member) = wss_device(relay.addr, &cert, "tls", "Pixel 8").await;
    let url = format!("https://127.0.0.1:{}", relay.addr.port());
    let cacert = cert.to_str().unwrap();
    let run = tether(&url, "tls", &["--cacert", cacert, "devices"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let members: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(members["members"][0]["id"], member.as_str(), "{members}");

    let pending = tether(&url, "tls", &["--cacert", cacert, "post", "https://api.example/v1/me"]);
    let req = next_json(&mut dev).await;
    assert_eq!(
        (req["type"].as_str(), req["msg"]["url"].as_str()),
        (Some("post"), Some("https://api.example/v1/me"))
    );
    let reply = tether_tests::reply_to(&req, json!({"status": 200, "body": {"uid": 42}}));
    dev.send(Message::text(reply.to_string())).await.unwrap();
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reply: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        (reply["deviceName"].as_str(), &reply["result"]["body"]["uid"]),
        (Some("Pixel 8"), &json!(42))
    );

    // TETHER_CACERT does what --cacert does; `localhost` is one of the certificate's names.
    let mut cmd = tokio::process::Command::new(built_binary("tether", "tether-cli"));
    let local = format!("https://localhost:{}", relay.addr.port());
    let out = cmd
        .env("TETHER_CACERT", cacert)
        .args(["--relay", &local, "--room", "tls", "--secret", SECRET, "devices"])
        .output();
    let out = tokio::time::timeout(WAIT, out).await.expect("tether ended in time").unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    relay.stop().await;
}

#[tokio::test]
async fn the_cli_refuses_an_untrusted_certificate_and_another_hosts() {
    let dir = tempfile::tempdir().unwrap();
    cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let relay = tls_relay(dir.path(), 10_000).await;
    let url = format!("https://127.0.0.1:{}", relay.addr.port());

    let run = tether(&url, "tls", &["devices"]).await.unwrap();
    assert_eq!(run.code, 4, "without --cacert: {}", run.stderr);
    assert!(
        run.stderr.contains("certificate is not trusted") && run.stderr.contains("--cacert"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    // A certificate trusted, but for another name than the one in --relay.
    let other = tempfile::tempdir().unwrap();
    cert::write(other.path(), &["relay.example"]).unwrap();
    let elsewhere = tls_relay(other.path(), 10_000).await;
    let cacert = other.path().join("cert.pem");
    let url = format!("https://127.0.0.1:{}", elsewhere.addr.port());
    let run = tether(&url, "tls", &["--cacert", cacert.to_str().unwrap(), "devices"]).await.unwrap();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains(r#"not valid for the name \"127.0.0.1\""#), "{}", run.stderr);

    // Plain http:// to a TLS port is no answer either (the relay speaks only TLS there).
    let run = tether(&format!("http://{}", relay.addr), "tls", &["devices"]).await.unwrap();
    assert_eq!(run.code, 4, "{}", run.stderr);
    relay.stop().await;
    elsewhere.stop().await;
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer_and_gives_its_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let relay = tls_relay(dir.path(), 10_000).await;
    let cert = dir.path().join("cert.pem");
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut raw = Vec::new();
    // Closed by the relay at once (well before the 10 s header timeout).
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the relay closed the connection");
    assert!(!raw.starts_with(b"HTTP/"), "an HTTP answer: {}", String::from_utf8_lossy(&raw));
    assert_eq!(metric(relay.addr, &cert, "tether_tls_handshake_failures_total").await, Some(1));
    // The only connection still open is the one asking.
    wait_metric(relay.addr, &cert, "tether_conns_open", 1).await;
    relay.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_healthz_still_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let made = cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let (cert, key) = (made.cert.clone(), made.key.clone());
    let relay = Relay::with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.max_conns = Some(1);
    })
    .await;
    // The one slot, held by a TLS connection that asks nothing.
    let _held = tls_connect(relay.addr, &made.cert, "127.0.0.1").await.expect("TLS handshake");
    // Past the cap: the overflow connections do their handshake too, and answer a monitor.
    let (status, body) = https_get(relay.addr, &made.cert, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = https_get(relay.addr, &made.cert, "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("at_capacity"), "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_never_starts_the_handshake_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let relay = tls_relay(dir.path(), 300).await;
    let cert = dir.path().join("cert.pem");
    let start = Instant::now();
    let mut tcp = TcpStream::connect(relay.addr).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut raw)).await.expect("closed in time").ok();
    let held = start.elapsed();
    assert!(held >= Duration::from_millis(300) && held < Duration::from_secs(3), "held {held:?}");
    assert!(raw.is_empty());
    assert_eq!(metric(relay.addr, &cert, r#"tether_http_timeouts_total{reason="tls"}"#).await, Some(1));
    assert_eq!(metric(relay.addr, &cert, r#"tether_http_timeouts_total{reason="head"}"#).await, Some(0));
    assert_eq!(metric(relay.addr, &cert, "tether_tls_handshake_failures_total").await, Some(0));
    wait_metric(relay.addr, &cert, "tether_conns_open", 1).await;
    relay.stop().await;
}

/// `tether-relay ARGS…` expected to fail at startup: its stderr.
async fn startup_error(args: &[&std::ffi::OsStr]) -> String {
    let db = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(relay_binary());
    for var in ["TETHER_TLS_CERT", "TETHER_TLS_KEY"] {
        cmd.env_remove(var);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", db.path().join("t.db").display()))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WAIT, cmd.output()).await.expect("exited in time").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started: {stdout}");
    assert!(!stdout.contains(" on http"), "said it listens: {stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn unusable_tls_flags_and_files_stop_the_start_saying_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let made = cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let other = tempfile::tempdir().unwrap();
    let foreign = cert::write(other.path(), &cert::LOCAL_NAMES).unwrap();
    let (cert, key) = (made.cert.as_os_str(), made.key.as_os_str());
    let flag = |f: &'static str| std::ffi::OsStr::new(f);

    let err = startup_error(&[flag("--tls-cert"), cert]).await;
    assert!(err.contains("--tls-key"), "only --tls-cert: {err}");
    let err = startup_error(&[flag("--tls-key"), key]).await;
    assert!(err.contains("--tls-cert"), "only --tls-key: {err}");

    let missing = dir.path().join("nope.pem");
    let err = startup_error(&[flag("--tls-cert"), missing.as_os_str(), flag("--tls-key"), key]).await;
    assert!(err.contains(&format!("--tls-cert {}: cannot read it", missing.display())), "{err}");

    let err = startup_error(&[flag("--tls-cert"), cert, flag("--tls-key"), cert]).await;
    assert!(err.contains(&format!("--tls-key {}: no private key in it", made.cert.display())), "{err}");
    let err = startup_error(&[flag("--tls-cert"), key, flag("--tls-key"), key]).await;
    assert!(err.contains(&format!("--tls-cert {}: no certificate in it", made.key.display())), "{err}");

    let err = startup_error(&[flag("--tls-cert"), cert, flag("--tls-key"), foreign.key.as_os_str()]).await;
    assert!(err.contains("the key is not the certificate's"), "another certificate's key: {err}");
}

#[tokio::test]
async fn over_tls_the_own_origin_is_https_only_and_the_cs_cookie_is_secure() {
    let legacy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}/RPC2", legacy.local_addr().unwrap());
    let stats = Arc::new(tether_demo::cs::Stats::default());
    let stop = tokio_util::sync::CancellationToken::new();
    let legacy = tokio::spawn(tether_demo::cs::serve(legacy, Default::default(), stats, stop.clone()));
    let dir = tempfile::tempdir().unwrap();
    let made = cert::write(dir.path(), &cert::LOCAL_NAMES).unwrap();
    let (cert, key) = (made.cert.clone(), made.key.clone());
    let relay = Relay::with(|c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.cs_upstream = Some(upstream);
    })
    .await;
    let login = json!({"method": "login", "params": ["quinn"]}).to_string();
    let json_type = ("Content-Type", "application/json");
    let secure_cookie = |head: &str| {
        head.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("set-cookie: tether_cs=") && l.contains("; Secure"))
    };
    let own = format!("https://{}", relay.addr);
    let (status, head, body) =
        https_request(relay.addr, &made.cert, "POST /cs/login", &[json_type, ("Origin", &own)], &login).await;
    assert_eq!(status, 200, "{body}");
    assert!(secure_cookie(&head), "{head}");
    // No X-Forwarded-Proto, no Origin: the relay knows it serves https itself.
    let (status, head, body) =
        https_request(relay.addr, &made.cert, "POST /cs/login", &[json_type], &login).await;
    assert_eq!(status, 200, "{body}");
    assert!(secure_cookie(&head), "{head}");
    // A page at http://the-same-host:port is not the relay's (no plain HTTP is served there).
    let plain = format!("http://{}", relay.addr);
    let (status, _, body) =
        https_request(relay.addr, &made.cert, "POST /cs/login", &[json_type, ("Origin", &plain)], &login)
            .await;
    assert_eq!(status, 403, "{body}");
    relay.stop().await;
    stop.cancel();
    legacy.await.unwrap();
}
