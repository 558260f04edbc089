//! CI webhooks: real GitHub/GitLab payload shapes signed as they sign them,
//! the generic signed hook, trigger rules, idempotency, redelivery,
//! promotion.
use crate::{helpers::TestApp, store_test};
use futures_util::future::join_all;
use serde_json::{json, Value};
use slipway_server::ci::payload::{sign_generic, sign_github};
use slipway_types::api::{
    CreatedWebhook, Deployment, DeploymentState, HookResponse, Page, PromotePreview, Release,
    Trigger, WebhookDelivery,
};

store_test!(
    github_hooks_trigger_releases,
    gitlab_and_generic_hooks,
    concurrent_duplicates_create_one_release,
    promotion_keeps_image_and_snapshot,
    bad_signature_floods_are_limited,
);

const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

pub async fn webhook(app: &TestApp, project: &str, provider: &str) -> CreatedWebhook {
    app.post(
        &format!("/api/v1/projects/{project}/webhooks"),
        &json!({"provider": provider}),
    )
    .await
    .expect(201)
    .json()
}

pub async fn trigger(app: &TestApp, svc: &str, rule: Value) -> Value {
    app.post(&format!("/api/v1/services/{svc}/triggers"), &rule)
        .await
        .expect(201)
        .body
}

/// Sends a raw body with headers; returns (status, json).
pub async fn hook(
    app: &TestApp,
    path: &str,
    body: &[u8],
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let res = rb.send().await.expect("send hook");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn github(
    app: &TestApp,
    project: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    body: &Value,
) -> (u16, Value) {
    let raw = serde_json::to_vec_pretty(body).unwrap();
    hook(
        app,
        &format!("/api/v1/hooks/github/{project}"),
        &raw,
        &[
            ("x-github-event", event.to_owned()),
            ("x-github-delivery", delivery.to_owned()),
            ("x-hub-signature-256", sign_github(secret, &raw)),
            ("user-agent", "GitHub-Hookshot/abc123".to_owned()),
        ],
    )
    .await
}

/// A push payload as GitHub documents it (trimmed to the usual fields).
pub fn push_payload(git_ref: &str, after: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "created": true,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": "https://github.com/acme/api/compare/v1.2.0",
        "commits": [{"id": after, "message": "Release", "timestamp": "2026-11-23T12:00:00Z",
                     "author": {"name": "Octo Cat", "email": "octo@example.com", "username": "octocat"},
                     "added": [], "removed": [], "modified": ["README.md"]}],
        "head_commit": {"id": after, "message": "Release"},
        "repository": {"id": 1296269, "name": "api", "full_name": "acme/api", "private": true,
                       "default_branch": "main", "owner": {"login": "acme", "id": 1}},
        "pusher": {"name": "octocat", "email": "octo@example.com"},
        "sender": {"login": "octocat", "id": 1, "type": "User"}
    })
}

async fn releases(app: &TestApp, svc: &str) -> Page<Release> {
    app.get(&format!("/api/v1/releases?service={svc}"))
        .await
        .expect(200)
        .json()
}

