//! The audit log: every mutation writes one entry in the same transaction as
//! the change. Entries form a SHA-256 hash chain (each stores the previous
//! entry's hash), so an edited, inserted or deleted row is detected by
//! [`verify`]. The head and periodic checkpoints carry a MAC under a key
//! derived from the master key (`mac`), so cutting the tail and rewinding the
//! head is detected too; `witness` publishes the head outside the store, so a
//! head replayed from an older copy of the store is detected as well.
//!
//! ```text
//! AuditTx::begin ── lock head, check its MAC ── record … record ── commit
//!                                                    (head + MAC, checkpoint, NOTIFY)
//! ```
pub mod chain;
pub mod mac;
pub mod routes;
pub mod witness;

use crate::store::entities::{audit_checkpoint, audit_entry, audit_head};
pub use chain::{entry_hash, verify, HashInput, HeadMac, Verdict};
use chrono::{Duration, SubsecRound, Utc};
use mac::{AuditKey, Signed};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::Value;

/// `prev_hash` of the first entry (also seeded into `audit_head` by the migration).
pub use slipway_migrations::GENESIS_HASH;

/// A checkpoint is taken at the first commit and then whenever this many
/// entries or this much time passed since the last one.
pub const CHECKPOINT_EVERY_ENTRIES: i64 = 1000;
pub const CHECKPOINT_EVERY_MINUTES: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] DbErr),
    /// A change committed without its audit entry would break the invariant.
    #[error("audited transaction committed without recording an entry")]
    NothingRecorded,
    #[error("no audit key is registered for store {store} (the master key was not loaded)")]
    NoKey { store: String },
    #[error(
        "the audit head (entry {seq}) is not authenticated: the log may have been cut or the \
         head rewound, or this is not the store's master key; run `slipway audit verify` (a \
         store written before head MACs is sealed by the next `slipway serve`)"
    )]
    HeadNotAuthentic { seq: i64 },
}

impl From<AuditError> for crate::error::ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Store(db) => crate::error::ApiError::Store(db),
            AuditError::HeadNotAuthentic { .. } => {
                tracing::error!(error = %e, "audited change refused");
                crate::error::ApiError::Unavailable(
                    "the audit log failed its integrity check; changes are refused until an operator has run `slipway audit verify`".into(),
                )
            }
            other => crate::error::ApiError::Internal(other.into()),
        }
    }
}

/// Registers the store's audit key for this process, says at once (in the
/// log) if the head cannot be authenticated, and, if one is configured,
/// checks the witness and starts publishing to it. `Application::build`
/// calls it after loading the master key; the CLI only registers the key
/// ([`mac::register`]).
pub async fn start(
    db: &DatabaseConnection,
    key: &crate::secrets::MasterKey,
    settings: &crate::config::Settings,
) -> Result<(), witness::WitnessError> {
    mac::register(db, key.audit_key());
    if let Some(head) = audit_head::Entity::find_by_id(1).one(db).await? {
        if !chain::head_is_authentic(&key.audit_key(), &head) {
            tracing::error!(
                seq = head.seq,
                "{}",
                AuditError::HeadNotAuthentic { seq: head.seq }
            );
        }
    }
    if let Some(w) = witness::Witness::from_settings(settings) {
        w.check()?;
        tracing::info!(witness = %w.describe(), "publishing the audit head");
        witness::spawn(
            db.clone(),
            key.audit_key(),
            w,
            settings.audit_witness_interval,
        );
    }
    Ok(())
}

/// Who did it and from where.
#[derive(Debug, Clone)]
pub struct ActorInfo {
    pub name: String,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

impl ActorInfo {
    /// Changes made from the `slipway` command line on the server host.
    pub fn cli() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        ActorInfo {
            name: format!("cli:{user}"),
            source_ip: None,
            request_id: None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: &'static str,
    pub target_type: &'static str,
    pub target_id: Option<String>,
    /// Never contains secret values: callers pass names and versions only.
    pub summary: Value,
}

impl Event {
    pub fn new(
        action: &'static str,
        target_type: &'static str,
        target_id: impl ToString,
        summary: Value,
    ) -> Self {
        Event {
            action,
            target_type,
            target_id: Some(target_id.to_string()),
            summary,
        }
    }
}

/// A transaction that holds the audit chain's head: begin it before the
/// change, [`AuditTx::record`] the event, then [`AuditTx::commit`], which
/// refuses when nothing was recorded. Writes that are deliberately not
/// audited (ARCHITECTURE.md lists them) use a plain transaction instead.
pub struct AuditTx {
    /// Private: only [`AuditTx::commit`] ends it, so no change commits
    /// without its entry. Store functions get it through [`AuditTx::conn`].
    txn: DatabaseTransaction,
    key: AuditKey,
    seq: i64,
    hash: String,
    recorded: u32,
}

impl AuditTx {
    /// The transaction, for reads and writes that belong to the change
    /// (committing it is [`AuditTx::commit`]'s alone).
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// Begins a transaction whose first statement locks the chain head. On
    /// SQLite that takes the write lock up front (no upgrade deadlocks); on
    /// PostgreSQL it row-locks the head so replicas append in turn. A head
    /// whose MAC does not match is not chained onto: the change is refused
    /// rather than hiding a cut tail under a fresh MAC.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, AuditError> {
        let key = mac::key_for(db).ok_or_else(|| AuditError::NoKey {
            store: mac::store_identity(db),
        })?;
        let mut tx = Self::begin_unchecked(db, key).await?;
        let head = tx.head().await?;
        if !chain::head_is_authentic(&tx.key, &head) {
            return Err(AuditError::HeadNotAuthentic { seq: head.seq });
        }
        tx.seq = head.seq;
        tx.hash = head.hash;
        Ok(tx)
    }

