//! The audit log: every mutation writes one entry in the same transaction as
//! the change. Entries form a SHA-256 hash chain (each stores the previous
//! entry's hash), so an edited, inserted or deleted row is detected by
//! [`verify`].
pub mod routes;

use crate::store::entities::{audit_entry, audit_head};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first entry (also seeded into `audit_head` by the migration).
pub use slipway_migrations::GENESIS_HASH;

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
/// change, [`AuditTx::record`] the event, then [`AuditTx::commit`].
pub struct AuditTx {
    pub txn: DatabaseTransaction,
    seq: i64,
    hash: String,
}

impl AuditTx {
    /// Begins a transaction whose first statement locks the chain head. On
    /// SQLite that takes the write lock up front (no upgrade deadlocks); on
    /// PostgreSQL it row-locks the head so replicas append in turn.
    pub async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        let txn = db.begin().await?;
        audit_head::Entity::update_many()
            .col_expr(
                audit_head::Column::Seq,
                Expr::col(audit_head::Column::Seq).into(),
            )
            .filter(audit_head::Column::Id.eq(1))
            .exec(&txn)
            .await?;
        let head = audit_head::Entity::find_by_id(1)
            .one(&txn)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
        Ok(AuditTx {
            txn,
            seq: head.seq,
            hash: head.hash,
        })
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
        audit_head::Entity::update_many()
            .col_expr(audit_head::Column::Seq, Expr::value(seq))
            .col_expr(audit_head::Column::Hash, Expr::value(hash.clone()))
            .filter(audit_head::Column::Id.eq(1))
            .exec(&self.txn)
            .await?;
        self.seq = seq;
        self.hash = hash;
        Ok(seq)
    }

    /// Commits, and lets every replica's read cache know that data changed
    /// (see [`crate::store::cache`]).
    pub async fn commit(self) -> Result<(), DbErr> {
        if self.txn.get_database_backend() == DbBackend::Postgres {
            self.txn
                .execute_unprepared(crate::store::cache::NOTIFY)
                .await?;
        }
        let result = self.txn.commit().await;
        // Also after a failed commit: whether it took effect is unknown.
        crate::store::cache::changed();
        result
    }
}

/// Records one event in its own transaction (for events with no other change,
/// such as a failed login).
pub async fn record_alone(
    db: &DatabaseConnection,
    actor: &ActorInfo,
    event: Event,
) -> Result<(), DbErr> {
    let mut tx = AuditTx::begin(db).await?;
    tx.record(actor, event).await?;
    tx.commit().await
}

pub struct HashInput<'a> {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<&'a str>,
    pub summary: &'a str,
    pub source_ip: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// SHA-256 over an unambiguous JSON encoding of every field and the previous hash.
pub fn entry_hash(i: &HashInput<'_>) -> String {
    let canonical = serde_json::json!([
        "slipway-audit-v1",
        i.seq,
        i.at.timestamp_micros(),
        i.actor,
        i.action,
        i.target_type,
        i.target_id,
        i.summary,
        i.source_ip,
        i.request_id,
        i.prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64 },
    Tampered { seq: i64, reason: String },
}

/// Walks the whole chain in order and reports the first entry that does not
/// match its hash, its predecessor or the head.
pub async fn verify<C: ConnectionTrait>(db: &C) -> Result<Verdict, DbErr> {
    const BATCH: u64 = 1000;
    let mut prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1i64;
    let mut count = 0u64;
    loop {
        let rows = audit_entry::Entity::find()
            .filter(audit_entry::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_entry::Column::Seq)
            .limit(BATCH)
            .all(db)
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            if r.seq != expected_seq {
                return Ok(Verdict::Tampered {
                    seq: expected_seq,
                    reason: format!("entry {expected_seq} is missing (next is {})", r.seq),
                });
            }
            if r.prev_hash != prev {
                return Ok(Verdict::Tampered {
                    seq: r.seq,
                    reason: "prev_hash does not match the previous entry".into(),
                });
            }
            let h = entry_hash(&HashInput {
                seq: r.seq,
                at: r.at,
                actor: &r.actor,
                action: &r.action,
                target_type: &r.target_type,
                target_id: r.target_id.as_deref(),
                summary: &r.summary,
                source_ip: r.source_ip.as_deref(),
                request_id: r.request_id.as_deref(),
                prev_hash: &r.prev_hash,
            });
            if h != r.hash {
                return Ok(Verdict::Tampered {
                    seq: r.seq,
                    reason: "content does not match its hash (row was modified)".into(),
                });
            }
            prev = r.hash.clone();
            expected_seq += 1;
            count += 1;
        }
    }
    let head = audit_head::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
    if head.seq != expected_seq - 1 || head.hash != prev {
        return Ok(Verdict::Tampered {
            seq: head.seq.max(expected_seq),
            reason: format!(
                "chain ends at entry {} but the head records entry {} (entries deleted or head altered)",
                expected_seq - 1,
                head.seq
            ),
        });
    }
    Ok(Verdict::Intact { entries: count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(summary: &'a str, prev: &'a str) -> HashInput<'a> {
        HashInput {
            seq: 1,
            at: DateTime::<Utc>::from_timestamp(1_700_000_000, 123_000).unwrap_or_default(),
            actor: "alice",
            action: "project.create",
            target_type: "project",
            target_id: Some("x"),
            summary,
            source_ip: None,
            request_id: None,
            prev_hash: prev,
        }
    }

    #[test]
    fn hash_depends_on_every_field_and_predecessor() {
        let a = entry_hash(&input("{}", GENESIS_HASH));
        assert_eq!(a.len(), 64);
        assert_eq!(a, entry_hash(&input("{}", GENESIS_HASH)));
        assert_ne!(a, entry_hash(&input("{\"a\":1}", GENESIS_HASH)));
        assert_ne!(a, entry_hash(&input("{}", &"1".repeat(64))));
    }
}
