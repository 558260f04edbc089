//! The `slipway` command line: the clap definition and the dispatch. The
//! admin commands (`admin`) read the same settings as the server
//! (`SLIPWAY_*`, optional `SLIPWAY_CONFIG` file) and open the store; `deploy`
//! is a pure HTTP client of `/api/v1`; `agent` runs the embedded agent.
//! `anyhow` is used only here, at the edge.
mod admin;
mod deploy;

pub use deploy::DeployArgs;

use crate::config::Settings;
use clap::{Parser, Subcommand};
use slipway_types::{api::TokenAction, Role};
use std::path::PathBuf;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "slipway",
    version,
    about = "Slipway: self-hosted deployment control plane"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane (API + dashboard); applies migrations first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Inspect the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage local accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Deploy a service, or with --environment an environment's changed
    /// services in dependency order, through the HTTP API (for CI). Exit
    /// codes: 0 accepted (or, with --wait, succeeded — every deployment of
    /// the batch), 1 ended failed/cancelled/rejected/rolled back (or the
    /// server was unreachable), 2 bad input or refused by the server (4xx,
    /// e.g. deploy_frozen, a dependency cycle), 3 timed out waiting.
    Deploy(DeployArgs),
    /// Run the agent on this Docker host (same as `slipway-agent`); settings
    /// come from its flags and `SLIPWAY_AGENT_*`, not the server's.
    Agent(slipway_agent::AgentCli),
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print its secret (shown only once).
    Create {
        /// viewer, deployer, approver or admin
        #[arg(long)]
        role: Role,
        /// Limit the role to this environment id (repeatable); read-only elsewhere.
        #[arg(long = "env")]
        environments: Vec<Uuid>,
        /// Lifetime, e.g. 30d, 12h, 2w. Default: never expires.
        #[arg(long)]
        expires: Option<String>,
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Limit the token to a kind of change (repeatable): deploy, approve, configure.
        #[arg(long = "action", value_parser = parse_action)]
        actions: Vec<TokenAction>,
    },
}

fn parse_action(s: &str) -> Result<TokenAction, String> {
    TokenAction::ALL
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown action `{s}` (expected deploy, approve or configure)"))
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, the checkpoints and the head's MAC (needs the
    /// master key); exits 1 and names the first tampered entry.
    Verify {
        /// Also check every head published to this witness file
        /// (`audit_witness_file`): exits 1 if the chain is shorter than, or
        /// differs from, any of them.
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// Accept the current head after everything else checked out (a store
    /// written before head MACs, or after an investigated incident); records
    /// `audit.seal` with the reason.
    Seal {
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create the first admin (first-run setup without the browser). The
    /// password is read from SLIPWAY_ADMIN_PASSWORD or standard input.
    CreateAdmin {
        #[arg(long)]
        username: String,
    },
}

async fn run_agent(cli: slipway_agent::AgentCli) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match slipway_agent::cli_main_embedded(cli, &["agent"]).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "slipway agent stopped");
            eprintln!("slipway agent: {e}");
            e.exit_code()
        }
    }
}

/// Runs a command; `Ok(code)` is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        // Pure API client and agent: they need no server settings.
        Command::Deploy(args) => Ok(deploy::run(args).await),
        Command::Agent(agent) => Ok(run_agent(agent).await),
        Command::Serve => admin::serve(Settings::load()?).await,
        Command::Migrate => admin::migrate(Settings::load()?).await,
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    environments,
                    expires,
                    name,
                    actions,
                },
        } => {
            let settings = Settings::load()?;
            admin::token_create(
                &settings,
                admin::NewToken {
                    role,
                    environments,
                    expires,
                    name,
                    actions,
                },
            )
            .await
        }
        Command::Audit {
            command: AuditCommand::Verify { witness },
        } => admin::audit_verify(&Settings::load()?, witness).await,
        Command::Audit {
            command: AuditCommand::Seal { reason },
        } => admin::audit_seal(&Settings::load()?, &reason).await,
        Command::User {
            command: UserCommand::CreateAdmin { username },
        } => admin::create_admin(&Settings::load()?, &username).await,
    }
}