    /// Locks and reads the head without checking its MAC (for `seal`).
    async fn begin_unchecked(db: &DatabaseConnection, key: AuditKey) -> Result<Self, DbErr> {
        let txn = db.begin().await?;
        audit_head::Entity::update_many()
            .col_expr(
                audit_head::Column::Seq,
                Expr::col(audit_head::Column::Seq).into(),
            )
            .filter(audit_head::Column::Id.eq(1))
            .exec(&txn)
            .await?;
        let mut tx = AuditTx {
            txn,
            key,
            seq: 0,
            hash: String::new(),
            recorded: 0,
        };
        let head = tx.head().await?;
        tx.seq = head.seq;
        tx.hash = head.hash;
        Ok(tx)
    }

    async fn head(&self) -> Result<audit_head::Model, DbErr> {
        audit_head::Entity::find_by_id(1)
            .one(&self.txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))
    }

    pub async fn record(&mut self, actor: &ActorInfo, event: Event) -> Result<i64, DbErr> {
        let seq = self.seq + 1;
        let at = Utc::now().trunc_subsecs(6);
        let summary = event.summary.to_string();
        let hash = entry_hash(&HashInput {
            seq,
            at,
            actor: &actor.name,
            action: event.action,
            target_type: event.target_type,
            target_id: event.target_id.as_deref(),
            summary: &summary,
            source_ip: actor.source_ip.as_deref(),
            request_id: actor.request_id.as_deref(),
            prev_hash: &self.hash,
        });
        audit_entry::Entity::insert(audit_entry::ActiveModel {
            seq: Set(seq),
            at: Set(at),
            actor: Set(actor.name.clone()),
            action: Set(event.action.into()),
            target_type: Set(event.target_type.into()),
            target_id: Set(event.target_id),
            summary: Set(summary),
            source_ip: Set(actor.source_ip.clone()),
            request_id: Set(actor.request_id.clone()),
            prev_hash: Set(self.hash.clone()),
            hash: Set(hash.clone()),
        })
        .exec_without_returning(&self.txn)
        .await?;
        self.seq = seq;
        self.hash = hash;
        self.recorded += 1;
        Ok(seq)
    }

    /// Moves the head (with its MAC) to the last recorded entry, takes a
    /// checkpoint when one is due, commits, and lets every replica's read
    /// cache know that data changed (see [`crate::store::cache`]). Refuses,
    /// rolling everything back, when no entry was recorded.
    pub async fn commit(self) -> Result<(), AuditError> {
        if self.recorded == 0 {
            return Err(AuditError::NothingRecorded);
        }
        let mac = self.key.sign(Signed::Head {
            seq: self.seq,
            hash: &self.hash,
        });
        audit_head::Entity::update_many()
            .col_expr(audit_head::Column::Seq, Expr::value(self.seq))
            .col_expr(audit_head::Column::Hash, Expr::value(self.hash.clone()))
            .col_expr(audit_head::Column::Mac, Expr::value(mac))
            .filter(audit_head::Column::Id.eq(1))
            .exec(&self.txn)
            .await?;
        self.checkpoint_if_due().await?;
        if self.txn.get_database_backend() == DbBackend::Postgres {
            self.txn
                .execute_unprepared(crate::store::cache::NOTIFY)
                .await?;
        }
        let result = self.txn.commit().await;
        // Also after a failed commit: whether it took effect is unknown.
        crate::store::cache::changed();
        Ok(result?)
    }

