//! The `slipway` command line. Every command reads the same settings as the
//! server (`SLIPWAY_*`, optional `SLIPWAY_CONFIG` file).
use crate::{
    audit::{self, ActorInfo, AuditTx, Event},
    auth::{password, routes::create_user, tokens},
    config::Settings,
    startup::Application,
    store::{
        self,
        entities::{environment, user},
    },
    telemetry,
};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use slipway_types::{
    api::{validate_password, validate_username},
    Role,
};
use std::io::Read;
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
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exits 1 and names the first tampered entry.
    Verify,
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

/// Runs a command; `Ok(code)` is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load()?;
    match cli.command {
        Command::Serve => {
            telemetry::init(&settings);
            let app = Application::build(settings.clone()).await?;
            tracing::info!(settings = ?settings, port = app.port(), "slipway listening");
            app.run_until_stopped().await?;
            Ok(0)
        }
        Command::Migrate => {
            let db = store::connect(&settings).await?;
            store::migrate(&db).await?;
            println!("migrations applied");
            Ok(0)
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    environments,
                    expires,
                    name,
                },
        } => {
            let days = expires
                .as_deref()
                .map(tokens::parse_expiry_days)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let db = open(&settings).await?;
            for e in &environments {
                if environment::Entity::find_by_id(*e)
                    .one(&db)
                    .await?
                    .is_none()
                {
                    bail!("no environment with id {e}");
                }
            }
            let actor = ActorInfo::cli();
            let mut tx = AuditTx::begin(&db).await?;
            let created =
                tokens::create(&tx.txn, &name, role, &environments, days, &actor.name).await?;
            tx.record(
                &actor,
                Event::new(
                    "token.create",
                    "token",
                    created.model.id,
                    json!({"name": name, "role": role, "environments": environments, "expires_at": created.model.expires_at}),
                ),
            )
            .await?;
            tx.commit().await?;
            println!("{}", created.secret);
            eprintln!(
                "token {} ({role}) created; store the secret now, it is not shown again",
                created.model.id
            );
            Ok(0)
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let db = open(&settings).await?;
            match audit::verify(&db).await? {
                audit::Verdict::Intact { entries } => {
                    println!("audit log intact: {entries} entries verified");
                    Ok(0)
                }
                audit::Verdict::Tampered { seq, reason } => {
                    println!("audit log TAMPERED: first bad entry is #{seq}: {reason}");
                    Ok(1)
                }
            }
        }
        Command::User {
            command: UserCommand::CreateAdmin { username },
        } => {
            validate_username(&username).map_err(|e| anyhow::anyhow!("{e}"))?;
            let password = match std::env::var("SLIPWAY_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading password from stdin")?;
                    s.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            validate_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
            let db = open(&settings).await?;
            let hash = password::hash(password).await?;
            let actor = ActorInfo::cli();
            let mut tx = AuditTx::begin(&db).await?;
            if user::Entity::find().count(&tx.txn).await? > 0 {
                bail!("setup is already done: an account exists");
            }
            create_user(&mut tx, &actor, &username, hash, Role::Admin).await?;
            tx.commit().await?;
            println!("admin {username} created");
            Ok(0)
        }
    }
}

async fn open(settings: &Settings) -> anyhow::Result<sea_orm::DatabaseConnection> {
    let db = store::connect(settings).await?;
    store::migrate(&db).await?;
    Ok(db)
}
