//! Agents and the deploy engine: a host's enrollment token (hashed, one
//! time, expiring) and Ed25519 public key, the facts its agent reported, a
//! lease on running deployments (so a restarted or second control plane
//! knows which ones nobody drives any more) and per-host rollout targets.
use crate::columns::{text, text_null, ts, ts_null, uuid};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000005_agents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for col in [
            text_null(Hosts::PublicKey),
            text_null(Hosts::EnrollTokenHash),
            ts_null(Hosts::EnrollExpiresAt),
            text_null(Hosts::Facts),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Hosts::Table)
                    .add_column(col.to_owned())
                    .to_owned(),
            )
            .await?;
        }
        for col in [
            text_null(Deployments::ClaimedBy),
            ts_null(Deployments::LeaseUntil),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .add_column(col.to_owned())
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(DeploymentTargets::Table)
                .col(uuid(DeploymentTargets::DeploymentId))
                .col(uuid(DeploymentTargets::HostId))
                .col(
                    ColumnDef::new(DeploymentTargets::Replicas)
                        .integer()
                        .not_null(),
                )
                .col(text(DeploymentTargets::State))
                .col(ts(DeploymentTargets::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(DeploymentTargets::DeploymentId)
                        .col(DeploymentTargets::HostId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(DeploymentTargets::Table, DeploymentTargets::DeploymentId)
                        .to(Deployments::Table, Deployments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_deployment_targets_host")
                .table(DeploymentTargets::Table)
                .col(DeploymentTargets::HostId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DeploymentTargets::Table).to_owned())
            .await?;
        for col in [Deployments::ClaimedBy, Deployments::LeaseUntil] {
            m.alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        for col in [
            Hosts::PublicKey,
            Hosts::EnrollTokenHash,
            Hosts::EnrollExpiresAt,
            Hosts::Facts,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Hosts::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Hosts {
    Table,
    PublicKey,
    EnrollTokenHash,
    EnrollExpiresAt,
    Facts,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    ClaimedBy,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum DeploymentTargets {
    Table,
    DeploymentId,
    HostId,
    Replicas,
    State,
    UpdatedAt,
}
