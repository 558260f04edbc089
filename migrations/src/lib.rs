//! Schema migrations. Each migration is written once and never edited after it
//! has landed; the SeaORM entities in `server/src/store/entities` mirror them.
pub use sea_orm_migration::prelude::*;

mod columns;
mod m20261123_000001_init;
mod m20261123_000002_oidc_rbac;
mod m20261123_000003_ci;
mod m20261123_000004_token_actions;
mod m20261130_000005_agents;
mod m20261202_000001_login_attempts;
mod m20261202_000002_audit_mac;
mod m20261203_000001_deployment_batches;

pub use m20261123_000001_init::GENESIS_HASH;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_init::Migration),
            Box::new(m20261123_000002_oidc_rbac::Migration),
            Box::new(m20261123_000003_ci::Migration),
            Box::new(m20261123_000004_token_actions::Migration),
            Box::new(m20261130_000005_agents::Migration),
            Box::new(m20261202_000001_login_attempts::Migration),
            Box::new(m20261202_000002_audit_mac::Migration),
            Box::new(m20261203_000001_deployment_batches::Migration),
        ]
    }
}
