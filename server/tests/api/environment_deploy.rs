//! **Deploy environment** (`POST /environments/{id}/deployments`): the
//! changed services in dependency order, one batch, each deployment waiting
//! for its dependencies'; cycles and unknown dependencies refused by name.
use crate::{eventually::eventually, helpers::TestApp, store_test};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use slipway_server::store::entities::deployment;
use slipway_types::api::{
    AuditEntry, Deployment, DeploymentState, EnvironmentDeployment, Page, Service,
};
use std::time::Duration;
use uuid::Uuid;

store_test!(
    deploys_changed_services_in_dependency_order,
    cycles_and_unknown_dependencies_are_refused_by_name,
    only_deployers_of_the_environment_deploy_it,
    a_dependency_that_does_not_succeed_fails_its_dependents,
    protected_environments_await_approval_per_deployment,
);

/// A project with an environment; returns the environment's id.
async fn environment(app: &TestApp, project: &str, env: &str) -> String {
    let p = app
        .post("/api/v1/projects", &json!({"name": project}))
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/api/v1/projects/{p}/environments"),
        &json!({"name": env}),
    )
    .await
    .expect(201)
    .body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A service `name` of `env` on `image` depending on `deps` (healthy).
async fn service(app: &TestApp, env: &str, name: &str, image: &str, deps: &[&str]) -> Service {
    let depends_on: serde_json::Map<String, Value> = deps
        .iter()
        .map(|d| (d.to_string(), json!("service_healthy")))
        .collect();
    app.post(
        &format!("/api/v1/environments/{env}/services"),
        &json!({"name": name, "spec": {"image": image, "depends_on": depends_on}}),
    )
    .await
    .expect(201)
    .json()
}

fn deploy_path(env: &str) -> String {
    format!("/api/v1/environments/{env}/deployments")
}

/// What the engine records once a deployment served (there is no agent in
/// these tests).
async fn mark(app: &TestApp, ids: &[Uuid], state: DeploymentState) {
    deployment::Entity::update_many()
        .col_expr(deployment::Column::State, Expr::value(state.as_str()))
        .filter(deployment::Column::Id.is_in(ids.iter().copied()))
        .exec(&app.db().await)
        .await
        .unwrap();
}

fn names(b: &EnvironmentDeployment, svcs: &[&Service]) -> Vec<String> {
    b.deployments
        .iter()
        .map(|d| {
            svcs.iter()
                .find(|s| s.id == d.service_id)
                .map(|s| s.name.to_string())
                .unwrap()
        })
        .collect()
}

async fn audit(app: &TestApp, action: &str) -> Vec<AuditEntry> {
    let p: Page<AuditEntry> = app
        .get(&format!("/api/v1/audit?action={action}&limit=100"))
        .await
        .expect(200)
        .json();
    p.items
}

