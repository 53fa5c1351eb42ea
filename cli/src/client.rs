//! The relay's HTTP API, as the CLI and the MCP server use it: one request per connection,
//! JSON in and out, and every way it can fail sorted into a [`Failure`] (docs/protocol.md,
//! "The HTTP API").

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::time::Duration;

/// The relay's own default for `timeoutMs`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// How much longer than the request's timeout the client waits for the relay's answer.
const SLACK: Duration = Duration::from_secs(10);
/// How long connecting may take.
const CONNECT: Duration = Duration::from_secs(10);

/// Why a command stops, as an exit code and what it says on stderr.
pub enum Failure {
    /// Bad flags, bad JSON in an argument, an unreadable file: exit 2.
    Usage(String),
    /// The relay refused or failed: `{"status", "error": {"code", "message"}}`, exit 3.
    Relay(Value),
    /// The relay cannot be reached or did not answer in time: exit 4.
    Unreachable(String),
}

impl Failure {
    /// The failure as the API's error JSON (what `tether mcp` hands the agent).
    pub fn to_json(&self) -> Value {
        match self {
            Failure::Usage(msg) => json!({"error": {"code": "bad_request", "message": msg}}),
            Failure::Relay(v) => v.clone(),
            Failure::Unreachable(msg) => json!({"error": {"code": "unreachable", "message": msg}}),
        }
    }
}

/// One room of one relay, as the holder of its PC secret sees it.
pub struct Api {
    pub relay: Relay,
    /// `/api/rooms/{room}`, the room percent-encoded.
    pub base: String,
    pub secret: String,
}

impl Api {
    pub fn new(relay: Relay, room: &str, secret: &str) -> Api {
        Api { relay, base: format!("/api/rooms/{}", encode(room)), secret: secret.to_owned() }
    }

    /// How long to wait for the relay's answer to a request whose `timeoutMs` is `ms`.
    pub fn wait(ms: Option<u64>) -> Duration {
        Duration::from_millis(ms.unwrap_or(DEFAULT_TIMEOUT_MS)) + SLACK
    }

    /// `GET …/devices`.
    pub async fn devices(&self) -> Result<Value, Failure> {
        self.relay.send("GET", &format!("{}/devices", self.base), &self.secret, None, Api::wait(None)).await
    }

    /// `GET …/history[?format=har][&limit=N]`.
    pub async fn history(&self, limit: Option<u32>, har: bool) -> Result<Value, Failure> {
        self.history_of(limit, har, None).await
    }

    /// The same, of these row types only (`&type=…`, e.g. `post,call`).
    pub async fn history_of(&self, limit: Option<u32>, har: bool, types: Option<&str>) -> Result<Value, Failure> {
        let mut query = Vec::new();
        if let Some(t) = types {
            query.push(format!("type={t}"));
        }
        if har {
            query.push("format=har".to_owned());
        }
        if let Some(n) = limit {
            query.push(format!("limit={n}"));
        }
        let q = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        self.relay
            .send("GET", &format!("{}/history{q}", self.base), &self.secret, None, Api::wait(None))
            .await
    }

    /// `POST …/post` or `POST …/call` (`kind`) with `req` as the body, waiting as long as its
    /// `timeoutMs` asks.
    pub async fn request(&self, kind: &str, req: serde_json::Map<String, Value>) -> Result<Value, Failure> {
        let wait = Api::wait(req.get("timeoutMs").and_then(Value::as_u64));
        let path = format!("{}/{kind}", self.base);
        self.relay.send("POST", &path, &self.secret, Some(Value::Object(req)), wait).await
    }
}

/// A reply whose `error` is set (the device's own), or an `all` entry of type `error`; with
/// `all`, any such entry.
pub fn failed(v: &Value) -> bool {
    let is_error = |r: &Value| r["type"] == "error" || !r.get("error").is_none_or(Value::is_null);
    match v.get("replies").and_then(Value::as_array) {
        Some(replies) => replies.iter().any(is_error),
        None => is_error(v),
    }
}

/// Percent-encodes a path segment.
pub fn encode(s: &str) -> String {
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

/// Where the relay is: `http://host[:port][/prefix]`.
pub struct Relay {
    authority: String,
    prefix: String,
}

impl Relay {
    pub fn parse(url: &str) -> Result<Relay, Failure> {
        let rest = match url.strip_prefix("http://") {
            Some(rest) => rest,
            None if url.starts_with("https://") => {
                return Err(Failure::Usage("https:// relays are not supported yet: use http://".into()));
            }
            None => return Err(Failure::Usage(format!("--relay {url:?} is not an http:// URL"))),
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(Failure::Usage(format!("--relay {url:?}: want http://host[:port]")));
        }
        let authority =
            if authority.rsplit_once(':').is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit())) {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            };
        Ok(Relay { authority, prefix: prefix.to_owned() })
    }

    /// One request over a fresh connection; the answer's JSON on 2xx, else a `Relay` failure.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        secret: &str,
        body: Option<Value>,
        wait: Duration,
    ) -> Result<Value, Failure> {
        let unreachable =
            |e: &dyn std::fmt::Display| Failure::Unreachable(format!("{}: {e}", self.authority));
        let stream = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&self.authority))
            .await
            .map_err(|_| unreachable(&"connect timed out"))?
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let host = self.authority.strip_suffix(":80").unwrap_or(&self.authority);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header("host", host)
            .header("authorization", format!("Bearer {secret}"))
            .header("accept", "application/json");
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|e| Failure::Usage(format!("bad request: {e}")))?;
        let answer = async {
            let res = sender.send_request(req).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(wait, answer)
            .await
            .map_err(|_| unreachable(&"no answer in time"))?
            .map_err(|e| unreachable(&e))?;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return parsed.ok_or_else(|| {
                Failure::Relay(
                    json!({"error": {"code": "internal", "message": "the relay's answer is not JSON"}}),
                )
            });
        }
        Err(Failure::Relay(match parsed {
            Some(v) if v["error"]["code"].is_string() => {
                json!({"status": status.as_u16(), "error": v["error"]})
            }
            _ => json!({"status": status.as_u16(), "error": {
                "code": format!("http_{}", status.as_u16()),
                "message": String::from_utf8_lossy(&body).chars().take(200).collect::<String>(),
            }}),
        }))
    }
}
