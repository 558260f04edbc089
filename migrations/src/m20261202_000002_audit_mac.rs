//! An authenticated audit chain: the head carries an HMAC of `(seq, hash)`
//! under a key derived from the master key (which is never in the store),
//! and `audit_checkpoint` keeps such MACs for earlier heads. Someone who can
//! write the database can still delete the newest entries, but can no longer
//! rewind the head to match without the key (see `server/src/audit/`).
use crate::columns::{text, ts};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000002_audit_mac"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // NULL only for the genesis head of a new store and for the head of
        // a store written before this migration (`slipway audit seal`).
        m.alter_table(
            Table::alter()
                .table(AuditHead::Table)
                .add_column(ColumnDef::new(AuditHead::Mac).text().null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AuditCheckpoint::Table)
                .col(
                    ColumnDef::new(AuditCheckpoint::Seq)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(text(AuditCheckpoint::Hash))
                .col(ts(AuditCheckpoint::At))
                .col(text(AuditCheckpoint::Mac))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditCheckpoint::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(AuditHead::Table)
                .drop_column(AuditHead::Mac)
                .to_owned(),
        )
        .await
    }
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Mac,
}

#[derive(DeriveIden)]
enum AuditCheckpoint {
    Table,
    Seq,
    Hash,
    At,
    Mac,
}
