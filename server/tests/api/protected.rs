//! `protected` environments: what runs there is not deleted by accident.
//! Deleting a service that runs, or the environment it runs in, answers
//! 409 `environment_protected` until the environment is unprotected (an
//! audited change); what never ran can go.
use crate::{helpers::TestApp, store_test};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use slipway_server::store::entities::deployment;
use slipway_types::api::DeploymentState;

store_test!(deleting_what_runs_in_a_protected_environment_is_refused);

async fn deleting_what_runs_in_a_protected_environment_is_refused(mut app: TestApp) {
    app.setup_admin().await;
    let (_project, env, web) = app.seed_service("shop", "production", "web").await;
    let idle = app
        .post(
            &format!("/api/v1/environments/{env}/services"),
            &json!({"name": "idle", "spec": {"image": "registry.local/idle:1"}}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &format!("/api/v1/environments/{env}"),
        &json!({"protected": true}),
    )
    .await
    .expect(200);

    // `web` was deployed: the engine ran it on an agent and recorded the
    // outcome, which is what the store says here.
    let d = app
        .post(&format!("/api/v1/services/{web}/deployments"), &json!({}))
        .await
        .expect(202)
        .body["id"]
        .as_str()
        .unwrap()
        .parse::<uuid::Uuid>()
        .unwrap();
    deployment::Entity::update_many()
        .col_expr(
            deployment::Column::State,
            Expr::value(DeploymentState::Succeeded.as_str()),
        )
        .filter(deployment::Column::Id.eq(d))
        .exec(&app.db().await)
        .await
        .unwrap();

    // What never ran can be deleted, protected or not.
    app.delete(&format!("/api/v1/services/{idle}"))
        .await
        .expect(204);

    let r = app
        .delete(&format!("/api/v1/services/{web}"))
        .await
        .expect(409);
    assert_eq!(r.error_code(), "environment_protected", "{}", r.text);
    let message = r.body["message"].as_str().unwrap();
    assert!(
        message.contains("production is protected") && message.contains("service web runs"),
        "{message}"
    );
    let r = app
        .delete(&format!("/api/v1/environments/{env}"))
        .await
        .expect(409);
    assert_eq!(r.error_code(), "environment_protected", "{}", r.text);
    // Nothing was deleted.
    app.get(&format!("/api/v1/services/{web}"))
        .await
        .expect(200);

    // Unprotected (audited), the same deletions go through.
    app.patch(
        &format!("/api/v1/environments/{env}"),
        &json!({"protected": false}),
    )
    .await
    .expect(200);
    app.delete(&format!("/api/v1/services/{web}"))
        .await
        .expect(204);
    app.delete(&format!("/api/v1/environments/{env}"))
        .await
        .expect(204);
}
