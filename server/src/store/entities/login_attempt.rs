use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "login_attempts")]
pub struct Model {
    /// SHA-256 hex of the limited key (`login:user:…`, `login:ip:…`, `enroll:ip:…`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_hash: String,
    /// Start of the current window, milliseconds since the epoch.
    pub window_start_ms: i64,
    /// Attempts reserved in the window (failures, and attempts in flight).
    pub attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
