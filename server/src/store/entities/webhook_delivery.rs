use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub webhook_id: Option<Uuid>,
    pub provider: String,
    pub event: String,
    /// Idempotency key, unique per project; None for unverified deliveries
    /// and redeliveries.
    pub delivery_id: Option<String>,
    pub external_id: Option<String>,
    pub received_at: DateTimeUtc,
    pub verified: bool,
    /// processed, ignored or rejected.
    pub status: String,
    pub outcome: String,
    /// JSON arrays of ids.
    pub release_ids: String,
    pub deployment_ids: String,
    /// The raw body of verified deliveries (for redelivery).
    pub body: Option<String>,
    pub redelivery_of: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
