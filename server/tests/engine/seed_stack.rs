//! A stack shaped like the seed guides' (nginx → API → PostgreSQL + Redis),
//! imported from a compose file as people write it and run by real
//! processes on a real Docker Engine with real PostgreSQL 15, Redis 7 and
//! nginx images (built from Debian's packages by `scripts/lib.sh`):
//!
//! - **Deploy environment** rolls the four services out in dependency order;
//!   the API's release command (`/app/migrate`) runs before it takes traffic;
//! - the API writes rows through `postgres:5432` on the environment network
//!   (its `DATABASE_URL` a template holding the secret `DB_PASSWORD`), reached
//!   through nginx's uploaded `nginx.conf`; PostgreSQL is published as a TCP
//!   port on 127.0.0.1 (an admin tunnel);
//! - PostgreSQL redeployed (stop-first, named volume) keeps the rows;
//! - a failing release command fails the deployment with its output and
//!   leaves the old release serving;
//! - an API redeploy under load fails no request on its public port;
//! - staging, on the same host, cannot resolve production's `postgres`.
use crate::harness::{free_port, Agent, Server, Store};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DONE: Duration = Duration::from_secs(180);

const NGINX_CONF: &str = r#"events {}
http {
    # Docker's embedded DNS: the API's address is looked up again, so a
    # redeployed API is found.
    resolver 127.0.0.11 valid=1s ipv6=off;
    access_log off;
    server {
        listen 80;
        location / {
            set $api http://api:8080;
            proxy_pass $api;
        }
    }
}
"#;

fn compose(front: u16, api: u16, pg: u16) -> String {
    format!(
        r#"services:
  nginx:
    image: slipway-test/nginx:1
    ports: ["{front}:80"]
    volumes: ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    depends_on:
      api: {{condition: service_healthy}}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:80/health"]
      interval: 1s
      timeout: 1s
      retries: 30
  api:
    image: slipway-test/api:v1
    ports: ["{api}:8080"]
    environment:
      DATABASE_URL: postgresql://app:${{DB_PASSWORD}}@postgres:5432/app
      REDIS_URL: redis://redis:6379/0
      REQUIRE_MIGRATION: "1"
    x-slipway-release-command: /app/migrate
    depends_on:
      postgres: {{condition: service_healthy}}
      redis: {{condition: service_healthy}}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:8080/health"]
      interval: 1s
      timeout: 1s
      retries: 30
  postgres:
    image: slipway-test/postgres:15
    ports: ["127.0.0.1:{pg}:5432"]
    environment:
      POSTGRES_USER: app
      POSTGRES_DB: app
      POSTGRES_PASSWORD: ${{DB_PASSWORD}}
    volumes: ["pgdata:/var/lib/postgresql/data"]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U app -d app -h 127.0.0.1"]
      interval: 1s
      timeout: 1s
      retries: 50
  redis:
    image: slipway-test/redis:7
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
      interval: 1s
      timeout: 1s
      retries: 30
volumes:
  pgdata: {{}}
"#
    )
}

async fn get(port: u16, path: &str) -> Result<String, String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    Ok(text.trim().to_string())
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("id in {v}"))
        .to_string()
}

