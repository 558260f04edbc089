//! docker-compose import: all or nothing, on both stores.
use crate::{helpers::TestApp, store_test};
use reqwest::Method;
use serde_json::json;
use slipway_types::api::{ComposeImportResult, Page, Service};

store_test!(
    compose_import_dry_run_then_real,
    compose_import_rejects_unsupported_keys_all_at_once,
    compose_import_name_clash_creates_nothing,
    compose_import_needs_admin
);

const STACK: &str = r#"
version: '3.8'
services:
  api:
    image: ghcr.io/acme/api:1.2.0
    command: ["/app/api", "--port", "8080"]
    ports:
      - "8080:8080"
    environment:
      - RUST_LOG=info
      - JWT_SECRET=${JWT_SECRET}
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8080/health"]
      interval: 30s
      timeout: 10s
      retries: 3
    deploy:
      replicas: 2
      resources:
        limits:
          cpus: '0.5'
          memory: 256M
    security_opt:
      - no-new-privileges:true
    cap_drop: [ALL]
    read_only: true
    restart: unless-stopped
    depends_on: [cache]
  cache:
    image: redis:7-alpine
    command: redis-server --maxmemory 64mb
    volumes:
      - cache_data:/data
volumes:
  cache_data:
"#;

async fn services(app: &TestApp, env: &str) -> Vec<Service> {
    let p: Page<Service> = app
        .get(&format!("/api/v1/environments/{env}/services"))
        .await
        .expect(200)
        .json();
    p.items
}

async fn compose_import_dry_run_then_real(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "existing").await;
    let path = format!("/api/v1/environments/{env}/compose");
    let audit_before = app
        .get("/api/v1/audit?action=service.create")
        .await
        .expect(200)
        .body["total"]
        .clone();

    let dry: ComposeImportResult = app
        .post(&path, &json!({"compose": STACK, "dry_run": true}))
        .await
        .expect(200)
        .json();
    assert!(dry.dry_run);
    let names: Vec<&str> = dry.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "cache"]);
    assert!(
        dry.ignored
            .iter()
            .any(|i| i.starts_with("services.api.restart")),
        "{:?}",
        dry.ignored
    );
    assert_eq!(
        services(&app, &env).await.len(),
        1,
        "dry run wrote services"
    );
    let audit_after_dry = app
        .get("/api/v1/audit?action=service.create")
        .await
        .expect(200)
        .body["total"]
        .clone();
    assert_eq!(audit_before, audit_after_dry, "dry run wrote audit entries");

    let real: ComposeImportResult = app
        .post(&path, &json!({"compose": STACK}))
        .await
        .expect(200)
        .json();
    assert!(!real.dry_run);
    assert_eq!(real.services, dry.services);
    let all = services(&app, &env).await;
    assert_eq!(all.len(), 3);
    let api = all.iter().find(|s| s.name.as_str() == "api").unwrap();
    assert_eq!(api.spec, dry.services[0].spec);
    assert_eq!(api.spec.replicas, 2);
    assert_eq!(api.spec.resources.memory_mb, Some(256));
    assert_eq!(api.spec.secrets[0].secret.as_str(), "JWT_SECRET");
    assert_eq!(
        api.spec.health_check.as_ref().unwrap().path.as_deref(),
        Some("/health")
    );
    let cache = all.iter().find(|s| s.name.as_str() == "cache").unwrap();
    assert_eq!(cache.spec.volumes[0].source, "cache-data");
    assert_eq!(
        cache.spec.command.as_deref().unwrap(),
        ["redis-server", "--maxmemory", "64mb"]
    );

    // One audit entry per created service, marked as coming from compose.
    let audit = app
        .get("/api/v1/audit?action=service.create&limit=500")
        .await
        .expect(200);
    assert_eq!(
        audit.body["total"].as_u64().unwrap(),
        audit_before.as_u64().unwrap() + 2,
        "{}",
        audit.text
    );
    let from_compose = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"]["source"] == "compose")
        .count();
    assert_eq!(from_compose, 2, "{}", audit.text);
}

async fn compose_import_rejects_unsupported_keys_all_at_once(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "existing").await;
    let path = format!("/api/v1/environments/{env}/compose");
    let bad = r#"
services:
  good:
    image: nginx:1.27
  db:
    image: postgres:16
    privileged: true
  web:
    build: .
    ports:
      - "10.1.2.3:80:80"
"#;
    let r = app.post(&path, &json!({"compose": bad})).await.expect(422);
    assert_eq!(r.error_code(), "invalid_input");
    assert_eq!(r.body["field"], "compose");
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("the compose file uses keys Slipway cannot honour: "),
        "{msg}"
    );
    for key in [
        "services.db.privileged",
        "services.web.build",
        "services.web.ports[0].host_ip",
    ] {
        assert!(msg.contains(key), "{key} missing from {msg}");
    }
    assert_eq!(
        services(&app, &env).await.len(),
        1,
        "something was imported"
    );

    // YAML syntax errors name the position.
    let r = app
        .post(
            &path,
            &json!({"compose": "services:\n  web:\n    image: [oops\n"}),
        )
        .await
        .expect(422);
    assert_eq!(r.body["field"], "compose");
    assert!(
        r.body["message"].as_str().unwrap().contains("line"),
        "{}",
        r.text
    );

    // Unknown environment.
    app.post(
        &format!("/api/v1/environments/{}/compose", uuid::Uuid::new_v4()),
        &json!({"compose": "services:\n  web:\n    image: nginx\n"}),
    )
    .await
    .expect(404);
}

async fn compose_import_name_clash_creates_nothing(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "cache").await;
    let path = format!("/api/v1/environments/{env}/compose");
    for dry_run in [true, false] {
        let r = app
            .post(&path, &json!({"compose": STACK, "dry_run": dry_run}))
            .await
            .expect(409);
        assert_eq!(r.error_code(), "conflict");
        assert!(
            r.body["message"].as_str().unwrap().contains("cache"),
            "{}",
            r.text
        );
    }
    let all = services(&app, &env).await;
    assert_eq!(all.len(), 1, "api was created despite the clash");
    assert_eq!(all[0].name.as_str(), "cache");
}

async fn compose_import_needs_admin(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "existing").await;
    let (_, other_env, _) = app.seed_service("shop", "production", "existing").await;
    let path = format!("/api/v1/environments/{env}/compose");
    let body = json!({"compose": "services:\n  web:\n    image: nginx\n"});
    let viewer = app.token("viewer", &[]).await;
    let r = app
        .send(Method::POST, &path, Some(&body), Some(&viewer))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let deployer = app.token("deployer", &[]).await;
    let r = app
        .send(Method::POST, &path, Some(&body), Some(&deployer))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // An admin limited to another environment cannot import here.
    let scoped = app.token("admin", &[other_env.as_str()]).await;
    let r = app
        .send(Method::POST, &path, Some(&body), Some(&scoped))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = app
        .send(
            Method::POST,
            &format!("/api/v1/environments/{other_env}/compose"),
            Some(&body),
            Some(&scoped),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(services(&app, &env).await.len(), 1);
}
