//! How one deployment of a stack's service executes (issue 13): `${NAME}`
//! templates resolved into the container only, release commands run before
//! any switch, job services, stop-first across hosts. Real server and agent
//! processes, a real Docker Engine, the busybox test images.
use crate::harness::{fetch, fetch_at, free_port, Agent, Server, Store, DEPLOY_WITHIN};
use reqwest::Method;
use serde_json::{json, Value};

/// Sets a variable (or secret) of environment `env`.
async fn put_var(server: &Server, env: &str, name: &str, value: &str, secret: bool) {
    let (st, body) = server
        .call(
            Method::PUT,
            &format!("/environments/{env}/variables/{name}"),
            Some(json!({"value": value, "secret": secret})),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {body}");
}

fn steps(d: &Value) -> Vec<String> {
    d["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn position(steps: &[String], what: &str) -> Option<usize> {
    steps.iter().position(|s| s.contains(what))
}

/// The test image's web server, serving what `prelude` wrote first.
fn serve_after(prelude: &str) -> Value {
    json!([
        "sh",
        "-c",
        format!("{prelude}; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")
    ])
}

/// `${DB_PASSWORD}` inside a longer value reaches the container resolved
/// (the page it serves is its env), while the release snapshot, the
/// deployment, and the server's and agent's logs only ever show the
/// template. An unknown reference fails the deployment naming it; an
/// unterminated one is refused where the spec is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_template_resolves_a_secret_inside_the_container_only() {
    const SECRET: &str = "hunter2-9f3b7c";
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (env, svc) = server
        .seed(
            "tmpl",
            port,
            json!({
                "command": serve_after("echo \"$DATABASE_URL|$PLAIN\" > /www/index.html"),
                "env": {
                    "DATABASE_URL": "postgresql://app:${DB_PASSWORD}@${DB_HOST}/app",
                    "PLAIN": "5$ and $${DB_HOST}",
                },
            }),
        )
        .await;
    put_var(&server, &env, "DB_PASSWORD", SECRET, true).await;
    put_var(&server, &env, "DB_HOST", "postgres", false).await;
    let agent = Agent::enroll(&server, "node-1", &env).await;

    let d = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());
    assert_eq!(
        fetch(port).await.as_deref(),
        Ok(format!("postgresql://app:{SECRET}@postgres/app|5$ and ${{DB_HOST}}").as_str())
    );
    let releases = server.get(&format!("/releases?service={svc}")).await;
    let snapshot = releases.to_string();
    assert!(snapshot.contains("${DB_PASSWORD}"), "{snapshot}");
    for (what, text) in [
        ("the releases", snapshot),
        ("the deployment", done.to_string()),
        (
            "the service",
            server.get(&format!("/services/{svc}")).await.to_string(),
        ),
        ("the server log", server.log()),
        ("the agent log", agent.log()),
    ] {
        assert!(!text.contains(SECRET), "{what} shows the secret");
    }

    // A reference to nothing: failed with the names, the old release serves.
    server
        .patch_spec(
            &svc,
            json!({"env": {"DATABASE_URL": "postgresql://app:${DB_PASS}@postgres/app"}}),
        )
        .await;
    let bad = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&bad, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(
        done["reason"],
        "env DATABASE_URL references ${DB_PASS}, which is neither a variable nor a secret of environment production"
    );
    assert!(fetch(port).await.unwrap_or_default().contains(SECRET));

    // An unterminated `${` is a 422 on the field.
    let mut spec = server.get(&format!("/services/{svc}")).await["spec"].clone();
    spec["env"]["DATABASE_URL"] = json!("postgresql://app:${DB_PASSWORD@postgres/app");
    let (st, body) = server
        .call(
            Method::PATCH,
            &format!("/services/{svc}"),
            Some(json!({"spec": spec})),
        )
        .await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(body["field"], "spec.env.DATABASE_URL", "{body}");
}

/// A release command that exits non-zero fails the deployment with its
/// output, before anything switched: the old release still answers on the
/// public port and nothing of the new one is left. A release command past
/// its timeout fails the same way. Needs the agent's `RunOnce`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_release_command_keeps_the_old_release_serving() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (env, svc) = server.seed("migrate-fail", port, json!({})).await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let d1 = server.deploy(&svc, json!({})).await;
    assert_eq!(
        server.wait_done(&d1, DEPLOY_WITHIN).await["state"],
        "succeeded"
    );

    server
        .patch_spec(
            &svc,
            json!({
                "image": "slipway-test/web:v2",
                "release_command": {
                    "command": ["sh", "-c", "echo applying 0042_add_orders; echo 'ERROR: relation \"orders\" already exists' >&2; exit 3"],
                    "timeout_secs": 60,
                },
            }),
        )
        .await;
    let d2 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d2, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}\n{}", agent.log());
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("release command exited with 3"),
        "{reason}"
    );
    assert!(
        reason.contains("relation \"orders\" already exists"),
        "{reason}"
    );
    let s = steps(&done);
    assert!(
        position(&s, "release command: applying 0042_add_orders").is_some(),
        "{s:?}"
    );
    assert!(position(&s, "traffic switched").is_none(), "{s:?}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    agent.wait_no_containers_of(&d2).await;

    // Past its timeout: killed, failed, v1 still serves.
    server
        .patch_spec(
            &svc,
            json!({"release_command": {"command": ["sh", "-c", "echo waiting for a lock; sleep 60"], "timeout_secs": 2}}),
        )
        .await;
    let d3 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d3, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("release command timed out after 2 s"),
        "{reason}"
    );
    assert!(reason.contains("waiting for a lock"), "{reason}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    agent.wait_no_containers_of(&d3).await;
}

