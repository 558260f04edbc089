//! `slipway-proxy --admin 127.0.0.1:7901 [--state /path/routes.json]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use slipway_proxy::{run_until, ProxyConfig, ProxyOptions};

/// Slipway ingress proxy.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Admin API address (loopback only).
    #[arg(long, env = "SLIPWAY_PROXY_ADMIN", default_value = "127.0.0.1:7901")]
    admin: SocketAddr,
    /// Route table file: written on every change, restored at start.
    #[arg(long = "state", env = "SLIPWAY_PROXY_STATE")]
    state: Option<PathBuf>,
    /// Seconds to wait for an upstream's response head before answering 504.
    #[arg(
        long,
        env = "SLIPWAY_PROXY_UPSTREAM_TIMEOUT_SECS",
        default_value_t = 60
    )]
    upstream_timeout_secs: u64,
    /// Seconds in-flight requests may take to finish on SIGTERM.
    #[arg(long, env = "SLIPWAY_PROXY_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.admin.ip().is_loopback() {
        anyhow::bail!("--admin must be a loopback address, got {}", args.admin);
    }
    let options = ProxyOptions {
        upstream_timeout: Duration::from_secs(args.upstream_timeout_secs.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    };
    run_until(
        ProxyConfig {
            admin: args.admin,
            state_file: args.state,
        },
        options,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}
