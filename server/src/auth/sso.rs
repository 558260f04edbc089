//! The browser side of OIDC login: `/auth/oidc/{id}/login` redirects to the
//! provider, `/auth/oidc/{id}/callback` verifies the answer, maps claims to
//! roles, creates or updates the user (matched by issuer + subject), starts
//! a session and lands on the dashboard. Failures land on `/login?error=…`
//! and are audited with their reason.
use super::{
    oidc::login_expired, rbac, request_context, routes::session_cookie, sessions, sha256_hex, users,
};
use crate::{
    audit::{self, ActorInfo, AuditTx, Event},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{oidc_login, role_grant, user},
};
use actix_web::{http::header::LOCATION, web, HttpRequest, HttpResponse};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, QueryFilter};
use serde::Deserialize;
use serde_json::json;
use slipway_types::{
    api::{AuthProvider, LoginOptions},
    Role,
};
use uuid::Uuid;

pub async fn login_options(state: web::Data<AppState>) -> web::Json<LoginOptions> {
    web::Json(LoginOptions {
        local: state.settings.local_login,
        providers: state
            .oidc
            .providers()
            .iter()
            .map(|p| AuthProvider {
                id: p.id.clone(),
                name: p.name.clone(),
                login_url: format!("/auth/oidc/{}/login", p.id),
            })
            .collect(),
    })
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, to.to_owned()))
        .finish()
}

pub async fn begin(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let begun = match state.oidc.begin(&id).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(provider = %id, error = %e, "OIDC login could not start");
            return Ok(redirect(&format!("/login?error={}", e.reason())));
        }
    };
    // Old abandoned logins are swept here.
    oidc_login::Entity::delete_many()
        .filter(oidc_login::Column::CreatedAt.lt(Utc::now() - chrono::Duration::minutes(10)))
        .exec(&state.db)
        .await?;
    oidc_login::Entity::insert(oidc_login::ActiveModel {
        state_hash: Set(sha256_hex(&begun.state)),
        provider: Set(id),
        nonce: Set(begun.nonce),
        pkce_verifier: Set(begun.pkce_verifier),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&state.db)
    .await?;
    Ok(redirect(&begun.authorize_url))
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

struct Failure {
    reason: &'static str,
    detail: String,
    username: Option<String>,
}

fn fail(reason: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        reason,
        detail: detail.into(),
        username: None,
    }
}

pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<Callback>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let (ip, rid) = request_context(&req);
    match complete(&state, &req, &id, &q, ip.clone(), rid.clone()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(f)) => {
            tracing::warn!(provider = %id, reason = f.reason, detail = %f.detail, "OIDC login failed");
            let actor = ActorInfo {
                name: f.username.clone().unwrap_or_else(|| format!("oidc:{id}")),
                source_ip: ip,
                request_id: rid,
            };
            audit::record_alone(
                &state.db,
                &actor,
                Event {
                    action: "auth.login_failed",
                    target_type: "user",
                    target_id: None,
                    summary: json!({"method": "oidc", "provider": id, "reason": f.reason, "detail": f.detail}),
                },
            )
            .await?;
            Ok(redirect(&format!("/login?error={}", f.reason)))
        }
        Err(e) => Err(e),
    }
}

