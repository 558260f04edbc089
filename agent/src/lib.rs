//! Slipway agent: runs on a Docker host, dials out to the control plane over a
//! WebSocket and runs deployments through the Docker Engine API (bollard),
//! switching traffic with the host's ingress proxy (`slipway-proxy`).
//!
//! Entry points: [`cli_main`] for a parsed [`AgentCli`] (what the
//! `slipway-agent` binary and `slipway agent …` call), [`run`] for the agent
//! itself, [`rollout::Engine`] for the orchestration without a server.
pub mod config;
pub mod connection;
pub mod docker;
pub mod facts;
pub mod files;
pub mod identity;
pub mod proxy;
pub mod rollout;
pub mod spec;
pub mod tls;

pub use config::{AgentArgs, AgentCli, AgentCommand, ProxyArgs};

use crate::connection::{ConnError, Connector, ServiceLocks};
use crate::identity::{EnrollError, Identity};
use slipway_types::agent::ProtocolErrorCode;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

/// Why the agent stopped. [`RunError::exit_code`] is what the process exits with.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    #[error("this host is not enrolled yet: pass the enrollment token with --token (SLIPWAY_AGENT_TOKEN)")]
    NoToken,
    #[error("{0}; create a new enrollment token for this host")]
    EnrollRejected(EnrollError),
    #[error("{0}")]
    Refused(ConnError),
    #[error("proxy: {0}")]
    Proxy(#[from] slipway_proxy::ProxyError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::NoToken | RunError::EnrollRejected(_) => 2,
            RunError::Refused(ConnError::Fatal {
                code: ProtocolErrorCode::Revoked,
                ..
            }) => 3,
            _ => 1,
        }
    }
}

/// Runs what the command line asks: the agent, or `proxy`.
pub async fn cli_main(cli: AgentCli) -> Result<(), RunError> {
    cli_main_embedded(cli, &[]).await
}

/// [`cli_main`] for a binary that offers the agent CLI as a subcommand:
/// `subcommand_path` is what comes before the agent's own arguments (e.g.
/// `["agent"]` for `slipway agent …`), so the agent can start its proxy as
/// `slipway agent proxy …`.
pub async fn cli_main_embedded(cli: AgentCli, subcommand_path: &[&str]) -> Result<(), RunError> {
    match cli.command {
        Some(AgentCommand::Proxy(p)) => run_proxy(p).await,
        None => run_embedded(cli.args, subcommand_path).await,
    }
}

/// `slipway-agent proxy`: the ingress proxy in this process, until killed.
pub async fn run_proxy(args: ProxyArgs) -> Result<(), RunError> {
    slipway_proxy::run(slipway_proxy::ProxyConfig {
        admin: args.admin,
        state_file: args.state,
    })
    .await?;
    Ok(())
}

/// The agent: enroll if needed, then stay connected to the control plane.
pub async fn run(args: AgentArgs) -> Result<(), RunError> {
    run_embedded(args, &[]).await
}

/// [`run`] inside another binary; see [`cli_main_embedded`].
pub async fn run_embedded(args: AgentArgs, subcommand_path: &[&str]) -> Result<(), RunError> {
    // Both reqwest and tungstenite use rustls; pick the provider once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = config::Config::from_args(args, std::env::var("DOCKER_HOST").ok())?;
    // Before anything else: a bad --ca-file is a mistake to stop for at once.
    let tls = tls::client_config(cfg.ca_file.as_deref())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.data_dir)
        .map_err(|source| RunError::DataDir {
            path: cfg.data_dir.clone(),
            source,
        })?;
    // Config files of containers (content-addressed, mounted read-only).
    let docker = docker::Docker::connect(&cfg.docker_host)
        .await?
        .with_files_dir(cfg.data_dir.join("files"));
    tracing::info!(docker = %cfg.docker_host, server = %cfg.server, "starting slipway-agent");

    let identity = match Identity::load(&cfg.data_dir)? {
        Some(id) => id,
        None => {
            let token = cfg.token.clone().ok_or(RunError::NoToken)?;
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
                .build()
                .map_err(|e| RunError::EnrollRejected(EnrollError::Transient(e.to_string())))?;
            let mut attempt = 0u32;
            let id = loop {
                let facts = facts::gather(&docker, &cfg.data_dir).await;
                match identity::enroll(&http, &cfg.server, &token, facts).await {
                    Ok(id) => break id,
                    Err(e @ EnrollError::Rejected { .. }) => {
                        return Err(RunError::EnrollRejected(e))
                    }
                    Err(e) => {
                        let wait = spec::backoff(attempt, rand::random::<f64>());
                        attempt = attempt.saturating_add(1);
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "enrollment failed");
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            id.save(&cfg.data_dir)?;
            id
        }
    };

    let (proxy, launcher) = if cfg.no_proxy {
        tracing::info!("running without the ingress proxy (--no-proxy)");
        (None, None)
    } else {
        let launcher = Arc::new(
            proxy::ProxyLauncher::new(cfg.proxy_admin, cfg.data_dir.clone())
                .with_subcommand_prefix(subcommand_path.iter().map(|s| s.to_string()).collect()),
        );
        if let Err(e) = launcher.ensure_running().await {
            tracing::warn!(error = %e, "the ingress proxy is not running yet; will retry per request");
        }
        (Some(launcher.client()), Some(launcher))
    };
    let engine = rollout::Engine {
        docker,
        proxy,
        host_id: identity.host_id,
        prefix: cfg.prefix.clone(),
        proxy_bind_ip: cfg.proxy_bind_ip,
        proxy_guard: launcher,
    };
    let connector = Connector {
        engine,
        identity: Arc::new(identity),
        connect_url: cfg.connect_url(),
        tls,
        data_dir: cfg.data_dir.clone(),
        locks: ServiceLocks::default(),
    };
    Err(RunError::Refused(connector.run_forever().await))
}
