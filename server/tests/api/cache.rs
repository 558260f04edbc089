//! The read cache (token lookups, service pages) never serves what a change
//! has made stale: on one server for every kind of change, and across
//! replicas that are separate processes on one PostgreSQL store.
use crate::{
    helpers::{item_named, postgres_admin_url, spawn_app, Backend, TestApp},
    store_test,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

store_test!(cached_reads_follow_every_change);

async fn names(app: &TestApp, env: &str, token: &str) -> Vec<String> {
    let page = app
        .send(
            Method::GET,
            &format!("/api/v1/environments/{env}/services?limit=50"),
            None,
            Some(token),
        )
        .await
        .expect(200);
    page.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The id of the API token called `name` (listed with the admin session).
async fn token_id(app: &TestApp, name: &str) -> String {
    let tokens = app.get("/api/v1/tokens").await.expect(200);
    item_named(&tokens.body, name)["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn cached_reads_follow_every_change(mut app: TestApp) {
    app.setup_admin().await;
    let (_, env, web) = app.seed_service("shop", "staging", "web").await;
    let token = app.token("viewer", &[]).await;
    // Read twice so that both the token and the page are cached.
    for _ in 0..2 {
        assert_eq!(names(&app, &env, &token).await, ["web"]);
    }
    let worker = app
        .post(
            &format!("/api/v1/environments/{env}/services"),
            &json!({"name": "worker", "spec": {"image": "registry.local/app:1.0"}}),
        )
        .await
        .expect(201)
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(names(&app, &env, &token).await, ["web", "worker"]);
    app.patch(
        &format!("/api/v1/services/{worker}"),
        &json!({"spec": {"image": "registry.local/app:2.0"}}),
    )
    .await
    .expect(200);
    let page = app
        .send(
            Method::GET,
            &format!("/api/v1/environments/{env}/services?limit=50"),
            None,
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(
        page.body["items"][1]["spec"]["image"],
        "registry.local/app:2.0"
    );
    app.delete(&format!("/api/v1/services/{web}"))
        .await
        .expect(204);
    assert_eq!(names(&app, &env, &token).await, ["worker"]);
    // A revoked token is refused on its very next request.
    let id = token_id(&app, "viewer-token").await;
    app.delete(&format!("/api/v1/tokens/{id}"))
        .await
        .expect(204);
    app.send(
        Method::GET,
        &format!("/api/v1/environments/{env}/services"),
        None,
        Some(&token),
    )
    .await
    .expect(401);
}

/// `slipway serve` as its own process on `app`'s store; killed on drop.
struct ReplicaProcess {
    child: std::process::Child,
    base: String,
    _data_dir: tempfile::TempDir,
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn replica_process(app: &TestApp) -> ReplicaProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLIPWAY_BIND", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_DATA_DIR", data_dir.path())
        .env("SLIPWAY_DATABASE_URL", &app.database_url)
        .env("SLIPWAY_STATIC_DIR", data_dir.path())
        .env(
            "SLIPWAY_MASTER_KEY",
            std::fs::read_to_string(app.data_dir.path().join("master.key")).expect("key"),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start replica");
    let replica = ReplicaProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _data_dir: data_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{}/ready", replica.base))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "replica did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replica
}

/// Polls `path` on the replica until `done` holds for (status, body). The
/// bound is well under the cache's 10 s maximum age, so only the change
/// notification can make it pass.
async fn replica_sees(
    replica: &ReplicaProcess,
    path: &str,
    token: &str,
    done: impl Fn(u16, &Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", replica.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if done(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica still answers {status} {body} for {path}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_process_hears_changes_made_on_another() {
    let _ = postgres_admin_url();
    let mut a = spawn_app(Backend::Postgres).await;
    a.setup_admin().await;
    let (_, env, _) = a.seed_service("shop", "production", "web").await;
    let token = a.token("admin", &[]).await;
    let b = replica_process(&a).await;
    let path = format!("/api/v1/environments/{env}/services?limit=50");
    // B caches the token and the one-service page …
    for _ in 0..2 {
        replica_sees(&b, &path, &token, |s, body| s == 200 && body["total"] == 1).await;
    }
    // … and sees a service created on A …
    a.send(
        Method::POST,
        &format!("/api/v1/environments/{env}/services"),
        Some(&json!({"name": "worker", "spec": {"image": "registry.local/app:1.0"}})),
        Some(&token),
    )
    .await
    .expect(201);
    replica_sees(&b, &path, &token, |s, body| s == 200 && body["total"] == 2).await;
    // … and refuses the token once A has revoked it.
    let id = token_id(&a, "admin-token").await;
    a.delete(&format!("/api/v1/tokens/{id}")).await.expect(204);
    replica_sees(&b, &path, &token, |s, _| s == 401).await;
}
