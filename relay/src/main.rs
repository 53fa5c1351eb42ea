//! `tether-relay`: parse flags, set up logging, bind, run until ctrl-c or SIGTERM.

use anyhow::Context as _;
use clap::Parser as _;
use tether_relay::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log))
        .context("bad --log filter")?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // Every socket is a file: the soft limit (often 1024) is raised to the hard one, and the
    // default --max-conns is taken from it.
    tether_relay::http::serve::raise_open_file_limit();

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    // `run` says where it listens (http:// or https://) once the TLS files are read.
    tether_relay::run(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: closing every socket with 1012 so clients reconnect");
}
