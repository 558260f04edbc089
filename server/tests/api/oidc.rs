//! OpenID Connect login against a real, certified provider (npm
//! `oidc-provider`, scripts/idp) with a real login form and PKCE.
use crate::helpers::{spawn_app_with, Backend, TestApp};
use reqwest::{redirect::Policy, Method, StatusCode};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

pub struct Idp {
    pub issuer: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    pub async fn start(redirect_uri: &str) -> Idp {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/idp");
        assert!(
            std::path::Path::new(&format!("{root}/node_modules/oidc-provider")).exists(),
            "scripts/idp/node_modules is missing: run `npm ci --prefix scripts/idp` (./scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("idp.json");
        let users = json!([
            {"username": "alice", "password": "alice-password", "sub": "sub-alice", "email": "alice@example.test",
             "name": "Alice Admin", "groups": ["slipway-admins", "eng"]},
            {"username": "bob", "password": "bob-password", "sub": "sub-bob", "email": "bob@example.test",
             "name": "Bob Dev", "groups": ["eng", "staging-deployers"]},
            {"username": "mallory", "password": "mallory-password", "sub": "sub-mallory", "groups": ["marketing"]}
        ]);
        std::fs::write(
            &config,
            json!({"clients": [{"client_id": "slipway", "client_secret": "idp-client-secret", "redirect_uris": [redirect_uri]}],
                   "users": users})
            .to_string(),
        )
        .unwrap();
        let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg(format!("{root}/idp.mjs"))
            .args(["--port", "0", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (is nodejs installed?)");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .unwrap()
        .unwrap();
        let issuer = line
            .trim()
            .strip_prefix("IDP_READY ")
            .unwrap_or_else(|| panic!("idp said {line:?}"))
            .to_owned();
        Idp {
            issuer,
            child,
            _dir: dir,
        }
    }

    pub async fn admin(&self, path: &str, body: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.issuer))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "idp admin {path}: {}", r.status());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Slipway (bootstrapped with a local admin) wired to a fresh provider.
pub async fn app_with_idp(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, Idp) {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(&format!("{public}/auth/oidc/test/callback")).await;
    let providers = json!([{"id": "test", "name": "Test SSO", "issuer": idp.issuer,
                             "client_id": "slipway", "client_secret": "idp-client-secret"}])
    .to_string();
    let bind = format!("127.0.0.1:{port}");
    let mut env = vec![
        ("SLIPWAY_BIND", bind.as_str()),
        ("SLIPWAY_PUBLIC_URL", public.as_str()),
        ("SLIPWAY_OIDC_PROVIDERS", providers.as_str()),
    ];
    env.extend_from_slice(extra);
    let mut app = spawn_app_with(backend, &env).await;
    app.setup_admin().await;
    (app, idp)
}

/// A browser: cookie jar, redirects followed by hand so each hop is visible.
pub struct Browser {
    pub client: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// GETs `url` and follows redirects; returns the last URL and its response body.
    pub async fn follow(&self, mut url: String) -> (String, StatusCode, String) {
        for _ in 0..20 {
            let r = self.client.get(&url).send().await.unwrap();
            if r.status().is_redirection() {
                let loc = r.headers()["location"].to_str().unwrap().to_owned();
                url = reqwest::Url::parse(&url)
                    .unwrap()
                    .join(&loc)
                    .unwrap()
                    .to_string();
                continue;
            }
            let status = r.status();
            return (url, status, r.text().await.unwrap());
        }
        panic!("redirect loop at {url}");
    }

    /// The whole code flow through the provider's login form. Returns where
    /// Slipway finally sent the browser (`/` on success, `/login?error=…`).
    pub async fn sso_login(&self, app: &TestApp, user: &str, password: &str) -> String {
        let (form_url, status, html) = self.follow(app.url("/auth/oidc/test/login")).await;
        assert_eq!(status, 200, "{html}");
        assert!(
            html.contains("name=\"password\""),
            "not a login form: {html}"
        );
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|a| a.replace("&amp;", "&"))
            .unwrap_or_else(|| form_url.clone());
        let post_url = reqwest::Url::parse(&form_url)
            .unwrap()
            .join(&action)
            .unwrap();
        let r = self
            .client
            .post(post_url.clone())
            .form(&[("username", user), ("password", password)])
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_redirection(),
            "login form answered {}",
            r.status()
        );
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let mut url = post_url.join(&loc).unwrap().to_string();
        // Follow until the browser leaves the provider and Slipway answers.
        loop {
            let r = self.client.get(&url).send().await.unwrap();
            if !r.status().is_redirection() {
                panic!("stopped at {url} with {}", r.status());
            }
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            let next = reqwest::Url::parse(&url).unwrap().join(&loc).unwrap();
            if url.starts_with(&app.base) && url.contains("/auth/oidc/test/callback") {
                return next.path().to_owned()
                    + next
                        .query()
                        .map(|q| format!("?{q}"))
                        .as_deref()
                        .unwrap_or("");
            }
            url = next.to_string();
        }
    }

