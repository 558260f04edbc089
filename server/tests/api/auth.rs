use crate::{
    helpers::{spawn_app_with, Backend, TestApp, ADMIN, PASSWORD},
    store_test,
};
use reqwest::Method;
use serde_json::json;
use std::{collections::BTreeMap, sync::Arc};

store_test!(setup_login_logout_and_csrf, scoped_tokens);

async fn setup_login_logout_and_csrf(mut app: TestApp) {
    assert_eq!(
        app.get("/api/v1/setup").await.expect(200).body["needs_setup"],
        true
    );
    // Weak passwords are refused before anything is written.
    let weak = app
        .post(
            "/api/v1/setup",
            &json!({"username": "admin", "password": "short"}),
        )
        .await
        .expect(422);
    assert_eq!(weak.body["field"], "password");
    app.setup_admin().await;
    assert_eq!(
        app.get("/api/v1/setup").await.expect(200).body["needs_setup"],
        false
    );
    let again = app
        .post(
            "/api/v1/setup",
            &json!({"username": "eve", "password": "another long password"}),
        )
        .await;
    assert_eq!(again.expect(409).error_code(), "setup_already_done");
    // Once done, setup answers 409 whatever the body: it is not read.
    for body in [json!({}), json!([]), json!("x")] {
        let r = app.post("/api/v1/setup", &body).await;
        assert_eq!(r.expect(409).error_code(), "setup_already_done", "{body}");
    }
    let garbage = reqwest::Client::new()
        .post(app.url("/api/v1/setup"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 409);

    // Cookie flags.
    let fresh = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = fresh
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": ADMIN, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain-http public_url: no Secure flag"
    );
    let me: serde_json::Value = res.json().await.unwrap();
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    // A mutation with the cookie but no CSRF header is refused.
    let no_csrf = fresh
        .post(app.url("/api/v1/projects"))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    let wrong = fresh
        .post(app.url("/api/v1/projects"))
        .header("x-csrf-token", "nope")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let ok = fresh
        .post(app.url("/api/v1/projects"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    // Logout ends the session server-side.
    let out = fresh
        .post(app.url("/api/v1/auth/logout"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        fresh
            .get(app.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let bad = app
        .post(
            "/api/v1/auth/login",
            &json!({"username": ADMIN, "password": "not the password"}),
        )
        .await;
    assert_eq!(bad.expect(401).error_code(), "invalid_credentials");
    let unknown = app
        .post(
            "/api/v1/auth/login",
            &json!({"username": "ghost", "password": "whatever it is"}),
        )
        .await;
    assert_eq!(unknown.expect(401).error_code(), "invalid_credentials");
}

async fn scoped_tokens(mut app: TestApp) {
    app.setup_admin().await;
    let (_, staging, web_staging) = app.seed_service("shop", "staging", "web").await;
    let (_, _prod, web_prod) = app.seed_service("shop", "production", "web").await;
    let deployer = app.token("deployer", &[&staging]).await;
    let deploy = |svc: String| {
        let app = &app;
        let t = deployer.clone();
        async move {
            app.send(
                Method::POST,
                &format!("/api/v1/services/{svc}/deployments"),
                Some(&json!({})),
                Some(&t),
            )
            .await
        }
    };
    deploy(web_staging).await.expect(202);
    let denied = deploy(web_prod).await.expect(403);
    assert_eq!(denied.error_code(), "forbidden");
    // Reads work everywhere; admin actions nowhere.
    app.send(Method::GET, "/api/v1/overview", None, Some(&deployer))
        .await
        .expect(200);
    app.send(
        Method::POST,
        "/api/v1/projects",
        Some(&json!({"name": "nope"})),
        Some(&deployer),
    )
    .await
    .expect(403);
    // Malformed bearer values are 401, never 500.
    for t in ["", "slp_", "garbage", &"slp_x".repeat(100)] {
        app.send(Method::GET, "/api/v1/projects", None, Some(t))
            .await
            .expect(401);
    }
    // Token secrets are shown once: the list has no secret.
    let list = app.get("/api/v1/tokens").await.expect(200);
    assert!(!list.text.contains(&deployer));
    assert!(list.body["items"][0]["last_used_at"].is_string());
    // Bad token input.
    app.post("/api/v1/tokens", &json!({"name": "", "role": "viewer"}))
        .await
        .expect(422);
    app.post("/api/v1/tokens", &json!({"name": "x", "role": "root"}))
        .await
        .expect(422);
    app.post(
        "/api/v1/tokens",
        &json!({"name": "x", "role": "viewer", "expires_in_days": 0}),
    )
    .await
    .expect(422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        &[("SLIPWAY_LOGIN_ATTEMPTS_PER_MINUTE", "3")],
    )
    .await;
    app.setup_admin().await;
    for _ in 0..3 {
        app.post(
            "/api/v1/auth/login",
            &json!({"username": ADMIN, "password": "wrong wrong wrong"}),
        )
        .await
        .expect(401);
    }
    let limited = app
        .post(
            "/api/v1/auth/login",
            &json!({"username": ADMIN, "password": PASSWORD}),
        )
        .await;
    let limited = limited.expect(429);
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_public_url_makes_cookies_secure() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("SLIPWAY_PUBLIC_URL", "https://deploy.example.com")],
    )
    .await;
    let r = app
        .post(
            "/api/v1/setup",
            &json!({"username": ADMIN, "password": PASSWORD}),
        )
        .await
        .expect(201);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(r.headers.contains_key("strict-transport-security"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    for (trusted, expect_ip, expect_secure) in
        [(true, "203.0.113.9", true), (false, "127.0.0.1", false)]
    {
        let extra: &[(&str, &str)] = if trusted {
            &[("SLIPWAY_TRUSTED_PROXIES", "127.0.0.1")]
        } else {
            &[]
        };
        let mut app = spawn_app_with(Backend::Sqlite, extra).await;
        app.setup_admin().await;
        let r = reqwest::Client::new()
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .header("x-forwarded-proto", "https")
            .json(&json!({"username": ADMIN, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert_eq!(cookie.contains("Secure"), expect_secure, "{cookie}");
        let audit = app.get("/api/v1/audit?action=auth.login").await.expect(200);
        assert_eq!(
            audit.body["items"][0]["source_ip"], expect_ip,
            "trusted={trusted}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_limited_to_actions() {
    let mut app = spawn_app_with(Backend::Sqlite, &[]).await;
    app.setup_admin().await;
    let (_, _, svc) = app.seed_service("shop", "staging", "web").await;
    let r = app
        .post(
            "/api/v1/tokens",
            &json!({"name": "ci", "role": "admin", "actions": ["deploy"]}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["token"]["actions"], json!(["deploy"]));
    let t = r.body["secret"].as_str().unwrap().to_owned();
    // Deploying is allowed, other changes are not, reads are.
    app.send(
        Method::POST,
        &format!("/api/v1/services/{svc}/deployments"),
        Some(&json!({})),
        Some(&t),
    )
    .await
    .expect(202);
    let denied = app
        .send(
            Method::POST,
            "/api/v1/projects",
            Some(&json!({"name": "nope"})),
            Some(&t),
        )
        .await
        .expect(403);
    assert!(
        denied.body["message"]
            .as_str()
            .unwrap()
            .contains("limited to deploy"),
        "{}",
        denied.text
    );
    app.send(
        Method::DELETE,
        &format!("/api/v1/services/{svc}"),
        None,
        Some(&t),
    )
    .await
    .expect(403);
    app.send(Method::GET, "/api/v1/projects", None, Some(&t))
        .await
        .expect(200);
    app.post(
        "/api/v1/tokens",
        &json!({"name": "x", "role": "admin", "actions": ["root"]}),
    )
    .await
    .expect(422);
    // The CLI can make such tokens too.
    let out = app.cli(&[
        "token", "create", "--role", "deployer", "--action", "deploy", "--name", "gha",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = app.cli(&[
        "token",
        "create",
        "--role",
        "deployer",
        "--action",
        "everything",
    ]);
    assert_ne!(bad.status.code(), Some(0));
}

/// Sends every `(user name, client address)` login at once (all released by
/// one barrier) with a wrong password; counts the answers by status.
async fn parallel_wrong_logins(
    base: &[String],
    attempts: &[(String, String)],
) -> BTreeMap<u16, usize> {
    let client = reqwest::Client::new();
    let start = Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (user, ip)) in attempts.iter().cloned().enumerate() {
        let (client, start) = (client.clone(), start.clone());
        // Spread over the given servers (replicas of one store).
        let url = format!("{}/api/v1/auth/login", base[i % base.len()]);
        tasks.spawn(async move {
            start.wait().await;
            let r = client
                .post(url)
                .header("x-forwarded-for", ip)
                .json(&json!({"username": user, "password": "not the password"}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        });
    }
    let mut counts = BTreeMap::new();
    while let Some(status) = tasks.join_next().await {
        *counts.entry(status.unwrap()).or_insert(0) += 1;
    }
    counts
}

async fn enroll_with_bogus_token(app: &TestApp, ip: &str) -> u16 {
    reqwest::Client::new()
        .post(app.url("/api/v1/agent/enroll"))
        .header("x-forwarded-for", ip)
        .json(&json!({"token": "swe_bogus", "public_key": "AAAA",
                      "facts": {"hostname": "h", "os": "linux", "arch": "x86_64",
                                "docker_version": "27", "agent_version": "1", "cpus": 1,
                                "memory_bytes": 1}}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// 100 wrong passwords at once for one user: exactly the limit (10) of them
/// are checked, the rest answer 429; the same per client address over many
/// user names; and agent enrollment has a limit of its own.
async fn parallel_logins_are_limited_exactly(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        &[
            ("SLIPWAY_LOGIN_ATTEMPTS_PER_MINUTE", "10"),
            ("SLIPWAY_ENROLL_ATTEMPTS_PER_MINUTE", "10"),
            ("SLIPWAY_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    app.setup_admin().await;
    let base = [app.base.clone()];

    // One user, 100 client addresses.
    let one_user: Vec<_> = (0..100)
        .map(|i| (ADMIN.to_owned(), format!("198.51.100.{i}")))
        .collect();
    let counts = parallel_wrong_logins(&base, &one_user).await;
    println!("one user, 100 parallel wrong logins: {counts:?}");
    assert_eq!(counts.get(&401), Some(&10), "checked: {counts:?}");
    assert_eq!(counts.get(&429), Some(&90), "{counts:?}");
    let failed = app
        .get("/api/v1/audit?action=auth.login_failed")
        .await
        .expect(200);
    assert_eq!(failed.body["total"], 10, "one audited check per attempt");
    // Even the right password waits for the window now.
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.200")
        .json(&json!({"username": ADMIN, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // One address, 100 user names.
    let one_address: Vec<_> = (0..100)
        .map(|i| (format!("user{i}"), "203.0.113.7".to_owned()))
        .collect();
    let counts = parallel_wrong_logins(&base, &one_address).await;
    println!("one address, 100 parallel wrong logins: {counts:?}");
    assert_eq!(counts.get(&401), Some(&10), "checked: {counts:?}");
    assert_eq!(counts.get(&429), Some(&90), "{counts:?}");

    // Enrollment is limited on its own: the address that used up its logins
    // may still try to enroll...
    assert_eq!(enroll_with_bogus_token(&app, "203.0.113.7").await, 401);
    // ...and an address that used up its enrollments may still log in.
    for _ in 0..10 {
        assert_eq!(enroll_with_bogus_token(&app, "192.0.2.1").await, 401);
    }
    assert_eq!(enroll_with_bogus_token(&app, "192.0.2.1").await, 429);
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.1")
        .json(&json!({"username": "someone", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

mod parallel_logins_are_limited_exactly {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::parallel_logins_are_limited_exactly(super::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::parallel_logins_are_limited_exactly(super::Backend::Postgres).await
    }
}

/// Two replicas of one PostgreSQL store count against the same limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_limit_holds_across_replicas() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        &[("SLIPWAY_LOGIN_ATTEMPTS_PER_MINUTE", "10")],
    )
    .await;
    app.setup_admin().await;
    // The replica runs with the default limit, 10 as well.
    let replica = app.replica().await;
    let attempts: Vec<_> = (0..100)
        .map(|_| (ADMIN.to_owned(), "198.51.100.1".to_owned()))
        .collect();
    let counts = parallel_wrong_logins(&[app.base.clone(), replica.base.clone()], &attempts).await;
    println!("two replicas, 100 parallel wrong logins: {counts:?}");
    assert_eq!(counts.get(&401), Some(&10), "checked: {counts:?}");
    assert_eq!(counts.get(&429), Some(&90), "{counts:?}");
}
