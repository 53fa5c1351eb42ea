//! One logged-in user: one keep-alive HTTP/1.1 connection to the legacy server, owned by one
//! task that sends the session's calls over it one at a time, in the order they were queued.
//!
//! The session ends when the upstream closes the connection (logout, idle close, server down),
//! when it is closed here (logout, idle timeout, a call that timed out), and never silently
//! reconnects: a new connection would not be logged in.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the legacy server is, from `--cs-upstream http://host:port/path`.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` to connect to.
    pub addr: String,
    /// The `Host` header.
    pub authority: String,
    /// The request path.
    pub path: String,
}

impl Upstream {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--cs-upstream must be http://host:port/path, not {url:?}"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("--cs-upstream {url:?} has no host"));
        }
        let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Upstream { addr, authority: authority.to_owned(), path: path.to_owned() })
    }
}

/// Why a call got no answer from upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallError {
    /// The connection is gone; the session with it.
    #[error("the CS server closed this session's connection")]
    Lost,
    /// No answer in time; the connection is closed (its state is unknown).
    #[error("the CS server did not answer within {0} ms; the session was closed")]
    Timeout(u64),
    /// The answer was larger than allowed.
    #[error("the CS server's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The connection could not be made (the detail, which names the upstream's address, is
    /// for the log, not for the browser).
    #[error("cannot connect to the CS server")]
    Connect(String),
    /// A transport error (the detail is for the log).
    #[error("talking to the CS server failed")]
    Io(String),
}

/// The upstream's answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

struct Job {
    body: Bytes,
    content_type: String,
    reply: oneshot::Sender<Result<Answer, CallError>>,
}

/// A handle on a session's task.
pub struct Session {
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
    close: CancellationToken,
    /// When it was last used, ms since the epoch (for the idle timeout).
    pub last_used: AtomicU64,
    /// When it was opened, ms since the epoch (for the age limit).
    pub opened_ms: u64,
}

/// Why a call could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Submit {
    /// The session's queue is full.
    Busy,
    /// The session has ended.
    Lost,
}

/// Limits a session works within.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls queued per session.
    pub queue: usize,
    /// How long one call may take.
    pub timeout: Duration,
    /// Largest answer.
    pub max_answer: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl Session {
    /// Opens a new connection to `upstream` and starts the session's task on `tasks` (so that
    /// shutdown can wait for it). `ended` runs once, when the session's connection is gone.
    pub async fn open(
        upstream: &Upstream,
        limits: Limits,
        tasks: &TaskTracker,
        ended: impl FnOnce() + Send + 'static,
    ) -> Result<Session, CallError> {
        let tcp = tokio::time::timeout(limits.connect_timeout, TcpStream::connect(&upstream.addr))
            .await
            .map_err(|_| CallError::Connect(format!("connecting to {} timed out", upstream.addr)))?
            .map_err(|e| CallError::Connect(format!("cannot connect to {}: {e}", upstream.addr)))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp))
            .await
            .map_err(|e| CallError::Connect(e.to_string()))?;
        let (jobs, rx) = mpsc::channel(limits.queue.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let close = CancellationToken::new();
        let task = Task { upstream: upstream.clone(), limits, alive: alive.clone(), close: close.clone() };
        tasks.spawn(async move {
            task.run(sender, conn, rx).await;
            ended();
        });
        let now = crate::now_ms();
        Ok(Session { jobs, alive, close, last_used: AtomicU64::new(now), opened_ms: now })
    }

    /// Whether the connection is still there.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Relaxed)
    }

    /// Queues a call; the answer comes on the returned channel. The call runs to its end even
    /// if nobody waits for the answer any more (a browser that went away does not break the
    /// connection mid-request).
    pub fn submit(
        &self,
        body: Bytes,
        content_type: &str,
    ) -> Result<oneshot::Receiver<Result<Answer, CallError>>, Submit> {
        if !self.is_alive() {
            return Err(Submit::Lost);
        }
        self.last_used.store(crate::now_ms(), Relaxed);
        let (reply, answer) = oneshot::channel();
        let job = Job { body, content_type: content_type.to_owned(), reply };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(answer),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Submit::Busy),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Submit::Lost),
        }
    }

    /// Ends the session: what is queued still runs, then the connection closes.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// Ends the session now, dropping the connection.
    pub fn abort(&self) {
        self.alive.store(false, Relaxed);
        self.close.cancel();
    }
}

