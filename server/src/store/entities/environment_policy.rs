use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "environment_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub environment_id: Uuid,
    pub required_approvals: i32,
    pub approval_ttl_hours: i32,
    /// JSON of `Vec<MaintenanceWindow>`.
    pub windows: String,
    /// JSON of `Vec<DeployFreeze>`.
    pub freezes: String,
    pub updated_by: String,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
