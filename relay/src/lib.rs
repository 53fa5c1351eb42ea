//! Tether's relay: the axum + tokio server between a developer's PC page and the H5 page
//! inside a mobile app's webview.
//!
//! A PC page opens a **room** (a name plus a secret), the phone's page joins it, and the
//! relay carries `post`/`call` requests from PC to device and the replies back, only to the
//! PC that asked, storing every pair in history. Presence is pushed (`devices`) on every
//! change; a dropped member is shown away and can resume its place within a grace window.
//! The wire is defined in the `tether-protocol` crate and described in `docs/protocol.md`.
//!
//! # Layout
//! From the edge inwards (docs/architecture.md has the picture):
//! - [`config`]: the flags (`TETHER_*` env vars too).
//! - [`http`]: routes, pages and their security headers, `/healthz`, `/metrics`, the history
//!   API, and the one error body ([`http::AppError`]); `http::cs` is the CS gateway's HTTP edge;
//!   [`http::serve`] the accept loop with its budget (`--max-conns`, header and idle timeouts).
//! - [`tls`]: `--tls-cert` and `--tls-key` read into the acceptor the accept loop hands
//!   connections to.
//! - [`ws`]: one task per room WebSocket: reads frames, feeds the rooms, writes its queue.
//! - [`room`]: the [`room::Hub`]: rooms, members, presence, resume, routing, the restart
//!   snapshot; decisions take the time as `now`. [`room::Peers`] is the seam the cluster bus
//!   attaches to.
//! - [`history`]: the store (SQLite with group commit, or PostgreSQL), behind one API.
//! - [`cs`]: the legacy CS gateway's typed core: one upstream connection per session, the
//!   XML-RPC codec; no HTTP. [`cs::SessionDirectory`] is its seam to other nodes.
//! - [`alarm`]: the UDP alarm client and listener, the replay ring, `/alarms` subscribers.
//! - [`cluster`]: cluster mode over Redis: implements [`room::Peers`] and
//!   [`cs::SessionDirectory`], forwards CS calls, keeps liveness.
//! - [`token`]: secret digests, device keys, one-use signed resume tokens.
//! - [`strikes`]: wrong secrets per address, answered ever more slowly.
//! - [`per_minute`]: a count per address per minute (rooms made, CS logins).
//! - [`ratelimit`]: the per-connection token bucket.
//! - [`metrics`]: counters for `/metrics`.
//! - [`util`]: the poison-proof lock and hex, used everywhere.

pub mod alarm;
pub mod cluster;
pub mod config;
pub mod cs;
pub mod history;
pub mod http;
pub mod metrics;
pub mod per_minute;
pub mod ratelimit;
pub mod room;
pub mod strikes;
pub mod tls;
pub mod token;
pub mod util;
pub mod ws;

pub use config::Config;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The history store could not be opened.
    #[error(transparent)]
    Store(#[from] history::StoreError),
    /// The listener failed.
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// A flag's value cannot be used.
    #[error("{0}")]
    Config(String),
    /// `--tls-cert` or `--tls-key` cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `hostname:port`, this node's default name in cluster mode.
fn default_node_id(listener: &TcpListener) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "relay".into());
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    format!("{host}:{port}")
}

/// How long shutdown waits for sockets to say goodbye.
const GOODBYE_WAIT: Duration = Duration::from_secs(3);

