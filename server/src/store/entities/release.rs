use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "releases")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub service_id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub number: i64,
    pub image: String,
    /// JSON of the `ServiceSpec` snapshot.
    pub config: String,
    pub git_sha: Option<String>,
    pub git_ref: Option<String>,
    pub trigger: String,
    pub author: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
