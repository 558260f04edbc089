//! The dashboard's landing data: projects × environments × services with the
//! current release and the last deployment, in four queries.
use crate::{
    auth::{Auth, Viewer},
    error::{ApiError, ApiResult},
    state::AppState,
    store::entities::{deployment, environment, project, release, service},
};
use actix_web::web;
use sea_orm::{EntityTrait, QueryOrder};
use slipway_types::{
    api::{
        DeploymentState, DeploymentSummary, EnvironmentOverview, Overview, ProjectOverview,
        ServiceOverview,
    },
    ImageRef,
};
use std::collections::HashMap;
use uuid::Uuid;

pub async fn overview(
    _auth: Auth<Viewer>,
    state: web::Data<AppState>,
) -> ApiResult<web::Json<Overview>> {
    let db = &state.db;
    let projects = project::Entity::find()
        .order_by_asc(project::Column::Name)
        .all(db)
        .await?;
    let envs = environment::Entity::find()
        .order_by_asc(environment::Column::CreatedAt)
        .all(db)
        .await?;
    let services = service::Entity::find()
        .order_by_asc(service::Column::Name)
        .all(db)
        .await?;
    // Newest first: the first deployment seen per service is its last one,
    // the first succeeded one its current release.
    let deployments = deployment::Entity::find()
        .find_also_related(release::Entity)
        .order_by_desc(deployment::Column::CreatedAt)
        .all(db)
        .await?;
    let mut last: HashMap<Uuid, DeploymentSummary> = HashMap::new();
    let mut current: HashMap<Uuid, i64> = HashMap::new();
    for (d, r) in deployments {
        let (Some(r), Some(st)) = (r, DeploymentState::parse(&d.state)) else {
            continue;
        };
        last.entry(d.service_id).or_insert(DeploymentSummary {
            id: d.id,
            state: st,
            release_number: r.number,
            created_at: d.created_at,
        });
        if st == DeploymentState::Succeeded {
            current.entry(d.service_id).or_insert(r.number);
        }
    }
    let mut svc_by_env: HashMap<Uuid, Vec<ServiceOverview>> = HashMap::new();
    for s in services {
        let spec = super::services::spec_of(&s)?;
        svc_by_env
            .entry(s.environment_id)
            .or_default()
            .push(ServiceOverview {
                id: s.id,
                image: ImageRef::try_from(spec.image.to_string())
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?,
                current_release: current.get(&s.id).copied(),
                last_deployment: last.remove(&s.id),
                name: super::stored_name(s.name)?,
            });
    }
    let mut env_by_project: HashMap<Uuid, Vec<EnvironmentOverview>> = HashMap::new();
    for e in envs {
        let services = svc_by_env.remove(&e.id).unwrap_or_default();
        env_by_project
            .entry(e.project_id)
            .or_default()
            .push(EnvironmentOverview {
                environment: super::environments::to_api(e)?,
                services,
            });
    }
    let mut out = Vec::with_capacity(projects.len());
    for p in projects {
        let environments = env_by_project.remove(&p.id).unwrap_or_default();
        out.push(ProjectOverview {
            project: super::projects::to_api(p)?,
            environments,
        });
    }
    Ok(web::Json(Overview { projects: out }))
}