    pub async fn api(
        &self,
        app: &TestApp,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let me: Value = self
            .client
            .get(app.url("/api/v1/auth/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        let mut rb = self.client.request(method, app.url(path));
        if let Some(c) = me["csrf_token"].as_str() {
            rb = rb.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn map(app: &TestApp, claim: &str, value: &str, role: &str, env: Option<&str>) {
    app.post(
        "/api/v1/role-mappings",
        &json!({"claim": claim, "value": value, "role": role, "environment_id": env}),
    )
    .await
    .expect(201);
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(crate::helpers::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(crate::helpers::Backend::Postgres).await }
        }
    )*};
}

both_backends!(
    code_flow_maps_groups_to_environment_roles,
    tampered_tokens_and_state_are_rejected,
    losing_the_group_ends_access_at_once
);

async fn code_flow_maps_groups_to_environment_roles(backend: Backend) {
    let (app, idp) = app_with_idp(backend, &[]).await;
    let (_, staging, web_staging) = app.seed_service("payments", "staging", "web").await;
    let (_, production, web_prod) = app.seed_service("payments", "production", "web").await;
    map(&app, "groups", "slipway-admins", "admin", None).await;
    map(&app, "groups", "eng", "viewer", None).await;
    map(
        &app,
        "groups",
        "staging-deployers",
        "deployer",
        Some(&staging),
    )
    .await;
    let preview = app
        .post(
            "/api/v1/role-mappings/preview",
            &json!({"claims": {"groups": ["eng", "staging-deployers"]}}),
        )
        .await
        .expect(200);
    assert_eq!(preview.body["role"], "viewer");
    assert_eq!(preview.body["environments"][0]["environment_id"], staging);

    let options = app.get("/api/v1/auth/options").await.expect(200);
    assert_eq!(options.body["providers"][0]["name"], "Test SSO");

    // Bob logs in through the provider's form: created just in time.
    let bob = Browser::new();
    assert_eq!(bob.sso_login(&app, "bob", "bob-password").await, "/");
    let (s, me) = bob.api(&app, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        me["username"], "bob@example.test",
        "no preferred_username: the email is the user name"
    );
    assert_eq!(me["role"], "viewer");
    // Deployer on staging, not on production.
    let (s, _) = bob
        .api(
            &app,
            Method::POST,
            &format!("/api/v1/services/{web_staging}/deployments"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 202);
    let (s, body) = bob
        .api(
            &app,
            Method::POST,
            &format!("/api/v1/services/{web_prod}/deployments"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let _ = production;

    // The group is removed at the provider: the next login removes the right.
    idp.admin("/__admin/users/bob", json!({"groups": ["eng"]}))
        .await;
    let bob2 = Browser::new();
    assert_eq!(bob2.sso_login(&app, "bob", "bob-password").await, "/");
    let (s, _) = bob2
        .api(
            &app,
            Method::POST,
            &format!("/api/v1/services/{web_staging}/deployments"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403);
    // Matched by (issuer, sub): still one bob.
    let users = app.get("/api/v1/users").await.expect(200);
    let bobs: Vec<&Value> = users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["username"] == "bob@example.test")
        .collect();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["source"], idp.issuer.as_str());
    assert!(bobs[0]["active_sessions"].as_u64().unwrap() >= 2);
    let changes = app
        .get("/api/v1/audit?action=role.change")
        .await
        .expect(200);
    assert_eq!(changes.body["total"], 1, "{}", changes.text);

    // An admin can end all of bob's sessions.
    let id = bobs[0]["id"].as_str().unwrap();
    app.delete(&format!("/api/v1/users/{id}/sessions"))
        .await
        .expect(204);
    let (s, _) = bob2.api(&app, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(s, 401);

    // Alice (slipway-admins) is admin; Mallory matches no rule and is refused.
    let alice = Browser::new();
    assert_eq!(alice.sso_login(&app, "alice", "alice-password").await, "/");
    let (_, me) = alice.api(&app, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me["role"], "admin");
    let mallory = Browser::new();
    assert_eq!(
        mallory.sso_login(&app, "mallory", "mallory-password").await,
        "/login?error=no_role"
    );
    let (s, _) = mallory
        .api(&app, Method::GET, "/api/v1/auth/me", None)
        .await;
    assert_eq!(s, 401);

    // Key rotation at the provider: the new kid is fetched, login still works.
    idp.admin("/__admin/rotate-keys", json!({})).await;
    let again = Browser::new();
    assert_eq!(again.sso_login(&app, "alice", "alice-password").await, "/");
}

async fn tampered_tokens_and_state_are_rejected(backend: Backend) {
    let (app, idp) = app_with_idp(backend, &[]).await;
    map(&app, "groups", "eng", "viewer", None).await;
    for mode in [
        "wrong_signature",
        "expired",
        "wrong_audience",
        "wrong_nonce",
        "wrong_issuer",
    ] {
        idp.admin("/__admin/tamper", json!({"mode": mode})).await;
        let b = Browser::new();
        assert_eq!(
            b.sso_login(&app, "bob", "bob-password").await,
            "/login?error=invalid_id_token",
            "{mode}"
        );
        let (s, _) = b.api(&app, Method::GET, "/api/v1/auth/me", None).await;
        assert_eq!(s, 401, "{mode}: no session");
    }
    idp.admin("/__admin/tamper", json!({"mode": "none"})).await;
    let failed = app
        .get("/api/v1/audit?action=auth.login_failed")
        .await
        .expect(200);
    assert_eq!(failed.body["total"], 5);
    assert_eq!(
        failed.body["items"][0]["summary"]["reason"],
        "invalid_id_token"
    );

    // A tampered or replayed state never logs anyone in.
    let b = Browser::new();
    let r = b
        .client
        .get(app.url("/auth/oidc/test/login"))
        .send()
        .await
        .unwrap();
    let auth_url = r.headers()["location"].to_str().unwrap().to_owned();
    let state = reqwest::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string())
        .unwrap();
    let forged = b
        .client
        .get(app.url(&format!("/auth/oidc/test/callback?code=abc&state={state}x")))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.headers()["location"], "/login?error=invalid_state");
    // A real login, then its callback replayed.
    let ok = Browser::new();
    assert_eq!(ok.sso_login(&app, "bob", "bob-password").await, "/");
    let unknown = b
        .client
        .get(app.url("/auth/oidc/nope/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.headers()["location"],
        "/login?error=unknown_provider"
    );
    let missing = b
        .client
        .get(app.url("/auth/oidc/test/callback"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.headers()["location"],
        "/login?error=invalid_callback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_login_can_be_disabled() {
    let (app, _idp) = app_with_idp(Backend::Sqlite, &[("SLIPWAY_LOCAL_LOGIN", "false")]).await;
    let r = app
        .post(
            "/api/v1/auth/login",
            &json!({"username": crate::helpers::ADMIN, "password": crate::helpers::PASSWORD}),
        )
        .await
        .expect(403);
    assert!(r.body["message"].as_str().unwrap().contains("disabled"));
    assert_eq!(
        app.get("/api/v1/auth/options").await.expect(200).body["local"],
        false
    );
}

/// The id of the user called `name`.
async fn user_id(app: &TestApp, name: &str) -> String {
    let users = app.get("/api/v1/users").await.expect(200);
    users.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == name)
        .unwrap_or_else(|| panic!("no user {name}: {}", users.text))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deploy(b: &Browser, app: &TestApp, svc: &str) -> StatusCode {
    b.api(
        app,
        Method::POST,
        &format!("/api/v1/services/{svc}/deployments"),
        Some(json!({})),
    )
    .await
    .0
}

/// A refused re-login (the provider dropped the user's group) ends the
/// sessions still open and drops the mapped grants in the same moment, and
/// so does disabling the user; both are audited.
async fn losing_the_group_ends_access_at_once(backend: Backend) {
    let (app, idp) = app_with_idp(backend, &[]).await;
    let (_, staging, web) = app.seed_service("payments", "staging", "web").await;
    map(
        &app,
        "groups",
        "staging-deployers",
        "deployer",
        Some(&staging),
    )
    .await;

    let bob = Browser::new();
    assert_eq!(bob.sso_login(&app, "bob", "bob-password").await, "/");
    assert_eq!(deploy(&bob, &app, &web).await, 202);
    let id = user_id(&app, "bob@example.test").await;
    let user = app.get(&format!("/api/v1/users/{id}")).await.expect(200);
    assert_eq!(user.body["grants"].as_array().unwrap().len(), 1);

    // The group is removed at the provider; bob's next login is refused...
    idp.admin("/__admin/users/bob", json!({"groups": ["eng"]}))
        .await;
    let elsewhere = Browser::new();
    assert_eq!(
        elsewhere.sso_login(&app, "bob", "bob-password").await,
        "/login?error=no_role"
    );
    // ...and the session he still has open is over, its grant gone.
    assert_eq!(deploy(&bob, &app, &web).await, 401);
    let (s, _) = bob.api(&app, Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(s, 401);
    let user = app.get(&format!("/api/v1/users/{id}")).await.expect(200);
    assert_eq!(user.body["grants"], json!([]), "{}", user.text);
    assert_eq!(user.body["active_sessions"], 0);
    let revoked = app
        .get("/api/v1/audit?action=session.revoke_all")
        .await
        .expect(200);
    assert_eq!(revoked.body["total"], 1, "{}", revoked.text);
    assert_eq!(revoked.body["items"][0]["summary"]["reason"], "no_role");
    assert_eq!(revoked.body["items"][0]["summary"]["sessions"], 1);
    let changed = app
        .get("/api/v1/audit?action=role.change")
        .await
        .expect(200);
    assert_eq!(changed.body["total"], 1, "{}", changed.text);
    assert_eq!(
        changed.body["items"][0]["summary"]["environments"]["after"],
        json!([])
    );

    // Back in the group: access again; then an admin disables him.
    idp.admin(
        "/__admin/users/bob",
        json!({"groups": ["eng", "staging-deployers"]}),
    )
    .await;
    let bob = Browser::new();
    assert_eq!(bob.sso_login(&app, "bob", "bob-password").await, "/");
    assert_eq!(deploy(&bob, &app, &web).await, 202);
    let disabled = app
        .patch(&format!("/api/v1/users/{id}"), &json!({"disabled": true}))
        .await
        .expect(200);
    assert_eq!(disabled.body["grants"], json!([]), "{}", disabled.text);
    assert_eq!(disabled.body["active_sessions"], 0);
    assert_eq!(deploy(&bob, &app, &web).await, 401);
    let update = app
        .get("/api/v1/audit?action=user.update")
        .await
        .expect(200);
    assert_eq!(update.body["items"][0]["summary"]["sessions_ended"], 1);
    assert_eq!(
        update.body["items"][0]["summary"]["mapped_grants_dropped"][0][0],
        "deployer"
    );
    let again = Browser::new();
    assert_eq!(
        again.sso_login(&app, "bob", "bob-password").await,
        "/login?error=account_disabled"
    );
}

/// With `oidc_max_session_age`, a single sign-on session ends at that age
/// with `reauthentication_required` (the dashboard sends the user to log in
/// through the provider again); local sessions are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_sessions_end_at_the_maximum_age() {
    let (app, _idp) =
        app_with_idp(Backend::Sqlite, &[("SLIPWAY_OIDC_MAX_SESSION_AGE", "2s")]).await;
    map(&app, "groups", "eng", "viewer", None).await;
    let bob = Browser::new();
    let logged_in = std::time::Instant::now();
    assert_eq!(bob.sso_login(&app, "bob", "bob-password").await, "/");
    // Polled, bounded: the session works until it is 2 s old, then never again.
    let me = |b: &Browser| {
        let r = b.client.get(app.url("/api/v1/auth/me")).send();
        async move {
            let r = r.await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = loop {
        let (s, body) = me(&bob).await;
        if s != StatusCode::OK {
            break (s, body);
        }
        assert!(
            logged_in.elapsed() < std::time::Duration::from_secs(15),
            "the session outlived its maximum age"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(logged_in.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "reauthentication_required", "{body}");
    let (s, body) = me(&bob).await;
    assert_eq!(s, 401, "the session is gone for good");
    assert_eq!(body["error"], "unauthenticated");
    // Through the provider again (its login form): a new session.
    let bob = Browser::new();
    assert_eq!(bob.sso_login(&app, "bob", "bob-password").await, "/");
    assert_eq!(me(&bob).await.0, 200);
    // The local admin's session (older than 2 s by now) is not affected.
    app.get("/api/v1/auth/me").await.expect(200);
}