async fn deploys_changed_services_in_dependency_order(mut app: TestApp) {
    app.setup_admin().await;
    let env = environment(&app, "stack", "staging").await;
    // Created out of order: the order comes from depends_on, not creation.
    let web = service(&app, &env, "web", "registry.local/web:1", &["api"]).await;
    let api = service(&app, &env, "api", "registry.local/api:1", &["db"]).await;
    let db = service(&app, &env, "db", "registry.local/pg:15", &[]).await;
    let docs = service(&app, &env, "docs", "registry.local/docs:1", &[]).await;
    let all = [&web, &api, &db, &docs];

    let b: EnvironmentDeployment = app
        .post(&deploy_path(&env), &json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(names(&b, &all), ["db", "docs", "api", "web"]);
    assert!(b.unchanged.is_empty());
    let by = |n: &str| {
        let s = all.iter().find(|s| s.name.as_str() == n).unwrap();
        b.deployments
            .iter()
            .find(|d| d.service_id == s.id)
            .unwrap()
            .clone()
    };
    for d in &b.deployments {
        assert_eq!(d.batch_id, Some(b.batch_id));
        assert_eq!(d.state, DeploymentState::Queued);
        assert_eq!(d.release_number, 1);
    }
    assert!(by("db").waits_for.is_empty() && by("docs").waits_for.is_empty());
    assert_eq!(by("api").waits_for, [by("db").id]);
    assert_eq!(by("web").waits_for, [by("api").id]);
    // Stored as such, and said in the step log.
    let got: Deployment = app
        .get(&format!("/api/v1/deployments/{}", by("web").id))
        .await
        .expect(200)
        .json();
    assert_eq!(got.waits_for, [by("api").id]);
    assert_eq!(got.batch_id, Some(b.batch_id));
    assert!(
        got.steps[0]
            .message
            .contains("waits for the deployment of api to succeed"),
        "{:?}",
        got.steps
    );

    // Audited: one summary, and each deployment its own entries.
    let summary = audit(&app, "environment.deploy").await;
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].target_id.as_deref(), Some(env.as_str()));
    assert_eq!(summary[0].summary["batch_id"], json!(b.batch_id));
    assert_eq!(
        summary[0].summary["services"],
        json!(["db", "docs", "api", "web"])
    );
    assert_eq!(audit(&app, "deployment.create").await.len(), 4);
    assert_eq!(audit(&app, "release.create").await.len(), 4);

    // Once they served, nothing changed: nothing to deploy, nothing audited.
    let ids: Vec<Uuid> = b.deployments.iter().map(|d| d.id).collect();
    mark(&app, &ids, DeploymentState::Succeeded).await;
    let r = app.post(&deploy_path(&env), &json!({})).await.expect(200);
    let none: EnvironmentDeployment = r.json();
    assert!(none.deployments.is_empty());
    assert_eq!(none.unchanged, ["db", "docs", "api", "web"]);
    assert_eq!(audit(&app, "environment.deploy").await.len(), 1);

    // A new image of api: only api goes (web's deployment is unchanged and
    // db serves already, so it waits for nothing).
    let mut spec = api.spec.clone();
    spec.image = "registry.local/api:2".try_into().unwrap();
    app.patch(
        &format!("/api/v1/services/{}", api.id),
        &json!({"spec": spec}),
    )
    .await
    .expect(200);
    let b2: EnvironmentDeployment = app
        .post(&deploy_path(&env), &json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(names(&b2, &all), ["api"]);
    assert_eq!(b2.deployments[0].image.as_str(), "registry.local/api:2");
    assert_eq!(b2.deployments[0].release_number, 2);
    assert!(b2.deployments[0].waits_for.is_empty());
    assert_eq!(b2.unchanged, ["db", "docs", "web"]);
    assert_ne!(b2.batch_id, b.batch_id);

    // Chosen services with `all`: deployed even though unchanged, in order,
    // and only those.
    let b3: EnvironmentDeployment = app
        .post(
            &deploy_path(&env),
            &json!({"services": ["web", "db"], "all": true}),
        )
        .await
        .expect(202)
        .json();
    assert_eq!(names(&b3, &all), ["db", "web"]);
    let (db3, web3) = (&b3.deployments[0], &b3.deployments[1]);
    assert_eq!(web3.waits_for, [db3.id], "web waits for db through api");
    // An unknown name in `services`.
    let r = app
        .post(&deploy_path(&env), &json!({"services": ["nope"]}))
        .await
        .expect(422);
    assert_eq!(r.body["field"], "services", "{}", r.text);
    assert!(r.text.contains("no service named nope"), "{}", r.text);
}

async fn cycles_and_unknown_dependencies_are_refused_by_name(mut app: TestApp) {
    app.setup_admin().await;
    let env = environment(&app, "loop", "staging").await;
    service(&app, &env, "api", "registry.local/api:1", &["worker"]).await;
    service(&app, &env, "worker", "registry.local/worker:1", &["api"]).await;
    service(&app, &env, "web", "registry.local/web:1", &["api"]).await;
    let r = app.post(&deploy_path(&env), &json!({})).await.expect(422);
    assert_eq!(r.error_code(), "invalid_input", "{}", r.text);
    assert_eq!(r.body["field"], "api.depends_on", "{}", r.text);
    assert_eq!(
        r.body["message"], "dependency cycle: api → worker → api",
        "{}",
        r.text
    );
    // Nothing was created.
    let p: Page<Deployment> = app
        .get(&format!("/api/v1/deployments?environment={env}"))
        .await
        .expect(200)
        .json();
    assert_eq!(p.total, 0);
    assert!(audit(&app, "environment.deploy").await.is_empty());

    let env2 = environment(&app, "missing", "staging").await;
    service(&app, &env2, "api", "registry.local/api:1", &["cache"]).await;
    let r = app.post(&deploy_path(&env2), &json!({})).await.expect(422);
    assert_eq!(r.body["field"], "api.depends_on.cache", "{}", r.text);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("api depends on cache, which is not a service of this environment"),
        "{}",
        r.text
    );

    // An unknown environment.
    app.post(&deploy_path(&Uuid::new_v4().to_string()), &json!({}))
        .await
        .expect(404);
}

