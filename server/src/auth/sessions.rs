//! Server-side sessions. The cookie holds a random id; the store keeps only
//! its SHA-256, the CSRF token, and the absolute and idle expiry.
use super::{random_secret, sha256_hex, Principal};
use crate::{
    error::ApiError,
    state::AppState,
    store::entities::{session, user},
};
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter,
};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct SessionRef {
    pub id_hash: String,
    pub csrf_token: String,
}

pub struct NewSession {
    /// Goes into the cookie; never stored.
    pub cookie_value: String,
    pub csrf_token: String,
}

pub async fn create<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    ttl_hours: i64,
) -> Result<NewSession, DbErr> {
    let cookie_value = random_secret();
    let csrf_token = random_secret();
    let now = Utc::now();
    session::ActiveModel {
        id_hash: Set(sha256_hex(&cookie_value)),
        user_id: Set(user_id),
        csrf_token: Set(csrf_token.clone()),
        created_at: Set(now),
        expires_at: Set(now + Duration::hours(ttl_hours)),
        last_seen_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(NewSession {
        cookie_value,
        csrf_token,
    })
}

pub async fn authenticate(state: &AppState, cookie_value: &str) -> Result<Principal, ApiError> {
    let id_hash = sha256_hex(cookie_value);
    let Some((s, Some(u))) = session::Entity::find_by_id(id_hash.clone())
        .find_also_related_user(&state.db)
        .await?
    else {
        return Err(ApiError::Unauthenticated);
    };
    let now = Utc::now();
    let idle = Duration::minutes(state.settings.session_idle_minutes);
    if s.expires_at <= now || s.last_seen_at + idle <= now || u.disabled {
        session::Entity::delete_by_id(id_hash)
            .exec(&state.db)
            .await?;
        return Err(ApiError::Unauthenticated);
    }
    if needs_provider_again(&u, &s, state.settings.oidc_max_session_age, now) {
        session::Entity::delete_by_id(id_hash)
            .exec(&state.db)
            .await?;
        return Err(ApiError::Reauthenticate);
    }
    // Touch at most once a minute so reads stay reads.
    if now - s.last_seen_at > Duration::minutes(1) {
        session::Entity::update_many()
            .col_expr(
                session::Column::LastSeenAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(session::Column::IdHash.eq(id_hash.clone()))
            .exec(&state.db)
            .await?;
    }
    let (role, env_roles) = super::users::roles_of(&state.db, &u).await?;
    Ok(Principal {
        name: u.username,
        user_id: Some(u.id),
        role,
        env_roles,
        environments: None,
        actions: None,
        session: Some(SessionRef {
            id_hash,
            csrf_token: s.csrf_token,
        }),
    })
}

/// True when `s` is a single sign-on session (its user comes from a
/// provider) older than `max_age`: the provider must be asked again whether
/// the user still belongs (groups, account).
pub fn needs_provider_again(
    u: &user::Model,
    s: &session::Model,
    max_age: Option<std::time::Duration>,
    now: chrono::DateTime<Utc>,
) -> bool {
    let Some(max_age) = max_age.and_then(|a| Duration::from_std(a).ok()) else {
        return false;
    };
    u.issuer.is_some() && now - s.created_at >= max_age
}

pub async fn delete<C: ConnectionTrait>(db: &C, id_hash: &str) -> Result<(), DbErr> {
    session::Entity::delete_by_id(id_hash.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// Joins a session to its user without declaring a relation on the entity.
trait FindAlsoUser {
    async fn find_also_related_user<C: ConnectionTrait>(
        self,
        db: &C,
    ) -> Result<Option<(session::Model, Option<user::Model>)>, DbErr>;
}

impl FindAlsoUser for sea_orm::Select<session::Entity> {
    async fn find_also_related_user<C: ConnectionTrait>(
        self,
        db: &C,
    ) -> Result<Option<(session::Model, Option<user::Model>)>, DbErr> {
        let Some(s) = self.one(db).await? else {
            return Ok(None);
        };
        let u = user::Entity::find_by_id(s.user_id).one(db).await?;
        Ok(Some((s, u)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(
        issuer: Option<&str>,
        created: chrono::DateTime<Utc>,
    ) -> (user::Model, session::Model) {
        let u = user::Model {
            id: Uuid::nil(),
            username: "u".into(),
            password_hash: "!oidc".into(),
            role: "viewer".into(),
            disabled: false,
            created_at: created,
            last_login_at: None,
            issuer: issuer.map(str::to_owned),
            subject: None,
            email: None,
            display_name: None,
        };
        let s = session::Model {
            id_hash: "h".into(),
            user_id: Uuid::nil(),
            csrf_token: "c".into(),
            created_at: created,
            expires_at: created + Duration::hours(12),
            last_seen_at: created,
        };
        (u, s)
    }

    #[test]
    fn only_old_single_sign_on_sessions_go_back_to_the_provider() {
        let t0 = Utc::now();
        let hour = Some(std::time::Duration::from_secs(3600));
        let (oidc_u, s) = models(Some("https://id.example"), t0);
        let (local_u, _) = models(None, t0);
        let later = t0 + Duration::minutes(61);
        assert!(needs_provider_again(&oidc_u, &s, hour, later));
        assert!(!needs_provider_again(
            &oidc_u,
            &s,
            hour,
            t0 + Duration::minutes(59)
        ));
        assert!(
            !needs_provider_again(&local_u, &s, hour, later),
            "local users keep their sessions"
        );
        assert!(
            !needs_provider_again(&oidc_u, &s, None, later),
            "no limit configured"
        );
    }
}
