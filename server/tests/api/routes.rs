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

/// Defect: every request body was `{"type":"object"}` and required query
/// parameters were missing. Bodies, answers and query strings now carry the
/// schemas of the Rust types the route table names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_has_real_schemas() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = app.get("/api/v1/openapi.json").await.expect(200).body;
    let schemas = &doc["components"]["schemas"];
    let resolve = |s: &Value| -> Value {
        match s["$ref"].as_str() {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                schemas[name].clone()
            }
            None => s.clone(),
        }
    };
    // Every body is a named schema of a shared type, never a bare object.
    let mut bodies = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            if let Some(body) = op.get("requestBody") {
                let schema = &body["content"]["application/json"]["schema"];
                let resolved = resolve(schema);
                assert!(
                    resolved.get("properties").is_some()
                        || resolved.get("additionalProperties").is_some(),
                    "{method} {path}: {schema}"
                );
                bodies += 1;
            }
        }
    }
    assert!(bodies >= 28, "only {bodies} bodies");
    let new_project = resolve(
        &doc["paths"]["/api/v1/projects"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"],
    );
    assert_eq!(new_project["required"], json!(["name"]));
    assert_eq!(new_project["additionalProperties"], false);
    let name = resolve(&new_project["properties"]["name"]);
    assert_eq!(name["maxLength"], 63);
    assert!(name["pattern"]
        .as_str()
        .is_some_and(|p| p.starts_with("^[a-z]")));
    let port = &schemas["Port"];
    assert_eq!(
        (port["minimum"].clone(), port["maximum"].clone()),
        (json!(1), json!(65535))
    );
    // Answers too.
    let created = &doc["paths"]["/api/v1/projects"]["post"]["responses"]["201"];
    assert_eq!(
        created["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Project"
    );
    // Query parameters: pagination with its bounds, filters, required ones.
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name && p["in"] == "query")
            .cloned()
            .unwrap_or_else(|| panic!("{path}: no query parameter {name}"))
    };
    let limit = param("/api/v1/projects", "limit");
    assert_eq!(limit["required"], false);
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 500);
    param("/api/v1/projects", "offset");
    assert_eq!(
        param("/api/v1/releases/{id}/promote-preview", "environment_id")["required"],
        true
    );
    param("/api/v1/deployments", "state");
    param("/api/v1/audit", "since");
    assert_eq!(
        param("/api/v1/audit", "format")["schema"]["enum"],
        json!(["json", "csv"])
    );
    param("/api/v1/hosts/{id}/containers/{container}/logs", "follow");
    param("/api/v1/hosts/{id}/containers/{container}/logs", "tail");
    // Each operation names its token action beside its role.
    assert_eq!(
        doc["paths"]["/api/v1/releases/{id}/rollback"]["post"]["x-token-action"],
        "deploy"
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

/// The kind of change of every route is a column of the table. Reads and
/// public routes have none; everything that creates or cancels a deployment
/// is `deploy` (rollback and redelivery included: both create deployments);
/// approve/reject are `approve`; every other change is `configure`.
#[test]
fn every_route_has_its_token_action() {
    use slipway_server::api::ROUTES;
    use slipway_types::api::TokenAction;
    const DEPLOY: [&str; 6] = [
        "post /api/v1/services/{id}/deployments",
        "post /api/v1/environments/{id}/deployments",
        "post /api/v1/deployments/{id}/cancel",
        "post /api/v1/releases/{id}/promote",
        "post /api/v1/releases/{id}/rollback",
        "post /api/v1/deliveries/{id}/redeliver",
    ];
    const APPROVE: [&str; 2] = [
        "post /api/v1/deployments/{id}/approve",
        "post /api/v1/deployments/{id}/reject",
    ];
    let mut seen = 0;
    for r in ROUTES {
        let key = format!("{} {}", r.method, r.path);
        let want = if r.method == "get" || r.role.is_none() {
            None
        } else if DEPLOY.contains(&key.as_str()) {
            Some(TokenAction::Deploy)
        } else if APPROVE.contains(&key.as_str()) {
            Some(TokenAction::Approve)
        } else {
            Some(TokenAction::Configure)
        };
        assert_eq!(r.action, want, "{key}");
        // The middleware finds the same answer by method and pattern.
        let method = actix_web::http::Method::from_bytes(r.method.to_uppercase().as_bytes())
            .expect("method");
        let looked_up = slipway_server::api::token_action(&method, r.path);
        if r.role.is_some() {
            assert_eq!(looked_up, want, "lookup of {key}");
        }
        seen += usize::from(DEPLOY.contains(&key.as_str()) || APPROVE.contains(&key.as_str()));
    }
    assert_eq!(
        seen,
        DEPLOY.len() + APPROVE.len(),
        "a listed route is not in the table"
    );
}

/// Rolling back creates a deployment: a token limited to `deploy` may do it,
/// one limited to `configure` may not. Same for redelivering a webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_redeliver_are_deploy_actions() {
    let mut app = spawn_app(Backend::Sqlite).await;
    app.setup_admin().await;
    let (_, _, svc) = app.seed_service("shop", "staging", "web").await;
    let first = app
        .post(&format!("/api/v1/services/{svc}/deployments"), &json!({}))
        .await
        .expect(202);
    let release = first.body["release_id"]
        .as_str()
        .expect("release")
        .to_owned();
    let limited = |actions: Value| {
        let app = &app;
        async move {
            let r = app
                .post(
                    "/api/v1/tokens",
                    &json!({"name": format!("t-{actions}"), "role": "admin", "actions": actions}),
                )
                .await
                .expect(201);
            r.body["secret"].as_str().expect("secret").to_owned()
        }
    };
    let deploy_only = limited(json!(["deploy"])).await;
    let configure_only = limited(json!(["configure"])).await;
    let rollback = format!("/api/v1/releases/{release}/rollback");

    let denied = app
        .send(Method::POST, &rollback, None, Some(&configure_only))
        .await
        .expect(403);
    assert!(denied.text.contains("may not deploy"), "{}", denied.text);
    let rolled = app
        .send(Method::POST, &rollback, None, Some(&deploy_only))
        .await
        .expect(202);
    assert_eq!(rolled.body["release_id"], release.as_str());

    let redeliver = format!("/api/v1/deliveries/{}/redeliver", uuid::Uuid::new_v4());
    app.send(Method::POST, &redeliver, None, Some(&configure_only))
        .await
        .expect(403);
    // Past the action gate: the delivery does not exist.
    app.send(Method::POST, &redeliver, None, Some(&deploy_only))
        .await
        .expect(404);
}
