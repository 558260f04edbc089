//! The deploy engine end to end: real server and agent processes, a real
//! Docker Engine, real HTTP through the ingress proxy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod environment;
#[path = "../support/eventually.rs"]
mod eventually;
mod harness;
mod seed_stack;
mod stack;
mod streams;

use harness::{fetch, fetch_at, free_port, Agent, Server, Store, DEPLOY_WITHIN};
use serde_json::json;
use std::time::Duration;

/// deploy v1 → serves v1; v2 → v2; rollback → v1; an unhealthy v3 fails
/// and leaves v1 serving with no v3 container; an unknown image fails the
/// same way. Runs on both stores.
async fn deploy_upgrade_rollback_and_failures(store: Store) {
    let server = Server::start(store).await;
    let port = free_port();
    let (env, svc) = server.seed("shop", port, json!({})).await;
    let agent = Agent::enroll(&server, "node-1", &env).await;

    let d1 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d1, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    let steps: Vec<String> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("node-1")),
        "steps name the host: {steps:?}"
    );

    let d2 = server
        .deploy(&svc, json!({"image": "slipway-test/web:v2"}))
        .await;
    let done = server.wait_done(&d2, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
    // v1's container is kept, stopped, for rollback.
    assert_eq!(
        agent
            .containers(&format!("label=slipway.deployment={d1}"))
            .len(),
        1
    );

    // Rollback to release #1 through the same path.
    let releases = server.get(&format!("/releases?service={svc}")).await;
    let r1 = releases["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["number"] == 1)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rb = server
        .post(&format!("/releases/{r1}/rollback"), json!(null), 202)
        .await;
    let rb = rb["id"].as_str().unwrap().to_string();
    let done = server.wait_done(&rb, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));

    // An unhealthy release: health check on a path that does not exist.
    let check = |path: &str| json!({"path": path, "port": 8080, "interval_secs": 1, "timeout_secs": 1, "retries": 2});
    server
        .patch_spec(
            &svc,
            json!({"image": "slipway-test/web:v2", "health_check": check("/missing")}),
        )
        .await;
    let bad = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&bad, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unhealthy"), "{reason}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    assert!(agent
        .containers(&format!("label=slipway.deployment={bad}"))
        .is_empty());

    // An image that is nowhere: failed, nothing changed.
    server
        .patch_spec(&svc, json!({"health_check": check("/healthz")}))
        .await;
    let missing = server
        .deploy(&svc, json!({"image": "slipway-test/nope:1"}))
        .await;
    let done = server.wait_done(&missing, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("image missing"),
        "{done}"
    );
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));

    // The audit log has the whole story.
    let audit = server.get("/audit?limit=500").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "host.enrollment_issued",
        "host.enrolled",
        "deployment.start",
        "deployment.succeed",
        "deployment.rollback",
        "deployment.fail",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_upgrade_rollback_and_failures_sqlite() {
    deploy_upgrade_rollback_and_failures(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_upgrade_rollback_and_failures_postgres() {
    deploy_upgrade_rollback_and_failures(Store::Postgres).await;
}

/// A published port already taken on the host: clear failure, nothing
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_clash_fails_cleanly() {
    let server = Server::start(Store::Sqlite).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (env, svc) = server.seed("clash", port, json!({})).await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let d = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["reason"].as_str().unwrap_or_default().contains("port"),
        "{done}"
    );
    assert!(agent
        .containers(&format!("label=slipway.deployment={d}"))
        .is_empty());
}

/// A service whose new release takes a few seconds to become healthy.
fn slow_v2() -> serde_json::Value {
    json!({
        "image": "slipway-test/web:v2",
        "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 6 & wait; httpd -f -p 8080 -h /www & wait"],
        "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1, "timeout_secs": 1, "retries": 30},
    })
}

/// Seeds `name` on `port` with one agent, deploys v1 (succeeded), then starts
/// a slow v2 and returns once its container has started (it needs ~6 s more
/// to become healthy): the point at which the crash and cancel tests
/// interrupt it.
async fn v1_serving_then_slow_v2_running(
    server: &Server,
    name: &str,
    port: u16,
) -> (String, Agent, String) {
    let (env, svc) = server.seed(name, port, json!({})).await;
    let agent = Agent::enroll(server, "node-1", &env).await;
    let d1 = server.deploy(&svc, json!({})).await;
    assert_eq!(
        server.wait_done(&d1, DEPLOY_WITHIN).await["state"],
        "succeeded"
    );
    server.patch_spec(&svc, slow_v2()).await;
    let d2 = server.deploy(&svc, json!({})).await;
    // The step the agent reports once the new container runs: a signal, not a
    // guess at how long that takes.
    server
        .wait_deployment(&d2, "started its container", Duration::from_secs(60), |d| {
            d["state"] == "running"
                && d["steps"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("started container"))
                    })
                })
        })
        .await;
    (svc, agent, d2)
}