struct Task {
    upstream: Upstream,
    limits: Limits,
    alive: Arc<AtomicBool>,
    close: CancellationToken,
}

impl Task {
    async fn run(
        &self,
        mut sender: http1::SendRequest<Full<Bytes>>,
        conn: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
        mut rx: mpsc::Receiver<Job>,
    ) {
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            let job = tokio::select! {
                biased;
                _ = &mut conn => break, // upstream closed the connection
                () = self.close.cancelled(), if !closing => {
                    closing = true;
                    rx.close(); // take no new calls; finish the queued ones
                    continue;
                }
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
            };
            if !self.alive.load(Relaxed) {
                let _ = job.reply.send(Err(CallError::Lost));
                continue;
            }
            let exchange = self.exchange(&mut sender, job.body, &job.content_type);
            tokio::pin!(exchange);
            let mut conn_done = false;
            let outcome = tokio::select! {
                biased;
                r = &mut exchange => r,
                // A server that answers and then closes (`Connection: close`, a logout) ends the
                // connection in the same breath as it delivers the answer: still take the answer
                // (hyper hands it over, or says the connection closed first).
                _ = &mut conn => {
                    conn_done = true;
                    exchange.await
                }
            };
            let fatal = conn_done
                || matches!(
                    outcome,
                    Err(CallError::Lost
                        | CallError::Timeout(_)
                        | CallError::Io(_)
                        | CallError::Connect(_)
                        | CallError::TooLarge(_))
                );
            let _ = job.reply.send(outcome);
            if fatal {
                break;
            }
        }
        // The connection is dropped here; every call still queued hears that the session ended.
        self.alive.store(false, Relaxed);
        rx.close();
        while let Some(job) = rx.recv().await {
            let _ = job.reply.send(Err(CallError::Lost));
        }
    }

    async fn exchange(
        &self,
        sender: &mut http1::SendRequest<Full<Bytes>>,
        body: Bytes,
        content_type: &str,
    ) -> Result<Answer, CallError> {
        let timeout = self.limits.timeout;
        let work = async {
            sender.ready().await.map_err(|_| CallError::Lost)?;
            let req = hyper::Request::post(&self.upstream.path)
                .header(hyper::header::HOST, &self.upstream.authority)
                .header(hyper::header::CONTENT_TYPE, content_type)
                .header(hyper::header::USER_AGENT, concat!("tether-relay/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(body))
                .map_err(|e| CallError::Io(e.to_string()))?;
            let resp = sender.send_request(req).await.map_err(|e| {
                if e.is_canceled() || e.is_closed() || e.is_incomplete_message() {
                    CallError::Lost
                } else {
                    CallError::Io(e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let max = self.limits.max_answer;
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::TooLarge(max)
                    } else {
                        CallError::Lost
                    }
                })?
                .to_bytes();
            Ok(Answer { status, content_type, body })
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(CallError::Timeout(timeout.as_millis() as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("http://cs.local:9001/RPC2").unwrap();
        assert_eq!(
            (u.addr.as_str(), u.authority.as_str(), u.path.as_str()),
            ("cs.local:9001", "cs.local:9001", "/RPC2")
        );
        let u = Upstream::parse("http://10.0.0.1").unwrap();
        assert_eq!((u.addr.as_str(), u.path.as_str()), ("10.0.0.1:80", "/"));
        for bad in ["https://x/", "cs.local:9001", "http:///x"] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
