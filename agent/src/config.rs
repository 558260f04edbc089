//! Command line / environment configuration.
use slipway_types::agent::Sensitive;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

fn sensitive(s: &str) -> Result<Sensitive, String> {
    Ok(Sensitive(s.to_owned()))
}

/// `slipway-agent [OPTIONS]` — also offered by the server binary as `slipway agent …`.
#[derive(Clone, clap::Args)]
pub struct AgentArgs {
    /// Control plane base URL, e.g. https://slipway.example.com.
    #[arg(long, env = "SLIPWAY_AGENT_SERVER")]
    pub server: Option<String>,
    /// One-time enrollment token (only needed the first time).
    #[arg(long, env = "SLIPWAY_AGENT_TOKEN", hide_env_values = true, value_parser = sensitive)]
    pub token: Option<Sensitive>,
    /// Holds identity.json (host id + key), the proxy's route table and log.
    #[arg(
        long,
        env = "SLIPWAY_AGENT_DATA_DIR",
        default_value = "/var/lib/slipway-agent"
    )]
    pub data_dir: PathBuf,
    /// Docker Engine address [default: $DOCKER_HOST or unix:///var/run/docker.sock].
    #[arg(long, env = "SLIPWAY_AGENT_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Prefix of container and proxy route names.
    #[arg(
        long,
        env = "SLIPWAY_AGENT_CONTAINER_PREFIX",
        default_value = "slipway-"
    )]
    pub container_prefix: String,
    /// Admin API of the ingress proxy (loopback).
    #[arg(
        long,
        env = "SLIPWAY_AGENT_PROXY_ADMIN",
        default_value = "127.0.0.1:7901"
    )]
    pub proxy_admin: SocketAddr,
    /// IP the proxy listens on for published ports.
    #[arg(long, env = "SLIPWAY_AGENT_PROXY_BIND_IP", default_value = "0.0.0.0")]
    pub proxy_bind_ip: IpAddr,
    /// Run without the ingress proxy (services with published ports then fail).
    #[arg(long, env = "SLIPWAY_AGENT_NO_PROXY")]
    pub no_proxy: bool,
    /// Also trust the CA certificate(s) in this PEM file for https:// and wss://
    /// to the control plane (an internal CA). The system trust store is always used.
    #[arg(long, env = "SLIPWAY_AGENT_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for AgentArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentArgs")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("data_dir", &self.data_dir)
            .field("docker_host", &self.docker_host)
            .field("container_prefix", &self.container_prefix)
            .field("proxy_admin", &self.proxy_admin)
            .field("proxy_bind_ip", &self.proxy_bind_ip)
            .field("no_proxy", &self.no_proxy)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `slipway-agent proxy --admin ADDR --state FILE`: the ingress proxy in-process.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    #[arg(long, default_value = "127.0.0.1:7901")]
    pub admin: SocketAddr,
    /// Route table file (restored at start, written on every change).
    #[arg(long)]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum AgentCommand {
    /// Run the ingress proxy (the agent starts it by itself when needed).
    Proxy(ProxyArgs),
}

/// The whole command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "slipway-agent",
    version,
    about = "Slipway agent: runs deployments on this Docker host"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCli {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub args: AgentArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--server (SLIPWAY_AGENT_SERVER) is required")]
    MissingServer,
    #[error("--server must start with http:// or https:// (got {0:?})")]
    BadServer(String),
    #[error("--container-prefix may contain only lowercase letters, digits, '-', '_' and '.', at most 32 (got {0:?})")]
    BadPrefix(String),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL without trailing slash.
    pub server: String,
    pub token: Option<Sensitive>,
    pub data_dir: PathBuf,
    pub docker_host: String,
    pub prefix: String,
    pub proxy_admin: SocketAddr,
    pub proxy_bind_ip: IpAddr,
    pub no_proxy: bool,
    /// Extra trusted CA certificates (PEM), besides the system trust store.
    pub ca_file: Option<PathBuf>,
}

