//! Users, their role grants, claim → role mappings and session revocation.
use super::{rbac, Admin, Auth, Viewer};
use crate::{
    api::extract::{PageQuery, ValidJson},
    audit::{AuditTx, Event},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{environment, role_grant, role_mapping, session, user},
};
use actix_web::{web, HttpResponse};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use slipway_types::{
    api::{
        ClaimsPreview, ClaimsPreviewRequest, NewRoleGrant, NewRoleMapping, Page, RoleGrant,
        RoleMapping, UpdateUser, User,
    },
    Role,
};
use std::collections::BTreeMap;
use uuid::Uuid;

fn parse_role(s: &str) -> Result<Role, DbErr> {
    s.parse().map_err(|e: String| DbErr::Custom(e))
}

/// A user's role everywhere and their higher roles in single environments.
pub async fn roles_of<C: ConnectionTrait>(
    db: &C,
    u: &user::Model,
) -> Result<(Role, BTreeMap<Uuid, Role>), DbErr> {
    let mut role = parse_role(&u.role)?;
    let mut envs = BTreeMap::new();
    for g in role_grant::Entity::find()
        .filter(role_grant::Column::UserId.eq(u.id))
        .all(db)
        .await?
    {
        let r = parse_role(&g.role)?;
        match g.environment_id {
            None => role = role.max(r),
            Some(e) => {
                let slot = envs.entry(e).or_insert(r);
                *slot = (*slot).max(r);
            }
        }
    }
    envs.retain(|_, r| *r > role);
    Ok((role, envs))
}

/// What [`end_access`] took away.
pub struct EndedAccess {
    pub sessions: u64,
    /// Role-mapping grants dropped: (role, environment).
    pub mapped_grants: Vec<(String, Option<Uuid>)>,
    /// The mapped role everywhere before it fell back to viewer (OIDC users).
    pub role_before: Option<String>,
}

/// Ends every session of `u` and drops what role mappings gave them (their
/// `oidc` grants and, for OIDC users, the mapped role everywhere), inside the
/// caller's audited transaction. Manual grants stay. Used when a provider
/// refuses the user and when an admin disables them: access ends at once,
/// not at the next login.
pub async fn end_access<C: ConnectionTrait>(db: &C, u: &user::Model) -> Result<EndedAccess, DbErr> {
    let sessions = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(u.id))
        .exec(db)
        .await?
        .rows_affected;
    let mapped = role_grant::Entity::find()
        .filter(role_grant::Column::UserId.eq(u.id))
        .filter(role_grant::Column::Source.eq("oidc"))
        .all(db)
        .await?;
    role_grant::Entity::delete_many()
        .filter(role_grant::Column::UserId.eq(u.id))
        .filter(role_grant::Column::Source.eq("oidc"))
        .exec(db)
        .await?;
    let viewer = Role::Viewer.as_str();
    let role_before = if u.issuer.is_some() && u.role != viewer {
        user::Entity::update_many()
            .col_expr(user::Column::Role, sea_orm::sea_query::Expr::value(viewer))
            .filter(user::Column::Id.eq(u.id))
            .exec(db)
            .await?;
        Some(u.role.clone())
    } else {
        None
    };
    Ok(EndedAccess {
        sessions,
        mapped_grants: mapped
            .into_iter()
            .map(|g| (g.role, g.environment_id))
            .collect(),
        role_before,
    })
}

fn grant_to_api(g: role_grant::Model) -> Result<RoleGrant, DbErr> {
    Ok(RoleGrant {
        id: g.id,
        role: parse_role(&g.role)?,
        environment_id: g.environment_id,
        source: g.source,
        created_by: g.created_by,
        created_at: g.created_at,
    })
}

async fn user_to_api<C: ConnectionTrait>(db: &C, u: user::Model) -> Result<User, DbErr> {
    let grants = role_grant::Entity::find()
        .filter(role_grant::Column::UserId.eq(u.id))
        .order_by_asc(role_grant::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(grant_to_api)
        .collect::<Result<_, _>>()?;
    let active_sessions = session::Entity::find()
        .filter(session::Column::UserId.eq(u.id))
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .count(db)
        .await?;
    let (role, _) = roles_of(db, &u).await?;
    Ok(User {
        id: u.id,
        username: u.username,
        display_name: u.display_name,
        email: u.email,
        source: u.issuer.unwrap_or_else(|| "local".into()),
        role,
        grants,
        disabled: u.disabled,
        active_sessions,
        last_login_at: u.last_login_at,
        created_at: u.created_at,
    })
}

async fn find_user<C: ConnectionTrait>(db: &C, id: Uuid) -> ApiResult<user::Model> {
    user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("user"))
}

