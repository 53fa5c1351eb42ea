//! The legacy CS server: XML-RPC over HTTP/1.1 keep-alive, one user per connection.
//!
//! `login(user, password?)` binds `user` to the connection it arrived on; every other method on
//! a connection that has not logged in is a fault (401). Methods:
//!
//! | method | answer |
//! |---|---|
//! | `login(user, password?)` | `{user, connection}` |
//! | `whoami()` | the user of this connection |
//! | `echo(x)` | `x` |
//! | `counter()` | 1, 2, 3, … per connection: shows calls arrive one at a time, in order |
//! | `sleep(ms)` | `ms`, after that long |
//! | `types()` | a struct holding every XML-RPC type |
//! | `badXml()` | a malformed document |
//! | `fault(code, message)` | that fault |
//! | `logout()` | `true`, and the connection closes |
//!
//! With `idle_close`, a connection with no request for that long is closed, as legacy servers
//! do.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_relay::cs::xmlrpc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Close a connection idle for this long.
    pub idle_close: Option<Duration>,
    /// Print `call <connection> <method>` on stdout as each call arrives (the binary's
    /// `--log-calls`, so a test driving the process knows a call is under way).
    pub log_calls: bool,
    /// Answer each `login` only after this long: a slow legacy server (the tests of many
    /// logins at once).
    pub login_delay: Option<Duration>,
}

/// What a test can observe from outside.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub open: AtomicUsize,
    /// The most connections ever open at once.
    pub peak_open: AtomicUsize,
    /// Connections ever accepted.
    pub accepted: AtomicU64,
    /// Calls answered.
    pub calls: AtomicU64,
    /// `sleep` calls that ran to their end.
    pub slept: AtomicU64,
}

struct Conn {
    id: u64,
    user: Option<String>,
    counter: u64,
    last_request: Instant,
    busy: bool,
}

/// Serves until `stop` is cancelled; then every connection is closed.
pub async fn serve(listener: TcpListener, opts: Options, stats: Arc<Stats>, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let id = stats.accepted.fetch_add(1, Relaxed) + 1;
        let open = stats.open.fetch_add(1, Relaxed) + 1;
        stats.peak_open.fetch_max(open, Relaxed);
        let (stats, stop, opts) = (stats.clone(), stop.clone(), opts.clone());
        tokio::spawn(async move {
            let state = Arc::new(Mutex::new(Conn {
                id,
                user: None,
                counter: 0,
                last_request: Instant::now(),
                busy: false,
            }));
            let svc = {
                let (state, stats, opts) = (state.clone(), stats.clone(), opts.clone());
                service_fn(move |req| handle(req, state.clone(), stats.clone(), opts.clone()))
            };
            let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            let idle = opts.idle_close;
            loop {
                let wake = idle.map(|d| {
                    let s = state.lock().unwrap_or_else(|p| p.into_inner());
                    s.last_request + d
                });
                tokio::select! {
                    _ = conn.as_mut() => break,
                    () = stop.cancelled() => break,
                    () = async {
                        match wake {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let s = state.lock().unwrap_or_else(|p| p.into_inner());
                        if !s.busy && idle.is_some_and(|d| s.last_request.elapsed() >= d) {
                            break; // idle: close the connection
                        }
                    }
                }
            }
            stats.open.fetch_sub(1, Relaxed);
        });
    }
}

fn xml(body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<Conn>>,
    stats: Arc<Stats>,
    opts: Options,
) -> Result<Response<Full<Bytes>>, Infallible> {
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.busy = true;
        s.last_request = Instant::now();
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let resp = answer(&body, &state, &stats, &opts).await;
    stats.calls.fetch_add(1, Relaxed);
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.busy = false;
    s.last_request = Instant::now();
    Ok(resp)
}

async fn answer(body: &[u8], state: &Mutex<Conn>, stats: &Stats, opts: &Options) -> Response<Full<Bytes>> {
    let (method, params) = match xmlrpc::decode_call(body) {
        Ok(c) => c,
        Err(e) => return xml(xmlrpc::encode_fault(-32700, &format!("parse error: {e}"))),
    };
    let arg = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    let (user, conn) = {
        let s = state.lock().unwrap_or_else(|p| p.into_inner());
        (s.user.clone(), s.id)
    };
    if opts.log_calls {
        println!("call {conn} {method}");
    }
    if method != "login" && user.is_none() {
        return xml(xmlrpc::encode_fault(401, "not logged in on this connection"));
    }
    let value = match method.as_str() {
        "login" => {
            if let Some(delay) = opts.login_delay {
                tokio::time::sleep(delay).await;
            }
            let Some(name) = arg(0).as_str().map(str::to_owned) else {
                return xml(xmlrpc::encode_fault(400, "login(user, password)"));
            };
            if arg(1).as_str() == Some("wrong") {
                return xml(xmlrpc::encode_fault(403, "bad password"));
            }
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.user = Some(name.clone());
            json!({"user": name, "connection": s.id})
        }
        "whoami" => json!(user),
        "echo" => arg(0),
        "counter" => {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.counter += 1;
            json!(s.counter)
        }
        "sleep" => {
            let ms = arg(0).as_u64().unwrap_or(0).min(60_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            stats.slept.fetch_add(1, Relaxed);
            json!(ms)
        }
        "types" => json!({
            "int": 7, "i8": 9_000_000_000i64, "double": 2.5, "string": " spaced ", "bool": true,
            "nil": null, "base64": {"$base64": "aGk="}, "datetime": {"$datetime": "20261121T12:00:00"},
            "array": [1, "a", [false]], "struct": {"k": "v"},
        }),
        "badXml" => return xml("<methodResponse><params><param><value><int>1</value></param>".into()),
        "fault" => {
            return xml(xmlrpc::encode_fault(
                arg(0).as_i64().unwrap_or(1),
                arg(1).as_str().unwrap_or("fault"),
            ));
        }
        "logout" => {
            let mut r = xml(xmlrpc::encode_response(&json!(true)).unwrap_or_default());
            r.headers_mut().insert("connection", hyper::header::HeaderValue::from_static("close"));
            return r;
        }
        other => return xml(xmlrpc::encode_fault(-32601, &format!("unknown method {other}"))),
    };
    match xmlrpc::encode_response(&value) {
        Ok(x) => xml(x),
        Err(e) => xml(xmlrpc::encode_fault(500, &e.to_string())),
    }
}
