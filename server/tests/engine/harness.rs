//! The real thing, as processes: a `slipway serve` (killable), `slipway
//! agent`s enrolled through the API, a Docker Engine (from
//! `SLIPWAY_TEST_DOCKER_HOST`, started by scripts/test with the test images
//! `slipway-test/web:v1`/`:v2`), and plain HTTP to the services' ports.
use crate::eventually::eventually;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn docker_host() -> String {
    std::env::var("SLIPWAY_TEST_DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "SLIPWAY_TEST_DOCKER_HOST is not set: the engine tests need a Docker Engine with the \
             test images. Run ./scripts/test, which starts one and builds them."
        )
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn slipway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info");
    c
}

pub enum Store {
    Sqlite,
    Postgres,
}

/// A control plane process and what it needs to restart on the same store.
pub struct Server {
    pub base: String,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
    pub token: String,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Server {
    pub async fn start(store: Store) -> Server {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let database_url = match store {
            Store::Sqlite => format!(
                "sqlite://{}?mode=rwc",
                data_dir.path().join("slipway.db").display()
            ),
            Store::Postgres => fresh_postgres().await,
        };
        let port = free_port();
        let mut s = Server {
            base: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
            database_url,
            token: String::new(),
            child: None,
            http: reqwest::Client::new(),
        };
        s.spawn();
        s.wait_ready().await;
        let out = s
            .cli(&[
                "token",
                "create",
                "--role",
                "admin",
                "--name",
                "engine-tests",
            ])
            .output()
            .expect("slipway token create");
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        s.token = stdout.trim().to_string();
        assert!(!s.token.is_empty(), "no token printed");
        s
    }

    fn cli(&self, args: &[&str]) -> Command {
        let mut c = slipway();
        c.args(args)
            .env("SLIPWAY_DATABASE_URL", &self.database_url)
            .env("SLIPWAY_DATA_DIR", self.data_dir.path());
        c
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("server log");
        let child = self
            .cli(&["serve"])
            .env("SLIPWAY_BIND", format!("127.0.0.1:{}", self.port))
            .env("SLIPWAY_PUBLIC_URL", &self.base)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn slipway serve");
        self.child = Some(child);
    }

    async fn wait_ready(&self) {
        eventually("server ready", Duration::from_secs(60), || async {
            match self.http.get(format!("{}/ready", self.base)).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("{}\n{}", r.status(), tail(&self.log(), 40))),
                Err(e) => Err(format!("{e}\n{}", tail(&self.log(), 40))),
            }
        })
        .await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// The `slipway serve` process id (e.g. to sample its memory).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the server is running")
    }

    /// SIGKILL: no shutdown, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[track_caller]
    pub fn ok(res: (u16, Value), status: u16) -> Value {
        assert_eq!(res.0, status, "unexpected status, body {}", res.1);
        res.1
    }

    pub async fn get(&self, path: &str) -> Value {
        Self::ok(self.call(Method::GET, path, None).await, 200)
    }

    pub async fn post(&self, path: &str, body: Value, status: u16) -> Value {
        Self::ok(self.call(Method::POST, path, Some(body)).await, status)
    }

    pub async fn patch(&self, path: &str, body: Value) -> Value {
        Self::ok(self.call(Method::PATCH, path, Some(body)).await, 200)
    }

    /// project → environment → service (image slipway-test/web:v1, health
    /// check on /healthz, published on `published`). Returns (env, service).
    pub async fn seed(&self, name: &str, published: u16, extra: Value) -> (String, String) {
        let p = self.post("/projects", json!({"name": name}), 201).await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let e = self
            .post(
                &format!("/projects/{p}/environments"),
                json!({"name": "production"}),
                201,
            )
            .await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let mut spec = json!({
            "image": "slipway-test/web:v1",
            "ports": [{"container": 8080, "published": published}],
            "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1, "timeout_secs": 1, "retries": 5},
        });
        if let (Some(s), Some(x)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in x {
                s.insert(k.clone(), v.clone());
            }
        }
        let s = self
            .post(
                &format!("/environments/{e}/services"),
                json!({"name": "web", "spec": spec}),
                201,
            )
            .await["id"]
            .as_str()
            .expect("id")
            .to_string();
        (e, s)
    }

    /// Replaces top-level keys of a service's spec; returns the new spec.
    pub async fn patch_spec(&self, service: &str, changes: Value) -> Value {
        let mut spec = self.get(&format!("/services/{service}")).await["spec"].clone();
        for (k, v) in changes.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        self.patch(&format!("/services/{service}"), json!({"spec": spec}))
            .await["spec"]
            .clone()
    }

    pub async fn deploy(&self, service: &str, body: Value) -> String {
        self.post(&format!("/services/{service}/deployments"), body, 202)
            .await["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Waits until the deployment is in a terminal state; returns it.
    pub async fn wait_done(&self, id: &str, within: Duration) -> Value {
        self.wait_deployment(id, "finished", within, |d| {
            !["queued", "running", "awaiting_approval"].contains(&d["state"].as_str().unwrap_or(""))
        })
        .await
    }

    /// Waits until the deployment satisfies `done`; returns it.
    pub async fn wait_deployment(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("deployment {id} {what}");
        eventually(&what, within, || async {
            let (st, d) = self
                .call(Method::GET, &format!("/deployments/{id}"), None)
                .await;
            if st == 200 && done(&d) {
                return Ok(d);
            }
            Err(format!(
                "{st} {d}\n--- server log tail ---\n{}",
                tail(&self.log(), 60)
            ))
        })
        .await
    }

    pub async fn wait_host(&self, host: &str, status: &str) {
        let what = format!("host {host} {status}");
        eventually(&what, Duration::from_secs(40), || async {
            let h = self.get(&format!("/hosts/{host}")).await;
            if h["status"] == status {
                Ok(())
            } else {
                Err(h.to_string())
            }
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn fresh_postgres() -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin = std::env::var("SLIPWAY_TEST_POSTGRES_URL")
        .expect("SLIPWAY_TEST_POSTGRES_URL (run ./scripts/test)");
    let name = format!("slipway_engine_{}", uuid::Uuid::new_v4().simple());
    let db = Database::connect(&admin).await.expect("connect");
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    let (prefix, _) = admin.rsplit_once('/').expect("db in url");
    format!("{prefix}/{name}")
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An agent process: `slipway agent`, its own data dir, container prefix
/// and proxy.
pub struct Agent {
    pub host_id: String,
    pub data_dir: tempfile::TempDir,
    pub prefix: String,
    pub proxy_admin: u16,
    /// Where its proxy serves published ports (127.0.0.x: one per agent).
    pub bind_ip: String,
    server: String,
    child: Option<Child>,
}

impl Agent {
    /// Creates a host assigned to `env`, issues its enrollment token and
    /// starts an agent with it.
    pub async fn enroll(server: &Server, name: &str, env: &str) -> Agent {
        Self::enroll_on(server, name, env, "127.0.0.1").await
    }

    pub async fn enroll_on(server: &Server, name: &str, env: &str, bind_ip: &str) -> Agent {
        let h = server
            .post("/hosts", json!({"name": name, "environments": [env]}), 201)
            .await;
        let host_id = h["id"].as_str().expect("id").to_string();
        let e = server
            .post(&format!("/hosts/{host_id}/enrollment"), json!(null), 201)
            .await;
        let token = e["token"].as_str().expect("token").to_string();
        let mut a = Agent {
            host_id,
            data_dir: tempfile::tempdir().expect("tempdir"),
            prefix: format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            proxy_admin: free_port(),
            bind_ip: bind_ip.to_string(),
            server: server.base.clone(),
            child: None,
        };
        a.spawn(Some(&token));
        server.wait_host(&a.host_id, "online").await;
        a
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn spawn(&mut self, token: Option<&str>) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let mut c = slipway();
        c.args(["agent", "--server", &self.server])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--docker-host", &docker_host()])
            .args(["--container-prefix", &self.prefix])
            .args(["--proxy-admin", &format!("127.0.0.1:{}", self.proxy_admin)])
            .args(["--proxy-bind-ip", &self.bind_ip]);
        if let Some(t) = token {
            c.args(["--token", t]);
        }
        let child = c
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn slipway agent");
        self.child = Some(child);
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the agent process to exit by itself; returns its code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let c = self.child.as_mut().expect("the agent runs");
        let status = eventually("agent exit", within, || {
            let r = c.try_wait();
            async move {
                match r {
                    Ok(Some(st)) => Ok(st),
                    Ok(None) => Err("still running".to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        self.child = None;
        status.code()
    }

    /// Waits (≤ 30 s) until no container of `deployment` is left on this host.
    pub async fn wait_no_containers_of(&self, deployment: &str) {
        let what = format!("no container of {deployment} left");
        eventually(&what, Duration::from_secs(30), || async {
            let left = self.containers(&format!("label=slipway.deployment={deployment}"));
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}\n{}", tail(&self.log(), 40)))
            }
        })
        .await
    }

    /// Containers of this agent (by name prefix) that carry `label=value`.
    pub fn containers(&self, filter: &str) -> Vec<String> {
        let out = Command::new("docker")
            .env("DOCKER_HOST", docker_host())
            .args(["ps", "-a", "-q", "--filter", filter])
            .args(["--filter", &format!("label=slipway.host={}", self.host_id)])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        // The proxy outlives agents by design; tests stop theirs, and their containers.
        let _ = Command::new("pkill")
            .args([
                "-f",
                &format!("proxy .*admin 127.0.0.1:{}", self.proxy_admin),
            ])
            .status();
        let ids = self.containers("label=slipway.managed");
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .env("DOCKER_HOST", docker_host())
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
        // And its environment networks (Docker has address space for a few dozen).
        let out = Command::new("docker")
            .env("DOCKER_HOST", docker_host())
            .args(["network", "ls", "-q", "--filter"])
            .arg(format!("label=slipway.host={}", self.host_id))
            .output();
        let nets: Vec<String> = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !nets.is_empty() {
            let _ = Command::new("docker")
                .env("DOCKER_HOST", docker_host())
                .args(["network", "rm"])
                .args(&nets)
                .output();
        }
    }
}

/// GET http://127.0.0.1:{port}/ → body, trimmed.
pub async fn fetch(port: u16) -> Result<String, String> {
    fetch_at("127.0.0.1", port).await
}

pub async fn fetch_at(ip: &str, port: u16) -> Result<String, String> {
    let r = reqwest::Client::new()
        .get(format!("http://{ip}:{port}/"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    r.text()
        .await
        .map(|t| t.trim().to_string())
        .map_err(|e| e.to_string())
}

pub const DEPLOY_WITHIN: Duration = Duration::from_secs(90);
