//! API tokens: `slp_<43 chars>`, shown once, stored as SHA-256, revocable,
//! optionally limited to environments, with an expiry and a last-used time.
use super::{random_secret, sha256_hex, Principal};
use crate::{
    error::ApiError,
    store::{cache::ReadCache, entities::api_token},
};
use chrono::{Duration, Utc};
use sea_orm::{
    sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter,
};
use slipway_types::{
    api::{ApiToken, TokenAction},
    Role,
};
use uuid::Uuid;

pub const PREFIX: &str = "slp_";

pub struct Created {
    pub model: api_token::Model,
    pub secret: String,
}

pub async fn create<C: ConnectionTrait>(
    db: &C,
    name: &str,
    role: Role,
    environments: &[Uuid],
    expires_in_days: Option<u32>,
    actions: &[TokenAction],
    created_by: &str,
) -> Result<Created, DbErr> {
    let secret = format!("{PREFIX}{}", random_secret());
    let now = Utc::now();
    let model = api_token::Model {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        token_hash: sha256_hex(&secret),
        role: role.as_str().to_owned(),
        environments: serde_json::to_string(environments).unwrap_or_else(|_| "[]".into()),
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at: expires_in_days.map(|d| now + Duration::days(i64::from(d))),
        last_used_at: None,
        revoked_at: None,
        actions: serde_json::to_string(actions).unwrap_or_else(|_| "[]".into()),
    };
    api_token::Entity::insert(api_token::ActiveModel {
        id: Set(model.id),
        name: Set(model.name.clone()),
        token_hash: Set(model.token_hash.clone()),
        role: Set(model.role.clone()),
        environments: Set(model.environments.clone()),
        created_by: Set(model.created_by.clone()),
        created_at: Set(model.created_at),
        expires_at: Set(model.expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        actions: Set(model.actions.clone()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(Created { model, secret })
}

pub fn to_api(m: api_token::Model) -> ApiToken {
    ApiToken {
        id: m.id,
        name: m.name,
        role: m.role.parse().unwrap_or(Role::Viewer),
        environments: serde_json::from_str(&m.environments).unwrap_or_default(),
        created_by: m.created_by,
        created_at: m.created_at,
        expires_at: m.expires_at,
        last_used_at: m.last_used_at,
        revoked_at: m.revoked_at,
        actions: serde_json::from_str(&m.actions).unwrap_or_default(),
    }
}

pub async fn authenticate(
    db: &DatabaseConnection,
    cache: &ReadCache,
    secret: &str,
) -> Result<Principal, ApiError> {
    if !secret.starts_with(PREFIX) || secret.len() > 128 {
        return Err(ApiError::Unauthenticated);
    }
    let hash = sha256_hex(secret);
    // The cache keeps the stored row (plain data); what it grants is decided
    // here, on every request.
    let generation = cache.generation();
    let token = match generation.and_then(|g| cache.tokens.get(g, &hash)) {
        Some(token) => token,
        None => {
            let token = lookup(db, &hash).await?;
            if let Some(g) = generation {
                cache.tokens.put(g, hash.clone(), token.clone());
            }
            token
        }
    };
    let principal = principal_of(&token)?;
    let now = Utc::now();
    if token.expires_at.is_some_and(|e| e <= now) {
        return Err(ApiError::Unauthenticated);
    }
    if token
        .last_used_at
        .is_none_or(|l| now - l > Duration::minutes(1))
    {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(token.id))
            .exec(db)
            .await?;
        if let Some(g) = generation {
            let mut used = token;
            used.last_used_at = Some(now);
            cache.tokens.put(g, hash, used);
        }
    }
    Ok(principal)
}

/// The unrevoked token stored under `hash`.
async fn lookup(db: &DatabaseConnection, hash: &str) -> Result<api_token::Model, ApiError> {
    api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash))
        .one(db)
        .await?
        .filter(|t| t.revoked_at.is_none())
        .ok_or(ApiError::Unauthenticated)
}

/// Who a stored token speaks for.
fn principal_of(t: &api_token::Model) -> Result<Principal, ApiError> {
    let envs: Vec<Uuid> = serde_json::from_str(&t.environments).unwrap_or_default();
    let actions: Vec<TokenAction> = serde_json::from_str(&t.actions).map_err(|e| {
        ApiError::Internal(anyhow::anyhow!(
            "token {} has unreadable actions: {e}",
            t.id
        ))
    })?;
    let role: Role = t
        .role
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    Ok(Principal {
        name: format!("token:{}", t.name),
        user_id: None,
        role,
        env_roles: Default::default(),
        environments: (!envs.is_empty()).then_some(envs),
        actions: (!actions.is_empty()).then_some(actions),
        session: None,
    })
}

/// Parses `30d`, `12h`, `90` (days) into whole days (hours round up).
pub fn parse_expiry_days(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let err = || format!("invalid expiry {s:?}: use e.g. 30d or 12h");
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'd'),
    };
    let n: u32 = num.parse().map_err(|_| err())?;
    let days = match unit {
        'd' => n,
        'h' => n.div_ceil(24),
        'w' => n.checked_mul(7).ok_or_else(err)?,
        _ => return Err(err()),
    };
    if days == 0 || days > 3650 {
        return Err(format!(
            "expiry must be between 1 day and 10 years (got {s})"
        ));
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::parse_expiry_days;

    #[test]
    fn expiry_parsing() {
        assert_eq!(parse_expiry_days("30d"), Ok(30));
        assert_eq!(parse_expiry_days("90"), Ok(90));
        assert_eq!(parse_expiry_days("36h"), Ok(2));
        assert_eq!(parse_expiry_days("2w"), Ok(14));
        assert!(parse_expiry_days("0d").is_err());
        assert!(parse_expiry_days("abc").is_err());
        assert!(parse_expiry_days("5y").is_err());
    }
}
