//! **Deploy environment** on a real agent and Docker Engine, through
//! `slipway deploy --environment --wait` as CI runs it: three services
//! a ← b ← c (c depends on b, b on a) roll out in dependency order, each
//! starting only once its dependency's deployment succeeded; when a fails,
//! b and c fail with `dependency … failed` without ever starting, and what
//! served keeps serving.
use crate::harness::{fetch, free_port, Agent, Server, Store};
use serde_json::{json, Value};

const TIMEOUT: &str = "120s";

fn time(d: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    d[field]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("{field} of {d}"))
}

fn deploy_environment(server: &Server, args: &[&str]) -> std::process::Output {
    tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .env_clear()
            .args(["deploy", "--environment", "chain/production", "--wait"])
            .args(args)
            .args(["--timeout", TIMEOUT])
            .args(["--url", &server.base, "--token", &server.token])
            .output()
            .expect("run slipway deploy --environment")
    })
}

async fn environment_deploys_in_dependency_order(store: Store) {
    let server = Server::start(store).await;
    let p = server
        .post("/projects", json!({"name": "chain"}), 201)
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let env = server
        .post(
            &format!("/projects/{p}/environments"),
            json!({"name": "production"}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut ports = Vec::new();
    let mut services = Vec::new();
    // Created c, b, a: the order comes from depends_on.
    for (name, deps) in [
        ("c", json!({"b": "service_healthy"})),
        ("b", json!({"a": "service_started"})),
        ("a", json!({})),
    ] {
        let port = free_port();
        let spec = json!({
            "image": "slipway-test/web:v1",
            "ports": [{"container": 8080, "published": port}],
            "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1, "timeout_secs": 1, "retries": 3},
            "depends_on": deps,
        });
        let s = server
            .post(
                &format!("/environments/{env}/services"),
                json!({"name": name, "spec": spec}),
                201,
            )
            .await;
        ports.push((name, port));
        services.push((name, s["id"].as_str().unwrap().to_string()));
    }
    let agent = Agent::enroll(&server, "node-1", &env).await;

    let ok = deploy_environment(&server, &[]);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert_eq!(ok.status.code(), Some(0), "{stderr}\n{}", agent.log());
    let ids: Vec<String> = String::from_utf8_lossy(&ok.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 3, "{stderr}");
    for n in ["a: succeeded", "b: succeeded", "c: succeeded"] {
        assert!(stderr.contains(n), "{n}: {stderr}");
    }
    let mut done = Vec::new();
    for id in &ids {
        done.push(server.get(&format!("/deployments/{id}")).await);
    }
    let service_of = |d: &Value| {
        services
            .iter()
            .find(|(_, id)| d["service_id"] == *id)
            .map(|(n, _)| *n)
            .unwrap()
    };
    assert_eq!(
        done.iter().map(service_of).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "dependencies first"
    );
    for pair in done.windows(2) {
        let (dep, next) = (&pair[0], &pair[1]);
        assert_eq!(dep["state"], "succeeded", "{dep}");
        assert_eq!(next["state"], "succeeded", "{next}");
        assert!(
            time(next, "started_at") >= time(dep, "finished_at"),
            "{} started before {} finished:\n{dep}\n{next}",
            service_of(next),
            service_of(dep)
        );
    }
    for (_, port) in &ports {
        assert_eq!(fetch(*port).await.as_deref(), Ok("v1"));
    }

    // a's new command exits 1: a fails, b and c fail without starting, v1
    // keeps serving everywhere.
    let a = &services.iter().find(|(n, _)| *n == "a").unwrap().1;
    server
        .patch_spec(
            a,
            json!({"image": "slipway-test/web:v2", "command": ["sh", "-c", "exit 1"]}),
        )
        .await;
    let bad = deploy_environment(&server, &["--all"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("b: failed: dependency a failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("c: failed: dependency b failed"),
        "{stderr}"
    );
    let ids: Vec<String> = String::from_utf8_lossy(&bad.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 3, "{stderr}");
    let a_done = server.get(&format!("/deployments/{}", ids[0])).await;
    assert_eq!(a_done["state"], "failed", "{a_done}");
    for (id, reason) in [
        (&ids[1], "dependency a failed"),
        (&ids[2], "dependency b failed"),
    ] {
        let d = server.get(&format!("/deployments/{id}")).await;
        assert_eq!(d["state"], "failed", "{d}");
        assert_eq!(d["reason"], reason, "{d}");
        assert!(d["started_at"].is_null(), "never started: {d}");
        assert!(
            agent
                .containers(&format!("label=slipway.deployment={id}"))
                .is_empty(),
            "no container of {id}"
        );
    }
    for (_, port) in &ports {
        assert_eq!(fetch(*port).await.as_deref(), Ok("v1"));
    }
    // Nothing changed for b and c: a plain deploy has only a to do.
    let (st, batch) = server
        .call(
            reqwest::Method::POST,
            &format!("/environments/{env}/deployments"),
            Some(json!({"services": ["b", "c"]})),
        )
        .await;
    assert_eq!(st, 200, "{batch}");
    assert_eq!(batch["unchanged"], json!(["b", "c"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_deploys_in_dependency_order_sqlite() {
    environment_deploys_in_dependency_order(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_deploys_in_dependency_order_postgres() {
    environment_deploys_in_dependency_order(Store::Postgres).await;
}
