//! Several control-plane replicas on one PostgreSQL store.
use crate::helpers::{postgres_admin_url, spawn_app, Backend};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_start_together_and_share_state() {
    let _ = postgres_admin_url();
    let mut a = spawn_app(Backend::Postgres).await;
    a.setup_admin().await;
    // Two more replicas start at the same time against the migrated store.
    let (b, c) = tokio::join!(a.replica(), a.replica());
    // A token made on A works on B and C; a secret written on B is listed on C.
    let token = a.token("admin", &[]).await;
    let (_, env, _) = a.seed_service("shop", "staging", "web").await;
    b.send(
        Method::PUT,
        &format!("/api/v1/environments/{env}/variables/API_KEY"),
        Some(&json!({"value": "k", "secret": true})),
        Some(&token),
    )
    .await
    .expect(201);
    let vars = c
        .send(
            Method::GET,
            &format!("/api/v1/environments/{env}/variables"),
            None,
            Some(&token),
        )
        .await
        .expect(200);
    assert_eq!(vars.body[0]["name"], "API_KEY");
    // Concurrent audited writes on all replicas keep one intact chain.
    let mut writes = Vec::new();
    for (i, r) in [&a, &b, &c].into_iter().cycle().take(12).enumerate() {
        let t = token.clone();
        writes.push(async move {
            r.send(
                Method::POST,
                "/api/v1/projects",
                Some(&json!({"name": format!("p{i}")})),
                Some(&t),
            )
            .await
            .expect(201);
        });
    }
    futures_util::future::join_all(writes).await;
    let out = a.cli(&["audit", "verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_replicas_migrate_one_at_a_time() {
    use sea_orm::{ConnectionTrait, Database};
    // Two replicas migrate an empty database at the same moment.
    let name = format!("slipway_cold_{}", uuid::Uuid::new_v4().simple());
    let admin = postgres_admin_url();
    let db = Database::connect(&admin).await.unwrap();
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .arg("migrate")
            .env("SLIPWAY_DATABASE_URL", &url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (x, y) = (start(), start());
    for child in [x, y] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
