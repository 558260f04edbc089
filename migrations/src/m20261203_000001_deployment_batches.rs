//! **Deploy environment** creates its deployments as one batch, in
//! dependency order: each deployment carries the batch it belongs to and
//! the deployments (of the same batch) it waits for, as a JSON array of ids.
//! A deployment made on its own has no batch and waits for nothing.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000001_deployment_batches"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        m.alter_table(
            Table::alter()
                .table(Deployments::Table)
                .add_column(ColumnDef::new(Deployments::BatchId).uuid().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Deployments::Table)
                .add_column(
                    ColumnDef::new(Deployments::WaitsFor)
                        .text()
                        .not_null()
                        .default("[]"),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_deployments_batch")
                .table(Deployments::Table)
                .col(Deployments::BatchId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_deployments_batch")
                .table(Deployments::Table)
                .to_owned(),
        )
        .await?;
        for col in [Deployments::WaitsFor, Deployments::BatchId] {
            m.alter_table(
                Table::alter()
                    .table(Deployments::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Deployments {
    Table,
    BatchId,
    WaitsFor,
}
