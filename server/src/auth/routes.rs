//! First-run setup, login/logout, `me`, and API token management.
use super::{password, request_context, sessions, tokens, Admin, Auth, Viewer, SESSION_COOKIE};
use crate::{
    api::extract::{PageQuery, ValidJson},
    audit::{self, ActorInfo, AuditTx, Event},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{api_token, user},
};
use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    web, FromRequest, HttpRequest, HttpResponse,
};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    api::{ApiToken, CreateToken, CreatedToken, LoginRequest, Me, Page, SetupRequest, SetupStatus},
    Role,
};
use uuid::Uuid;

pub async fn needs_setup(db: &DatabaseConnection) -> Result<bool, DbErr> {
    Ok(user::Entity::find().count(db).await? == 0)
}

pub async fn setup_status(state: web::Data<AppState>) -> ApiResult<web::Json<SetupStatus>> {
    Ok(web::Json(SetupStatus {
        needs_setup: needs_setup(&state.db).await?,
    }))
}

/// Creates a local user inside an audited transaction. Shared by first-run
/// setup (API and CLI).
pub async fn create_user(
    tx: &mut AuditTx,
    actor: &ActorInfo,
    username: &str,
    password_hash: String,
    role: Role,
) -> Result<user::Model, DbErr> {
    let model = user::Model {
        id: Uuid::new_v4(),
        username: username.to_owned(),
        password_hash,
        role: role.as_str().to_owned(),
        disabled: false,
        created_at: Utc::now(),
        last_login_at: None,
        issuer: None,
        subject: None,
        email: None,
        display_name: None,
    };
    user::Entity::insert(user::ActiveModel {
        id: Set(model.id),
        username: Set(model.username.clone()),
        password_hash: Set(model.password_hash.clone()),
        role: Set(model.role.clone()),
        disabled: Set(false),
        created_at: Set(model.created_at),
        last_login_at: Set(None),
        issuer: Set(None),
        subject: Set(None),
        email: Set(None),
        display_name: Set(None),
    })
    .exec_without_returning(tx.conn())
    .await?;
    tx.record(
        actor,
        Event::new(
            "user.create",
            "user",
            model.id,
            json!({"username": username, "role": role, "source": "local"}),
        ),
    )
    .await?;
    Ok(model)
}

/// `POST /setup`. Whether setup is still open is checked before the body is
/// read: once it is done, every request answers 409 `setup_already_done`,
/// whatever it sends.
pub async fn setup(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    if !needs_setup(&state.db).await? {
        return Err(ApiError::SetupDone);
    }
    let body = ValidJson::<SetupRequest>::from_request(&req, &mut payload.into_inner())
        .await?
        .0;
    let hash = password::hash(body.password)
        .await
        .map_err(anyhow::Error::from)?;
    let (ip, rid) = request_context(&req);
    let actor = ActorInfo {
        name: body.username.clone(),
        source_ip: ip,
        request_id: rid,
    };
    let mut tx = AuditTx::begin(&state.db).await?;
    // Checked again under the audit lock: two racing setups create one admin.
    if user::Entity::find().count(tx.conn()).await? > 0 {
        return Err(ApiError::SetupDone);
    }
    let u = create_user(&mut tx, &actor, &body.username, hash, Role::Admin).await?;
    // Setup logs the new admin in.
    user::Entity::update_many()
        .col_expr(
            user::Column::LastLoginAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(user::Column::Id.eq(u.id))
        .exec(tx.conn())
        .await?;
    let session = sessions::create(tx.conn(), u.id, state.settings.session_ttl_hours).await?;
    tx.record(
        &actor,
        Event::new("auth.login", "user", u.id, json!({"method": "setup"})),
    )
    .await?;
    tx.commit().await?;
    Ok(session_response(
        &state,
        &req,
        &u,
        session,
        HttpResponse::Created(),
    ))
}

/// The session cookie. `Lax`, not `Strict`: the OIDC callback is a
/// cross-site navigation that must carry it to the dashboard; mutations are
/// protected by the CSRF header either way.
pub fn session_cookie(state: &AppState, req: &HttpRequest, value: String) -> Cookie<'static> {
    let secure = state.settings.secure_cookies()
        || super::forwarded_https(req, &state.settings.trusted_proxies);
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(CookieDuration::hours(state.settings.session_ttl_hours))
        .finish()
}

