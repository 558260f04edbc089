use crate::{helpers::TestApp, store_test};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use slipway_types::api::{AuditEntry, Page};

store_test!(
    every_mutation_is_audited,
    audit_verify_detects_a_changed_row,
    audit_filters_and_csv
);

async fn every_mutation_is_audited(mut app: TestApp) {
    app.setup_admin().await;
    let (p, env, svc) = app.seed_service("shop", "staging", "web").await;
    app.put(
        &format!("/api/v1/environments/{env}/variables/TOKEN"),
        &json!({"value": "x", "secret": true}),
    )
    .await
    .expect(201);
    app.patch(
        &format!("/api/v1/projects/{p}"),
        &json!({"description": "d"}),
    )
    .await
    .expect(200);
    app.post(&format!("/api/v1/services/{svc}/deployments"), &json!({}))
        .await
        .expect(202);
    let token = app.token("viewer", &[]).await;
    let tokens: serde_json::Value = app.get("/api/v1/tokens").await.expect(200).body;
    let tid = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/v1/tokens/{tid}"))
        .await
        .expect(204);
    // The revoked token no longer works.
    app.send(reqwest::Method::GET, "/api/v1/projects", None, Some(&token))
        .await
        .expect(401);
    // A failed login is audited with its reason.
    app.post(
        "/api/v1/auth/login",
        &json!({"username": "admin", "password": "wrong password!"}),
    )
    .await
    .expect(401);

    let all: Page<AuditEntry> = app.get("/api/v1/audit?limit=100").await.expect(200).json();
    let mut actions: Vec<&str> = all.items.iter().map(|e| e.action.as_str()).collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            "user.create",
            "auth.login",
            "project.create",
            "environment.create",
            "service.create",
            "secret.create",
            "project.update",
            "release.create",
            "deployment.create",
            "token.create",
            "token.revoke",
            "auth.login_failed",
        ]
    );
    let failed = &all.items[0];
    assert_eq!(failed.summary["reason"], "wrong password");
    assert!(failed
        .source_ip
        .as_deref()
        .is_some_and(|ip| ip.starts_with("127.")));
    let create = all
        .items
        .iter()
        .find(|e| e.action == "project.create")
        .unwrap();
    assert_eq!(create.actor, "admin");
    assert_eq!(create.target_id.as_deref(), Some(p.as_str()));
    assert!(create.request_id.is_some());
    // Sequence numbers are contiguous.
    let mut seqs: Vec<i64> = all.items.iter().map(|e| e.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

async fn audit_verify_detects_a_changed_row(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let ok = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{out} {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.contains("intact: 5 entries"), "{out}");

    let db = app.db().await;
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3".to_owned(),
    ))
    .await
    .unwrap();
    let bad = app.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(out.contains("first bad entry is #3"), "{out}");

    // Deleting the newest entry is detected through the head.
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "UPDATE audit_log SET actor = 'admin' WHERE seq = 3".to_owned(),
    ))
    .await
    .unwrap();
    assert_eq!(app.cli(&["audit", "verify"]).status.code(), Some(0));
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "DELETE FROM audit_log WHERE seq = 5".to_owned(),
    ))
    .await
    .unwrap();
    let gone = app.cli(&["audit", "verify"]);
    assert_eq!(
        gone.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&gone.stdout)
    );
}

async fn audit_filters_and_csv(mut app: TestApp) {
    app.setup_admin().await;
    app.seed_service("shop", "staging", "web").await;
    let by_action: Page<AuditEntry> = app
        .get("/api/v1/audit?action=project.create")
        .await
        .expect(200)
        .json();
    assert_eq!(by_action.total, 1);
    let by_prefix: Page<AuditEntry> = app
        .get("/api/v1/audit?action=environment")
        .await
        .expect(200)
        .json();
    assert_eq!(by_prefix.total, 1);
    let by_actor: Page<AuditEntry> = app
        .get("/api/v1/audit?actor=nobody")
        .await
        .expect(200)
        .json();
    assert_eq!(by_actor.total, 0);
    let by_type: Page<AuditEntry> = app
        .get("/api/v1/audit?target_type=service")
        .await
        .expect(200)
        .json();
    assert_eq!(by_type.total, 1);
    let future: Page<AuditEntry> = app
        .get("/api/v1/audit?since=2999-01-01T00:00:00Z")
        .await
        .expect(200)
        .json();
    assert_eq!(future.total, 0);
    let past: Page<AuditEntry> = app
        .get("/api/v1/audit?until=2999-01-01T00:00:00Z")
        .await
        .expect(200)
        .json();
    assert_eq!(past.total, 5);
    app.get("/api/v1/audit?since=yesterday").await.expect(422);
    app.get("/api/v1/audit?format=xml").await.expect(422);
    let csv = app
        .get("/api/v1/audit?format=csv&action=project")
        .await
        .expect(200);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines[0],
        "seq,at,actor,action,target_type,target_id,summary,source_ip,request_id,hash"
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains("project.create"));
}
