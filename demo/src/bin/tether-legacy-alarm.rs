//! `tether-legacy-alarm`: a stand-in for a legacy UDP alarm service (see `tether_demo::alarm`).

use clap::Parser;
use std::sync::Arc;
use std::time::Duration;

/// A legacy UDP alarm service: register with a `SUBSCRIBE` datagram, receive numbered alarms.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9002")]
    listen: std::net::SocketAddr,
    /// Alarms per second.
    #[arg(long, default_value_t = 2)]
    rate: u32,
    /// Seconds a subscription lasts unless renewed.
    #[arg(long, default_value_t = 30)]
    ttl_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sock = tokio::net::UdpSocket::bind(args.listen).await?;
    println!(
        "legacy alarm service on udp://{} ({} alarms/s to each subscriber)",
        sock.local_addr()?,
        args.rate
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = tether_demo::alarm::Options {
        rate: args.rate,
        ttl: Duration::from_secs(args.ttl_secs),
        ..Default::default()
    };
    let serving = tokio::spawn(tether_demo::alarm::serve(sock, opts, Arc::default(), stop.clone()));
    tokio::signal::ctrl_c().await?;
    stop.cancel();
    let _ = serving.await;
    Ok(())
}
