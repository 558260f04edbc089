use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    /// github, gitlab or generic.
    pub provider: String,
    /// The signing secret, XChaCha20-Poly1305 sealed (see `ci::webhook_aad`).
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub secret_version: i32,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub rotated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
