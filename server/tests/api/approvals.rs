//! Production approvals, deploy freezes and maintenance windows, and the
//! `slipway deploy` CLI against the real server.
use crate::{
    eventually::eventually,
    helpers::TestApp,
    store_test,
    webhooks::{github, push_payload, trigger, webhook},
};
use chrono::{Duration, Utc};
use reqwest::Method;
use sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{json, Value};
use slipway_server::store::entities::deployment_approval;
use slipway_types::api::{
    ApprovalRequest, Deployment, DeploymentState, EnvironmentPolicy, HookResponse, Page, Release,
};

store_test!(
    approvals_gate_deployments,
    freezes_and_windows_refuse_deployments,
    protected_environments_need_an_approval_on_every_path,
    cli_deploy_exit_codes
);

async fn named_token(app: &TestApp, name: &str, role: &str) -> String {
    app.post("/api/v1/tokens", &json!({"name": name, "role": role}))
        .await
        .expect(201)
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn as_token(app: &TestApp, tok: &str, path: &str, body: Value) -> crate::helpers::Resp {
    app.send(Method::POST, path, Some(&body), Some(tok)).await
}

/// A GitHub webhook for `project`, an auto-deploy rule for pushes to main on
/// `svc`, and one signed push delivery; returns the hook's answer.
async fn auto_deploy_push(app: &TestApp, project: &str, svc: &str, delivery: &str) -> (u16, Value) {
    let secret = webhook(app, project, "github").await.secret;
    trigger(
        app,
        svc,
        json!({"event": "push", "pattern": "main",
        "image_template": "ghcr.io/acme/api:{short_sha}", "auto_deploy": true}),
    )
    .await;
    let payload = push_payload(
        "refs/heads/main",
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    );
    github(app, project, &secret, "push", delivery, &payload).await
}

async fn approvals_gate_deployments(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, svc) = app.seed_service("acme", "production", "api").await;
    let alice = named_token(&app, "alice", "approver").await;
    let bob = named_token(&app, "bob", "approver").await;
    let dep = named_token(&app, "ci", "deployer").await;

    let p: EnvironmentPolicy = app
        .patch(
            &format!("/api/v1/environments/{env}/policy"),
            &json!({"required_approvals": 2, "approval_ttl_hours": 24}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!((p.required_approvals, p.approval_ttl_hours), (2, 24));
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"required_approvals": 6}),
    )
    .await
    .expect(422);
    let r = app
        .send(
            Method::PATCH,
            &format!("/api/v1/environments/{env}/policy"),
            Some(&json!({"required_approvals": 0})),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, 403);

    // Requested by the CI token: held for approval.
    let path = format!("/api/v1/services/{svc}/deployments");
    let d: Deployment = as_token(&app, &dep, &path, json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(d.state, DeploymentState::AwaitingApproval);
    let approve = format!("/api/v1/deployments/{}/approve", d.id);

    // The requester cannot approve; a deployer cannot approve at all.
    let r = as_token(&app, &dep, &approve, json!({})).await;
    assert_eq!(r.status, 403);
    // An admin who requested cannot approve their own request either.
    let own: Deployment = app.post(&path, &json!({})).await.expect(202).json();
    let r = app
        .post(
            &format!("/api/v1/deployments/{}/approve", own.id),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("someone else"));

    // One approval of two (twice by the same approver still counts once).
    let a: Deployment = as_token(&app, &alice, &approve, json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(a.state, DeploymentState::AwaitingApproval);
    let a: Deployment = app
        .send(Method::POST, &approve, None, Some(&alice))
        .await
        .expect(200)
        .json();
    assert_eq!(a.state, DeploymentState::AwaitingApproval);
    let pending: Page<ApprovalRequest> = app
        .get("/api/v1/approvals?state=pending")
        .await
        .expect(200)
        .json();
    assert_eq!(pending.total, 2);
    let mine = pending
        .items
        .iter()
        .find(|p| p.deployment.id == d.id)
        .unwrap();
    assert_eq!((mine.required_approvals, mine.approvals.len()), (2, 1));
    assert_eq!(mine.approvals[0].approver, "token:alice");
    app.get("/api/v1/approvals?state=done").await.expect(422);

    // The second approver queues it.
    let q: Deployment = as_token(&app, &bob, &approve, json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(q.state, DeploymentState::Queued);
    assert!(q.steps.iter().any(|s| s.message.contains("2/2")));
    let r = as_token(&app, &bob, &approve, json!({})).await;
    assert_eq!(r.status, 409);

    // Reject: a reason is required.
    let reject = format!("/api/v1/deployments/{}/reject", own.id);
    as_token(&app, &alice, &reject, json!({"reason": "  "}))
        .await
        .expect(422);
    as_token(&app, &alice, &reject, json!({})).await.expect(422);
    let rj: Deployment = as_token(
        &app,
        &alice,
        &reject,
        json!({"reason": "change freeze talk first"}),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(rj.state, DeploymentState::Rejected);
    assert!(rj
        .reason
        .as_deref()
        .unwrap()
        .contains("change freeze talk first"));
    assert!(rj.finished_at.is_some());
    as_token(
        &app,
        &bob,
        &format!("/api/v1/deployments/{}/approve", own.id),
        json!({}),
    )
    .await
    .expect(409);

    // Expiry: an approval older than the ttl no longer counts.
    let e: Deployment = as_token(&app, &dep, &path, json!({}))
        .await
        .expect(202)
        .json();
    let approve_e = format!("/api/v1/deployments/{}/approve", e.id);
    as_token(&app, &alice, &approve_e, json!({}))
        .await
        .expect(200);
    let db = app.db().await;
    deployment_approval::Entity::update_many()
        .col_expr(
            deployment_approval::Column::CreatedAt,
            Expr::value(Utc::now() - Duration::hours(25)),
        )
        .filter(deployment_approval::Column::DeploymentId.eq(e.id))
        .exec(&db)
        .await
        .unwrap();
    let still: Deployment = as_token(&app, &bob, &approve_e, json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(
        still.state,
        DeploymentState::AwaitingApproval,
        "alice's approval expired"
    );
    let pending: Page<ApprovalRequest> = app.get("/api/v1/approvals").await.expect(200).json();
    let req = pending
        .items
        .iter()
        .find(|p| p.deployment.id == e.id)
        .unwrap();
    assert_eq!(req.approvals.iter().filter(|a| a.valid).count(), 1);
    // Alice approving again refreshes hers.
    let done: Deployment = as_token(&app, &alice, &approve_e, json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(done.state, DeploymentState::Queued);

    // Pending deployments can be cancelled.
    let c: Deployment = as_token(&app, &dep, &path, json!({}))
        .await
        .expect(202)
        .json();
    let c: Deployment = app
        .post(&format!("/api/v1/deployments/{}/cancel", c.id), &json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(c.state, DeploymentState::Cancelled);
    let listed: Page<Deployment> = app
        .get(&format!(
            "/api/v1/deployments?state=rejected&environment={env}"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(listed.total, 1);

    for a in [
        "environment.policy.update",
        "deployment.approve",
        "deployment.reject",
    ] {
        let r = app
            .get(&format!("/api/v1/audit?action={a}"))
            .await
            .expect(200);
        assert!(r.body["total"].as_u64().unwrap() >= 1, "{a}");
    }
}

async fn freezes_and_windows_refuse_deployments(mut app: TestApp) {
    app.setup_admin().await;
    let (project, env, svc) = app.seed_service("acme", "production", "api").await;
    let dep = named_token(&app, "ci", "deployer").await;
    let now = Utc::now();
    let until = now + Duration::hours(2);
    app.patch(&format!("/api/v1/environments/{env}/policy"), &json!({"freezes": [
        {"from": (now - Duration::hours(1)).to_rfc3339(), "to": until.to_rfc3339(), "reason": "release party"}]}))
        .await
        .expect(200);
    // Bad freezes and windows are refused.
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"freezes": [
        {"from": until.to_rfc3339(), "to": now.to_rfc3339(), "reason": "x"}]}),
    )
    .await
    .expect(422);
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"windows": [
        {"days": ["sun"], "start": "25:00", "end": "04:00"}]}),
    )
    .await
    .expect(422);
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"windows": [
        {"days": ["someday"], "start": "02:00", "end": "04:00"}]}),
    )
    .await
    .expect(422);
    let r = app
        .patch(
            &format!("/api/v1/environments/{env}/policy"),
            &json!({"freezes": [
            {"from": "yesterday", "to": until.to_rfc3339(), "reason": "x"}]}),
        )
        .await
        .expect(422);
    assert!(r.text.contains("RFC 3339"), "{}", r.text);

    let path = format!("/api/v1/services/{svc}/deployments");
    let r = as_token(&app, &dep, &path, json!({})).await.expect(409);
    assert_eq!(r.error_code(), "deploy_frozen");
    assert!(r.text.contains("release party"), "{}", r.text);
    assert!(r.text.contains("next allowed time"), "{}", r.text);
    // Only an admin may override, with a reason.
    let r = as_token(&app, &dep, &path, json!({"override_reason": "hotfix"})).await;
    assert_eq!(r.status, 403);
    app.post(&path, &json!({"override_reason": ""}))
        .await
        .expect(422);
    let d: Deployment = app
        .post(&path, &json!({"override_reason": "hotfix for outage"}))
        .await
        .expect(202)
        .json();
    assert_eq!(d.state, DeploymentState::Queued);
    let audit = app
        .get("/api/v1/audit?action=deployment.freeze_override")
        .await
        .expect(200);
    assert_eq!(audit.body["total"], 1);
    assert!(audit.text.contains("hotfix for outage"));
    let deps: Page<Deployment> = app
        .get(&format!("/api/v1/deployments?service={svc}"))
        .await
        .expect(200)
        .json();
    assert_eq!(deps.total, 1, "refused deployments leave nothing behind");

    // With approvals required, the check runs again at the approval that
    // would queue it: an approver is refused, an admin approver may override.
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"required_approvals": 1}),
    )
    .await
    .expect(200);
    let held: Deployment = app
        .post(&path, &json!({"override_reason": "prepare hotfix"}))
        .await
        .expect(202)
        .json();
    assert_eq!(held.state, DeploymentState::AwaitingApproval);
    let approver = named_token(&app, "alice", "approver").await;
    let boss = named_token(&app, "boss", "admin").await;
    let approve = format!("/api/v1/deployments/{}/approve", held.id);
    let r = as_token(&app, &approver, &approve, json!({}))
        .await
        .expect(409);
    assert_eq!(r.error_code(), "deploy_frozen");
    as_token(
        &app,
        &approver,
        &approve,
        json!({"override_reason": "please"}),
    )
    .await
    .expect(403);
    let q: Deployment = as_token(&app, &boss, &approve, json!({"override_reason": "outage"}))
        .await
        .expect(200)
        .json();
    assert_eq!(q.state, DeploymentState::Queued);
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"required_approvals": 0}),
    )
    .await
    .expect(200);

    // Webhook auto-deploys during a freeze: release cut, deployment refused.
    let (st, body) = auto_deploy_push(&app, &project, &svc, "f-1").await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["release_ids"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["deployment_ids"], json!([]));
    assert!(
        body["reason"].as_str().unwrap().contains("refused"),
        "{body}"
    );

    // Maintenance windows: only on a day that is not today → refused.
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let today = chrono::Datelike::weekday(&Utc::now()).num_days_from_monday() as usize;
    let other = days[(today + 3) % 7];
    let p: EnvironmentPolicy = app
        .patch(
            &format!("/api/v1/environments/{env}/policy"),
            &json!({"freezes": [],
            "windows": [{"days": [other], "start": "02:00", "end": "04:00"}]}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(p.windows.len(), 1);
    let r = as_token(&app, &dep, &path, json!({})).await.expect(409);
    assert!(r.text.contains("maintenance windows"), "{}", r.text);
    assert!(r.text.contains("02:00:00+00:00"), "{}", r.text);
    // A window covering the whole of today allows it.
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({
        "windows": [{"days": [days[today]], "start": "00:00", "end": "24:00"}]}),
    )
    .await
    .expect(200);
    as_token(&app, &dep, &path, json!({})).await.expect(202);
    let got: EnvironmentPolicy = app
        .get(&format!("/api/v1/environments/{env}/policy"))
        .await
        .expect(200)
        .json();
    assert_eq!(got.windows[0].end, "24:00".to_owned().try_into().unwrap());
}

