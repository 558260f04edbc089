//! `GET /api/v1/audit`: filter by actor, action, target and time; JSON pages
//! or a CSV export of everything matching.
use crate::{
    api::extract::PageQuery,
    auth::{Approver, Auth},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::audit_entry,
};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use slipway_types::api::{AuditEntry, Page};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    #[schemars(extend("enum" = ["json", "csv"]))]
    pub format: Option<String>,
    #[schemars(range(min = 1, max = slipway_types::api::MAX_PAGE_LIMIT))]
    pub limit: Option<u64>,
    #[schemars(range(max = crate::api::extract::MAX_OFFSET))]
    pub offset: Option<u64>,
}

/// Largest CSV export in one request.
const MAX_EXPORT: u64 = 100_000;

fn to_api(m: audit_entry::Model) -> AuditEntry {
    AuditEntry {
        seq: m.seq,
        at: m.at,
        actor: m.actor,
        action: m.action,
        target_type: m.target_type,
        target_id: m.target_id,
        summary: serde_json::from_str(&m.summary).unwrap_or(serde_json::Value::String(m.summary)),
        source_ip: m.source_ip,
        request_id: m.request_id,
        hash: m.hash,
    }
}

pub async fn list(
    _auth: Auth<Approver>,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let mut base = audit_entry::Entity::find().order_by_desc(audit_entry::Column::Seq);
    let non_empty = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(a) = non_empty(&q.actor) {
        base = base.filter(audit_entry::Column::Actor.eq(a));
    }
    if let Some(a) = non_empty(&q.action) {
        // `project` matches every `project.*` action.
        base = if a.contains('.') {
            base.filter(audit_entry::Column::Action.eq(a))
        } else {
            base.filter(audit_entry::Column::Action.starts_with(format!("{a}.")))
        };
    }
    if let Some(t) = non_empty(&q.target_type) {
        base = base.filter(audit_entry::Column::TargetType.eq(t));
    }
    if let Some(t) = non_empty(&q.target_id) {
        base = base.filter(audit_entry::Column::TargetId.eq(t));
    }
    if let Some(s) = q.since {
        base = base.filter(audit_entry::Column::At.gte(s));
    }
    if let Some(u) = q.until {
        base = base.filter(audit_entry::Column::At.lt(u));
    }
    match q.format.as_deref() {
        None | Some("json") => {
            let (limit, offset) = PageQuery {
                limit: q.limit,
                offset: q.offset,
            }
            .resolve()?;
            let total = base.clone().count(&state.db).await?;
            let rows = base.limit(limit).offset(offset).all(&state.db).await?;
            Ok(HttpResponse::Ok().json(Page {
                items: rows.into_iter().map(to_api).collect::<Vec<_>>(),
                total,
                limit,
                offset,
            }))
        }
        Some("csv") => {
            let rows = base.limit(MAX_EXPORT).all(&state.db).await?;
            let mut w = csv::Writer::from_writer(Vec::new());
            let header = [
                "seq",
                "at",
                "actor",
                "action",
                "target_type",
                "target_id",
                "summary",
                "source_ip",
                "request_id",
                "hash",
            ];
            w.write_record(header)
                .map_err(|e| ApiError::Internal(e.into()))?;
            for r in rows {
                w.write_record([
                    r.seq.to_string(),
                    r.at.to_rfc3339(),
                    r.actor,
                    r.action,
                    r.target_type,
                    r.target_id.unwrap_or_default(),
                    r.summary,
                    r.source_ip.unwrap_or_default(),
                    r.request_id.unwrap_or_default(),
                    r.hash,
                ])
                .map_err(|e| ApiError::Internal(e.into()))?;
            }
            let body = w
                .into_inner()
                .map_err(|e| ApiError::Internal(anyhow::anyhow!(e.to_string())))?;
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .insert_header((
                    "Content-Disposition",
                    "attachment; filename=\"slipway-audit.csv\"",
                ))
                .body(body))
        }
        Some(other) => Err(ApiError::invalid(
            "format",
            format!("{other:?}: expected json or csv"),
        )),
    }
}
