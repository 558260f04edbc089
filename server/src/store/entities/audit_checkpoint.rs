use sea_orm::entity::prelude::*;

/// An earlier head of the audit chain with its MAC (see `audit::mac`).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_checkpoint")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub hash: String,
    pub at: DateTimeUtc,
    pub mac: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
