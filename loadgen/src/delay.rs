//! `loadgen delay-proxy`: puts a fixed distance between the server and its database on one machine.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context as _;
use customer_context::{config::parse_duration, delay_proxy::DelayProxy};

#[derive(Debug, clap::Args)]
pub struct DelayProxyArgs {
    /// Address to accept connections on, e.g. 127.0.0.1:6433.
    #[arg(long)]
    pub listen: SocketAddr,

    /// Address every connection is forwarded to, e.g. the PostgreSQL server at 127.0.0.1:5432.
    #[arg(long)]
    pub upstream: SocketAddr,

    /// Added to each direction (a round trip gains twice this), e.g. 500us or 2ms (whole units).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Duration,
}

/// Runs the proxy until interrupted.
pub async fn delay_proxy(args: DelayProxyArgs) -> anyhow::Result<()> {
    let proxy = DelayProxy::start(args.listen, args.upstream, args.delay)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "forwarding {} -> {} with {:?} each way; Ctrl-C stops",
        proxy.addr(),
        args.upstream,
        args.delay
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
