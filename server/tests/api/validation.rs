use crate::{
    helpers::{spawn_app, Backend, TestApp},
    store_test,
};
use reqwest::Method;
use serde_json::json;
use slipway_server::api::ROUTES;

store_test!(
    validation_errors_name_the_field,
    malformed_and_oversized_bodies
);

async fn validation_errors_name_the_field(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "web").await;
    let svc = format!("/api/v1/environments/{env}/services");
    let cases = [
        (
            json!({"name": "Bad_Name", "spec": {"image": "app:1"}}),
            "name",
        ),
        (
            json!({"name": "ok", "spec": {"image": "UPPER/case"}}),
            "spec.image",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "ports": [{"container": 70000}]}}),
            "spec.ports[0].container",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "env": {"1BAD": "x"}}}),
            "spec.env",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "replicas": 0}}),
            "spec.replicas",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "health_check": {"path": "/h", "port": 80, "interval_secs": 5, "timeout_secs": 10}}}),
            "spec.health_check.timeout_secs",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "hardening": {"cap_add": ["sys_admin"]}}}),
            "spec.hardening.cap_add[0]",
        ),
        (
            json!({"name": "ok", "spec": {"image": "app:1", "privileged": true}}),
            "spec",
        ),
    ];
    for (body, field) in cases {
        let r = app.post(&svc, &body).await.expect(422);
        assert_eq!(r.error_code(), "invalid_input", "{body}");
        let got = r.body["field"].as_str().unwrap_or("");
        assert!(
            got.starts_with(field),
            "{body}: field {got:?}, want {field:?} ({})",
            r.text
        );
        assert!(!r.body["message"].as_str().unwrap_or("").is_empty());
    }
    // Nothing was created by the rejected requests.
    let list = app.get(&svc).await.expect(200);
    assert_eq!(list.body["total"], 1);

    // Variable names are validated in the path too.
    let r = app
        .put(
            &format!("/api/v1/environments/{env}/variables/BAD-NAME"),
            &json!({"value": "x"}),
        )
        .await
        .expect(422);
    assert_eq!(r.body["field"], "name");
    // Unknown ids and routes answer with the JSON error body.
    assert_eq!(
        app.get("/api/v1/services/not-a-uuid")
            .await
            .expect(404)
            .error_code(),
        "not_found"
    );
    assert_eq!(
        app.get(&format!("/api/v1/services/{}", uuid::Uuid::new_v4()))
            .await
            .expect(404)
            .error_code(),
        "not_found"
    );
    assert_eq!(
        app.get("/api/v1/nope").await.expect(404).error_code(),
        "not_found"
    );
}

async fn malformed_and_oversized_bodies(mut app: TestApp) {
    app.setup_admin().await;
    let csrf = app.csrf.clone().unwrap();
    let r = app
        .client
        .post(app.url("/api/v1/projects"))
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "malformed_json");

    let huge = "x".repeat(2 << 20);
    let r = app
        .send(
            Method::POST,
            "/api/v1/projects",
            Some(&json!({"name": "big", "description": huge})),
            None,
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error_code(), "payload_too_large");
    let r = app
        .post(
            "/api/v1/projects",
            &json!({"name": "long", "description": "y".repeat(5000)}),
        )
        .await
        .expect(422);
    assert_eq!(r.body["field"], "description");
}

/// Defect: serde's derived structs also read a JSON array positionally, so
/// `["array-token","admin"]` created an admin token and `[]` queued a
/// deploy. For every route of the table that takes a body, no array, string
/// or number gets past the parser, whatever the caller may do, and nothing
/// changes (not one audit entry is written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_body_route_rejects_a_non_object_body() {
    let non_objects = [json!([]), json!(["x", "y"]), json!("x"), json!(7)];
    let mut app = spawn_app(Backend::Sqlite).await;
    // First-run setup is public and only open before the first user.
    for body in &non_objects {
        let r = app
            .send(Method::POST, "/api/v1/setup", Some(body), None)
            .await
            .expect(422);
        assert_eq!(r.error_code(), "invalid_input", "/setup {body}");
    }
    assert_eq!(
        app.get("/api/v1/setup").await.expect(200).body["needs_setup"],
        true
    );

    app.setup_admin().await;
    let admin = app.token("admin", &[]).await;
    let (project, env, service) = app.seed_service("shop", "staging", "web").await;
    let audit_total = |app: &TestApp, token: String| {
        let url = app.url("/api/v1/audit?limit=1");
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("audit");
            let page: serde_json::Value = r.json().await.expect("audit json");
            page["total"].as_u64().expect("total")
        }
    };
    let before = audit_total(&app, admin.clone()).await;

    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.request.is_some()) {
        // Webhook receivers verify a signature before reading their payload;
        // the generic payload's parser has its own test (ci::payload).
        if route.path.starts_with("/api/v1/hooks/") || route.path == "/api/v1/setup" {
            continue;
        }
        let path = route
            .path
            .replace("/projects/{id}", &format!("/projects/{project}"))
            .replace("/environments/{id}", &format!("/environments/{env}"))
            .replace("/services/{id}", &format!("/services/{service}"))
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{name}", "SOME_VAR");
        let method = Method::from_bytes(route.method.to_uppercase().as_bytes()).expect("method");
        for body in &non_objects {
            let r = app
                .send(method.clone(), &path, Some(body), Some(&admin))
                .await;
            assert_eq!(
                (r.status.as_u16(), r.error_code()),
                (422, "invalid_input"),
                "{} {} with {body}: {}",
                route.method,
                route.path,
                r.text
            );
        }
        checked += 1;
    }
    assert!(checked >= 24, "only {checked} routes with a body");
    assert_eq!(
        audit_total(&app, admin.clone()).await,
        before,
        "something changed"
    );
    let tokens = app.get("/api/v1/tokens").await.expect(200);
    assert_eq!(tokens.body["total"], 1, "{}", tokens.text);
    let deployments = app.get("/api/v1/deployments").await.expect(200);
    assert_eq!(deployments.body["total"], 0);
    let p = app
        .get(&format!("/api/v1/projects/{project}"))
        .await
        .expect(200);
    assert_eq!(p.body["name"], "shop");
}
