//! Attempt counters of the login and enrollment limits, in the store so that
//! every replica counts against the same window. Keys are SHA-256 hex (no
//! user names or addresses in clear); a window starts at the first attempt
//! and is stored in milliseconds since the epoch so both stores compare it
//! as a number.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_login_attempts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LoginAttempts::Table)
                .col(
                    ColumnDef::new(LoginAttempts::KeyHash)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(LoginAttempts::WindowStartMs)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(LoginAttempts::Attempts).integer().not_null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(LoginAttempts::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    KeyHash,
    WindowStartMs,
    Attempts,
}
