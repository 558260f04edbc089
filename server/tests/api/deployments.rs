use crate::{helpers::TestApp, store_test};
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use slipway_server::store::entities::release;
use slipway_types::api::{Deployment, DeploymentState, Overview, Page, Release, Trigger};

store_test!(
    deployments_queue_releases_and_cancel,
    corrupt_stored_release_is_an_error_not_a_guess
);

/// A release whose stored trigger cannot be read answers a clear internal
/// error; it is not passed off as an `api` release.
async fn corrupt_stored_release_is_an_error_not_a_guess(mut app: TestApp) {
    app.setup_admin().await;
    let (_, _, svc) = app.seed_service("shop", "staging", "web").await;
    let d: Deployment = app
        .post(&format!("/api/v1/services/{svc}/deployments"), &json!({}))
        .await
        .expect(202)
        .json();
    let r: Release = app
        .get(&format!("/api/v1/releases/{}", d.release_id))
        .await
        .expect(200)
        .json();
    assert_eq!(
        r.trigger,
        Trigger::Manual,
        "a dashboard session deploys manually"
    );
    let db = app.db().await;
    release::Entity::update_many()
        .col_expr(release::Column::Trigger, Expr::value("carrier-pigeon"))
        .filter(release::Column::Id.eq(d.release_id))
        .exec(&db)
        .await
        .unwrap();
    for path in [
        format!("/api/v1/releases/{}", d.release_id),
        format!("/api/v1/releases?service={svc}"),
    ] {
        let r = app.get(&path).await.expect(500);
        assert_eq!(r.error_code(), "internal", "{path}: {}", r.text);
        assert!(!r.text.contains("\"api\""), "{path}: {}", r.text);
    }
    // The deployment itself does not need the trigger and still reads.
    app.get(&format!("/api/v1/deployments/{}", d.id))
        .await
        .expect(200);
}

async fn deployments_queue_releases_and_cancel(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, svc) = app.seed_service("shop", "staging", "web").await;
    let path = format!("/api/v1/services/{svc}/deployments");
    let d1: Deployment = app
        .post(&path, &json!({"git_sha": "a1b2c3d4", "git_ref": "main"}))
        .await
        .expect(202)
        .json();
    assert_eq!(d1.state, DeploymentState::Queued);
    assert_eq!(d1.release_number, 1);
    assert_eq!(d1.image.as_str(), "registry.local/app:1.0");
    assert_eq!(d1.steps.len(), 1);
    let d2: Deployment = app
        .post(&path, &json!({"image": "registry.local/app:2.0"}))
        .await
        .expect(202)
        .json();
    assert_eq!(d2.release_number, 2);
    assert_eq!(d2.image.as_str(), "registry.local/app:2.0");

    // Releases are immutable snapshots of the service at the time.
    let rels: Page<Release> = app
        .get(&format!("/api/v1/releases?service={svc}"))
        .await
        .expect(200)
        .json();
    assert_eq!(rels.total, 2);
    let r1 = rels.items.iter().find(|r| r.number == 1).unwrap();
    assert_eq!(r1.git_sha.as_deref(), Some("a1b2c3d4"));
    assert_eq!(r1.config.image.as_str(), "registry.local/app:1.0");
    assert_eq!(r1.author, "admin");
    let got: Release = app
        .get(&format!("/api/v1/releases/{}", r1.id))
        .await
        .expect(200)
        .json();
    assert_eq!(&got, r1);

    // Redeploying an earlier release reuses it.
    let d3: Deployment = app
        .post(&path, &json!({"release_id": r1.id}))
        .await
        .expect(202)
        .json();
    assert_eq!(d3.release_id, r1.id);
    let rels: Page<Release> = app
        .get(&format!("/api/v1/releases?service={svc}"))
        .await
        .expect(200)
        .json();
    assert_eq!(rels.total, 2);
    app.post(&path, &json!({"release_id": uuid::Uuid::new_v4()}))
        .await
        .expect(422);
    app.post(&path, &json!({"image": "a:1", "release_id": r1.id}))
        .await
        .expect(422);
    app.post(&path, &json!({"git_sha": "zz"})).await.expect(422);

    // Cancel: queued → cancelled once; a second cancel is an invalid transition.
    let c: Deployment = app
        .post(&format!("/api/v1/deployments/{}/cancel", d1.id), &json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(c.state, DeploymentState::Cancelled);
    assert!(c.finished_at.is_some());
    assert_eq!(c.steps.len(), 2);
    let again = app
        .post(&format!("/api/v1/deployments/{}/cancel", d1.id), &json!({}))
        .await
        .expect(409);
    assert_eq!(again.error_code(), "invalid_state_transition");

    // Filters and pagination.
    let queued: Page<Deployment> = app
        .get(&format!(
            "/api/v1/deployments?environment={env}&state=queued"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(queued.total, 2);
    let one: Page<Deployment> = app
        .get(&format!("/api/v1/deployments?service={svc}&limit=1"))
        .await
        .expect(200)
        .json();
    assert_eq!((one.total, one.items.len()), (3, 1));
    assert_eq!(one.items[0].id, d3.id, "newest first");
    app.get("/api/v1/deployments?state=exploded")
        .await
        .expect(422);

    let ov: Overview = app.get("/api/v1/overview").await.expect(200).json();
    let s = &ov.projects[0].environments[0].services[0];
    assert_eq!(s.last_deployment.as_ref().map(|d| d.id), Some(d3.id));
    assert_eq!(s.current_release, None, "nothing has succeeded yet");

    // Metrics count deployments by state.
    let m = app.get("/metrics").await.expect(200).text;
    assert!(m.contains("slipway_deployments{state=\"queued\"} 2"), "{m}");
    assert!(m.contains("slipway_deployments{state=\"cancelled\"} 1"));
}