    async fn checkpoint_if_due(&self) -> Result<(), DbErr> {
        let now = Utc::now().trunc_subsecs(6);
        let last = audit_checkpoint::Entity::find()
            .order_by_desc(audit_checkpoint::Column::Seq)
            .one(&self.txn)
            .await?;
        if !checkpoint_due(last.as_ref().map(|c| (c.seq, c.at)), self.seq, now) {
            return Ok(());
        }
        let mac = self.key.sign(Signed::Checkpoint {
            seq: self.seq,
            hash: &self.hash,
            at: now,
        });
        audit_checkpoint::Entity::insert(audit_checkpoint::ActiveModel {
            seq: Set(self.seq),
            hash: Set(self.hash.clone()),
            at: Set(now),
            mac: Set(mac),
        })
        .exec_without_returning(&self.txn)
        .await?;
        Ok(())
    }
}

/// Whether a checkpoint is due at entry `seq`, given the last one.
pub fn checkpoint_due(
    last: Option<(i64, chrono::DateTime<Utc>)>,
    seq: i64,
    now: chrono::DateTime<Utc>,
) -> bool {
    match last {
        None => true,
        Some((last_seq, at)) => {
            seq > last_seq
                && (seq - last_seq >= CHECKPOINT_EVERY_ENTRIES
                    || now - at >= Duration::minutes(CHECKPOINT_EVERY_MINUTES))
        }
    }
}

/// Records one event in its own transaction (for events with no other change,
/// such as a failed login).
pub async fn record_alone(
    db: &DatabaseConnection,
    actor: &ActorInfo,
    event: Event,
) -> Result<(), AuditError> {
    let mut tx = AuditTx::begin(db).await?;
    tx.record(actor, event).await?;
    tx.commit().await
}

/// `slipway audit seal`: adopts the current head after everything but its
/// MAC checked out (a store written before head MACs, or one an operator
/// has investigated and accepts), and records `audit.seal` with the reason.
pub async fn seal(
    db: &DatabaseConnection,
    key: AuditKey,
    actor: &ActorInfo,
    reason: &str,
) -> Result<Verdict, AuditError> {
    let mut tx = AuditTx::begin_unchecked(db, key.clone()).await?;
    let verdict = verify(&tx.txn, &tx.key, HeadMac::Ignored).await?;
    if let Verdict::Tampered { .. } = verdict {
        return Ok(verdict);
    }
    let head = tx.head().await?;
    let was_authentic = chain::head_is_authentic(&tx.key, &head);
    tx.record(
        actor,
        Event::new(
            "audit.seal",
            "audit_log",
            head.seq,
            serde_json::json!({"head_seq": head.seq, "head_was_authenticated": was_authentic, "reason": reason}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(verify(db, &key, HeadMac::Required).await?)
}

/// Seals, once, a chain that was never authenticated: a store written
/// before head MACs has a head without one and no checkpoint (every
/// authenticated commit leaves one), and an upgrade must not lock everybody
/// out until an operator runs `slipway audit seal`. `serve` does it at start
/// (not `slipway migrate`, which may run without the master key). The
/// `audit.seal` entry (actor `system:upgrade`) stays in the log; a MAC removed
/// from a store that has checkpoints is refused, and a witness catches a
/// store rewound to look unauthenticated. A chain that fails verification
/// is left unsealed (refused).
pub async fn seal_on_upgrade(
    db: &DatabaseConnection,
    key: &crate::secrets::MasterKey,
) -> Result<(), AuditError> {
    let Some(head) = audit_head::Entity::find_by_id(1).one(db).await? else {
        return Ok(());
    };
    if head.seq == 0 || head.mac.is_some() {
        return Ok(());
    }
    if audit_checkpoint::Entity::find().one(db).await?.is_some() {
        return Ok(());
    }
    let actor = ActorInfo {
        name: "system:upgrade".into(),
        source_ip: None,
        request_id: None,
    };
    let verdict = seal(
        db,
        key.audit_key(),
        &actor,
        "store upgraded to authenticated audit heads",
    )
    .await?;
    match verdict {
        Verdict::Tampered { .. } => tracing::error!(
            seq = head.seq,
            "the audit log failed verification during the upgrade: not sealed, changes stay refused"
        ),
        _ => tracing::info!(seq = head.seq, "audit chain sealed on upgrade"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> chrono::DateTime<Utc> {
        chrono::DateTime::<Utc>::from_timestamp(1_700_000_000 + min * 60, 0).unwrap_or_default()
    }

    #[test]
    fn checkpoints_at_first_commit_then_by_count_or_age() {
        assert!(checkpoint_due(None, 1, t(0)));
        assert!(!checkpoint_due(Some((1, t(0))), 2, t(1)));
        assert!(checkpoint_due(Some((1, t(0))), 1001, t(1)));
        assert!(checkpoint_due(Some((1, t(0))), 2, t(10)));
        // Never twice for one head.
        assert!(!checkpoint_due(Some((5, t(0))), 5, t(60)));
    }
}