async fn only_deployers_of_the_environment_deploy_it(mut app: TestApp) {
    app.setup_admin().await;
    let env = environment(&app, "acl", "staging").await;
    let other = {
        let p: Page<Value> = app.get("/api/v1/projects").await.expect(200).json();
        let project = p.items[0]["id"].as_str().unwrap().to_owned();
        app.post(
            &format!("/api/v1/projects/{project}/environments"),
            &json!({"name": "production"}),
        )
        .await
        .expect(201)
        .body["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    service(&app, &env, "web", "registry.local/web:1", &[]).await;
    let viewer = app.token("viewer", &[]).await;
    let body = json!({});
    let r = app
        .send(
            reqwest::Method::POST,
            &deploy_path(&env),
            Some(&body),
            Some(&viewer),
        )
        .await
        .expect(403);
    assert_eq!(r.error_code(), "forbidden");
    // A deployer limited to another environment is a viewer here.
    let elsewhere = app.token("deployer", &[&other]).await;
    app.send(
        reqwest::Method::POST,
        &deploy_path(&env),
        Some(&body),
        Some(&elsewhere),
    )
    .await
    .expect(403);
    let deployer = app.token("deployer", &[&env]).await;
    let b: EnvironmentDeployment = app
        .send(
            reqwest::Method::POST,
            &deploy_path(&env),
            Some(&body),
            Some(&deployer),
        )
        .await
        .expect(202)
        .json();
    assert_eq!(b.deployments.len(), 1);
    assert_eq!(b.deployments[0].requested_by, "token:deployer-token");
    assert!(audit(&app, "environment.deploy").await.len() == 1);
}

/// No agent is needed to see it: a deployment whose dependency was
/// cancelled fails without starting, and so does the one waiting for it.
async fn a_dependency_that_does_not_succeed_fails_its_dependents(mut app: TestApp) {
    app.setup_admin().await;
    let env = environment(&app, "chain", "staging").await;
    let a = service(&app, &env, "a", "registry.local/a:1", &[]).await;
    let b = service(&app, &env, "b", "registry.local/b:1", &["a"]).await;
    let c = service(&app, &env, "c", "registry.local/c:1", &["b"]).await;
    let batch: EnvironmentDeployment = app
        .post(&deploy_path(&env), &json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(names(&batch, &[&a, &b, &c]), ["a", "b", "c"]);
    let ids: Vec<Uuid> = batch.deployments.iter().map(|d| d.id).collect();
    app.post(
        &format!("/api/v1/deployments/{}/cancel", ids[0]),
        &json!({}),
    )
    .await
    .expect(200);
    for (id, reason) in [
        (ids[1], "dependency a failed"),
        (ids[2], "dependency b failed"),
    ] {
        let d: Deployment = eventually(
            "the dependent deployment failed",
            Duration::from_secs(20),
            || async {
                let d: Deployment = app
                    .get(&format!("/api/v1/deployments/{id}"))
                    .await
                    .expect(200)
                    .json();
                if d.state == DeploymentState::Failed {
                    Ok(d)
                } else {
                    Err(format!("{:?}: {:?}", d.state, d.steps))
                }
            },
        )
        .await;
        assert_eq!(d.reason.as_deref(), Some(reason));
        assert!(d.started_at.is_none(), "it never started");
        assert!(d.finished_at.is_some());
        assert!(
            d.steps
                .iter()
                .any(|s| s.message == format!("failed: {reason}")),
            "{:?}",
            d.steps
        );
    }
    let fails = audit(&app, "deployment.fail").await;
    assert_eq!(fails.len(), 2, "{fails:?}");
    assert!(fails.iter().all(|e| e.actor == "engine"));
}

async fn protected_environments_await_approval_per_deployment(mut app: TestApp) {
    app.setup_admin().await;
    let env = environment(&app, "guarded", "production").await;
    service(&app, &env, "db", "registry.local/pg:15", &[]).await;
    service(&app, &env, "api", "registry.local/api:1", &["db"]).await;
    app.patch(
        &format!("/api/v1/environments/{env}"),
        &json!({"protected": true}),
    )
    .await
    .expect(200);
    let b: EnvironmentDeployment = app
        .post(&deploy_path(&env), &json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(b.deployments.len(), 2);
    for d in &b.deployments {
        assert_eq!(d.state, DeploymentState::AwaitingApproval, "{d:?}");
    }
    assert_eq!(b.deployments[1].waits_for, [b.deployments[0].id]);
}
