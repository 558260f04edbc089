//! `spawn_app()`: the real server on a random port with a fresh, migrated
//! database — a new SQLite file or a new PostgreSQL database.
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use slipway_server::{config::Settings, startup::Application};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub base: String,
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    /// Carries the session cookie once logged in.
    pub client: reqwest::Client,
    pub csrf: Option<String>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("SLIPWAY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "SLIPWAY_TEST_POSTGRES_URL is not set: every store test also runs on PostgreSQL. \
             Run ./scripts/test, which starts a private PostgreSQL and sets it."
        )
    })
}

async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("slipway.db").display()),
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let name = format!("slipway_test_{}", uuid::Uuid::new_v4().simple());
            let db = Database::connect(&admin)
                .await
                .expect("connect to test PostgreSQL");
            db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            db.close().await.ok();
            let (prefix, _) = admin.rsplit_once('/').expect("postgres url has a database");
            format!("{prefix}/{name}")
        }
    }
}

/// The item called `name` in a page (`{"items": [...]}`) of a list answer.
#[track_caller]
pub fn item_named<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["items"]
        .as_array()
        .expect("a page of items")
        .iter()
        .find(|item| item["name"] == name)
        .unwrap_or_else(|| panic!("no item named {name:?} in {page}"))
}

pub fn settings_for(base_env: &[(&str, String)]) -> Settings {
    let env: BTreeMap<String, String> = base_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Settings::from_sources(&env).expect("test settings")
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let database_url = fresh_database(backend, data_dir.path()).await;
    let mut env = vec![
        ("SLIPWAY_BIND", "127.0.0.1:0".to_string()),
        ("SLIPWAY_DATA_DIR", data_dir.path().display().to_string()),
        ("SLIPWAY_DATABASE_URL", database_url.clone()),
        ("SLIPWAY_LOGIN_ATTEMPTS_PER_MINUTE", "1000".to_string()),
        ("SLIPWAY_DB_MAX_CONNECTIONS", "8".to_string()),
        (
            "SLIPWAY_STATIC_DIR",
            data_dir.path().join("static").display().to_string(),
        ),
    ];
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k, v.to_string()));
    }
    let app = Application::build(settings_for(&env))
        .await
        .expect("build app");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        database_url,
        data_dir,
        client: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .expect("client"),
        csrf: None,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.body.clone())
            .unwrap_or_else(|e| panic!("cannot decode {}: {e}", self.text))
    }

    pub fn error_code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<none>")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(t) = bearer {
            // A bearer request must not ride on the session cookie.
            rb = reqwest::Client::new()
                .request(method.clone(), self.url(path))
                .bearer_auth(t);
        } else if let Some(c) = &self.csrf {
            rb = rb.header("x-csrf-token", c);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let res = rb.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            text,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Resp {
        let v = serde_json::to_value(body).expect("serialize");
        self.send(Method::POST, path, Some(&v), None).await
    }

    pub async fn put<B: Serialize>(&self, path: &str, body: &B) -> Resp {
        let v = serde_json::to_value(body).expect("serialize");
        self.send(Method::PUT, path, Some(&v), None).await
    }

    pub async fn patch<B: Serialize>(&self, path: &str, body: &B) -> Resp {
        let v = serde_json::to_value(body).expect("serialize");
        self.send(Method::PATCH, path, Some(&v), None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None, None).await
    }

    /// First-run setup as `admin`; keeps the session and CSRF token.
    pub async fn setup_admin(&mut self) {
        let r = self
            .post(
                "/api/v1/setup",
                &serde_json::json!({"username": ADMIN, "password": PASSWORD}),
            )
            .await
            .expect(201);
        self.csrf = Some(r.body["csrf_token"].as_str().expect("csrf").to_owned());
    }

    /// Logs in as the admin `setup_admin` created (e.g. on a replica);
    /// keeps the session and CSRF token.
    pub async fn login_admin(&mut self) {
        let r = self
            .post(
                "/api/v1/auth/login",
                &serde_json::json!({"username": ADMIN, "password": PASSWORD}),
            )
            .await
            .expect(200);
        self.csrf = Some(r.body["csrf_token"].as_str().expect("csrf").to_owned());
    }

    /// An API token with `role`, optionally limited to environments.
    pub async fn token(&self, role: &str, envs: &[&str]) -> String {
        let r = self
            .post(
                "/api/v1/tokens",
                &serde_json::json!({"name": format!("{role}-token"), "role": role, "environments": envs}),
            )
            .await
            .expect(201);
        r.body["secret"].as_str().expect("secret").to_owned()
    }

    /// project → environment → service; returns their ids.
    pub async fn seed_service(
        &self,
        project: &str,
        env: &str,
        service: &str,
    ) -> (String, String, String) {
        let p = match self
            .post("/api/v1/projects", &serde_json::json!({"name": project}))
            .await
        {
            r if r.status == 201 => r.body["id"].as_str().expect("id").to_owned(),
            _ => {
                let all = self.get("/api/v1/projects?limit=500").await;
                item_named(&all.body, project)["id"]
                    .as_str()
                    .expect("id")
                    .to_owned()
            }
        };
        let e = self
            .post(
                &format!("/api/v1/projects/{p}/environments"),
                &serde_json::json!({"name": env}),
            )
            .await
            .expect(201)
            .body["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let s = self
            .post(
                &format!("/api/v1/environments/{e}/services"),
                &serde_json::json!({"name": service, "spec": {"image": "registry.local/app:1.0",
                    "ports": [{"container": 8080, "published": 80}],
                    "health_check": {"path": "/health", "port": 8080}}}),
            )
            .await
            .expect(201)
            .body["id"]
            .as_str()
            .expect("id")
            .to_owned();
        (p, e, s)
    }

    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(&self.database_url)
            .await
            .expect("connect to test store")
    }

    /// Runs the real `slipway` binary against this app's store.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SLIPWAY_DATABASE_URL", &self.database_url)
            .env("SLIPWAY_DATA_DIR", self.data_dir.path())
            .output()
            .expect("run slipway")
    }
}

/// Declares each listed `async fn(TestApp)` as two tests: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! store_test {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await).await
            }
        }
    )*};
}

impl TestApp {
    /// A second control-plane replica on the same store (own port, own client).
    pub async fn replica(&self) -> TestApp {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let env = vec![
            ("SLIPWAY_BIND", "127.0.0.1:0".to_string()),
            ("SLIPWAY_DATA_DIR", data_dir.path().display().to_string()),
            ("SLIPWAY_DATABASE_URL", self.database_url.clone()),
            // Replicas share the master key, as they would in production.
            (
                "SLIPWAY_MASTER_KEY",
                std::fs::read_to_string(self.data_dir.path().join("master.key")).expect("key"),
            ),
        ];
        let app = Application::build(settings_for(&env))
            .await
            .expect("build replica");
        let base = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base,
            database_url: self.database_url.clone(),
            data_dir,
            client: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .expect("client"),
            csrf: None,
        }
    }
}