async fn check_environment<C: ConnectionTrait>(db: &C, env: Option<Uuid>) -> ApiResult<()> {
    if let Some(e) = env {
        if environment::Entity::find_by_id(e).one(db).await?.is_none() {
            return Err(ApiError::invalid("environment_id", "no such environment"));
        }
    }
    Ok(())
}

pub async fn list(
    _auth: Auth<Admin>,
    state: web::Data<AppState>,
    q: web::Query<PageQuery>,
) -> ApiResult<web::Json<Page<User>>> {
    let (limit, offset) = q.resolve()?;
    let base = user::Entity::find().order_by_asc(user::Column::Username);
    let total = base.clone().count(&state.db).await?;
    let mut items = Vec::new();
    for u in base.limit(limit).offset(offset).all(&state.db).await? {
        items.push(user_to_api(&state.db, u).await?);
    }
    Ok(web::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

pub async fn get(
    _auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<web::Json<User>> {
    let u = find_user(&state.db, id.into_inner()).await?;
    Ok(web::Json(user_to_api(&state.db, u).await?))
}

/// Disable/enable a user (disabling ends their sessions) or set a local user's role.
pub async fn update(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<UpdateUser>,
) -> ApiResult<web::Json<User>> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let u = find_user(tx.conn(), id.into_inner()).await?;
    if auth.principal.user_id == Some(u.id) && body.disabled == Some(true) {
        return Err(ApiError::Conflict(
            "you cannot disable your own account".into(),
        ));
    }
    let mut ended = None;
    if body.disabled == Some(true) {
        ended = Some(end_access(tx.conn(), &u).await?);
    }
    let mut am: user::ActiveModel = find_user(tx.conn(), u.id).await?.into();
    if let Some(d) = body.disabled {
        am.disabled = Set(d);
    }
    if let Some(r) = body.role {
        if u.issuer.is_some() {
            return Err(ApiError::invalid(
                "role",
                "roles of OIDC users come from role mappings and grants",
            ));
        }
        am.role = Set(r.as_str().into());
    }
    user::Entity::update(am).exec(tx.conn()).await?;
    tx.record(
        &actor,
        Event::new(
            "user.update",
            "user",
            u.id,
            json!({"username": u.username, "disabled": body.disabled, "role": body.role,
                   "sessions_ended": ended.as_ref().map(|e| e.sessions),
                   "mapped_grants_dropped": ended.as_ref().map(|e| &e.mapped_grants),
                   "mapped_role_dropped": ended.as_ref().and_then(|e| e.role_before.as_ref())}),
        ),
    )
    .await?;
    let out = user_to_api(tx.conn(), find_user(tx.conn(), u.id).await?).await?;
    tx.commit().await?;
    Ok(web::Json(out))
}

pub async fn add_grant(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: ValidJson<NewRoleGrant>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    let u = find_user(tx.conn(), id.into_inner()).await?;
    check_environment(tx.conn(), body.environment_id).await?;
    let g = role_grant::Model {
        id: Uuid::new_v4(),
        user_id: u.id,
        role: body.role.as_str().into(),
        environment_id: body.environment_id,
        source: "manual".into(),
        created_by: actor.name.clone(),
        created_at: Utc::now(),
    };
    role_grant::Entity::insert(role_grant::ActiveModel::from(g.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new("role.grant", "user", u.id, json!({"username": u.username, "role": body.role, "environment_id": body.environment_id, "source": "manual"})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(grant_to_api(g)?))
}

pub async fn remove_grant(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, Uuid)>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let (user_id, grant_id) = path.into_inner();
    let mut tx = AuditTx::begin(&state.db).await?;
    let g = role_grant::Entity::find_by_id(grant_id)
        .one(tx.conn())
        .await?
        .filter(|g| g.user_id == user_id)
        .ok_or(ApiError::NotFound("grant"))?;
    role_grant::Entity::delete_by_id(g.id)
        .exec(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new(
            "role.revoke",
            "user",
            user_id,
            json!({"role": g.role, "environment_id": g.environment_id, "source": g.source}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// An admin ends every session of a user.
pub async fn revoke_sessions(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let u = find_user(tx.conn(), id.into_inner()).await?;
    let n = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(u.id))
        .exec(tx.conn())
        .await?
        .rows_affected;
    tx.record(
        &actor,
        Event::new(
            "session.revoke_all",
            "user",
            u.id,
            json!({"username": u.username, "sessions": n}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// "Log out everywhere": the caller ends all of their own sessions.
pub async fn logout_everywhere(
    auth: Auth<Viewer>,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    let actor = auth.own_actor();
    let Some(uid) = auth.principal.user_id else {
        return Err(ApiError::Conflict(
            "API tokens have no sessions; revoke the token instead".into(),
        ));
    };
    let mut tx = AuditTx::begin(&state.db).await?;
    let n = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(uid))
        .exec(tx.conn())
        .await?
        .rows_affected;
    tx.record(
        &actor,
        Event::new(
            "session.revoke_all",
            "user",
            uid,
            json!({"sessions": n, "self": true}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

// ------------------------------------------------------------------ role mappings

fn mapping_to_api(m: role_mapping::Model) -> Result<RoleMapping, DbErr> {
    Ok(RoleMapping {
        id: m.id,
        role: parse_role(&m.role)?,
        claim: m.claim,
        value: m.value,
        environment_id: m.environment_id,
        created_by: m.created_by,
        created_at: m.created_at,
    })
}

pub async fn rules<C: ConnectionTrait>(db: &C) -> Result<Vec<rbac::Rule>, DbErr> {
    role_mapping::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|m| {
            Ok(rbac::Rule {
                id: m.id,
                role: parse_role(&m.role)?,
                claim: m.claim,
                value: m.value,
                environment_id: m.environment_id,
            })
        })
        .collect()
}

pub async fn list_mappings(
    _auth: Auth<Admin>,
    state: web::Data<AppState>,
) -> ApiResult<web::Json<Vec<RoleMapping>>> {
    let rows = role_mapping::Entity::find()
        .order_by_asc(role_mapping::Column::CreatedAt)
        .all(&state.db)
        .await?;
    Ok(web::Json(
        rows.into_iter()
            .map(mapping_to_api)
            .collect::<Result<_, _>>()?,
    ))
}

pub async fn create_mapping(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    body: ValidJson<NewRoleMapping>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let body = body.0;
    let mut tx = AuditTx::begin(&state.db).await?;
    check_environment(tx.conn(), body.environment_id).await?;
    let m = role_mapping::Model {
        id: Uuid::new_v4(),
        claim: body.claim.clone(),
        value: body.value.clone(),
        role: body.role.as_str().into(),
        environment_id: body.environment_id,
        created_by: actor.name.clone(),
        created_at: Utc::now(),
    };
    role_mapping::Entity::insert(role_mapping::ActiveModel::from(m.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new("role_mapping.create", "role_mapping", m.id, json!({"claim": body.claim, "value": body.value, "role": body.role, "environment_id": body.environment_id})),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::Created().json(mapping_to_api(m)?))
}

pub async fn delete_mapping(
    auth: Auth<Admin>,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = auth.scope(None)?;
    let mut tx = AuditTx::begin(&state.db).await?;
    let m = role_mapping::Entity::find_by_id(id.into_inner())
        .one(tx.conn())
        .await?
        .ok_or(ApiError::NotFound("role mapping"))?;
    role_mapping::Entity::delete_by_id(m.id)
        .exec(tx.conn())
        .await?;
    tx.record(
        &actor,
        Event::new(
            "role_mapping.delete",
            "role_mapping",
            m.id,
            json!({"claim": m.claim, "value": m.value, "role": m.role}),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(HttpResponse::NoContent().finish())
}

/// "Test these claims": the grants a login with these claims would produce.
pub async fn preview_mapping(
    _auth: Auth<Admin>,
    state: web::Data<AppState>,
    body: ValidJson<ClaimsPreviewRequest>,
) -> ApiResult<web::Json<ClaimsPreview>> {
    if !body.0.claims.is_object() {
        return Err(ApiError::invalid(
            "claims",
            "must be a JSON object of id-token claims",
        ));
    }
    Ok(web::Json(rbac::evaluate(
        &rules(&state.db).await?,
        &body.0.claims,
    )))
}