/// `Ok(Err(_))` is a refused login (audited by the caller); `Err` a store failure.
async fn complete(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    q: &Callback,
    ip: Option<String>,
    rid: Option<String>,
) -> ApiResult<Result<HttpResponse, Failure>> {
    if let Some(e) = &q.error {
        return Ok(Err(fail(
            "provider_error",
            e.chars().take(200).collect::<String>(),
        )));
    }
    let (Some(code), Some(st)) = (&q.code, &q.state) else {
        return Ok(Err(fail("invalid_callback", "code or state missing")));
    };
    // The state is single-use: taken out of the store whatever happens next.
    let pending = oidc_login::Entity::find_by_id(sha256_hex(st))
        .one(&state.db)
        .await?;
    let Some(pending) = pending.filter(|p| p.provider == id) else {
        return Ok(Err(fail(
            "invalid_state",
            "unknown, reused or tampered state",
        )));
    };
    oidc_login::Entity::delete_by_id(pending.state_hash.clone())
        .exec(&state.db)
        .await?;
    if login_expired(pending.created_at) {
        return Ok(Err(fail(
            "invalid_state",
            "login took longer than 10 minutes",
        )));
    }
    let identity = match state
        .oidc
        .finish(id, code, &pending.nonce, &pending.pkce_verifier)
        .await
    {
        Ok(i) => i,
        Err(e) => return Ok(Err(fail(e.reason(), e.to_string()))),
    };
    let preview = rbac::evaluate(&users::rules(&state.db).await?, &identity.claims);
    let actor = ActorInfo {
        name: identity.username.clone(),
        source_ip: ip,
        request_id: rid,
    };

    let mut tx = AuditTx::begin(&state.db).await?;
    let existing = user::Entity::find()
        .filter(user::Column::Issuer.eq(identity.issuer.clone()))
        .filter(user::Column::Subject.eq(identity.subject.clone()))
        .one(tx.conn())
        .await?;
    let manual = match &existing {
        Some(u) => role_grant::Entity::find()
            .filter(role_grant::Column::UserId.eq(u.id))
            .filter(role_grant::Column::Source.eq("manual"))
            .all(tx.conn())
            .await?
            .len(),
        None => 0,
    };
    if preview.role.is_none() && preview.environments.is_empty() && manual == 0 {
        // The provider no longer puts this user in any mapped group: what the
        // mappings gave them ends now, not at their next successful login.
        if let Some(u) = &existing {
            revoke_mapped_access(&mut tx, &actor, u).await?;
            tx.commit().await?;
        }
        return Ok(Err(Failure {
            username: Some(identity.username.clone()),
            ..fail("no_role", "no role mapping matches this user's claims")
        }));
    }
    if existing.as_ref().is_some_and(|u| u.disabled) {
        return Ok(Err(Failure {
            username: Some(identity.username.clone()),
            ..fail("account_disabled", "the account is disabled")
        }));
    }
    let global = preview.role.unwrap_or(Role::Viewer);
    let now = Utc::now();
    let (u, created) = match existing {
        Some(u) => {
            let mut am: user::ActiveModel = u.clone().into();
            am.role = Set(global.as_str().into());
            am.email = Set(identity.email.clone());
            am.display_name = Set(identity.name.clone());
            am.last_login_at = Set(Some(now));
            user::Entity::update(am).exec(tx.conn()).await?;
            (u, false)
        }
        None => {
            let username = free_username(tx.conn(), &identity.username, id).await?;
            let m = user::Model {
                id: Uuid::new_v4(),
                username,
                // Never matches: OIDC users have no password.
                password_hash: "!oidc".into(),
                role: global.as_str().into(),
                disabled: false,
                created_at: now,
                last_login_at: Some(now),
                issuer: Some(identity.issuer.clone()),
                subject: Some(identity.subject.clone()),
                email: identity.email.clone(),
                display_name: identity.name.clone(),
            };
            user::Entity::insert(user::ActiveModel::from(m.clone()))
                .exec_without_returning(tx.conn())
                .await?;
            tx.record(
                &actor,
                Event::new(
                    "user.create",
                    "user",
                    m.id,
                    json!({"username": m.username, "source": identity.issuer}),
                ),
            )
            .await?;
            (m, true)
        }
    };
    // Mapped grants are recomputed at every login: a lost group is a lost role.
    let before: Vec<(String, Option<Uuid>)> = role_grant::Entity::find()
        .filter(role_grant::Column::UserId.eq(u.id))
        .filter(role_grant::Column::Source.eq("oidc"))
        .all(tx.conn())
        .await?
        .into_iter()
        .map(|g| (g.role, g.environment_id))
        .collect();
    role_grant::Entity::delete_many()
        .filter(role_grant::Column::UserId.eq(u.id))
        .filter(role_grant::Column::Source.eq("oidc"))
        .exec(tx.conn())
        .await?;
    let mut after = Vec::new();
    for er in &preview.environments {
        insert_grant(tx.conn(), u.id, er.role, Some(er.environment_id)).await?;
        after.push((er.role.as_str().to_owned(), Some(er.environment_id)));
    }
    if !created && (before != after || u.role != global.as_str()) {
        tx.record(
            &actor,
            Event::new(
                "role.change",
                "user",
                u.id,
                json!({"role": {"before": u.role, "after": global}, "environments": {"before": before, "after": after}, "source": "oidc"}),
            ),
        )
        .await?;
    }
    let session = sessions::create(tx.conn(), u.id, state.settings.session_ttl_hours).await?;
    let groups = identity.claims.get("groups").cloned().unwrap_or(json!([]));
    tx.record(
        &actor,
        Event::new(
            "auth.login",
            "user",
            u.id,
            json!({"method": "oidc", "provider": id, "groups": groups, "role": global}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(Ok(HttpResponse::Found()
        .insert_header((LOCATION, "/"))
        .cookie(session_cookie(state, req, session.cookie_value))
        .finish()))
}

/// Ends the sessions and drops the mapped grants of a user the provider's
/// claims no longer map to any role, with an audit entry for each.
async fn revoke_mapped_access(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    u: &user::Model,
) -> Result<(), DbErr> {
    let ended = users::end_access(tx.conn(), u).await?;
    if !ended.mapped_grants.is_empty() || ended.role_before.is_some() {
        let role_before = ended.role_before.as_deref().unwrap_or(u.role.as_str());
        tx.record(
            actor,
            Event::new(
                "role.change",
                "user",
                u.id,
                json!({"role": {"before": role_before, "after": Role::Viewer},
                       "environments": {"before": ended.mapped_grants, "after": []},
                       "source": "oidc", "reason": "no_role"}),
            ),
        )
        .await?;
    }
    tx.record(
        actor,
        Event::new(
            "session.revoke_all",
            "user",
            u.id,
            json!({"username": u.username, "sessions": ended.sessions, "reason": "no_role"}),
        ),
    )
    .await?;
    Ok(())
}

async fn insert_grant(
    db: &impl sea_orm::ConnectionTrait,
    user_id: Uuid,
    role: Role,
    env: Option<Uuid>,
) -> Result<(), DbErr> {
    role_grant::Entity::insert(role_grant::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        role: Set(role.as_str().into()),
        environment_id: Set(env),
        source: Set("oidc".into()),
        created_by: Set("role-mapping".into()),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The wanted user name, or `name@provider` when a different account has it.
async fn free_username(
    db: &impl sea_orm::ConnectionTrait,
    wanted: &str,
    provider: &str,
) -> Result<String, DbErr> {
    let taken = |n: String| async move {
        user::Entity::find()
            .filter(user::Column::Username.eq(n))
            .one(db)
            .await
    };
    if taken(wanted.to_owned()).await?.is_none() {
        return Ok(wanted.to_owned());
    }
    let alt = format!("{wanted}@{provider}");
    if taken(alt.clone()).await?.is_none() {
        return Ok(alt);
    }
    Ok(format!(
        "{wanted}@{provider}-{}",
        &Uuid::new_v4().simple().to_string()[..6]
    ))
}

/// Local login may be switched off once SSO works.
pub fn local_login_allowed(state: &AppState) -> Result<(), ApiError> {
    if state.settings.local_login {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "local login is disabled: use single sign-on".into(),
        ))
    }
}
