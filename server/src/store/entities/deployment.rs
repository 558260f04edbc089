use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub release_id: Uuid,
    pub service_id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub state: String,
    pub reason: Option<String>,
    pub requested_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// The control-plane instance driving a running deployment.
    pub claimed_by: Option<String>,
    /// It renews this while it works; an expired lease means nobody does.
    pub lease_until: Option<DateTimeUtc>,
    /// The **Deploy environment** batch it belongs to.
    pub batch_id: Option<Uuid>,
    /// JSON array of the deployment ids (of its batch) that must succeed
    /// before this one starts; `[]` for none.
    pub waits_for: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::release::Entity",
        from = "Column::ReleaseId",
        to = "super::release::Column::Id"
    )]
    Release,
}

impl Related<super::release::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Release.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