/// SIGKILL the control plane mid-deploy: after restart the deployment is
/// resolved (failed), v1 still serves, no container of the aborted
/// deployment is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_deploy_resolves_on_restart() {
    let mut server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (svc, agent, d2) = v1_serving_then_slow_v2_running(&server, "crash", port).await;
    server.kill();
    // Traffic keeps flowing while the control plane is down.
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    server.restart().await;
    let done = server.wait_done(&d2, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    // The agent cleans up on its own when the connection drops, and the
    // reconcile after it reconnects removes anything left.
    agent.wait_no_containers_of(&d2).await;
    // And the service deploys again normally.
    let d3 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d3, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
}

/// SIGKILL the control plane right after a host switched to the new,
/// healthy release (the agent's `Switched` recorded, before its answer):
/// after restart the deployment is `succeeded`, not reverted, and the new
/// release keeps serving. A download from v1 that is never read keeps the
/// agent draining the old container for its drain timeout after the switch:
/// the window in which the server dies. Needs the agent's `Switched` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_after_the_switch_keeps_the_new_release() {
    use std::io::Write;
    let mut server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let big = "dd if=/dev/zero of=/www/big bs=1M count=64 2>/dev/null; \
        trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait";
    let (env, svc) = server
        .seed("switched", port, json!({"command": ["sh", "-c", big]}))
        .await;
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let d1 = server.deploy(&svc, json!({})).await;
    assert_eq!(
        server.wait_done(&d1, DEPLOY_WITHIN).await["state"],
        "succeeded"
    );
    // In flight on v1 until the drain gives up on it.
    let mut download = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    download
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    server
        .patch_spec(
            &svc,
            json!({"image": "slipway-test/web:v2", "command": null}),
        )
        .await;
    let d2 = server.deploy(&svc, json!({})).await;
    server
        .wait_deployment(&d2, "switched", DEPLOY_WITHIN, |d| {
            d["state"] == "running"
                && d["steps"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["message"] == "node-1: traffic switched"))
        })
        .await;
    server.kill();
    drop(download);
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
    server.restart().await;
    let done = server.wait_done(&d2, Duration::from_secs(90)).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", agent.log());
    assert!(
        done["steps"].to_string().contains(
            "recovered after a control-plane restart: switched and healthy on every host"
        ),
        "{done}"
    );
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
    // The next deploy goes on from it normally.
    let d3 = server
        .deploy(&svc, json!({"image": "slipway-test/web:v1"}))
        .await;
    let done = server.wait_done(&d3, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

/// SIGKILL the agent mid-deploy: the deployment fails (agent gone), and once
/// the agent is back its host is reconciled: v1 serves, no orphan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_deploy_converges_when_back() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (_svc, mut agent, d2) = v1_serving_then_slow_v2_running(&server, "agentcrash", port).await;
    agent.kill();
    // The proxy is its own process: v1 keeps serving without the agent.
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    let done = server.wait_done(&d2, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed", "{done}");
    agent.spawn(None);
    server.wait_host(&agent.host_id, "online").await;
    agent.wait_no_containers_of(&d2).await;
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
}

/// A revoked host is cut off and its agent cannot come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_host_cannot_reconnect() {
    let server = Server::start(Store::Sqlite).await;
    let (env, _svc) = server.seed("revoke", free_port(), json!({})).await;
    let mut agent = Agent::enroll(&server, "node-1", &env).await;
    server
        .post(
            &format!("/hosts/{}/revoke", agent.host_id),
            json!(null),
            200,
        )
        .await;
    let code = agent.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(3), "{}", agent.log());
    agent.spawn(None);
    let code = agent.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(code, Some(3), "{}", agent.log());
    assert_eq!(
        server.get(&format!("/hosts/{}", agent.host_id)).await["status"],
        "revoked"
    );
}