/// A protected environment holds every new deployment for at least one
/// approval, even when its policy requires none: API deploys, redeploys,
/// rollbacks, webhook auto-deploys, redeliveries and promotions alike. An
/// unprotected environment with the same policy queues at once.
async fn protected_environments_need_an_approval_on_every_path(mut app: TestApp) {
    app.setup_admin().await;
    let (project, staging, staging_api) = app.seed_service("acme", "staging", "api").await;
    let (_, prod, prod_api) = app.seed_service("acme", "production", "api").await;
    app.patch(
        &format!("/api/v1/environments/{prod}"),
        &json!({"protected": true}),
    )
    .await
    .expect(200);
    let policy: EnvironmentPolicy = app
        .get(&format!("/api/v1/environments/{prod}/policy"))
        .await
        .expect(200)
        .json();
    assert_eq!(
        policy.required_approvals, 0,
        "the policy itself asks for none"
    );
    let ci = named_token(&app, "ci", "deployer").await;
    let alice = named_token(&app, "alice", "approver").await;
    let held = |d: &Deployment, path: &str| {
        assert_eq!(
            d.state,
            DeploymentState::AwaitingApproval,
            "{path}: a protected environment needs an approval"
        );
        assert!(
            d.steps[0]
                .message
                .contains("awaiting 1 approval(s) (protected environment)"),
            "{path}: {:?}",
            d.steps
        );
    };

    // Unprotected, same policy: queued at once.
    let s: Deployment = as_token(
        &app,
        &ci,
        &format!("/api/v1/services/{staging_api}/deployments"),
        json!({}),
    )
    .await
    .expect(202)
    .json();
    assert_eq!(s.state, DeploymentState::Queued);

    // API deploy.
    let path = format!("/api/v1/services/{prod_api}/deployments");
    let d: Deployment = as_token(&app, &ci, &path, json!({}))
        .await
        .expect(202)
        .json();
    held(&d, "api deploy");
    let pending: Page<ApprovalRequest> = app.get("/api/v1/approvals").await.expect(200).json();
    assert_eq!(pending.items[0].required_approvals, 1);
    // One approval (not the requester's) queues it.
    as_token(
        &app,
        &ci,
        &format!("/api/v1/deployments/{}/approve", d.id),
        json!({}),
    )
    .await
    .expect(403);
    let q: Deployment = as_token(
        &app,
        &alice,
        &format!("/api/v1/deployments/{}/approve", d.id),
        json!({}),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(q.state, DeploymentState::Queued);
    assert!(q.steps.iter().any(|s| s.message.contains("(1/1); queued")));

    // Redeploy of that release, and a rollback to it.
    let r: Deployment = as_token(&app, &ci, &path, json!({"release_id": d.release_id}))
        .await
        .expect(202)
        .json();
    held(&r, "redeploy");
    let rb: Deployment = as_token(
        &app,
        &ci,
        &format!("/api/v1/releases/{}/rollback", d.release_id),
        json!(null),
    )
    .await
    .expect(202)
    .json();
    held(&rb, "rollback");
    assert!(
        rb.steps[0].message.contains("rollback to release #1"),
        "{:?}",
        rb.steps
    );
    // An admin's own rollback is held as well: nobody skips the second person.
    let own: Deployment = app
        .post(
            &format!("/api/v1/releases/{}/rollback", d.release_id),
            &json!(null),
        )
        .await
        .expect(202)
        .json();
    held(&own, "admin rollback");

    // Promotion from staging.
    let pd: Deployment = as_token(
        &app,
        &ci,
        &format!("/api/v1/releases/{}/promote", s.release_id),
        json!({"environment_id": prod}),
    )
    .await
    .expect(202)
    .json();
    held(&pd, "promotion");

    // Webhook auto-deploy, and its redelivery.
    let (st, body) = auto_deploy_push(&app, &project, &prod_api, "p-1").await;
    assert_eq!(st, 202, "{body}");
    let hooked: HookResponse = serde_json::from_value(body).unwrap();
    assert_eq!(hooked.deployment_ids.len(), 1, "{hooked:?}");
    let wd: Deployment = app
        .get(&format!("/api/v1/deployments/{}", hooked.deployment_ids[0]))
        .await
        .expect(200)
        .json();
    held(&wd, "webhook");
    let re: HookResponse = app
        .post(
            &format!("/api/v1/deliveries/{}/redeliver", hooked.delivery),
            &json!({}),
        )
        .await
        .expect(202)
        .json();
    assert_eq!(re.deployment_ids.len(), 1, "{re:?}");
    let rd: Deployment = app
        .get(&format!("/api/v1/deployments/{}", re.deployment_ids[0]))
        .await
        .expect(200)
        .json();
    held(&rd, "redelivery");
    let rel: Release = app
        .get(&format!("/api/v1/releases/{}", wd.release_id))
        .await
        .expect(200)
        .json();
    assert_eq!(rel.environment_id.to_string(), prod);

    // A policy above one still decides; unprotecting drops the floor.
    app.patch(
        &format!("/api/v1/environments/{prod}/policy"),
        &json!({"required_approvals": 2}),
    )
    .await
    .expect(200);
    let two: Deployment = as_token(&app, &ci, &path, json!({}))
        .await
        .expect(202)
        .json();
    assert!(two.steps[0].message.contains("awaiting 2 approval(s)"));
    app.patch(
        &format!("/api/v1/environments/{prod}/policy"),
        &json!({"required_approvals": 0}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("/api/v1/environments/{prod}"),
        &json!({"protected": false}),
    )
    .await
    .expect(200);
    let free: Deployment = as_token(&app, &ci, &path, json!({}))
        .await
        .expect(202)
        .json();
    assert_eq!(free.state, DeploymentState::Queued);
    // The audit entry says why it was held.
    let audit = app
        .get("/api/v1/audit?action=deployment.create&limit=100")
        .await
        .expect(200);
    let held_by_protection = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["summary"]["protected"] == true && e["summary"]["required_approvals"] == 1)
        .count();
    assert_eq!(held_by_protection, 7, "{}", audit.text);
    let staged: Page<Deployment> = app
        .get(&format!("/api/v1/deployments?environment={staging}"))
        .await
        .expect(200)
        .json();
    assert_eq!(staged.total, 1, "promotion left staging alone");
}

fn slipway(app: &TestApp, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("deploy")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLIPWAY_URL", &app.base)
        .env("SLIPWAY_TOKEN", token)
        .output()
        .expect("run slipway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_deploy_exit_codes(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, svc) = app.seed_service("acme", "staging", "web").await;
    let tok = named_token(&app, "ci", "deployer").await;

    // Accepted without --wait: 0, the deployment id on stdout.
    let (code, out, err) = slipway(
        &app,
        &tok,
        &[
            "--service",
            "acme/staging/web",
            "--image",
            "ghcr.io/acme/web:2",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_owned();
    let d: Deployment = app
        .get(&format!("/api/v1/deployments/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(d.image.as_str(), "ghcr.io/acme/web:2");
    assert_eq!(d.service_id.to_string(), svc);
    // Ids and --env with a bare name work too.
    let (code, _, err) = slipway(&app, &tok, &["--service", &svc]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = slipway(&app, &tok, &["--service", "web", "--env", &env]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = slipway(&app, &tok, &["--service", "web", "--env", "acme/staging"]);
    assert_eq!(code, 0, "{err}");

    // Bad input: 2 with a message.
    let (code, _, err) = slipway(&app, &tok, &["--service", "acme/staging/nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = slipway(&app, &tok, &["--service", "web"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = slipway(&app, &tok, &["--service", &svc, "--timeout", "soon"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = slipway(&app, &tok, &["--service", &svc, "--image", "NOT AN IMAGE"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid_input"), "{err}");
    let (code, _, err) = slipway(&app, "slp_wrong", &["--service", &svc]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unauthenticated"), "{err}");

    // Waiting: nothing runs deployments yet, so a short timeout → 3.
    let (code, _, err) = slipway(
        &app,
        &tok,
        &["--service", &svc, "--wait", "--timeout", "1s"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("timed out"), "{err}");

    // Refused by a freeze: 2 with the server's explanation.
    let now = Utc::now();
    app.patch(&format!("/api/v1/environments/{env}/policy"), &json!({"freezes": [
        {"from": (now - Duration::hours(1)).to_rfc3339(), "to": (now + Duration::hours(1)).to_rfc3339(), "reason": "audit week"}]}))
        .await
        .expect(200);
    let (code, _, err) = slipway(&app, &tok, &["--service", &svc]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("deploy_frozen") && err.contains("audit week"),
        "{err}"
    );

    // Rejected while waiting: 1.
    app.patch(
        &format!("/api/v1/environments/{env}/policy"),
        &json!({"freezes": [], "required_approvals": 1}),
    )
    .await
    .expect(200);
    let base = app.base.clone();
    let tok2 = tok.clone();
    let svc2 = svc.clone();
    let child = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["deploy", "--service", &svc2, "--wait", "--timeout", "60s"])
            .env_clear()
            .env("SLIPWAY_URL", base)
            .env("SLIPWAY_TOKEN", tok2)
            .output()
            .expect("run slipway")
    });
    let pending = eventually(
        "the CLI's deployment awaits approval",
        std::time::Duration::from_secs(30),
        || async {
            let p: Page<ApprovalRequest> = app.get("/api/v1/approvals").await.expect(200).json();
            p.items
                .into_iter()
                .next()
                .ok_or_else(|| "none pending".to_string())
        },
    )
    .await;
    app.post(
        &format!("/api/v1/deployments/{}/reject", pending.deployment.id),
        &json!({"reason": "not today"}),
    )
    .await
    .expect(200);
    let out = child.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not today"));

    // SLIPWAY_TOKEN / SLIPWAY_URL do not upset the server's settings loader.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("migrate")
        .env("SLIPWAY_DATABASE_URL", &app.database_url)
        .env("SLIPWAY_DATA_DIR", app.data_dir.path())
        .env("SLIPWAY_TOKEN", "x")
        .env("SLIPWAY_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
