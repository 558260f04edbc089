use crate::{helpers::TestApp, store_test};
use serde_json::json;
use slipway_types::api::{Environment, Host, Page, Project, Service};

store_test!(
    project_environment_service_round_trip,
    pagination,
    hosts_round_trip
);

async fn project_environment_service_round_trip(mut app: TestApp) {
    app.setup_admin().await;
    let p: Project = app
        .post(
            "/api/v1/projects",
            &json!({"name": "payments", "description": "Card processing"}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(p.name.as_str(), "payments");
    let got: Project = app
        .get(&format!("/api/v1/projects/{}", p.id))
        .await
        .expect(200)
        .json();
    assert_eq!(got, p);

    let e: Environment = app
        .post(
            &format!("/api/v1/projects/{}/environments", p.id),
            &json!({"name": "production", "protected": true}),
        )
        .await
        .expect(201)
        .json();
    assert!(e.protected);
    let dup = app
        .post(
            &format!("/api/v1/projects/{}/environments", p.id),
            &json!({"name": "production"}),
        )
        .await
        .expect(409);
    assert_eq!(dup.error_code(), "conflict");

    let spec = json!({
        "image": "ghcr.io/acme/payments:1.4.2",
        "command": ["/app", "--serve"],
        "ports": [{"container": 8000, "published": 443}],
        "env": {"LOG_LEVEL": "info", "WORKERS": "4"},
        "secrets": [{"env": "DATABASE_URL", "secret": "DATABASE_URL"}],
        "volumes": [{"source": "uploads", "target": "/data"}],
        "health_check": {"path": "/health", "port": 8000, "interval_secs": 10, "timeout_secs": 5, "retries": 3},
        "replicas": 2,
        "resources": {"cpus": 1.5, "memory_mb": 512},
        "hardening": {"user": "1000:1000", "read_only": true, "cap_drop": ["ALL"], "cap_add": ["NET_BIND_SERVICE"], "no_new_privileges": true}
    });
    let s: Service = app
        .post(
            &format!("/api/v1/environments/{}/services", e.id),
            &json!({"name": "api", "spec": spec}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(s.spec.replicas, 2);
    assert_eq!(s.spec.hardening.cap_drop[0].as_str(), "ALL");
    assert_eq!(s.project_id, p.id);
    let round: Service = app
        .get(&format!("/api/v1/services/{}", s.id))
        .await
        .expect(200)
        .json();
    assert_eq!(round, s);

    // Update: rename and replace the spec.
    let mut new_spec = serde_json::to_value(&s.spec).unwrap();
    new_spec["image"] = json!("ghcr.io/acme/payments:1.5.0");
    let s2: Service = app
        .patch(
            &format!("/api/v1/services/{}", s.id),
            &json!({"name": "api-v2", "spec": new_spec}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(s2.name.as_str(), "api-v2");
    assert_eq!(s2.spec.image.as_str(), "ghcr.io/acme/payments:1.5.0");

    let list: Page<Service> = app
        .get(&format!("/api/v1/environments/{}/services", e.id))
        .await
        .expect(200)
        .json();
    assert_eq!(list.total, 1);

    let e2: Environment = app
        .patch(
            &format!("/api/v1/environments/{}", e.id),
            &json!({"protected": false}),
        )
        .await
        .expect(200)
        .json();
    assert!(!e2.protected);
    let p2: Project = app
        .patch(
            &format!("/api/v1/projects/{}", p.id),
            &json!({"description": "Cards"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(p2.description, "Cards");

    // Deleting a parent with children is refused; bottom-up works.
    assert_eq!(
        app.delete(&format!("/api/v1/projects/{}", p.id))
            .await
            .expect(409)
            .error_code(),
        "conflict"
    );
    assert_eq!(
        app.delete(&format!("/api/v1/environments/{}", e.id))
            .await
            .expect(409)
            .error_code(),
        "conflict"
    );
    app.delete(&format!("/api/v1/services/{}", s.id))
        .await
        .expect(204);
    app.delete(&format!("/api/v1/environments/{}", e.id))
        .await
        .expect(204);
    app.delete(&format!("/api/v1/projects/{}", p.id))
        .await
        .expect(204);
    app.get(&format!("/api/v1/projects/{}", p.id))
        .await
        .expect(404);
}

async fn pagination(mut app: TestApp) {
    app.setup_admin().await;
    for i in 0..7 {
        app.post("/api/v1/projects", &json!({"name": format!("p{i}")}))
            .await
            .expect(201);
    }
    let page: Page<Project> = app
        .get("/api/v1/projects?limit=3&offset=3")
        .await
        .expect(200)
        .json();
    assert_eq!(page.total, 7);
    assert_eq!((page.limit, page.offset), (3, 3));
    let names: Vec<_> = page.items.iter().map(|p| p.name.to_string()).collect();
    assert_eq!(names, ["p3", "p4", "p5"]);
    let tail: Page<Project> = app
        .get("/api/v1/projects?limit=3&offset=6")
        .await
        .expect(200)
        .json();
    assert_eq!(tail.items.len(), 1);
    let bad = app.get("/api/v1/projects?limit=0").await.expect(422);
    assert_eq!(bad.body["field"], "limit");
    app.get("/api/v1/projects?limit=abc").await.expect(422);
}

async fn hosts_round_trip(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, _) = app.seed_service("shop", "staging", "web").await;
    let h: Host = app
        .post(
            "/api/v1/hosts",
            &json!({"name": "docker-1", "environments": [env], "labels": {"region": "eu"}}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(h.environments.len(), 1);
    assert_eq!(serde_json::to_value(h.status).unwrap(), json!("pending"));
    let bad = app
        .post(
            "/api/v1/hosts",
            &json!({"name": "docker-2", "environments": [uuid::Uuid::new_v4()]}),
        )
        .await
        .expect(422);
    assert_eq!(bad.body["field"], "environments[0]");
    // Nothing half-written: the failed host does not exist.
    let all: Page<Host> = app.get("/api/v1/hosts").await.expect(200).json();
    assert_eq!(all.total, 1);
    let h2: Host = app
        .patch(
            &format!("/api/v1/hosts/{}", h.id),
            &json!({"environments": []}),
        )
        .await
        .expect(200)
        .json();
    assert!(h2.environments.is_empty());
    app.delete(&format!("/api/v1/hosts/{}", h.id))
        .await
        .expect(204);
}