/// Two hosts: replicas spread one per host, both serve; when the second
/// host cannot switch (its port is taken), the first is rolled back; once
/// the port is free the same release deploys on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_host_switches_host_by_host_and_rolls_back() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (env, svc) = server.seed("fleet", port, json!({"replicas": 2})).await;
    let a = Agent::enroll_on(&server, "node-a", &env, "127.0.0.1").await;
    let b = Agent::enroll_on(&server, "node-b", &env, "127.0.0.2").await;

    // Something else holds node-b's port: node-a switches, node-b cannot.
    let squatter = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
    let d1 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d1, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "rolled_back", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("node-b"), "{reason}");
    assert!(
        fetch_at("127.0.0.1", port).await.is_err(),
        "node-a reverted"
    );
    for agent in [&a, &b] {
        assert!(agent
            .containers(&format!("label=slipway.deployment={d1}"))
            .is_empty());
    }
    drop(squatter);

    let d2 = server.deploy(&svc, json!({})).await;
    let done = server.wait_done(&d2, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(fetch_at("127.0.0.1", port).await.as_deref(), Ok("v1"));
    assert_eq!(fetch_at("127.0.0.2", port).await.as_deref(), Ok("v1"));
    for agent in [&a, &b] {
        assert_eq!(
            agent
                .containers(&format!("label=slipway.deployment={d2}"))
                .len(),
            1
        );
    }
    let steps = done["steps"].to_string();
    assert!(steps.contains("preparing 2 hosts in parallel"), "{steps}");
}

/// `slipway deploy --wait`, as the last step of a CI job: exit 0 when the
/// release serves, 1 when it fails (with the reason on stderr).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_wait_reports_the_outcome() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (env, _svc) = server.seed("cli", port, json!({})).await;
    let _agent = Agent::enroll(&server, "node-1", &env).await;
    let deploy = |image: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .env_clear()
            .args(["deploy", "--service", "cli/production/web", "--wait"])
            .args(["--image", image, "--timeout", "90s"])
            .args(["--url", &server.base, "--token", &server.token])
            .output()
            .expect("run slipway deploy")
    };
    let ok = tokio::task::block_in_place(|| deploy("slipway-test/web:v2"));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
    let bad = tokio::task::block_in_place(|| deploy("slipway-test/nope:1"));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("image missing"), "{stderr}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v2"));
}

/// Cancel while the new release is starting: the deployment ends
/// `cancelled`, the new containers go, the old release keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_deploy_keeps_the_old_release() {
    let server = Server::start(Store::Sqlite).await;
    let port = free_port();
    let (svc, agent, d2) = v1_serving_then_slow_v2_running(&server, "cancel", port).await;
    server
        .post(&format!("/deployments/{d2}/cancel"), json!(null), 200)
        .await;
    agent.wait_no_containers_of(&d2).await;
    let d = server.get(&format!("/deployments/{d2}")).await;
    assert_eq!(d["state"], "cancelled", "{d}");
    assert_eq!(fetch(port).await.as_deref(), Ok("v1"));
    // The next deployment of the service is not blocked by the cancelled one.
    let d3 = server
        .deploy(&svc, json!({"image": "slipway-test/web:v2"}))
        .await;
    assert_eq!(
        server.wait_done(&d3, DEPLOY_WITHIN).await["state"],
        "succeeded"
    );
}

/// A deployment whose project row is gone (written around the foreign keys,
/// as a damaged store would be) fails with the reason, instead of sending
/// the agent an empty project name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_project_fails_instead_of_an_empty_name() {
    use sea_orm::{ConnectOptions, ConnectionTrait, Database, EntityTrait};
    use slipway_server::store::entities::project;
    let server = Server::start(Store::Sqlite).await;
    let (env, svc) = server.seed("ghost", free_port(), json!({})).await;
    let project = server.get(&format!("/services/{svc}")).await["project_id"]
        .as_str()
        .unwrap()
        .to_string();
    // No host yet: the deployment waits, queued.
    let d = server.deploy(&svc, json!({})).await;
    assert_eq!(
        server.get(&format!("/deployments/{d}")).await["state"],
        "queued"
    );
    // One connection, so the pragma applies to the delete.
    let mut opts = ConnectOptions::new(server.database_url.clone());
    opts.max_connections(1).min_connections(1);
    let db = Database::connect(opts).await.unwrap();
    db.execute_unprepared("PRAGMA foreign_keys = OFF")
        .await
        .unwrap();
    let gone = project::Entity::delete_by_id(project.parse::<uuid::Uuid>().unwrap())
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(gone.rows_affected, 1, "the project row is gone");
    db.close().await.unwrap();
    let agent = Agent::enroll(&server, "node-1", &env).await;
    let done = server.wait_done(&d, DEPLOY_WITHIN).await;
    assert_eq!(done["state"], "failed", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("project {project} of service web is missing")),
        "{reason}"
    );
    assert!(agent
        .containers(&format!("label=slipway.deployment={d}"))
        .is_empty());
}
