//! The relay's HTTP API, as the CLI and the MCP server use it: one request per connection,
//! JSON in and out, and every way it can fail sorted into a [`Failure`] (docs/protocol.md,
//! "The HTTP API").

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

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
    pub async fn history_of(
        &self,
        limit: Option<u32>,
        har: bool,
        types: Option<&str>,
    ) -> Result<Value, Failure> {
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

/// Where the relay is: `http[s]://host[:port][/prefix]`, and for https what is trusted.
pub struct Relay {
    /// `host:port`, what is connected to.
    authority: String,
    /// The `Host` header: the authority less its scheme's default port.
    host: String,
    prefix: String,
    /// For `https://`: the connector (public roots plus `--cacert`) and the name the relay's
    /// certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Relay {
    /// The relay at `url`; for `https://`, trusting the public roots (webpki-roots) and the
    /// certificates in `cacert`. Names and certificates are always checked.
    pub fn parse(url: &str, cacert: Option<&Path>) -> Result<Relay, Failure> {
        let (rest, https) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else {
            return Err(Failure::Usage(format!("--relay {url:?} is not an http:// or https:// URL")));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(Failure::Usage(format!("--relay {url:?}: want http[s]://host[:port]")));
        }
        let default_port = if https { ":443" } else { ":80" };
        // A port is what follows the last `:` outside an IPv6 literal's brackets.
        let has_port = authority.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':')
        }) && !authority.ends_with(']');
        let authority = if has_port { authority.to_owned() } else { format!("{authority}{default_port}") };
        let host = authority.strip_suffix(default_port).unwrap_or(&authority).to_owned();
        let tls = if https {
            let name = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(name.to_owned())
                .map_err(|e| Failure::Usage(format!("--relay {url:?}: {name:?} is not a host name: {e}")))?;
            Some((connector(cacert)?, name))
        } else {
            if cacert.is_some() {
                return Err(Failure::Usage(format!(
                    "--cacert is for https:// relays, and --relay is {url:?}"
                )));
            }
            None
        };
        Ok(Relay { authority, host, prefix: prefix.to_owned(), tls })
    }

    /// What the request goes over: TCP, or TLS over it (handshake done, certificate checked).
    async fn connect(&self) -> Result<Box<dyn Stream>, Failure> {
        let unreachable =
            |e: &dyn std::fmt::Display| Failure::Unreachable(format!("{}: {e}", self.authority));
        let tcp = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(&self.authority))
            .await
            .map_err(|_| unreachable(&"connect timed out"))?
            .map_err(|e| unreachable(&e))?;
        let Some((tls, name)) = &self.tls else { return Ok(Box::new(tcp)) };
        let stream = tokio::time::timeout(CONNECT, tls.connect(name.clone(), tcp))
            .await
            .map_err(|_| unreachable(&"TLS handshake timed out"))?
            .map_err(|e| unreachable(&tls_failure(&e, name)))?;
        Ok(Box::new(stream))
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
        let stream = self.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let host = &self.host;
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

/// A connection to the relay, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS client: rustls with ring, trusting the public roots and the certificates in
/// `cacert` (a LAN relay's self-signed one), HTTP/1.1.
fn connector(cacert: Option<&Path>) -> Result<TlsConnector, Failure> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = cacert {
        let bad = |why: String| Failure::Usage(format!("--cacert {}: {why}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read it: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM file: {e}")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it (want PEM `-----BEGIN CERTIFICATE-----`)".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(format!("cannot trust it: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// What the CLI says of a self-signed certificate it was not given.
const UNTRUSTED: &str = "the relay's certificate is not trusted (unknown issuer): for a relay's own certificate, give it with --cacert FILE";

/// What a failed handshake says: in words for the two a user can fix (a certificate not
/// trusted, or not for this name), else rustls's own.
fn tls_failure(e: &std::io::Error, name: &ServerName<'_>) -> String {
    use rustls::CertificateError::{NotValidForName, NotValidForNameContext, UnknownIssuer};
    let name = name.to_str();
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(UnknownIssuer)) => UNTRUSTED.into(),
        Some(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
            format!("the relay's certificate is not valid for the name {name:?} (--relay)")
        }
        Some(rustls::Error::InvalidCertificate(other)) => {
            format!("the relay's certificate is not trusted: {other:?}")
        }
        _ => format!("TLS handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> Relay {
        Relay::parse(url, None).unwrap_or_else(|_| panic!("{url} parses"))
    }

    #[test]
    fn a_relay_url_gives_where_to_connect_the_host_header_and_the_name_to_check() {
        let r = parsed("http://relay.lan");
        assert_eq!(
            (r.authority.as_str(), r.host.as_str(), r.tls.is_none()),
            ("relay.lan:80", "relay.lan", true)
        );
        let r = parsed("https://relay.lan/tether/");
        assert_eq!(
            (r.authority.as_str(), r.host.as_str(), r.prefix.as_str()),
            ("relay.lan:443", "relay.lan", "/tether")
        );
        assert_eq!(r.tls.as_ref().map(|(_, n)| n.to_str().into_owned()).as_deref(), Some("relay.lan"));
        let r = parsed("https://127.0.0.1:8443");
        assert_eq!((r.authority.as_str(), r.host.as_str()), ("127.0.0.1:8443", "127.0.0.1:8443"));
        assert_eq!(r.tls.as_ref().map(|(_, n)| n.to_str().into_owned()).as_deref(), Some("127.0.0.1"));
        let r = parsed("https://[::1]");
        assert_eq!(r.authority, "[::1]:443");
        assert_eq!(r.tls.as_ref().map(|(_, n)| n.to_str().into_owned()).as_deref(), Some("::1"));
        assert_eq!(parsed("http://[::1]:8080").authority, "[::1]:8080");
    }

    #[test]
    fn other_schemes_and_a_cacert_for_plain_http_are_usage_errors() {
        for url in ["ftp://x", "relay.lan:8080", "https://", "http://user@x"] {
            assert!(matches!(Relay::parse(url, None), Err(Failure::Usage(_))), "{url}");
        }
        let cacert = Path::new("/nonexistent.pem");
        assert!(matches!(Relay::parse("http://x", Some(cacert)), Err(Failure::Usage(_))));
        match Relay::parse("https://x", Some(cacert)) {
            Err(Failure::Usage(msg)) => {
                assert!(msg.contains("--cacert /nonexistent.pem: cannot read"), "{msg}")
            }
            _ => panic!("an unreadable --cacert is a usage error"),
        }
    }
}
