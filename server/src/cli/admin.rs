//! The admin commands: they read the server's settings and open its store
//! directly (migrating it first), so they work before the server runs.
use crate::{
    audit::{self, witness, ActorInfo, AuditTx, Event, HeadMac, Verdict},
    auth::{password, routes::create_user, tokens},
    config::Settings,
    secrets::MasterKey,
    startup::Application,
    store::{
        self,
        entities::{environment, user},
    },
    telemetry,
};
use anyhow::{bail, Context};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use serde_json::json;
use slipway_types::{
    api::{validate_password, validate_username, TokenAction},
    Role,
};
use std::{io::Read, path::PathBuf};
use uuid::Uuid;

pub async fn serve(settings: Settings) -> anyhow::Result<i32> {
    telemetry::init(&settings);
    let app = Application::build(settings.clone()).await?;
    tracing::info!(settings = ?settings, port = app.port(), "slipway listening");
    app.run_until_stopped().await?;
    Ok(0)
}

pub async fn migrate(settings: Settings) -> anyhow::Result<i32> {
    let db = store::connect(&settings).await?;
    store::migrate(&db).await?;
    println!("migrations applied");
    Ok(0)
}

/// The store, migrated, with its audit key registered for `AuditTx`.
async fn open(settings: &Settings) -> anyhow::Result<(DatabaseConnection, MasterKey)> {
    let db = store::connect(settings).await?;
    store::migrate(&db).await?;
    let key = MasterKey::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
    audit::mac::register(&db, key.audit_key());
    Ok((db, key))
}

pub struct NewToken {
    pub role: Role,
    pub environments: Vec<Uuid>,
    pub expires: Option<String>,
    pub name: String,
    pub actions: Vec<TokenAction>,
}

pub async fn token_create(settings: &Settings, t: NewToken) -> anyhow::Result<i32> {
    let NewToken {
        role,
        environments,
        expires,
        name,
        actions,
    } = t;
    let days = expires
        .as_deref()
        .map(tokens::parse_expiry_days)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (db, _) = open(settings).await?;
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
    let created = tokens::create(
        tx.conn(),
        &name,
        role,
        &environments,
        days,
        &actions,
        &actor.name,
    )
    .await?;
    tx.record(
        &actor,
        Event::new(
            "token.create",
            "token",
            created.model.id,
            json!({"name": name, "role": role, "environments": environments, "actions": actions, "expires_at": created.model.expires_at}),
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

/// Exit 0 when the chain, its checkpoints, the head's MAC and (with
/// `--witness`) every witnessed head agree; 1 naming the first bad entry.
pub async fn audit_verify(settings: &Settings, witness: Option<PathBuf>) -> anyhow::Result<i32> {
    let (db, key) = open(settings).await?;
    let key = key.audit_key();
    match audit::verify(&db, &key, HeadMac::Required).await? {
        Verdict::Intact {
            entries,
            checkpoints,
        } => {
            println!(
                "audit log intact: {entries} entries verified, head authenticated, {checkpoints} checkpoint(s)"
            );
        }
        Verdict::Tampered { seq, reason } => {
            println!("audit log TAMPERED: first bad entry is #{seq}: {reason}");
            return Ok(1);
        }
    }
    let Some(path) = witness else {
        return Ok(0);
    };
    let records = witness::FileWitness { path: path.clone() }.read()?;
    match witness::check(&db, &key, &records).await? {
        witness::WitnessVerdict::Consistent {
            records,
            newest_seq,
        } => {
            println!(
                "witness {} agrees: {records} published head(s), newest entry #{newest_seq}",
                path.display()
            );
            Ok(0)
        }
        witness::WitnessVerdict::Disagrees { seq, reason } => {
            println!("audit log TAMPERED: witnessed entry #{seq}: {reason}");
            Ok(1)
        }
    }
}

pub async fn audit_seal(settings: &Settings, reason: &str) -> anyhow::Result<i32> {
    if reason.trim().is_empty() {
        bail!("--reason must say why the head is accepted");
    }
    let (db, key) = open(settings).await?;
    match audit::seal(&db, key.audit_key(), &ActorInfo::cli(), reason).await? {
        Verdict::Intact { entries, .. } => {
            println!("audit head sealed: {entries} entries verified");
            Ok(0)
        }
        Verdict::Tampered { seq, reason } => {
            println!("not sealed: the chain itself is broken at #{seq}: {reason}");
            Ok(1)
        }
    }
}

pub async fn create_admin(settings: &Settings, username: &str) -> anyhow::Result<i32> {
    validate_username(username).map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let (db, _) = open(settings).await?;
    let hash = password::hash(password).await?;
    let actor = ActorInfo::cli();
    let mut tx = AuditTx::begin(&db).await?;
    if user::Entity::find().count(tx.conn()).await? > 0 {
        bail!("setup is already done: an account exists");
    }
    create_user(&mut tx, &actor, username, hash, Role::Admin).await?;
    tx.commit().await?;
    println!("admin {username} created");
    Ok(0)
}
