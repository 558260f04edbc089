//! The foundation schema: accounts, sessions, tokens, the project tree,
//! variables and secrets, hosts, releases, deployments and the audit chain.
use crate::columns::{fk, text, text_null, ts, ts_null, uuid, uuid_pk};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000001_init"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid_pk(Users::Id))
                .col(text(Users::Username).unique_key().to_owned())
                .col(text(Users::PasswordHash))
                .col(text(Users::Role))
                .col(
                    ColumnDef::new(Users::Disabled)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ts(Users::CreatedAt))
                .col(ts_null(Users::LastLoginAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(
                    ColumnDef::new(Sessions::IdHash)
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(uuid(Sessions::UserId))
                .col(text(Sessions::CsrfToken))
                .col(ts(Sessions::CreatedAt))
                .col(ts(Sessions::ExpiresAt))
                .col(ts(Sessions::LastSeenAt))
                .foreign_key(&mut fk(
                    Sessions::Table,
                    Sessions::UserId,
                    Users::Table,
                    Users::Id,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiTokens::Table)
                .col(uuid_pk(ApiTokens::Id))
                .col(text(ApiTokens::Name))
                .col(text(ApiTokens::TokenHash).unique_key().to_owned())
                .col(text(ApiTokens::Role))
                .col(text(ApiTokens::Environments))
                .col(text(ApiTokens::CreatedBy))
                .col(ts(ApiTokens::CreatedAt))
                .col(ts_null(ApiTokens::ExpiresAt))
                .col(ts_null(ApiTokens::LastUsedAt))
                .col(ts_null(ApiTokens::RevokedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Projects::Table)
                .col(uuid_pk(Projects::Id))
                .col(text(Projects::Name).unique_key().to_owned())
                .col(text(Projects::Description))
                .col(ts(Projects::CreatedAt))
                .col(ts(Projects::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Environments::Table)
                .col(uuid_pk(Environments::Id))
                .col(uuid(Environments::ProjectId))
                .col(text(Environments::Name))
                .col(
                    ColumnDef::new(Environments::Protected)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ts(Environments::CreatedAt))
                .col(ts(Environments::UpdatedAt))
                .foreign_key(&mut fk(
                    Environments::Table,
                    Environments::ProjectId,
                    Projects::Table,
                    Projects::Id,
                ))
                .index(
                    Index::create()
                        .name("ux_environments_project_name")
                        .col(Environments::ProjectId)
                        .col(Environments::Name)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Services::Table)
                .col(uuid_pk(Services::Id))
                .col(uuid(Services::EnvironmentId))
                .col(uuid(Services::ProjectId))
                .col(text(Services::Name))
                .col(text(Services::Spec))
                .col(ts(Services::CreatedAt))
                .col(ts(Services::UpdatedAt))
                .foreign_key(&mut fk(
                    Services::Table,
                    Services::EnvironmentId,
                    Environments::Table,
                    Environments::Id,
                ))
                .index(
                    Index::create()
                        .name("ux_services_environment_name")
                        .col(Services::EnvironmentId)
                        .col(Services::Name)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Variables::Table)
                .col(uuid_pk(Variables::Id))
                .col(uuid(Variables::EnvironmentId))
                .col(text(Variables::Name))
                .col(ColumnDef::new(Variables::Secret).boolean().not_null())
                .col(text_null(Variables::Value))
                .col(ColumnDef::new(Variables::Ciphertext).binary().null())
                .col(ColumnDef::new(Variables::Nonce).binary().null())
                .col(ColumnDef::new(Variables::Version).integer().not_null())
                .col(ts(Variables::UpdatedAt))
                .col(text(Variables::UpdatedBy))
                .foreign_key(&mut fk(
                    Variables::Table,
                    Variables::EnvironmentId,
                    Environments::Table,
                    Environments::Id,
                ))
                .index(
                    Index::create()
                        .name("ux_variables_environment_name")
                        .col(Variables::EnvironmentId)
                        .col(Variables::Name)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Hosts::Table)
                .col(uuid_pk(Hosts::Id))
                .col(text(Hosts::Name).unique_key().to_owned())
                .col(text(Hosts::Status))
                .col(text(Hosts::Labels))
                .col(ts_null(Hosts::LastSeenAt))
                .col(ts(Hosts::CreatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(HostEnvironments::Table)
                .col(uuid(HostEnvironments::HostId))
                .col(uuid(HostEnvironments::EnvironmentId))
                .primary_key(
                    Index::create()
                        .col(HostEnvironments::HostId)
                        .col(HostEnvironments::EnvironmentId),
                )
                .foreign_key(&mut fk(
                    HostEnvironments::Table,
                    HostEnvironments::HostId,
                    Hosts::Table,
                    Hosts::Id,
                ))
                .foreign_key(&mut fk(
                    HostEnvironments::Table,
                    HostEnvironments::EnvironmentId,
                    Environments::Table,
                    Environments::Id,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Releases::Table)
                .col(uuid_pk(Releases::Id))
                .col(uuid(Releases::ServiceId))
                .col(uuid(Releases::EnvironmentId))
                .col(uuid(Releases::ProjectId))
                .col(ColumnDef::new(Releases::Number).big_integer().not_null())
                .col(text(Releases::Image))
                .col(text(Releases::Config))
                .col(text_null(Releases::GitSha))
                .col(text_null(Releases::GitRef))
                .col(text(Releases::Trigger))
                .col(text(Releases::Author))
                .col(ts(Releases::CreatedAt))
                .foreign_key(&mut fk(
                    Releases::Table,
                    Releases::ServiceId,
                    Services::Table,
                    Services::Id,
                ))
                .index(
                    Index::create()
                        .name("ux_releases_service_number")
                        .col(Releases::ServiceId)
                        .col(Releases::Number)
                        .unique(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Deployments::Table)
                .col(uuid_pk(Deployments::Id))
                .col(uuid(Deployments::ReleaseId))
                .col(uuid(Deployments::ServiceId))
                .col(uuid(Deployments::EnvironmentId))
                .col(uuid(Deployments::ProjectId))
                .col(text(Deployments::State))
                .col(text_null(Deployments::Reason))
                .col(text(Deployments::RequestedBy))
                .col(ts(Deployments::CreatedAt))
                .col(ts_null(Deployments::StartedAt))
                .col(ts_null(Deployments::FinishedAt))
                .foreign_key(&mut fk(
                    Deployments::Table,
                    Deployments::ReleaseId,
                    Releases::Table,
                    Releases::Id,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_deployments_service_created")
                .table(Deployments::Table)
                .col(Deployments::ServiceId)
                .col(Deployments::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_deployments_state")
                .table(Deployments::Table)
                .col(Deployments::State)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(DeploymentSteps::Table)
                .col(
                    ColumnDef::new(DeploymentSteps::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(uuid(DeploymentSteps::DeploymentId))
                .col(ts(DeploymentSteps::At))
                .col(text(DeploymentSteps::Message))
                .foreign_key(&mut fk(
                    DeploymentSteps::Table,
                    DeploymentSteps::DeploymentId,
                    Deployments::Table,
                    Deployments::Id,
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(
                    ColumnDef::new(AuditLog::Seq)
                        .big_integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ts(AuditLog::At))
                .col(text(AuditLog::Actor))
                .col(text(AuditLog::Action))
                .col(text(AuditLog::TargetType))
                .col(text_null(AuditLog::TargetId))
                .col(text(AuditLog::Summary))
                .col(text_null(AuditLog::SourceIp))
                .col(text_null(AuditLog::RequestId))
                .col(text(AuditLog::PrevHash))
                .col(text(AuditLog::Hash))
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("ix_audit_actor", AuditLog::Actor),
            ("ix_audit_action", AuditLog::Action),
            ("ix_audit_at", AuditLog::At),
        ] {
            m.create_index(
                Index::create()
                    .name(name)
                    .table(AuditLog::Table)
                    .col(col)
                    .to_owned(),
            )
            .await?;
        }

        // One row: the head of the audit hash chain. Every audited write
        // updates it first, which serialises audit appends on every backend.
        m.create_table(
            Table::create()
                .table(AuditHead::Table)
                .col(
                    ColumnDef::new(AuditHead::Id)
                        .integer()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditHead::Seq).big_integer().not_null())
                .col(text(AuditHead::Hash))
                .to_owned(),
        )
        .await?;
        m.exec_stmt(
            Query::insert()
                .into_table(AuditHead::Table)
                .columns([AuditHead::Id, AuditHead::Seq, AuditHead::Hash])
                .values_panic([1.into(), 0i64.into(), GENESIS_HASH.into()])
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AuditHead::Table.into_iden(),
            AuditLog::Table.into_iden(),
            DeploymentSteps::Table.into_iden(),
            Deployments::Table.into_iden(),
            Releases::Table.into_iden(),
            HostEnvironments::Table.into_iden(),
            Hosts::Table.into_iden(),
            Variables::Table.into_iden(),
            Services::Table.into_iden(),
            Environments::Table.into_iden(),
            Projects::Table.into_iden(),
            ApiTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

/// `prev_hash` of the first audit entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    Role,
    Disabled,
    CreatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    IdHash,
    UserId,
    CsrfToken,
    CreatedAt,
    ExpiresAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Name,
    TokenHash,
    Role,
    Environments,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Environments {
    Table,
    Id,
    ProjectId,
    Name,
    Protected,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Services {
    Table,
    Id,
    EnvironmentId,
    ProjectId,
    Name,
    Spec,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Variables {
    Table,
    Id,
    EnvironmentId,
    Name,
    Secret,
    Value,
    Ciphertext,
    Nonce,
    Version,
    UpdatedAt,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum Hosts {
    Table,
    Id,
    Name,
    Status,
    Labels,
    LastSeenAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HostEnvironments {
    Table,
    HostId,
    EnvironmentId,
}

#[derive(DeriveIden)]
enum Releases {
    Table,
    Id,
    ServiceId,
    EnvironmentId,
    ProjectId,
    Number,
    Image,
    Config,
    GitSha,
    GitRef,
    Trigger,
    Author,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    ReleaseId,
    ServiceId,
    EnvironmentId,
    ProjectId,
    State,
    Reason,
    RequestedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum DeploymentSteps {
    Table,
    Id,
    DeploymentId,
    At,
    Message,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Seq,
    At,
    Actor,
    Action,
    TargetType,
    TargetId,
    Summary,
    SourceIp,
    RequestId,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditHead {
    Table,
    Id,
    Seq,
    Hash,
}