async fn github_hooks_trigger_releases(mut app: TestApp) {
    app.setup_admin().await;
    let (project, _env, svc) = app.seed_service("acme", "staging", "api").await;
    let created = webhook(&app, &project, "github").await;
    assert!(created.secret.len() >= 32);
    assert_eq!(
        created.webhook.path,
        format!("/api/v1/hooks/github/{project}")
    );
    // The secret is shown once: the list does not carry it.
    let list = app
        .get(&format!("/api/v1/projects/{project}/webhooks"))
        .await
        .expect(200);
    assert!(!list.text.contains(&created.secret));
    let secret = created.secret.clone();

    trigger(
        &app,
        &svc,
        json!({"event": "push", "pattern": "main",
        "image_template": "ghcr.io/acme/api:{short_sha}", "auto_deploy": true}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "tag", "pattern": "v*",
        "image_template": "ghcr.io/acme/api:{tag}"}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "workflow_run", "pattern": "release/**",
        "image_template": "ghcr.io/acme/api:{sha}"}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "release", "pattern": "v2.*",
        "image_template": "ghcr.io/acme/api:{tag}", "auto_deploy": true}),
    )
    .await;
    // Bad rules are refused.
    app.post(
        &format!("/api/v1/services/{svc}/triggers"),
        &json!({"event": "push", "pattern": "main", "image_template": "x:{nope}"}),
    )
    .await
    .expect(422);
    app.post(
        &format!("/api/v1/services/{svc}/triggers"),
        &json!({"event": "cron", "pattern": "main"}),
    )
    .await
    .expect(422);

    // push to main: release + queued deployment.
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "push",
        "d-1",
        &push_payload("refs/heads/main", SHA),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    let r: HookResponse = serde_json::from_value(body).unwrap();
    assert_eq!(r.status, "processed");
    assert_eq!((r.release_ids.len(), r.deployment_ids.len()), (1, 1));
    let rel: Release = app
        .get(&format!("/api/v1/releases/{}", r.release_ids[0]))
        .await
        .expect(200)
        .json();
    assert_eq!(rel.image.as_str(), "ghcr.io/acme/api:6113728");
    assert_eq!(rel.trigger, Trigger::Webhook);
    assert_eq!(rel.git_sha.as_deref(), Some(SHA));
    assert_eq!(rel.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(rel.author, "webhook:github");
    let d: Deployment = app
        .get(&format!("/api/v1/deployments/{}", r.deployment_ids[0]))
        .await
        .expect(200)
        .json();
    assert_eq!(d.state, DeploymentState::Queued);

    // The same delivery again: 200, original outcome, nothing new.
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "push",
        "d-1",
        &push_payload("refs/heads/main", SHA),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["status"], "duplicate");
    assert_eq!(body["release_ids"][0], json!(rel.id));
    assert_eq!(releases(&app, &svc).await.total, 1);

    // Other branches match nothing.
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "push",
        "d-2",
        &push_payload("refs/heads/feature/x", SHA),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (202, Some("ignored")),
        "{body}"
    );
    // Tags: release without deployment.
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "push",
        "d-3",
        &push_payload("refs/tags/v1.2.0", SHA),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["deployment_ids"], json!([]));
    let tagged: Release = app
        .get(&format!(
            "/api/v1/releases/{}",
            body["release_ids"][0].as_str().unwrap()
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(tagged.image.as_str(), "ghcr.io/acme/api:v1.2.0");

    // workflow_run: only completed + success, on release/**.
    let wf = |conclusion: &str, branch: &str| {
        json!({
            "action": "completed",
            "workflow_run": {"id": 30433642, "name": "Build", "head_branch": branch, "head_sha": SHA,
                "event": "push", "status": "completed", "conclusion": conclusion, "run_number": 562,
                "html_url": "https://github.com/acme/api/actions/runs/30433642"},
            "workflow": {"id": 159038, "name": "Build", "path": ".github/workflows/build.yml"},
            "repository": {"full_name": "acme/api"}, "sender": {"login": "octocat"}
        })
    };
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "workflow_run",
        "d-4",
        &wf("failure", "release/2.0"),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (202, Some("ignored")),
        "{body}"
    );
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "workflow_run",
        "d-5",
        &wf("success", "release/2.0/rc1"),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (202, Some("processed")),
        "{body}"
    );
    // release published (tag v2.0.0) with auto_deploy.
    let release_ev = json!({"action": "published", "release": {"id": 1, "tag_name": "v2.0.0",
        "target_commitish": "main", "name": "v2.0.0", "draft": false, "prerelease": false},
        "repository": {"full_name": "acme/api"}, "sender": {"login": "octocat"}});
    let (st, body) = github(&app, &project, &secret, "release", "d-6", &release_ev).await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(
        body["deployment_ids"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    // Unknown events and pings are accepted and ignored.
    let (st, body) = github(
        &app,
        &project,
        &secret,
        "issues",
        "d-7",
        &json!({"action": "opened"}),
    )
    .await;
    assert_eq!((st, body["status"].as_str()), (202, Some("ignored")));
    assert!(body["reason"].as_str().unwrap().contains("issues"));
    assert_eq!(releases(&app, &svc).await.total, 4);

    // Bad signatures: wrong secret, altered body, missing header → 401, recorded.
    let raw = serde_json::to_vec(&push_payload("refs/heads/main", SHA)).unwrap();
    let path = format!("/api/v1/hooks/github/{project}");
    let ev = |id: &str| {
        vec![
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", id.to_owned()),
        ]
    };
    let mut h = ev("bad-1");
    h.push(("x-hub-signature-256", sign_github("wrong secret", &raw)));
    let (st, body) = hook(&app, &path, &raw, &h).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_signature")),
        "{body}"
    );
    let mut altered = raw.clone();
    altered.extend_from_slice(b" ");
    let mut h = ev("bad-2");
    h.push(("x-hub-signature-256", sign_github(&secret, &raw)));
    assert_eq!(hook(&app, &path, &altered, &h).await.0, 401);
    assert_eq!(hook(&app, &path, &raw, &ev("bad-3")).await.0, 401);
    // A forged delivery id does not block the genuine one later.
    let (st, _) = github(
        &app,
        &project,
        &secret,
        "push",
        "bad-1",
        &push_payload("refs/heads/feature/y", SHA),
    )
    .await;
    assert_eq!(st, 202);
    // Malformed (but signed) → 400; unknown project → 404.
    let mut h = ev("m-1");
    h.push(("x-hub-signature-256", sign_github(&secret, b"{\"nope\":1}")));
    assert_eq!(hook(&app, &path, b"{\"nope\":1}", &h).await.0, 400);
    let other = format!("/api/v1/hooks/github/{}", uuid::Uuid::new_v4());
    assert_eq!(hook(&app, &other, &raw, &h).await.0, 404);
    // Oversized bodies are refused.
    let big = vec![b' '; 2 << 20];
    assert_eq!(hook(&app, &path, &big, &h).await.0, 413);

    // Every delivery is recorded, the rejected ones unverified.
    let deliveries: Page<WebhookDelivery> = app
        .get(&format!("/api/v1/projects/{project}/deliveries?limit=100"))
        .await
        .expect(200)
        .json();
    let rejected: Vec<_> = deliveries.items.iter().filter(|d| !d.verified).collect();
    assert_eq!(rejected.len(), 3);
    assert!(rejected.iter().all(|d| d.status == "rejected"));
    let first = deliveries
        .items
        .iter()
        .find(|d| d.delivery_id.as_deref() == Some("d-1") && d.verified)
        .unwrap();
    assert_eq!(first.release_ids, vec![rel.id]);
    let page: Page<WebhookDelivery> = app
        .get(&format!(
            "/api/v1/projects/{project}/deliveries?limit=2&offset=1"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!((page.items.len(), page.total), (2, deliveries.total));
    let audit = app
        .get("/api/v1/audit?action=webhook.rejected")
        .await
        .expect(200);
    assert_eq!(audit.body["total"], 3);
    let audit = app
        .get("/api/v1/audit?action=webhook.delivery")
        .await
        .expect(200);
    assert!(audit.body["total"].as_u64().unwrap() >= 7);
    assert!(!audit.text.contains(&secret));

    // Redelivery: the stored body again, recorded as a new delivery.
    let r: HookResponse = app
        .post(
            &format!("/api/v1/deliveries/{}/redeliver", first.id),
            &json!({}),
        )
        .await
        .expect(202)
        .json();
    assert_eq!(r.release_ids.len(), 1);
    assert_ne!(r.release_ids[0], rel.id);
    let deliveries: Page<WebhookDelivery> = app
        .get(&format!("/api/v1/projects/{project}/deliveries?limit=100"))
        .await
        .expect(200)
        .json();
    let re = deliveries
        .items
        .iter()
        .find(|d| d.id == r.delivery)
        .unwrap();
    assert_eq!(re.redelivery_of, Some(first.id));
    let rej = rejected[0].id;
    app.post(&format!("/api/v1/deliveries/{rej}/redeliver"), &json!({}))
        .await
        .expect(409);

    // Rotation: the old secret stops working, the new one works.
    let rotated: CreatedWebhook = app
        .post(
            &format!("/api/v1/webhooks/{}/rotate", created.webhook.id),
            &json!({}),
        )
        .await
        .expect(200)
        .json();
    assert_ne!(rotated.secret, secret);
    assert_eq!(rotated.webhook.secret_version, 2);
    let (st, _) = github(
        &app,
        &project,
        &secret,
        "push",
        "r-1",
        &push_payload("refs/heads/main", SHA),
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = github(
        &app,
        &project,
        &rotated.secret,
        "push",
        "r-2",
        &push_payload("refs/heads/main", SHA),
    )
    .await;
    assert_eq!(st, 202);
    app.delete(&format!("/api/v1/webhooks/{}", created.webhook.id))
        .await
        .expect(204);
    let (st, _) = github(
        &app,
        &project,
        &rotated.secret,
        "push",
        "r-3",
        &push_payload("refs/heads/main", SHA),
    )
    .await;
    assert_eq!(st, 401);
    for a in [
        "webhook.create",
        "webhook.rotate",
        "webhook.delete",
        "trigger.create",
    ] {
        let r = app
            .get(&format!("/api/v1/audit?action={a}"))
            .await
            .expect(200);
        assert!(r.body["total"].as_u64().unwrap() >= 1, "{a}");
    }
}

async fn gitlab_and_generic_hooks(mut app: TestApp) {
    app.setup_admin().await;
    let (project, _env, svc) = app.seed_service("acme", "staging", "api").await;
    let gl = webhook(&app, &project, "gitlab").await;
    let gen = webhook(&app, &project, "generic").await;
    trigger(
        &app,
        &svc,
        json!({"event": "push", "pattern": "main",
        "image_template": "registry.gitlab.com/acme/api:{sha}"}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "tag", "pattern": "v*",
        "image_template": "registry.gitlab.com/acme/api:{tag}"}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "workflow_run", "pattern": "main",
        "image_template": "registry.gitlab.com/acme/api:{short_sha}", "auto_deploy": true}),
    )
    .await;
    trigger(
        &app,
        &svc,
        json!({"event": "generic", "pattern": "*", "auto_deploy": true}),
    )
    .await;

    let gitlab = |event: &'static str, token: String, uuid: &'static str, body: Value| {
        let app = &app;
        let project = project.clone();
        async move {
            let raw = serde_json::to_vec(&body).unwrap();
            hook(
                app,
                &format!("/api/v1/hooks/gitlab/{project}"),
                &raw,
                &[
                    ("x-gitlab-event", event.to_owned()),
                    ("x-gitlab-token", token),
                    ("x-gitlab-event-uuid", uuid.to_owned()),
                    ("x-gitlab-instance", "https://gitlab.com".to_owned()),
                ],
            )
            .await
        }
    };
    // Push Hook as GitLab documents it.
    let push = json!({
        "object_kind": "push", "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22", "after": SHA,
        "ref": "refs/heads/main", "ref_protected": true, "checkout_sha": SHA,
        "user_id": 4, "user_name": "John Smith", "user_username": "jsmith", "project_id": 15,
        "project": {"id": 15, "name": "api", "path_with_namespace": "acme/api", "default_branch": "main"},
        "commits": [{"id": SHA, "message": "Update", "timestamp": "2026-11-23T12:00:00+00:00",
                     "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"}}],
        "total_commits_count": 1
    });
    let (st, body) = gitlab("Push Hook", gl.secret.clone(), "u-1", push.clone()).await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["release_ids"].as_array().map(Vec::len), Some(1));
    let (st, body) = gitlab("Push Hook", "wrong".into(), "u-2", push.clone()).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("invalid_signature"))
    );
    let (st, body) = gitlab("Push Hook", gl.secret.clone(), "u-1", push.clone()).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("duplicate")));
    let mut tag = push.clone();
    tag["object_kind"] = json!("tag_push");
    tag["ref"] = json!("refs/tags/v3.1.0");
    let (st, body) = gitlab("Tag Push Hook", gl.secret.clone(), "u-3", tag).await;
    assert_eq!(st, 202, "{body}");
    let rel: Release = app
        .get(&format!(
            "/api/v1/releases/{}",
            body["release_ids"][0].as_str().unwrap()
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(rel.image.as_str(), "registry.gitlab.com/acme/api:v3.1.0");
    let pipeline = |status: &str| {
        json!({
            "object_kind": "pipeline",
            "object_attributes": {"id": 31, "iid": 3, "ref": "main", "tag": false, "sha": SHA,
                "before_sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2", "source": "push",
                "status": status, "stages": ["build", "test", "deploy"], "duration": 63},
            "project": {"id": 1, "path_with_namespace": "acme/api"}
        })
    };
    let (st, body) = gitlab(
        "Pipeline Hook",
        gl.secret.clone(),
        "u-4",
        pipeline("running"),
    )
    .await;
    assert_eq!((st, body["status"].as_str()), (202, Some("ignored")));
    let (st, body) = gitlab(
        "Pipeline Hook",
        gl.secret.clone(),
        "u-5",
        pipeline("success"),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    assert_eq!(body["deployment_ids"].as_array().map(Vec::len), Some(1));

    // Generic: signed, timestamped, idempotent by id.
    let path = format!("/api/v1/hooks/generic/{project}");
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({"id": "evt-1", "service": "api",
        "image": "ghcr.io/acme/api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "git_sha": SHA, "ref": "main", "message": "from Jenkins"})).unwrap();
    let (st, res) = hook(
        &app,
        &path,
        &body,
        &[("x-slipway-signature", sign_generic(&gen.secret, &body, now))],
    )
    .await;
    assert_eq!(st, 202, "{res}");
    assert_eq!(res["deployment_ids"].as_array().map(Vec::len), Some(1));
    let rel: Release = app
        .get(&format!(
            "/api/v1/releases/{}",
            res["release_ids"][0].as_str().unwrap()
        ))
        .await
        .expect(200)
        .json();
    assert!(rel.image.as_str().contains("@sha256:0123"));
    let (st, res) = hook(
        &app,
        &path,
        &body,
        &[("x-slipway-signature", sign_generic(&gen.secret, &body, now))],
    )
    .await;
    assert_eq!((st, res["status"].as_str()), (200, Some("duplicate")));
    // Stale timestamp, wrong key, missing header → 401.
    let stale = sign_generic(&gen.secret, &body, now - 301);
    assert_eq!(
        hook(&app, &path, &body, &[("x-slipway-signature", stale)])
            .await
            .0,
        401
    );
    assert_eq!(
        hook(
            &app,
            &path,
            &body,
            &[("x-slipway-signature", sign_generic("nope", &body, now))]
        )
        .await
        .0,
        401
    );
    assert_eq!(hook(&app, &path, &body, &[]).await.0, 401);
    // Signed but malformed → 400; unknown service → ignored.
    let bad = br#"{"id":"evt-2","service":"api"}"#;
    assert_eq!(
        hook(
            &app,
            &path,
            bad,
            &[("x-slipway-signature", sign_generic(&gen.secret, bad, now))]
        )
        .await
        .0,
        400
    );
    let other =
        serde_json::to_vec(&json!({"id": "evt-3", "service": "worker", "image": "a:1"})).unwrap();
    let (st, res) = hook(
        &app,
        &path,
        &other,
        &[(
            "x-slipway-signature",
            sign_generic(&gen.secret, &other, now),
        )],
    )
    .await;
    assert_eq!(
        (st, res["status"].as_str()),
        (202, Some("ignored")),
        "{res}"
    );
}

async fn concurrent_duplicates_create_one_release(mut app: TestApp) {
    app.setup_admin().await;
    let (project, _env, svc) = app.seed_service("acme", "staging", "api").await;
    let secret = webhook(&app, &project, "github").await.secret;
    trigger(
        &app,
        &svc,
        json!({"event": "push", "pattern": "main",
        "image_template": "ghcr.io/acme/api:{short_sha}", "auto_deploy": true}),
    )
    .await;
    let payload = push_payload("refs/heads/main", SHA);
    let calls = (0..50).map(|_| github(&app, &project, &secret, "push", "same-delivery", &payload));
    let results = join_all(calls).await;
    let processed = results.iter().filter(|(s, _)| *s == 202).count();
    let duplicates = results
        .iter()
        .filter(|(s, b)| *s == 200 && b["status"] == "duplicate")
        .count();
    assert_eq!((processed, duplicates), (1, 49), "{results:?}");
    assert_eq!(releases(&app, &svc).await.total, 1);
    let deps: Page<Deployment> = app
        .get(&format!("/api/v1/deployments?service={svc}"))
        .await
        .expect(200)
        .json();
    assert_eq!(deps.total, 1);
    // Every duplicate reports the one release.
    let id = results.iter().find(|(s, _)| *s == 202).unwrap().1["release_ids"][0].clone();
    assert!(results.iter().all(|(_, b)| b["release_ids"][0] == id));
}

async fn promotion_keeps_image_and_snapshot(mut app: TestApp) {
    app.setup_admin().await;
    let (project, staging, api) = app.seed_service("acme", "staging", "api").await;
    let (_, production, prod_api) = app.seed_service("acme", "production", "api").await;
    app.patch(
        &format!("/api/v1/services/{api}"),
        &json!({"spec": {
        "image": "ghcr.io/acme/api:1", "command": ["api", "serve"],
        "env": {"DATABASE_URL": "postgres://staging-db/app", "FEATURE_X": "on"},
        "ports": [{"container": 8080, "published": 80}]}}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("/api/v1/services/{prod_api}"),
        &json!({"spec": {
        "image": "ghcr.io/acme/api:0", "env": {"DATABASE_URL": "postgres://prod-db/app"},
        "replicas": 3}}),
    )
    .await
    .expect(200);
    let d: Deployment = app
        .post(&format!("/api/v1/services/{api}/deployments"),
            &json!({"image": "ghcr.io/acme/api@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "git_sha": SHA}))
        .await
        .expect(202)
        .json();
    let src = d.release_id;
    let preview: PromotePreview = app
        .get(&format!(
            "/api/v1/releases/{src}/promote-preview?environment_id={production}"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(preview.image_before.as_str(), "ghcr.io/acme/api:0");
    assert_eq!(preview.image_after, d.image);
    assert_eq!(preview.env_added, vec!["FEATURE_X".to_owned()]);
    assert!(
        preview.env_changed.is_empty(),
        "production keeps its DATABASE_URL"
    );
    assert!(preview.other_changes.contains(&"command".to_owned()));
    app.get(&format!("/api/v1/releases/{src}/promote-preview"))
        .await
        .expect(422);
    app.get(&format!(
        "/api/v1/releases/{src}/promote-preview?environment_id={staging}"
    ))
    .await
    .expect(422);

    // A deployer limited to staging may not promote into production.
    let tok = app
        .post(
            "/api/v1/tokens",
            &json!({"name": "stg", "role": "deployer", "environments": [staging]}),
        )
        .await
        .expect(201)
        .body["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/releases/{src}/promote"),
            Some(&json!({"environment_id": production})),
            Some(&tok),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);

    let pd: Deployment = app
        .post(
            &format!("/api/v1/releases/{src}/promote"),
            &json!({"environment_id": production}),
        )
        .await
        .expect(202)
        .json();
    assert_eq!(pd.environment_id.to_string(), production);
    assert_eq!(pd.service_id.to_string(), prod_api);
    assert_eq!(pd.image, d.image, "same image digest");
    assert_eq!(pd.state, DeploymentState::Queued);
    let rel: Release = app
        .get(&format!("/api/v1/releases/{}", pd.release_id))
        .await
        .expect(200)
        .json();
    let source: Release = app
        .get(&format!("/api/v1/releases/{src}"))
        .await
        .expect(200)
        .json();
    assert_eq!(rel.trigger, Trigger::Promotion);
    assert_eq!(rel.git_sha.as_deref(), Some(SHA));
    assert_eq!(rel.config.command, source.config.command);
    assert_eq!(rel.config.ports, source.config.ports);
    assert_eq!(rel.config.replicas, 3);
    let db_url = rel
        .config
        .env
        .iter()
        .find(|(k, _)| k.as_str() == "DATABASE_URL")
        .map(|(_, v)| v.clone());
    assert_eq!(db_url.as_deref(), Some("postgres://prod-db/app"));
    let audit = app
        .get("/api/v1/audit?action=release.promote")
        .await
        .expect(200);
    assert_eq!(audit.body["total"], 1);
    // Unknown target service / other project.
    let (_, other_env, _) = app.seed_service("other", "prod", "db").await;
    app.post(
        &format!("/api/v1/releases/{src}/promote"),
        &json!({"environment_id": other_env}),
    )
    .await
    .expect(422);
    let _ = project;
}

/// A flood of badly signed deliveries is recorded up to the limit, then
/// answered 429 without writing a row per request; good deliveries from
/// elsewhere are unaffected.
async fn bad_signature_floods_are_limited(mut app: TestApp) {
    app.setup_admin().await;
    let (project, _env, _svc) = app.seed_service("acme", "staging", "api").await;
    let gen = webhook(&app, &project, "generic").await;
    let path = format!("/api/v1/hooks/generic/{project}");
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&json!({"id": "evt-x", "service": "api"})).unwrap();
    let forged = [(
        "x-slipway-signature",
        sign_generic("not the secret", &body, now),
    )];
    let limit = slipway_server::ci::hooks::BAD_SIGNATURES_PER_MINUTE as usize;
    let mut statuses = Vec::new();
    for _ in 0..limit + 5 {
        statuses.push(hook(&app, &path, &body, &forged).await.0);
    }
    assert!(statuses[..limit].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[limit..].iter().all(|s| *s == 429), "{statuses:?}");
    let deliveries = app
        .get(&format!("/api/v1/projects/{project}/deliveries?limit=200"))
        .await
        .expect(200);
    assert_eq!(deliveries.body["total"], limit as u64);
    // The real sender (the same loopback address here) is limited too while
    // the flood lasts; a genuine signature is still checked first.
    let genuine = [("x-slipway-signature", sign_generic(&gen.secret, &body, now))];
    assert_ne!(hook(&app, &path, &body, &genuine).await.0, 429);
}
