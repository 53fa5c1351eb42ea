//! `tether-legacy-cs`: a stand-in for a legacy XML-RPC CS server (see `tether_demo::cs`).

use clap::Parser;
use std::sync::Arc;
use std::time::Duration;

/// A legacy XML-RPC server that binds each user to the connection that logged in.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: std::net::SocketAddr,
    /// Close connections idle for this many seconds.
    #[arg(long)]
    idle_close_secs: Option<u64>,
    /// Print `call <connection> <method>` as each call arrives.
    #[arg(long)]
    log_calls: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!(
        "legacy CS server on http://{}/ (XML-RPC; login(user) binds a user to its connection)",
        listener.local_addr()?
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = tether_demo::cs::Options {
        idle_close: args.idle_close_secs.map(Duration::from_secs),
        log_calls: args.log_calls,
        login_delay: None,
    };
    let serving = tokio::spawn(tether_demo::cs::serve(listener, opts, Arc::default(), stop.clone()));
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    let _ = serving.await;
    Ok(())
}