fn session_response(
    state: &AppState,
    req: &HttpRequest,
    u: &user::Model,
    s: sessions::NewSession,
    mut builder: actix_web::HttpResponseBuilder,
) -> HttpResponse {
    builder
        .cookie(session_cookie(state, req, s.cookie_value))
        .json(Me {
            user_id: u.id,
            username: u.username.clone(),
            role: u.role.parse().unwrap_or(Role::Viewer),
            csrf_token: Some(s.csrf_token),
        })
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ValidJson<LoginRequest>,
) -> ApiResult<HttpResponse> {
    super::sso::local_login_allowed(&state)?;
    let body = body.0;
    let (ip, rid) = request_context(&req);
    let user_key = body.username.to_lowercase();
    // Reserved before the password is checked: at most N checks per user
    // and per address and window, however many requests arrive at once.
    let attempt = state
        .login_limiter
        .reserve(
            &state.db,
            &[
                ("ip", ip.as_deref().unwrap_or("?")),
                ("user", user_key.as_str()),
            ],
        )
        .await?;
    if body.username.len() > 256 || body.password.len() > slipway_types::api::MAX_PASSWORD_LEN {
        return Err(ApiError::InvalidCredentials);
    }
    let found = user::Entity::find()
        .filter(user::Column::Username.eq(body.username.clone()))
        .one(&state.db)
        .await?;
    // Verify against a dummy hash for unknown users so timing does not reveal them.
    let stored = found
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.dummy_hash.clone());
    let ok = password::verify(body.password, stored)
        .await
        .map_err(anyhow::Error::from)?;
    let actor = ActorInfo {
        name: body.username.clone(),
        source_ip: ip,
        request_id: rid,
    };
    let u = match found {
        Some(u) if ok && !u.disabled => u,
        other => {
            attempt.keep();
            let reason = match other {
                None => "unknown user",
                Some(u) if u.disabled => "account disabled",
                Some(_) => "wrong password",
            };
            audit::record_alone(
                &state.db,
                &actor,
                Event {
                    action: "auth.login_failed",
                    target_type: "user",
                    target_id: None,
                    summary: json!({"username": body.username, "reason": reason}),
                },
            )
            .await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    // A success is not a failure, and forgives the user's earlier ones.
    let limiter = &state.login_limiter;
    if let Err(e) = async {
        limiter.release(&state.db, attempt).await?;
        limiter.reset(&state.db, "user", &user_key).await
    }
    .await
    {
        tracing::warn!(error = %e, "login limiter: cannot release an attempt");
    }
    let mut tx = AuditTx::begin(&state.db).await?;
    user::Entity::update_many()
        .col_expr(
            user::Column::LastLoginAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(user::Column::Id.eq(u.id))
        .exec(tx.conn())
        .await?;
    let session = sessions::create(tx.conn(), u.id, state.settings.session_ttl_hours).await?;
    tx.record(
        &actor,
        Event::new("auth.login", "user", u.id, json!({"method": "password"})),
    )
    .await?;
    tx.commit().await?;
    Ok(session_response(
        &state,
        &req,
        &u,
        session,
        HttpResponse::Ok(),
    ))
}

pub async fn logout(auth: Auth<Viewer>, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let actor = auth.own_actor();
    let mut tx = AuditTx::begin(&state.db).await?;
    if let Some(s) = &auth.principal.session {
        sessions::delete(tx.conn(), &s.id_hash).await?;
    }
    tx.record(
        &actor,
        Event {
            action: "auth.logout",
            target_type: "user",
            target_id: auth.principal.user_id.map(|u| u.to_string()),
            summary: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    let mut gone = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

pub async fn me(auth: Auth<Viewer>) -> web::Json<Me> {
    let p = auth.principal;
    web::Json(Me {
        user_id: p.user_id.unwrap_or_default(),
        username: p.name,
        role: p.role,
        csrf_token: p.session.map(|s| s.csrf_token),
    })
}

// ------------------------------------------------------------------ tokens

pub async fn list_tokens(
    _auth: Auth<Admin>,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<ApiToken>>> {
    let (limit, offset) = q.resolve()?;
    let base = api_token::Entity::find().order_by_desc(api_token::Column::CreatedAt);
    let total = base.clone().count(&state.db).await?;
    let items = base.limit(limit).offset(offset).all(&state.db).await?;
    Ok(web::Json(Page {
        items: items.into_iter().map(tokens::to_api).collect(),
        total,
        limit,
        offset,
    }))
}

pub async fn create_token(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    body: ValidJson<CreateToken>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid("name", "must be 1–100 characters"));
    }
    if body.role > auth.principal.role {
        return Err(ApiError::Forbidden(
            "a token cannot have more rights than its creator".into(),
        ));
    }
    if let Some(d) = body.expires_in_days {
        if d == 0 || d > 3650 {
            return Err(ApiError::invalid("expires_in_days", "must be 1–3650"));
        }
    }
    for (i, e) in body.environments.iter().enumerate() {
        if crate::store::entities::environment::Entity::find_by_id(*e)
            .one(&state.db)
            .await?
            .is_none()
        {
            return Err(ApiError::invalid(
                format!("environments[{i}]"),
                "no such environment",
            ));
        }
    }
    let mut tx = AuditTx::begin(&state.db).await?;
    let created = tokens::create(
        tx.conn(),
        name,
        body.role,
        &body.environments,
        body.expires_in_days,
        &body.actions,
        &actor.name,
    )
    .await?;
    tx.record(
        &actor,
        Event::new(
            "token.create",
            "token",
            created.model.id,
            json!({"name": name, "role": body.role, "environments": body.environments,
                   "actions": body.actions, "expires_at": created.model.expires_at}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(CreatedToken {
        token: tokens::to_api(created.model),
        secret: created.secret,
    }))
}

pub async fn revoke_token(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let id = id.into_inner();
    let mut tx = AuditTx::begin(&state.db).await?;
    let t = api_token::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("token"))?;
    if t.revoked_at.is_none() {
        api_token::Entity::update_many()
            .col_expr(
                api_token::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(Utc::now()),
            )
            .filter(api_token::Column::Id.eq(id))
            .exec(tx.conn())
            .await?;
        tx.record(
            &actor,
            Event::new("token.revoke", "token", id, json!({"name": t.name})),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}