fn steps(d: &Value) -> Vec<String> {
    d["steps"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|l| {
                    l["message"]
                        .as_str()
                        .or(l.as_str())
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn create_env(server: &Server, project: &str, name: &str) -> String {
    let env = server
        .post(
            &format!("/projects/{project}/environments"),
            json!({ "name": name }),
            201,
        )
        .await;
    let env = id(&env);
    let (st, body) = server
        .call(
            Method::PUT,
            &format!("/environments/{env}/variables/DB_PASSWORD"),
            Some(json!({"value": format!("s3cret-{name}"), "secret": true})),
        )
        .await;
    assert!(st == 200 || st == 201, "{st} {body}");
    env
}

/// Deploys a one-off job in `env` and returns its finished deployment.
async fn run_job(server: &Server, env: &str, name: &str, script: &str) -> Value {
    let s = server
        .post(
            &format!("/environments/{env}/services"),
            json!({"name": name, "spec": {
                "image": "slipway-test/web:v1",
                "kind": "job",
                "command": ["sh", "-c", script],
            }}),
            201,
        )
        .await;
    let d = server.deploy(&id(&s), json!({})).await;
    server.wait_done(&d, DONE).await
}

/// Removes the stack's named volume when the test ends (declared before the
/// agent, so dropped after it removed the containers).
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .env("DOCKER_HOST", crate::harness::docker_host())
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

async fn seed_stack(store: Store) {
    let server = Server::start(store).await;
    // Volumes are named by project and environment: a name of its own per
    // run, so the two stores' runs (in parallel) never share one.
    let name = format!("shop{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _volume = VolumeGuard(format!("{name}-production-pgdata"));
    let project = id(&server.post("/projects", json!({"name": name}), 201).await);
    let prod = create_env(&server, &project, "production").await;
    let staging = create_env(&server, &project, "staging").await;
    let (front, api_port, pg_port) = (free_port(), free_port(), free_port());

    let imported = server
        .post(
            &format!("/environments/{prod}/compose"),
            json!({
                "compose": compose(front, api_port, pg_port),
                "files": {"./nginx.conf": NGINX_CONF},
            }),
            200,
        )
        .await;
    assert_eq!(
        imported["services"].as_array().map(Vec::len),
        Some(4),
        "{imported}"
    );

    let agent = Agent::enroll(&server, "node-1", &prod).await;
    server
        .patch(
            &format!("/hosts/{}", agent.host_id),
            json!({"environments": [prod, staging]}),
        )
        .await;

    // Deploy environment: dependencies first, each after its dependencies.
    let batch = server
        .post(&format!("/environments/{prod}/deployments"), json!({}), 202)
        .await;
    let deployments: Vec<Value> = batch["deployments"].as_array().cloned().unwrap_or_default();
    assert_eq!(deployments.len(), 4, "{batch}");
    let listed = server.get(&format!("/environments/{prod}/services")).await;
    let listed = listed["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| listed.as_array().cloned().unwrap_or_default());
    let service_id = |name: &str| -> String {
        listed
            .iter()
            .find(|s| s["name"] == name)
            .map(id)
            .unwrap_or_else(|| panic!("service {name} in {listed:?}"))
    };
    let mut done = Vec::new();
    for d in &deployments {
        let d = server.wait_done(&id(d), DONE).await;
        assert_eq!(
            d["state"],
            "succeeded",
            "{d}\n--- agent log ---\n{}",
            crate::harness::tail(&agent.log(), 80)
        );
        done.push(d);
    }
    let by_service = |name: &str| -> Value {
        let sid = service_id(name);
        done.iter()
            .find(|d| d["service_id"].as_str() == Some(sid.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("no deployment of {name} in the batch"))
    };
    let at = |d: &Value, f: &str| d[f].as_str().unwrap_or_default().to_string();
    let (pg, redis, api, nginx) = (
        by_service("postgres"),
        by_service("redis"),
        by_service("api"),
        by_service("nginx"),
    );
    assert!(
        at(&api, "started_at") >= at(&pg, "finished_at"),
        "api after postgres"
    );
    assert!(
        at(&api, "started_at") >= at(&redis, "finished_at"),
        "api after redis"
    );
    assert!(
        at(&nginx, "started_at") >= at(&api, "finished_at"),
        "nginx after api"
    );

    // The release command ran before the API took traffic, its output in the log.
    let api_steps = steps(&api);
    let migrate = api_steps.iter().position(|s| s.contains("migrate v1"));
    let switched = api_steps
        .iter()
        .position(|s| s.contains("traffic switched"));
    assert!(
        matches!((migrate, switched), (Some(m), Some(s)) if m < s),
        "release command output before the switch: {api_steps:#?}"
    );
    // The secret never shows in the step log nor the release snapshot.
    assert!(
        !api_steps.iter().any(|s| s.contains("s3cret-")),
        "{api_steps:#?}"
    );
    let release = server
        .get(&format!("/releases/{}", at(&api, "release_id")))
        .await;
    assert_eq!(
        release["config"]["env"]["DATABASE_URL"],
        "postgresql://app:${DB_PASSWORD}@postgres:5432/app"
    );

    // nginx → api → postgres: a row written by name on the environment network.
    assert_eq!(get(front, "/write?value=first").await.as_deref(), Ok("1"));
    assert_eq!(get(front, "/cache").await.as_deref(), Ok("PONG"));
    // PostgreSQL's admin tunnel: a TCP port on loopback.
    tokio::net::TcpStream::connect(("127.0.0.1", pg_port))
        .await
        .expect("PostgreSQL published on 127.0.0.1");

    // PostgreSQL redeployed stop-first on its named volume keeps the row.
    let pg_service = pg["service_id"].as_str().unwrap().to_string();
    let d = server.deploy(&pg_service, json!({})).await;
    let d = server.wait_done(&d, DONE).await;
    assert_eq!(d["state"], "succeeded", "{d}");
    assert!(
        steps(&d).iter().any(|s| s.contains("stop")),
        "stop-first: {:#?}",
        steps(&d)
    );
    assert_eq!(get(api_port, "/count").await.as_deref(), Ok("1"));

    // A failing release command: failed with its output, v1 keeps serving.
    let api_service = api["service_id"].as_str().unwrap().to_string();
    let spec = server.get(&format!("/services/{api_service}")).await["spec"].clone();
    let mut env = spec["env"].clone();
    env["MIGRATE_FAIL"] = json!("1");
    server
        .patch_spec(
            &api_service,
            json!({"image": "slipway-test/api:v2", "env": env}),
        )
        .await;
    let d = server.deploy(&api_service, json!({})).await;
    let d = server.wait_done(&d, DONE).await;
    assert_eq!(d["state"], "failed", "{d}");
    let reason = d["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("release command"), "{reason}");
    assert!(reason.contains("exited with 1"), "{reason}");
    assert!(
        reason.contains("migrate"),
        "the command's last lines: {reason}"
    );
    assert_eq!(get(api_port, "/version").await.as_deref(), Ok("v1"));

    // An API redeploy under load: no failed request on its public port.
    env.as_object_mut().map(|e| e.remove("MIGRATE_FAIL"));
    server.patch_spec(&api_service, json!({"env": env})).await;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match get(api_port, "/health").await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let d = server.deploy(&api_service, json!({})).await;
    let d = server.wait_done(&d, DONE).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.await.expect("loader");
    }
    assert_eq!(d["state"], "succeeded", "{d}");
    assert_eq!(get(api_port, "/version").await.as_deref(), Ok("v2"));
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "requests served during the redeploy: {ok}");
    assert_eq!(
        failed, 0,
        "failed requests during the API redeploy ({ok} ok)"
    );
    // Its data is still there, through nginx to the new API.
    assert_eq!(get(front, "/write?value=second").await.as_deref(), Ok("2"));

    // Environments are isolated: production resolves `postgres`, staging does not.
    let probe = "if nslookup postgres >/dev/null 2>&1; then echo resolved; else echo isolated; fi";
    let prod_job = run_job(
        &server,
        &prod,
        "probe",
        &format!("{probe}; nslookup postgres >/dev/null 2>&1"),
    )
    .await;
    assert_eq!(prod_job["state"], "succeeded", "{prod_job}");
    assert!(
        steps(&prod_job).iter().any(|s| s.contains("resolved")),
        "{:#?}",
        steps(&prod_job)
    );
    let staging_job = run_job(
        &server,
        &staging,
        "probe",
        &format!("{probe}; ! nslookup postgres >/dev/null 2>&1"),
    )
    .await;
    assert_eq!(
        staging_job["state"], "succeeded",
        "staging must not resolve production's postgres: {staging_job}"
    );
    assert!(
        steps(&staging_job).iter().any(|s| s.contains("isolated")),
        "{:#?}",
        steps(&staging_job)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_stack_sqlite() {
    seed_stack(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_stack_postgres() {
    seed_stack(Store::Postgres).await;
}