impl Config {
    pub fn from_args(
        args: AgentArgs,
        docker_host_env: Option<String>,
    ) -> Result<Self, ConfigError> {
        let server = args.server.ok_or(ConfigError::MissingServer)?;
        let server = server.trim().trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://"))
            || server.contains(char::is_whitespace)
        {
            return Err(ConfigError::BadServer(server));
        }
        validate_prefix(&args.container_prefix)?;
        Ok(Self {
            server,
            token: args.token,
            data_dir: args.data_dir,
            docker_host: args
                .docker_host
                .or(docker_host_env.filter(|h| !h.is_empty()))
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned()),
            prefix: args.container_prefix,
            proxy_admin: args.proxy_admin,
            proxy_bind_ip: args.proxy_bind_ip,
            no_proxy: args.no_proxy,
            ca_file: args.ca_file,
        })
    }

    /// `ws(s)://…/api/v1/agent/connect`.
    pub fn connect_url(&self) -> String {
        let ws = if let Some(rest) = self.server.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.server.trim_start_matches("http://"))
        };
        format!("{ws}/api/v1/agent/connect")
    }
}

pub fn validate_prefix(p: &str) -> Result<(), ConfigError> {
    let ok = p.len() <= 32
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadPrefix(p.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn parses_and_validates() {
        let cli = AgentCli::try_parse_from([
            "slipway-agent",
            "--server",
            "https://cp.example.com/",
            "--token",
            "tok-123",
            "--proxy-bind-ip",
            "127.0.0.1",
        ])
        .unwrap();
        assert!(!format!("{cli:?}").contains("tok-123"));
        let cfg = Config::from_args(cli.args, None).unwrap();
        assert_eq!(cfg.server, "https://cp.example.com");
        assert_eq!(
            cfg.connect_url(),
            "wss://cp.example.com/api/v1/agent/connect"
        );
        assert_eq!(cfg.docker_host, "unix:///var/run/docker.sock");
        assert_eq!(cfg.prefix, "slipway-");
        assert_eq!(cfg.ca_file, None);
        let cli = AgentCli::try_parse_from(["a", "--server", "http://127.0.0.1:8080"]).unwrap();
        let cfg = Config::from_args(cli.args, Some("unix:///tmp/d.sock".into())).unwrap();
        assert_eq!(
            cfg.connect_url(),
            "ws://127.0.0.1:8080/api/v1/agent/connect"
        );
        assert_eq!(cfg.docker_host, "unix:///tmp/d.sock");
        let cli = AgentCli::try_parse_from(["a"]).unwrap();
        assert!(matches!(
            Config::from_args(cli.args, None),
            Err(ConfigError::MissingServer)
        ));
        let cli = AgentCli::try_parse_from(["a", "--server", "ftp://x"]).unwrap();
        assert!(Config::from_args(cli.args, None).is_err());
        let cli =
            AgentCli::try_parse_from(["a", "--server", "http://x", "--container-prefix", "Bad/"])
                .unwrap();
        assert!(matches!(
            Config::from_args(cli.args, None),
            Err(ConfigError::BadPrefix(_))
        ));
    }

    #[test]
    fn ca_file_flag() {
        let cli = AgentCli::try_parse_from([
            "a",
            "--server",
            "https://cp.internal",
            "--ca-file",
            "/etc/slipway/ca.pem",
        ])
        .unwrap();
        let cfg = Config::from_args(cli.args, None).unwrap();
        assert_eq!(cfg.ca_file, Some(PathBuf::from("/etc/slipway/ca.pem")));
    }

    #[test]
    fn proxy_subcommand() {
        let cli = AgentCli::try_parse_from([
            "a",
            "proxy",
            "--admin",
            "127.0.0.1:9",
            "--state",
            "/tmp/r.json",
        ])
        .unwrap();
        match cli.command {
            Some(AgentCommand::Proxy(p)) => {
                assert_eq!(p.admin.port(), 9);
                assert_eq!(p.state, Some(PathBuf::from("/tmp/r.json")));
            }
            None => panic!("no subcommand"),
        }
    }
}
