//! OpenID Connect users, environment-scoped role grants, claim → role
//! mapping rules, and pending OIDC logins (state, nonce, PKCE verifier).
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_oidc_rbac"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            Users::Issuer,
            Users::Subject,
            Users::Email,
            Users::DisplayName,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(ColumnDef::new(col).text().null())
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("ux_users_issuer_subject")
                .table(Users::Table)
                .col(Users::Issuer)
                .col(Users::Subject)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RoleGrants::Table)
                .col(
                    ColumnDef::new(RoleGrants::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(RoleGrants::UserId).uuid().not_null())
                .col(ColumnDef::new(RoleGrants::Role).text().not_null())
                .col(ColumnDef::new(RoleGrants::EnvironmentId).uuid().null())
                .col(ColumnDef::new(RoleGrants::Source).text().not_null())
                .col(ColumnDef::new(RoleGrants::CreatedBy).text().not_null())
                .col(
                    ColumnDef::new(RoleGrants::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(RoleGrants::Table, RoleGrants::UserId)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_role_grants_user")
                .table(RoleGrants::Table)
                .col(RoleGrants::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(RoleMappings::Table)
                .col(
                    ColumnDef::new(RoleMappings::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(RoleMappings::Claim).text().not_null())
                .col(ColumnDef::new(RoleMappings::Value).text().not_null())
                .col(ColumnDef::new(RoleMappings::Role).text().not_null())
                .col(ColumnDef::new(RoleMappings::EnvironmentId).uuid().null())
                .col(ColumnDef::new(RoleMappings::CreatedBy).text().not_null())
                .col(
                    ColumnDef::new(RoleMappings::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(OidcLogins::Table)
                .col(
                    ColumnDef::new(OidcLogins::StateHash)
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(OidcLogins::Provider).text().not_null())
                .col(ColumnDef::new(OidcLogins::Nonce).text().not_null())
                .col(ColumnDef::new(OidcLogins::PkceVerifier).text().not_null())
                .col(
                    ColumnDef::new(OidcLogins::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            OidcLogins::Table.into_iden(),
            RoleMappings::Table.into_iden(),
            RoleGrants::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        m.drop_index(
            Index::drop()
                .name("ux_users_issuer_subject")
                .table(Users::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            Users::Issuer,
            Users::Subject,
            Users::Email,
            Users::DisplayName,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Issuer,
    Subject,
    Email,
    DisplayName,
}

#[derive(DeriveIden)]
enum RoleGrants {
    Table,
    Id,
    UserId,
    Role,
    EnvironmentId,
    Source,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoleMappings {
    Table,
    Id,
    Claim,
    Value,
    Role,
    EnvironmentId,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OidcLogins {
    Table,
    StateHash,
    Provider,
    Nonce,
    PkceVerifier,
    CreatedAt,
}