/// Runs the relay on `listener` until `shutdown` resolves; then every member gets a close
/// frame (1012, `shutting_down`) so its client reconnects, and the call returns.
///
/// Logs `Tether relay on http://ADDR/` (`https://` with `--tls-cert`) once the TLS files are
/// read: scripts and tests wait for that line.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    let tls = tls::acceptor(&config)?;
    let addr = listener.local_addr()?;
    let (http, ws) = if tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        www = %config.www_dir().display(),
        "Tether relay on {http}://{addr}/ (room WebSocket {ws}://{addr}/ws)"
    );
    let cs_config = config.cs().map_err(RelayError::Config)?;
    let (store, mut resume_key) = history::Store::open(&config.db, config.history_budget()).await?;
    let mut metrics = metrics::Metrics::default();
    metrics.history_commits = store.commits();
    metrics.history = store.counters();
    let metrics = Arc::new(metrics);
    // Socket tasks, CS sessions' connections and forwarded CS calls: shutdown waits for them.
    let tasks = TaskTracker::new();
    let cs = cs_config.map(|c| cs::Gateway::new(c, metrics.clone(), tasks.clone()));
    let alarms = (config.alarm_udp.is_some() || config.alarm_listen.is_some()).then(|| {
        alarm::Alarms::new(
            config.alarm_history,
            config.alarm_buffer_bytes,
            config.alarm_queue,
            metrics.clone(),
        )
    });
    let mut cluster = match &config.redis {
        Some(url) => {
            let node = config.node_id.clone().unwrap_or_else(|| default_node_id(&listener));
            if !config.db.starts_with("postgres") {
                tracing::warn!(
                    "cluster mode with a store of this node's own: each node keeps the history of the replies it \
                     forwarded; use --db postgres://… for one history across nodes"
                );
            }
            let unreachable =
                |e: redis::RedisError| RelayError::Config(format!("--redis: cannot reach Redis: {e}"));
            let mut c = cluster::Cluster::connect(url, node, config.grace()).await.map_err(unreachable)?;
            // Tokens signed with one key on every node: a member resumes on any of them.
            resume_key = c.shared_resume_key(resume_key).await.map_err(unreachable)?;
            Some(c)
        }
        None => None,
    };
    let peers = cluster.as_ref().map(|c| c.bus.clone() as Arc<dyn room::Peers>);
    let limits = room::Limits::from_config(&config);
    let hub = Arc::new(room::Hub::new(limits, resume_key, metrics.clone(), peers, room::Now::read()));
    // The cluster's tasks stop after the sockets, so members' departures still go out.
    let cluster_stop = CancellationToken::new();
    let cluster_tasks = TaskTracker::new();
    if let Some(c) = cluster.as_mut() {
        if let Some(g) = &cs {
            g.attach_bus(c.bus.clone());
        }
        let local = cluster::Local {
            hub: hub.clone(),
            metrics: metrics.clone(),
            cs: cs.clone(),
            calls: tasks.clone(),
        };
        c.start(local, config.heartbeat(), cluster_stop.clone(), &cluster_tasks)
            .await
            .map_err(|e| RelayError::Config(format!("--redis: cannot subscribe: {e}")))?;
    }
    let cluster = cluster.map(Arc::new);
    let clustered = cluster.is_some();
    if !clustered {
        room::snapshot::load(&hub, &store, room::Now::read()).await;
    }
    let stop = CancellationToken::new();
    // History retention: a round every second, done by the store's writer between commits.
    let upkeep = tokio::spawn(history::upkeep::run(store.clone(), hub.clone(), stop.clone()));

    let sweeper = {
        let (hub, cs, stop) = (hub.clone(), cs.clone(), stop.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(hub.sweep_every());
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = every.tick() => {
                        hub.sweep(room::Now::read());
                        if let Some(cs) = &cs {
                            cs.sweep();
                        }
                    }
                }
            }
        })
    };

    if let Some(alarms) = &alarms {
        if let Some(service) = config.alarm_udp.clone() {
            let renew = Duration::from_millis(config.alarm_renew_ms);
            let sub = config.alarm_subscribe.clone();
            tasks.spawn(alarm::run_client(alarms.clone(), service, renew, sub, stop.clone()));
        }
        if let Some(addr) = config.alarm_listen {
            // Bound now, so a port that is taken fails the start, not later.
            let sock = alarm::bind_listener(addr).map_err(|e| {
                stop.cancel(); // ends the tasks already started
                RelayError::Config(format!("--alarm-listen {addr}: {e}"))
            })?;
            let from = alarm::senders(&config.alarm_from, config.alarm_udp.as_deref()).await;
            tracing::info!(?from, "--alarm-listen takes datagrams from these senders only (--alarm-from)");
            tasks.spawn(alarm::run_listener(alarms.clone(), sock, from, stop.clone()));
        }
    }
    if alarms.is_some() {
        if config.alarms_public {
            tracing::warn!(
                "--alarms-public: anyone who can reach this relay can read its alarms at /alarms \
                 (give --alarm-token, or let CS sessions read them, to close it)"
            );
        } else if config.alarm_token.as_deref().is_none_or(str::is_empty) && cs.is_none() {
            tracing::warn!(
                "/alarms needs a CS session, but this relay has no --cs-upstream: nobody can read \
                 its alarms until it gets --alarm-token (or --alarms-public)"
            );
        }
    }
    let state = http::AppState::new(http::Shared {
        rooms: Arc::new(ws::Context {
            hub: hub.clone(),
            metrics: metrics.clone(),
            store: store.clone(),
            cluster: cluster.clone(),
            shutdown: stop.clone(),
            tasks: tasks.clone(),
        }),
        hub: hub.clone(),
        store: store.clone(),
        metrics,
        shutdown: stop.clone(),
        tasks: tasks.clone(),
        www: config.www_dir(),
        sdk: Arc::new(http::SdkFiles::load(&config.sdk_dir())),
        cs: cs.clone(),
        alarms,
        heartbeat: config.heartbeat(),
        cluster,
        allow_origin: config.allow_origin.iter().map(|o| o.trim().trim_end_matches('/').to_owned()).collect(),
        alarm_access: alarm::Access::new(config.alarms_public, config.alarm_token.as_deref()),
        per_ip: Arc::new(http::PerIp::new(config.max_conns_per_ip)),
        strikes: strikes::Strikes::new(),
        real_ip_header: config.real_ip_header.as_deref().map(str::parse).transpose().map_err(|_| {
            RelayError::Config("--real-ip-header must be a header name, such as X-Real-IP".into())
        })?,
        bridges_meta: http::bridges_meta(&config.bridge_names).into(),
        api_rate: Arc::new(ratelimit::PerAddress::new(config.rate_limit, config.rate_burst)),
        tls: tls.is_some(),
    });
    let signal = {
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = shutdown => {},
                () = stop.cancelled() => {},
            }
            stop.cancel();
        }
    };
    // --max-conns and the header and idle timeouts (axum::serve has none of them).
    let budget = http::serve::Budget::from_config(&config);
    let metrics = state.metrics.clone();
    http::serve::serve(listener, http::app(state), budget, tls, metrics, signal).await;
    stop.cancel();
    tasks.close();
    if let Some(cs) = &cs {
        cs.close_all();
    }
    if tokio::time::timeout(GOODBYE_WAIT, tasks.wait()).await.is_err() {
        tracing::warn!("some sockets did not close in time");
    }
    let _ = sweeper.await;
    let _ = upkeep.await;
    // Replies on their way to disk reach their PCs (or the PCs' resume buffers) first.
    store.settled().await;
    if clustered {
        hub.announce_departure();
        cluster_stop.cancel();
        cluster_tasks.close();
        if tokio::time::timeout(GOODBYE_WAIT, cluster_tasks.wait()).await.is_err() {
            tracing::warn!("the cluster's tasks did not end in time");
        }
    } else {
        // Not in cluster mode, where members resume on the other nodes.
        room::snapshot::save(&hub, &store, room::Now::read()).await;
    }
    Ok(())
}
