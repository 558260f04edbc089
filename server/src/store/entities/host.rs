use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "hosts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub status: String,
    /// JSON object of labels.
    pub labels: String,
    pub last_seen_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// Ed25519 public key (base64) the agent proves itself with.
    pub public_key: Option<String>,
    /// SHA-256 (hex) of the pending one-time enrollment token.
    pub enroll_token_hash: Option<String>,
    pub enroll_expires_at: Option<DateTimeUtc>,
    /// JSON `HostFacts` from the agent's last Hello.
    pub facts: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
