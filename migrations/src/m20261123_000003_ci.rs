//! Releases from CI: per-project webhook endpoints (encrypted secrets), the
//! record of every delivery (unique per project and delivery id, the
//! idempotency key), per-service trigger rules, per-environment deploy
//! policies (approvals, windows, freezes) and deployment approvals.
use crate::columns::{text, text_null, ts, uuid, uuid_pk};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000003_ci"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Webhooks::Table)
                .col(uuid_pk(Webhooks::Id))
                .col(uuid(Webhooks::ProjectId))
                .col(text(Webhooks::Provider))
                .col(ColumnDef::new(Webhooks::Ciphertext).binary().not_null())
                .col(ColumnDef::new(Webhooks::Nonce).binary().not_null())
                .col(ColumnDef::new(Webhooks::SecretVersion).integer().not_null())
                .col(text(Webhooks::CreatedBy))
                .col(ts(Webhooks::CreatedAt))
                .col(
                    ColumnDef::new(Webhooks::RotatedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Webhooks::Table, Webhooks::ProjectId)
                        .to(Projects::Table, Projects::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhooks_project")
                .table(Webhooks::Table)
                .col(Webhooks::ProjectId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(uuid_pk(WebhookDeliveries::Id))
                .col(uuid(WebhookDeliveries::ProjectId))
                .col(ColumnDef::new(WebhookDeliveries::WebhookId).uuid().null())
                .col(text(WebhookDeliveries::Provider))
                .col(text(WebhookDeliveries::Event))
                // The idempotency key: set only on verified, first deliveries.
                .col(text_null(WebhookDeliveries::DeliveryId))
                // What the sender called it (also kept for unverified ones).
                .col(text_null(WebhookDeliveries::ExternalId))
                .col(ts(WebhookDeliveries::ReceivedAt))
                .col(
                    ColumnDef::new(WebhookDeliveries::Verified)
                        .boolean()
                        .not_null(),
                )
                .col(text(WebhookDeliveries::Status))
                .col(text(WebhookDeliveries::Outcome))
                .col(text(WebhookDeliveries::ReleaseIds))
                .col(text(WebhookDeliveries::DeploymentIds))
                .col(text_null(WebhookDeliveries::Body))
                .col(
                    ColumnDef::new(WebhookDeliveries::RedeliveryOf)
                        .uuid()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_webhook_deliveries_project_delivery")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::ProjectId)
                .col(WebhookDeliveries::DeliveryId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_webhook_deliveries_received")
                .table(WebhookDeliveries::Table)
                .col(WebhookDeliveries::ProjectId)
                .col(WebhookDeliveries::ReceivedAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(TriggerRules::Table)
                .col(uuid_pk(TriggerRules::Id))
                .col(uuid(TriggerRules::ServiceId))
                .col(uuid(TriggerRules::ProjectId))
                .col(text(TriggerRules::Event))
                .col(text(TriggerRules::Pattern))
                .col(text_null(TriggerRules::ImageTemplate))
                .col(
                    ColumnDef::new(TriggerRules::AutoDeploy)
                        .boolean()
                        .not_null(),
                )
                .col(text(TriggerRules::CreatedBy))
                .col(ts(TriggerRules::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(TriggerRules::Table, TriggerRules::ServiceId)
                        .to(Services::Table, Services::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_trigger_rules_project")
                .table(TriggerRules::Table)
                .col(TriggerRules::ProjectId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EnvironmentPolicies::Table)
                .col(uuid_pk(EnvironmentPolicies::EnvironmentId))
                .col(
                    ColumnDef::new(EnvironmentPolicies::RequiredApprovals)
                        .integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(EnvironmentPolicies::ApprovalTtlHours)
                        .integer()
                        .not_null(),
                )
                .col(text(EnvironmentPolicies::Windows))
                .col(text(EnvironmentPolicies::Freezes))
                .col(text(EnvironmentPolicies::UpdatedBy))
                .col(ts(EnvironmentPolicies::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            EnvironmentPolicies::Table,
                            EnvironmentPolicies::EnvironmentId,
                        )
                        .to(Environments::Table, Environments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DeploymentApprovals::Table)
                .col(uuid_pk(DeploymentApprovals::Id))
                .col(uuid(DeploymentApprovals::DeploymentId))
                .col(text(DeploymentApprovals::Approver))
                .col(ts(DeploymentApprovals::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(
                            DeploymentApprovals::Table,
                            DeploymentApprovals::DeploymentId,
                        )
                        .to(Deployments::Table, Deployments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_deployment_approvals_approver")
                .table(DeploymentApprovals::Table)
                .col(DeploymentApprovals::DeploymentId)
                .col(DeploymentApprovals::Approver)
                .unique()
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            DeploymentApprovals::Table.into_iden(),
            EnvironmentPolicies::Table.into_iden(),
            TriggerRules::Table.into_iden(),
            WebhookDeliveries::Table.into_iden(),
            Webhooks::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Environments {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Services {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    ProjectId,
    Provider,
    Ciphertext,
    Nonce,
    SecretVersion,
    CreatedBy,
    CreatedAt,
    RotatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    ProjectId,
    WebhookId,
    Provider,
    Event,
    DeliveryId,
    ExternalId,
    ReceivedAt,
    Verified,
    Status,
    Outcome,
    ReleaseIds,
    DeploymentIds,
    Body,
    RedeliveryOf,
}

#[derive(DeriveIden)]
enum TriggerRules {
    Table,
    Id,
    ServiceId,
    ProjectId,
    Event,
    Pattern,
    ImageTemplate,
    AutoDeploy,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EnvironmentPolicies {
    Table,
    EnvironmentId,
    RequiredApprovals,
    ApprovalTtlHours,
    Windows,
    Freezes,
    UpdatedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeploymentApprovals {
    Table,
    Id,
    DeploymentId,
    Approver,
    CreatedAt,
}
