//! Route enumeration from the OpenAPI document (generated from the same
//! table that registers the handlers): every protected route answers 401
//! without credentials and 403 below its role, and is reachable at its role.
use crate::helpers::{spawn_app, Backend};
use reqwest::Method;
use serde_json::{json, Value};

const ROLES: [&str; 4] = ["viewer", "deployer", "approver", "admin"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_checks_credentials_and_role() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.setup_admin().await;
    let mut tokens = Vec::new();
    for r in ROLES {
        tokens.push(app.token(r, &[]).await);
    }
    let doc = app.get("/api/v1/openapi.json").await.expect(200).body;
    let paths = doc["paths"].as_object().expect("paths");
    let anonymous = reqwest::Client::new();
    let (mut checked, mut mutating) = (0, 0);
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            let Some(min) = op["x-min-role"].as_str() else {
                continue;
            };
            let min_idx = ROLES.iter().position(|r| *r == min).expect("known role");
            let url = path
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{name}", "SOME_VAR");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            if m != Method::GET {
                mutating += 1;
            }
            let body = json!({});
            // 1. No credentials at all.
            let res = anonymous
                .request(m.clone(), app.url(&url))
                .json(&body)
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), 401, "{method} {path} without credentials");
            let err: Value = res.json().await.expect("json error");
            assert_eq!(err["error"], "unauthenticated", "{method} {path}");
            // 2. Each role below the minimum is forbidden; at or above it passes the gate.
            // Event streams never end: look at the status line only.
            let streams = path.ends_with("/events") || path.ends_with("/logs");
            for (i, token) in tokens.iter().enumerate() {
                if streams {
                    let res = reqwest::Client::new()
                        .get(app.url(&url))
                        .bearer_auth(token)
                        .send()
                        .await
                        .expect("send");
                    let st = res.status().as_u16();
                    if i < min_idx {
                        assert_eq!(st, 403, "{method} {path} as {}", ROLES[i]);
                    } else {
                        assert!(
                            st != 401 && st != 403,
                            "{method} {path} as {}: {st}",
                            ROLES[i]
                        );
                    }
                    continue;
                }
                let r = app.send(m.clone(), &url, Some(&body), Some(token)).await;
                if i < min_idx {
                    assert_eq!(r.status, 403, "{method} {path} as {}: {}", ROLES[i], r.text);
                    assert_eq!(r.error_code(), "forbidden");
                } else {
                    assert!(
                        r.status != 401 && r.status != 403,
                        "{method} {path} as {} should pass the role gate, got {}: {}",
                        ROLES[i],
                        r.status,
                        r.text
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 63, "only {checked} protected routes found");
    assert!(mutating >= 37, "only {mutating} mutating routes found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_route_with_its_role() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = app.get("/api/v1/openapi.json").await.expect(200).body;
    assert_eq!(doc["openapi"], "3.1.0");
    let create = &doc["paths"]["/api/v1/projects"]["post"];
    assert_eq!(create["x-min-role"], "admin");
    assert!(create["requestBody"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/services/{id}/deployments"]["post"]["x-min-role"],
        "deployer"
    );
    assert!(doc["paths"]["/api/v1/setup"]["post"]["x-min-role"].is_null());
    // Webhook receivers are public: the signature is the credential.
    for p in ["github", "gitlab", "generic"] {
        let op = &doc["paths"][format!("/api/v1/hooks/{p}/{{project_id}}")]["post"];
        assert!(op.is_object(), "{p} hook route missing");
        assert!(op["x-min-role"].is_null());
    }
    assert_eq!(
        doc["paths"]["/api/v1/deployments/{id}/approve"]["post"]["x-min-role"],
        "approver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_path_with_another_method_answers_405_with_allow() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.setup_admin().await;
    let r = app.delete("/api/v1/projects").await.expect(405);
    assert_eq!(r.error_code(), "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, POST");
    let r = app
        .send(
            Method::PUT,
            "/api/v1/projects/6d7c0b7e-0000-4000-8000-000000000000",
            None,
            None,
        )
        .await
        .expect(405);
    assert_eq!(r.headers["allow"], "GET, PATCH, DELETE");
    // An unknown path is still 404.
    assert_eq!(
        app.get("/api/v1/nope").await.expect(404).error_code(),
        "not_found"
    );
}