/// A release command that succeeds runs once, with the new release's
/// variables (a template resolved), and its output is in the step log
/// before traffic switches. Needs the agent's `RunOnce`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_command_output_comes_before_the_switch() {
    let server = Server::start(Store::Postgres).await;
    let port = free_port();
    let (env, svc) = server
        .seed(
            "migrate-ok",
            port,
            json!({
                "env": {"MIGRATION": "schema ${SCHEMA}"},
                "release_command": {"command": ["sh", "-c", "echo \"migrating to $MIGRATION\"; echo migrated"]},
            }),
        )
        .await;
    put_var(&server, &env, "SCHEMA", "v7", false).await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let d = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    let s = steps(&done);
    let migrating = position(&s, "release command: migrating to schema v7").expect("output");
    let migrated = position(&s, "release command: migrated").expect("output");
    let exited = position(&s, "release command exited with 0").expect("exit");
    let switched = position(&s, "traffic switched").expect("switch");
    assert!(
        migrating < migrated && migrated < exited && exited < switched,
        "{s:#?}"
    );
    // The one-off container is gone; the release's container serves.
    assert_eq!(
        agent
            .containers(&format!("label=slipway.deployment={d}"))
            .len(),
        1
    );

    // Release #2 runs it again; rolling back to #1 does not (its
    // migrations ran, and older code must not block a rollback).
    let d2 = server
        .deploy(&svc, json!({"image": "slipway-test/web:v2"}))
        .await;
    let done = server.wait_done(&d2, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(position(&steps(&done), "release command: migrated").is_some());
    let releases = server.get(&format!("/releases?service={svc}")).await;
    let r1 = releases["items"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["number"] == 1))
        .and_then(|r| r["id"].as_str())
        .expect("release #1")
        .to_string();
    let rb = server
        .post(&format!("/releases/{r1}/rollback"), json!(null), 202)
        .await;
    let done = server
        .wait_done(rb["id"].as_str().expect("id"), DEPLOY_WITHIN)
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let s = steps(&done);
    assert!(position(&s, "release command skipped").is_some(), "{s:?}");
    assert!(position(&s, "release command: ").is_none(), "{s:?}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
}

/// A job service: each deployment is one run to completion on one host,
/// exit 0 → succeeded, exit 1 → failed with its output; nothing stays
/// running. Needs the agent's `RunOnce`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_service_succeeds_on_exit_0_and_fails_otherwise() {
    let server = Server::start(Store::Sqlite).await;
    let (env, svc) = server
        .seed(
            "job",
            free_port(),
            json!({
                "kind": "job",
                "ports": [],
                "health_check": null,
                "command": ["sh", "-c", "echo seeding 3 rows; exit 0"],
            }),
        )
        .await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let ok = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&ok, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());
    let s = steps(&done);
    assert!(position(&s, "job on node-1").is_some(), "{s:?}");
    assert!(position(&s, "job: seeding 3 rows").is_some(), "{s:?}");
    assert!(position(&s, "job exited with 0").is_some(), "{s:?}");
    agent.wait_no_containers_of(&ok).await;

    server
        .patch_spec(
            &svc,
            json!({"command": ["sh", "-c", "echo 'cannot reach the database' >&2; exit 1"]}),
        )
        .await;
    let bad = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&bad, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("job exited with 1"), "{reason}");
    assert!(reason.contains("cannot reach the database"), "{reason}");
    agent.wait_no_containers_of(&bad).await;
}

/// Stop-first over two hosts: no prepare phase (it would start new
/// containers beside the old ones), each host rolled out whole, one after
/// the other; both serve the new release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_first_rolls_hosts_one_by_one_without_preparing() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (env, svc) = server
        .seed(
            "recreate",
            port,
            json!({"replicas": 2, "strategy": "stop-first"}),
        )
        .await;
    let a = Agent::enroll_on(&server, "node-a", &env, "127.0.0.1").await;
    let b = Agent::enroll_on(&server, "node-b", &env, "127.0.0.2").await;
    for image in ["slipway-test/web:v1", "slipway-test/web:v2"] {
        let d = server.deploy(&svc, json!({ "image": image })).await;
        let done = server.wait_done(&d, DEPLOY_WITHIN).await;
        assert_eq!(
            done["state"],
            "succeeded",
            "{done}\n{}\n{}",
            a.log(),
            b.log()
        );
        let s = steps(&done);
        assert!(position(&s, "preparing").is_none(), "{s:?}");
        let a_done = position(&s, "node-a: serving release").expect("node-a");
        let b_start = position(&s, "node-b: rolling out").expect("node-b");
        assert!(a_done < b_start, "{s:#?}");
    }
    assert_eq!(fetch_at("127.0.0.1", port).await.as_deref(), Ok("v2"));
    assert_eq!(fetch_at("127.0.0.2", port).await.as_deref(), Ok("v2"));
}
