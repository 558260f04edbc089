//! docker-compose import: all or nothing, on both stores.
use crate::{helpers::TestApp, store_test};
use reqwest::Method;
use serde_json::json;
use slipway_types::{
    api::{
        ComposeImportResult, DependsCondition, HealthKind, Page, PortMode, Service, ServiceKind,
    },
    EnvVarName, ResourceName,
};

store_test!(
    compose_import_dry_run_then_real,
    compose_import_rejects_unsupported_keys_all_at_once,
    compose_import_name_clash_creates_nothing,
    compose_import_needs_admin,
    compose_import_with_uploaded_files,
    compose_import_lists_every_missing_file
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

/// The nginx → API → PostgreSQL + Redis stack of the seeds, with its
/// nginx.conf and env file.
const STACK_WITH_FILES: &str = r#"
services:
  nginx:
    image: nginx:1.27-alpine
    ports: ["80:80"]
    volumes:
      - ./nginx.conf:/etc/nginx/nginx.conf:ro
    depends_on:
      api:
        condition: service_healthy
  api:
    image: ghcr.io/acme/api:1.2.0
    env_file: ./api.env
    environment:
      DATABASE_URL: postgresql://app:${DB_PASSWORD}@postgres:5432/app
    healthcheck:
      test: ["CMD", "curl", "-f", "http://localhost:8000/health"]
    depends_on:
      postgres:
        condition: service_healthy
      redis:
        condition: service_started
    x-slipway-release-command: alembic upgrade head
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
    ports: ["127.0.0.1:5432:5432"]
    volumes: [pgdata:/var/lib/postgresql/data]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      start_period: 30s
  redis:
    image: redis:7-alpine
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
volumes:
  pgdata:
"#;

const NGINX_CONF: &str =
    "events {}\nhttp { server { listen 80; location / { proxy_pass http://api:8000; } } }\n";

async fn compose_import_with_uploaded_files(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "existing").await;
    let path = format!("/api/v1/environments/{env}/compose");
    let body = json!({
        "compose": STACK_WITH_FILES,
        "files": {"./nginx.conf": NGINX_CONF, "api.env": "# api\nWORKERS=4\nLOG='$debug'\n"},
    });
    let r: ComposeImportResult = app.post(&path, &body).await.expect(200).json();
    let names: Vec<&str> = r.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nginx", "api", "postgres", "redis"]);

    let all = services(&app, &env).await;
    let get = |n: &str| {
        all.iter()
            .find(|s| s.name.as_str() == n)
            .unwrap_or_else(|| panic!("no {n}"))
            .spec
            .clone()
    };
    let nginx = get("nginx");
    assert_eq!(nginx.files.len(), 1);
    assert_eq!(nginx.files[0].target, "/etc/nginx/nginx.conf");
    assert_eq!(nginx.files[0].content, NGINX_CONF);
    assert!(nginx.volumes.is_empty());
    let api = get("api");
    assert_eq!(
        api.env[&EnvVarName::try_from("DATABASE_URL").unwrap()],
        "postgresql://app:${DB_PASSWORD}@postgres:5432/app"
    );
    assert_eq!(api.env[&EnvVarName::try_from("WORKERS").unwrap()], "4");
    assert_eq!(api.env[&EnvVarName::try_from("LOG").unwrap()], "$$debug");
    assert_eq!(
        api.depends_on[&ResourceName::try_from("postgres").unwrap()],
        DependsCondition::ServiceHealthy
    );
    assert_eq!(
        api.release_command.unwrap().command,
        ["alembic", "upgrade", "head"]
    );
    let pg = get("postgres");
    assert_eq!(pg.ports[0].mode, PortMode::Tcp);
    assert_eq!(pg.secrets[0].secret.as_str(), "DB_PASSWORD");
    let hc = pg.health_check.unwrap();
    assert_eq!(hc.kind, HealthKind::Exec);
    assert_eq!(hc.start_period_secs, 30);
    assert_eq!(get("redis").kind, ServiceKind::Service);
}

async fn compose_import_lists_every_missing_file(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "existing").await;
    let path = format!("/api/v1/environments/{env}/compose");
    for dry_run in [true, false] {
        let r = app
            .post(
                &path,
                &json!({"compose": STACK_WITH_FILES, "dry_run": dry_run}),
            )
            .await
            .expect(422);
        assert_eq!(r.error_code(), "invalid_input");
        assert_eq!(r.body["field"], "compose");
        let msg = r.body["message"].as_str().unwrap();
        assert!(
            msg.starts_with("the compose file has values Slipway cannot import: "),
            "{msg}"
        );
        for expected in [
            "services.nginx.volumes[0]: ./nginx.conf is a file on your machine: upload its \
             content with the import as files[\"./nginx.conf\"]",
            "services.api.env_file[0]: ./api.env is a file on your machine: upload its content \
             with the import as files[\"./api.env\"]",
        ] {
            assert!(msg.contains(expected), "{expected} missing from {msg}");
        }
    }
    // One uploaded, the other still missing: still nothing imported.
    let r = app
        .post(
            &path,
            &json!({"compose": STACK_WITH_FILES, "files": {"./nginx.conf": NGINX_CONF}}),
        )
        .await
        .expect(422);
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.contains("./api.env"), "{msg}");
    assert!(!msg.contains("./nginx.conf"), "{msg}");
    assert_eq!(
        services(&app, &env).await.len(),
        1,
        "something was imported"
    );

    // Uploads are bounded.
    let r = app
        .post(
            &path,
            &json!({"compose": STACK_WITH_FILES, "files": {"./nginx.conf": "x".repeat(64 * 1024 + 1)}}),
        )
        .await
        .expect(422);
    assert_eq!(r.body["field"], "files[\"./nginx.conf\"]", "{}", r.text);
}
