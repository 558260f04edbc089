//! The dashboard in a real browser against the real server.
//!
//! Needs: `SLIPWAY_BIN` (the built `slipway` binary; the test fails without
//! it), the dashboard built into `static/pkg` (`cargo run -p xtask --
//! build-frontend`), and Debian's `chromium` + `chromium-driver` (override
//! with `CHROMIUM`, `CHROMEDRIVER`). The single sign-on test also runs the
//! test OpenID provider in `scripts/idp` with `node` (after `npm ci --prefix
//! scripts/idp`). Screenshots of every step go to `e2e/screenshots/NN-name.png`
//! (`sso-NN-name.png` for the single sign-on test, `ci-NN-name.png` for the
//! webhooks and approvals test, `deploy-NN-name.png` for the hosts, deploy,
//! live log and rollback test in `dashboard/deploy.rs`, which also needs
//! `SLIPWAY_TEST_DOCKER_HOST` and the `slipway-test/web:v1`/`v2` images;
//! `stack-NN-name.png` for **Deploy environment** in `dashboard/stack.rs`,
//! same needs).
use anyhow::{anyhow, bail, Context, Result};
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[path = "dashboard/deploy.rs"]
mod deploy;
#[path = "dashboard/stack.rs"]
mod stack;

const WAIT: Duration = Duration::from_secs(15);
const USER: &str = "admin";
const PASSWORD: &str = "correct-horse-battery";

// ------------------------------------------------------------------ processes

/// Kills the child when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A minimal HTTP/1.0 GET on loopback; the status code.
fn http_status(port: u16, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?}"))
}

struct Server {
    url: String,
    _proc: Proc,
    _data: tempfile::TempDir,
}

/// Starts `slipway serve` on `port` with extra `SLIPWAY_*` settings.
async fn start_server(port: u16, settings: &[(&str, String)]) -> Result<Server> {
    let bin = std::env::var_os("SLIPWAY_BIN").ok_or_else(|| {
        anyhow!(
            "SLIPWAY_BIN is not set: build the server (`cargo build -p slipway`) and run \
             SLIPWAY_BIN=$CARGO_TARGET_DIR/debug/slipway cargo test -p slipway-e2e"
        )
    })?;
    let static_dir = repo_root().join("static");
    if !static_dir
        .join("pkg")
        .join("slipway_frontend_bg.wasm")
        .is_file()
    {
        bail!(
            "{}/pkg has no dashboard build: run `cargo run -p xtask -- build-frontend` first",
            static_dir.display()
        );
    }
    let data = tempfile::tempdir()?;
    let log = std::fs::File::create(data.path().join("server.log"))?;
    let mut cmd = Command::new(&bin);
    // The server refuses unknown SLIPWAY_* variables (SLIPWAY_BIN among them).
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SLIPWAY_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .env("SLIPWAY_BIND", format!("127.0.0.1:{port}"))
        .env("SLIPWAY_DATA_DIR", data.path())
        .env("SLIPWAY_STATIC_DIR", &static_dir)
        .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", Path::new(&bin).display()))?;
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default();
            bail!("the server exited with {status} before it was ready:\n{log}");
        }
        if http_status(port, "/ready").is_ok_and(|s| s == 200) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the server was not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(Server {
        url,
        _proc: Proc(child),
        _data: data,
    })
}

struct Browser {
    client: Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

async fn start_browser() -> Result<Browser> {
    let driver_bin =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = free_port()?;
    let driver = Proc(
        Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {driver_bin}"))?,
    );
    let profile = tempfile::tempdir()?;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--window-size=1366,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let attempt = ClientBuilder::rustls()?
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match attempt {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow!("could not start a browser session: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    Ok(Browser {
        client,
        _driver: driver,
        _profile: profile,
    })
}

// ------------------------------------------------------------------ helpers

/// Find/act/check helpers on one browser session, with numbered screenshots.
struct Ui {
    c: Client,
    base: String,
    shots: PathBuf,
    /// Screenshot file name prefix: "", "sso-", "ci-", "deploy-" or "stack-".
    prefix: &'static str,
    step: u32,
}

fn css(data_test: &str) -> String {
    format!("[data-test=\"{data_test}\"]")
}

impl Ui {
    async fn goto(&self, path: &str) -> Result<()> {
        self.c.goto(&format!("{}{path}", self.base)).await?;
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Element> {
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(selector))
            .await
            .with_context(|| format!("no element matches {selector}"))
    }

    async fn fill(&self, selector: &str, text: &str) -> Result<()> {
        let el = self.find(selector).await?;
        el.clear().await?;
        el.send_keys(text).await?;
        Ok(())
    }

    /// Picks the option with this visible text once the options have loaded.
    async fn select_label(&self, selector: &str, label: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let select = self.find(selector).await?;
            for o in select.find_all(Locator::Css("option")).await? {
                if o.text().await?.trim() == label {
                    o.click().await?;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no option {label:?} in {selector}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Opens the user menu and picks "Log out" (or "Log out everywhere").
    async fn logout(&self, everywhere: bool) -> Result<()> {
        self.click(&css("user-menu")).await?;
        let item = if everywhere {
            "logout-everywhere"
        } else {
            "logout"
        };
        self.click(&css(item)).await?;
        self.find(&css("login-form")).await?;
        self.expect_path("/login").await
    }

    async fn click(&self, selector: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            let el = self.find(selector).await?;
            // Out of the sticky top bar's way.
            let scrolled = self
                .c
                .execute(
                    "arguments[0].scrollIntoView({block: 'center'})",
                    vec![serde_json::to_value(&el)?],
                )
                .await;
            match scrolled.map(drop).and(Ok(el.click().await)) {
                Ok(Ok(_)) => return Ok(()),
                // A list re-rendered under us: find it again.
                Err(e) | Ok(Err(e)) if tries < 5 && e.to_string().contains("stale") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) | Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    async fn click_link(&self, scope: &str, text: &str) -> Result<()> {
        let link = format!("{scope} a");
        let deadline = Instant::now() + WAIT;
        loop {
            for a in self.c.find_all(Locator::Css(&link)).await? {
                if a.text().await?.trim() == text {
                    a.click().await?;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no link {text:?} in {scope}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until the element's text contains `needle`.
    async fn expect_text(&self, selector: &str, needle: &str) -> Result<()> {
        self.expect_text_within(selector, needle, WAIT).await
    }

    /// [`Ui::expect_text`] with its own timeout.
    async fn expect_text_within(&self, selector: &str, needle: &str, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let text = match self.c.find(Locator::Css(selector)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{selector} should contain {needle:?}, has {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn expect_path(&self, path: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.c.current_url().await?;
            if url.path() == path {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("expected to be at {path}, am at {url}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until the path starts with `prefix` (e.g. `/deployments/`).
    async fn expect_path_prefix(&self, prefix: &str) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.c.current_url().await?;
            if url.path().starts_with(prefix) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("expected to be under {prefix}, am at {url}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn shot(&mut self, name: &str) -> Result<()> {
        self.step += 1;
        // let the last render and fonts settle
        tokio::time::sleep(Duration::from_millis(300)).await;
        let png = self.c.screenshot().await?;
        let path = self
            .shots
            .join(format!("{}{:02}-{name}.png", self.prefix, self.step));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

// ------------------------------------------------------------------ scenario

async fn scenario(ui: &mut Ui) -> Result<()> {
    // First run: the app notices no user exists and sends us to /setup.
    ui.goto("/").await?;
    ui.find(&css("setup-form")).await?;
    ui.expect_path("/setup").await?;
    ui.fill("#setup-username", USER).await?;
    ui.fill("#setup-password", "short").await?;
    ui.fill("#setup-confirm", "short").await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("error-password"), "at least 12")
        .await?;
    ui.shot("setup-validation").await?;
    ui.fill("#setup-password", PASSWORD).await?;
    ui.fill("#setup-confirm", PASSWORD).await?;
    ui.shot("setup").await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;
    ui.expect_path("/").await?;
    ui.find(&css("overview-empty")).await?;
    ui.shot("overview-empty").await?;

    // Log out, then back in.
    ui.logout(false).await?;
    // Any page without a session ends on /login.
    ui.goto("/audit").await?;
    ui.expect_path("/login").await?;
    ui.find(&css("login-form")).await?;
    ui.fill("#login-username", USER).await?;
    ui.fill("#login-password", "wrong-password-123").await?;
    ui.click(&css("login-submit")).await?;
    ui.find(&css("form-error")).await?;
    ui.shot("login-failed").await?;
    ui.fill("#login-password", PASSWORD).await?;
    ui.click(&css("login-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;
    ui.expect_path("/").await?;
    ui.shot("logged-in").await?;

    // A project: client-side validation first, then the real thing.
    ui.click(&css("new-project")).await?;
    ui.fill("#project-name", "Shop").await?;
    ui.click(&css("project-submit")).await?;
    ui.expect_text(&css("error-name"), "lowercase").await?;
    ui.shot("project-validation").await?;
    ui.fill("#project-name", "shop").await?;
    ui.fill("#project-description", "The web shop").await?;
    ui.click(&css("project-submit")).await?;
    ui.find(&css("project-shop")).await?;
    ui.shot("project-created").await?;

    // An environment.
    ui.click_link(&css("project-shop"), "shop").await?;
    ui.expect_text(&css("project-name"), "shop").await?;
    ui.fill("#env-name", "staging").await?;
    ui.click(&css("environment-submit")).await?;
    ui.find(&css("env-row-staging")).await?;
    ui.shot("environment-created").await?;
    // The server's own error (409 conflict) shows next to the name.
    ui.fill("#env-name", "staging").await?;
    ui.click(&css("environment-submit")).await?;
    ui.expect_text(
        &css("error-name"),
        "already has an environment named staging",
    )
    .await?;
    ui.shot("environment-conflict").await?;

    // A service, with a bad port first.
    ui.click_link(&css("env-row-staging"), "staging").await?;
    ui.expect_text(&css("environment-name"), "staging").await?;
    ui.click(&css("new-service")).await?;
    ui.fill("#svc-name", "web").await?;
    ui.fill("#svc-image", "nginx:1.27-alpine").await?;
    ui.fill("#svc-ports", "8080:70000").await?;
    ui.click(&css("service-submit")).await?;
    ui.expect_text(&css("error-ports"), "65535").await?;
    ui.shot("service-validation").await?;
    ui.fill("#svc-ports", "8080:80").await?;
    ui.fill("#svc-health_check-path", "/").await?;
    ui.fill("#svc-health_check-port", "80").await?;
    ui.click(&css("service-submit")).await?;
    ui.find(&css("service-row-web")).await?;
    ui.shot("service-created").await?;

    // All three on the overview.
    ui.click_link(&css("nav"), "Overview").await?;
    ui.expect_path("/").await?;
    let row = format!(
        "{} {} {}",
        css("project-shop"),
        css("env-staging"),
        css("service-web")
    );
    ui.expect_text(&row, "nginx:1.27-alpine").await?;
    ui.expect_text(&row, "never deployed").await?;
    ui.shot("overview").await?;

    // The audit log has an entry for each.
    ui.click_link(&css("nav"), "Audit log").await?;
    ui.find(&css("audit-table")).await?;
    for action in ["project.create", "environment.create", "service.create"] {
        ui.find(&css(&format!("audit-{action}"))).await?;
    }
    ui.shot("audit").await?;
    ui.fill("#f-action", "service.create").await?;
    ui.click(&css("audit-apply")).await?;
    ui.expect_text(&css("audit-count"), "1–1 of 1").await?;
    ui.shot("audit-filtered").await?;
    Ok(())
}

/// The rest of the pages: variables & secrets, the service page and a
/// deployment, hosts and tokens.
async fn tour(ui: &mut Ui) -> Result<()> {
    ui.click_link(&css("nav"), "Overview").await?;
    ui.click_link(&css("env-staging"), "staging").await?;
    ui.fill("#var-name", "LOG_LEVEL").await?;
    ui.fill("#var-value", "debug").await?;
    ui.click(&css("variable-submit")).await?;
    ui.find(&css("var-row-LOG_LEVEL")).await?;
    ui.fill("#var-name", "DATABASE_URL").await?;
    ui.click(&css("variable-secret")).await?;
    ui.fill("#var-value", "postgres://shop:hunter2@db/shop")
        .await?;
    ui.click(&css("variable-submit")).await?;
    ui.expect_text(&css("var-row-DATABASE_URL"), "secret")
        .await?;
    let page = ui.c.source().await?;
    if page.contains("hunter2") {
        bail!("a secret value is shown on the environment page");
    }
    ui.shot("variables").await?;

    ui.click_link(&css("service-row-web"), "web").await?;
    ui.expect_text(&css("service-name"), "web").await?;
    ui.expect_text(&css("spec-ports"), "8080:80").await?;
    let service_path = ui.c.current_url().await?.path().to_owned();
    // Deploy… opens a panel prefilled with the service's image; submitting
    // follows the new deployment on its page. No host serves staging, so it
    // stays queued.
    ui.click(&css("deploy")).await?;
    ui.find(&css("deploy-form")).await?;
    ui.click(&css("deploy-submit")).await?;
    ui.expect_path_prefix("/deployments/").await?;
    ui.expect_text(&css("deployment-state"), "queued").await?;
    ui.expect_text(&css("deployment-release"), "#1").await?;
    ui.shot("service-deployed").await?;
    ui.goto(&service_path).await?;
    ui.expect_text(&css("deployment-1"), "#1").await?;
    ui.click(&css("edit-service")).await?;
    ui.fill("#svc-replicas", "3").await?;
    ui.click(&css("edit-service-submit")).await?;
    ui.expect_text(&css("spec-replicas"), "3").await?;
    ui.shot("service-edited").await?;

    ui.click_link(&css("nav"), "Overview").await?;
    ui.expect_text(&css("service-web"), "queued").await?;
    ui.shot("overview-deployed").await?;

    ui.click_link(&css("nav"), "Hosts").await?;
    ui.fill("#host-name", "worker-1").await?;
    ui.click(&css("host-submit")).await?;
    ui.expect_text(&css("host-row-worker-1"), "pending").await?;
    ui.shot("hosts").await?;

    ui.click_link(&css("nav"), "API tokens").await?;
    ui.fill("#token-name", "ci").await?;
    // Limited to one environment, shown by name.
    ui.click(&css("token-env-shop / staging")).await?;
    ui.click(&css("token-submit")).await?;
    ui.expect_text(&css("token-secret-value"), "slp_").await?;
    ui.expect_text(&css("token-row-ci"), "shop / staging")
        .await?;
    ui.shot("token-created").await?;
    ui.click(&css("revoke-token")).await?;
    ui.c.accept_alert().await?;
    ui.expect_text(&css("token-row-ci"), "revoked").await?;
    ui.shot("token-revoked").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_first_run_to_audit() -> Result<()> {
    // Err only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = start_server(free_port()?, &[]).await?;
    let browser = start_browser().await?;
    let mut ui = Ui {
        c: browser.client.clone(),
        base: server.url.clone(),
        shots: screenshots_dir("")?,
        prefix: "",
        step: 0,
    };
    let mut result = scenario(&mut ui).await;
    if result.is_ok() {
        result = tour(&mut ui).await;
    }
    finish(&mut ui, result).await
}

/// `e2e/screenshots`, emptied of this test's earlier screenshots (the other
/// test's stay: the two run in parallel).
fn screenshots_dir(prefix: &str) -> Result<PathBuf> {
    let shots = repo_root().join("e2e").join("screenshots");
    std::fs::create_dir_all(&shots)?;
    for entry in std::fs::read_dir(&shots)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = if prefix.is_empty() {
            !["sso-", "ci-", "deploy-", "stack-"]
                .iter()
                .any(|p| name.starts_with(p))
        } else {
            name.starts_with(prefix)
        };
        if ours {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(shots)
}

/// On failure: a last screenshot and the page source. Closes the browser.
async fn finish(ui: &mut Ui, result: Result<()>) -> Result<()> {
    if result.is_err() {
        let _ = ui.shot("failure").await;
        if let Ok(src) = ui.c.source().await {
            let _ = std::fs::write(ui.shots.join(format!("{}failure.html", ui.prefix)), src);
        }
    }
    let _ = ui.c.clone().close().await;
    result
}

// ------------------------------------------------------------------ single sign-on

const IDP_SECRET: &str = "slipway-e2e-secret";

/// The test OpenID provider of `scripts/idp`; its issuer URL.
struct Idp {
    issuer: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

/// Starts `node scripts/idp/idp.mjs` with client `slipway` (redirect to
/// `callback`) and two users: alice in `slipway-admins`, bob in no mapped group.
fn start_idp(callback: &str) -> Result<Idp> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("idp.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&serde_json::json!({
            "clients": [{
                "client_id": "slipway",
                "client_secret": IDP_SECRET,
                "redirect_uris": [callback],
            }],
            "users": [
                {
                    "username": "alice", "password": "alice-pw", "sub": "sub-alice",
                    "email": "alice@example.test", "name": "Alice Admin",
                    "groups": ["slipway-admins", "eng"],
                },
                {
                    "username": "bob", "password": "bob-pw", "sub": "sub-bob",
                    "email": "bob@example.test", "name": "Bob Builder",
                    "groups": ["contractors"],
                },
            ],
        }))?,
    )?;
    let script = repo_root().join("scripts").join("idp").join("idp.mjs");
    let log = std::fs::File::create(dir.path().join("idp.log"))?;
    let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
        .arg(&script)
        .args(["--port", "0", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting node scripts/idp/idp.mjs (is Node.js installed?)")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from the identity provider"))?;
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(issuer) = line.strip_prefix("IDP_READY ") {
                let _ = tx.send(issuer.trim().to_owned());
            }
        }
    });
    let issuer = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        let log = std::fs::read_to_string(dir.path().join("idp.log")).unwrap_or_default();
        anyhow!("the identity provider did not print IDP_READY (did `npm ci --prefix scripts/idp` run?):\n{log}")
    })?;
    Ok(Idp {
        issuer,
        _proc: proc,
        _dir: dir,
    })
}

/// Clicks "Sign in with Test SSO" and signs in on the provider's own form.
async fn sso_login(ui: &Ui, user: &str, password: &str) -> Result<()> {
    // The provider remembers its last login in a cookie; on 127.0.0.1 it
    // shares the jar with Slipway, so start from none.
    ui.c.delete_all_cookies().await?;
    ui.goto("/login").await?;
    ui.click(&css("sso-test")).await?;
    ui.fill("#username", user).await?;
    ui.fill("#password", password).await?;
    ui.click("#submit").await
}

async fn sso_scenario(ui: &mut Ui, issuer: &str) -> Result<()> {
    // First run: a local admin.
    ui.goto("/").await?;
    ui.find(&css("setup-form")).await?;
    ui.fill("#setup-username", USER).await?;
    ui.fill("#setup-password", PASSWORD).await?;
    ui.fill("#setup-confirm", PASSWORD).await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;

    // An environment, for an environment-scoped rule.
    ui.click(&css("new-project")).await?;
    ui.fill("#project-name", "payments").await?;
    ui.click(&css("project-submit")).await?;
    ui.click_link(&css("project-payments"), "payments").await?;
    ui.fill("#env-name", "production").await?;
    ui.click(&css("environment-submit")).await?;
    ui.find(&css("env-row-production")).await?;

    // Role mappings, through the Roles page.
    ui.click_link(&css("nav"), "Roles").await?;
    ui.expect_path("/settings/roles").await?;
    ui.find(&css("mappings-empty")).await?;
    ui.fill("#mapping-value", "slipway-admins").await?;
    ui.select_label("#mapping-role", "admin").await?;
    ui.click(&css("mapping-submit")).await?;
    ui.expect_text(&css("mapping-row-slipway-admins"), "admin")
        .await?;
    ui.expect_text(&css("mapping-row-slipway-admins"), "Everywhere")
        .await?;
    ui.fill("#mapping-value", "payments-oncall").await?;
    ui.select_label("#mapping-role", "deployer").await?;
    ui.select_label("#mapping-env", "payments / production")
        .await?;
    ui.click(&css("mapping-submit")).await?;
    ui.expect_text(&css("mapping-row-payments-oncall"), "payments / production")
        .await?;
    // "Test these claims" with the example: only the scoped rule matches.
    ui.click(&css("claims-test")).await?;
    ui.expect_text(&css("claims-result"), "1 rule matches")
        .await?;
    ui.expect_text(&css("claims-result"), "payments / production")
        .await?;
    ui.find(&format!(
        "{} {}",
        css("mapping-row-payments-oncall"),
        css("matched")
    ))
    .await?;
    ui.shot("role-mappings").await?;
    ui.fill("#claims-json", r#"{"groups": ["contractors"]}"#)
        .await?;
    ui.click(&css("claims-test")).await?;
    ui.expect_text(&css("claims-verdict"), "refused").await?;

    // The login page offers the provider next to the password form.
    ui.logout(false).await?;
    ui.find(&css("sso-test")).await?;
    ui.expect_text(&css("sso-test"), "Test SSO").await?;
    ui.shot("login-with-sso").await?;

    // Bob is in no mapped group: back on the login page, told why.
    sso_login(ui, "bob", "bob-pw").await?;
    ui.expect_path("/login").await?;
    ui.expect_text(&css("sso-error"), "no access").await?;
    ui.shot("sso-no-role").await?;

    // Alice is in slipway-admins: signed in as an admin.
    sso_login(ui, "alice", "alice-pw").await?;
    ui.expect_path("/").await?;
    ui.expect_text(&css("username"), "alice").await?;
    ui.expect_text(&css("nav"), "Users").await?;
    ui.expect_text(&css("nav"), "Roles").await?;
    ui.shot("sso-logged-in").await?;

    // She shows on the Users page with the issuer as her source.
    ui.click_link(&css("nav"), "Users").await?;
    let alice = css("user-row-alice@example.test");
    ui.expect_text(&format!("{alice} {}", css("user-source")), issuer)
        .await?;
    ui.expect_text(&alice, "Alice Admin").await?;
    ui.expect_text(&alice, "ADMIN").await?; // the badge is upper-cased by CSS
                                            // A manual grant for the local admin, in one environment.
    let admin = css("user-row-admin");
    ui.click(&format!("{admin} {}", css("add-grant"))).await?;
    ui.select_label(
        &format!("{admin} .grant-form select:nth-of-type(1)"),
        "approver",
    )
    .await?;
    ui.select_label(
        &format!("{admin} .grant-form select:nth-of-type(2)"),
        "payments / production",
    )
    .await?;
    ui.click(&format!("{admin} {}", css("grant-submit")))
        .await?;
    ui.expect_text(&admin, "payments / production").await?;
    ui.expect_text(&admin, "MANUAL").await?;
    ui.shot("users").await?;

    // The user menu; log out everywhere.
    ui.click(&css("user-menu")).await?;
    ui.find(&css("logout-everywhere")).await?;
    ui.shot("user-menu").await?;
    ui.click(&css("logout-everywhere")).await?;
    ui.find(&css("login-form")).await?;
    ui.expect_path("/login").await?;
    ui.goto("/users").await?;
    ui.expect_path("/login").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_single_sign_on() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let idp = start_idp(&format!("{base}/auth/oidc/test/callback"))?;
    let providers = serde_json::json!([{
        "id": "test",
        "name": "Test SSO",
        "issuer": idp.issuer,
        "client_id": "slipway",
        "client_secret": IDP_SECRET,
    }]);
    let server = start_server(
        port,
        &[
            ("SLIPWAY_OIDC_PROVIDERS", providers.to_string()),
            ("SLIPWAY_PUBLIC_URL", base.clone()),
        ],
    )
    .await?;
    let browser = start_browser().await?;
    let mut ui = Ui {
        c: browser.client.clone(),
        base: server.url.clone(),
        shots: screenshots_dir("sso-")?,
        prefix: "sso-",
        step: 0,
    };
    let result = sso_scenario(&mut ui, &idp.issuer).await;
    finish(&mut ui, result).await
}

// ------------------------------------------------------------------ CI: webhooks and approvals

/// Runs `body` in the page as an async function; its result (JSON).
async fn run_js(ui: &Ui, body: &str, args: Vec<serde_json::Value>) -> Result<serde_json::Value> {
    let script = format!(
        "const done = arguments[arguments.length - 1];\
         (async (...args) => {{ {body} }})(...Array.from(arguments).slice(0, -1))\
         .then(done, e => done({{error: String(e)}}));"
    );
    Ok(ui.c.execute_async(&script, args).await?)
}

/// Signs `body` like a CI system would (`t=<unix>,v1=<hex hmac>`) and posts it.
const SEND_GENERIC: &str = r#"
    const [url, secret, body] = args;
    const t = Math.floor(Date.now() / 1000).toString();
    const enc = new TextEncoder();
    const key = await crypto.subtle.importKey('raw', enc.encode(secret), {name: 'HMAC', hash: 'SHA-256'}, false, ['sign']);
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', key, enc.encode(t + '.' + body)));
    const hex = Array.from(mac).map(b => b.toString(16).padStart(2, '0')).join('');
    const r = await fetch(url, {method: 'POST', credentials: 'omit',
        headers: {'Content-Type': 'application/json', 'X-Slipway-Signature': 't=' + t + ',v1=' + hex}, body});
    return {status: r.status, body: await r.text()};
"#;

/// Requests a deployment of the service's newest release with an API token.
const DEPLOY_WITH_TOKEN: &str = r#"
    const [service, token] = args;
    const h = {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json', 'Accept': 'application/json'};
    const rels = await (await fetch('/api/v1/releases?service=' + service, {credentials: 'omit', headers: h})).json();
    const items = rels.items || rels;
    const r = await fetch('/api/v1/services/' + service + '/deployments', {method: 'POST', credentials: 'omit',
        headers: h, body: JSON.stringify({release_id: items[0].id})});
    return {status: r.status, body: await r.text()};
"#;

async fn ci_scenario(ui: &mut Ui) -> Result<()> {
    ui.goto("/").await?;
    ui.find(&css("setup-form")).await?;
    ui.fill("#setup-username", USER).await?;
    ui.fill("#setup-password", PASSWORD).await?;
    ui.fill("#setup-confirm", PASSWORD).await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;

    // Project, production with one required approval, a service.
    ui.click(&css("new-project")).await?;
    ui.fill("#project-name", "shop").await?;
    ui.click(&css("project-submit")).await?;
    ui.click_link(&css("project-shop"), "shop").await?;
    ui.expect_text(&css("project-name"), "shop").await?;
    ui.fill("#env-name", "production").await?;
    ui.click(&css("environment-submit")).await?;
    ui.click_link(&css("env-row-production"), "production")
        .await?;
    ui.expect_text(&css("environment-name"), "production")
        .await?;
    ui.fill("#policy-approvals", "9").await?;
    ui.click(&css("policy-submit")).await?;
    ui.expect_text(&css("error-required_approvals"), "between 0 and 5")
        .await?;
    ui.fill("#policy-approvals", "1").await?;
    ui.click(&css("policy-submit")).await?;
    ui.find(&css("policy-saved")).await?;
    ui.shot("policy").await?;
    ui.c.execute("window.scrollTo(0, 0)", vec![]).await?;
    ui.click(&css("new-service")).await?;
    ui.fill("#svc-name", "api").await?;
    ui.fill("#svc-image", "registry.local/app:1.0").await?;
    ui.click(&css("service-submit")).await?;
    ui.click_link(&css("service-row-api"), "api").await?;
    ui.expect_text(&css("service-name"), "api").await?;
    let service_url = ui.c.current_url().await?;
    let service_id = service_url
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();

    // A generic trigger rule: any generic event for "api" cuts a release.
    ui.select_label("#trigger-event", "generic").await?;
    ui.fill("#trigger-pattern", "*").await?;
    ui.click(&css("trigger-submit")).await?;
    ui.expect_text(&css("trigger-generic"), "from payload")
        .await?;
    ui.shot("trigger-rule").await?;

    // A generic webhook; its secret is shown once.
    ui.c.execute("window.scrollTo(0, 0)", vec![]).await?;
    ui.click_link("nav.breadcrumbs", "shop").await?;
    ui.select_label(&css("webhook-provider"), "Generic (signed JSON)")
        .await?;
    ui.click(&css("webhook-submit")).await?;
    ui.expect_text(&css("webhook-secret-value"), "whsec_")
        .await?;
    let secret = ui.find(&css("webhook-secret-value")).await?.text().await?;
    let url = ui.find(&css("webhook-url")).await?.text().await?;
    if !url.starts_with(&ui.base) || !url.contains("/api/v1/hooks/generic/") {
        bail!("unexpected webhook URL {url}");
    }
    ui.expect_text(&css("deliveries"), "No deliveries yet")
        .await?;
    ui.shot("webhook-created").await?;

    // CI calls it; the delivery and its release show up without a reload.
    let body = r#"{"id":"evt-1","service":"api","image":"registry.local/app:2.0","git_sha":"abcdef1","ref":"main"}"#;
    let sent = run_js(
        ui,
        SEND_GENERIC,
        vec![url.into(), secret.trim().into(), body.into()],
    )
    .await?;
    if sent["status"] != 202 {
        bail!("the generic hook answered {sent}");
    }
    ui.expect_text(&css("delivery-evt-1"), "processed").await?;
    ui.expect_text(&css("delivery-evt-1"), "release #1").await?;
    ui.expect_text(&css("delivery-evt-1"), "✓").await?;
    ui.c.execute(
        "document.querySelector('[data-test=deliveries]').scrollIntoView()",
        vec![],
    )
    .await?;
    ui.shot("delivery").await?;

    // A deployer token for "CI".
    ui.click_link(&css("nav"), "API tokens").await?;
    ui.fill("#token-name", "deployer").await?;
    ui.click(&css("token-submit")).await?;
    ui.expect_text(&css("token-secret-value"), "slp_").await?;
    let token = ui.find(&css("token-secret-value")).await?.text().await?;

    // The admin deploys the webhook's release: it waits for an approval.
    ui.goto(service_url.path()).await?;
    ui.expect_text(&css("release-1"), "registry.local/app:2.0")
        .await?;
    ui.expect_text(&css("release-1"), "main @ abcdef1").await?;
    ui.click(&format!("{} {}", css("release-1"), css("deploy-release")))
        .await?;
    // It follows the new deployment on its page.
    ui.expect_path_prefix("/deployments/").await?;
    ui.expect_text(&css("deployment-state"), "awaiting approval")
        .await?;
    ui.shot("awaiting-approval").await?;
    ui.goto(service_url.path()).await?;

    // The promote dialog (no other environment yet: nothing to pick).
    ui.click(&format!("{} {}", css("release-1"), css("promote-release")))
        .await?;
    ui.find(&css("promote-panel")).await?;

    // The token asks for a deployment too.
    let sent = run_js(
        ui,
        DEPLOY_WITH_TOKEN,
        vec![service_id.into(), token.trim().into()],
    )
    .await?;
    if sent["status"] != 202 {
        bail!("the token's deployment answered {sent}");
    }

    // The admin rejects their own request (a reason is required) and
    // approves the token's.
    ui.click_link(&css("nav"), "Approvals").await?;
    ui.expect_text(&css("approval-admin"), "0 / 1").await?;
    ui.expect_text(&css("approval-token:deployer"), "0 / 1")
        .await?;
    ui.shot("approvals").await?;
    ui.click(&format!("{} {}", css("approval-admin"), css("reject")))
        .await?;
    ui.click(&css("reject-submit")).await?;
    ui.expect_text(&css("approval-admin"), "say why").await?;
    ui.fill(&css("reject-reason"), "wrong window").await?;
    ui.shot("reject-reason").await?;
    ui.click(&css("reject-submit")).await?;
    let deadline = Instant::now() + WAIT;
    while ui
        .c
        .find(Locator::Css(&css("approval-admin")))
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            bail!("the rejected deployment is still listed");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    ui.expect_text(&css("approvals"), "token:deployer").await?;
    ui.click(&format!(
        "{} {}",
        css("approval-token:deployer"),
        css("approve")
    ))
    .await?;
    ui.find(&css("approvals-empty")).await?;
    ui.shot("approvals-done").await?;

    ui.goto(service_url.path()).await?;
    ui.expect_text(&css("deployments"), "rejected").await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let text = ui.find(&css("deployments")).await?.text().await?;
        if ["queued", "running", "succeeded", "failed"]
            .iter()
            .any(|s| text.contains(s))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the approved deployment did not leave awaiting approval: {text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ui.shot("service-after-approval").await?;

    // Promote the release to a new staging environment: preview, then confirm.
    ui.c.execute("window.scrollTo(0, 0)", vec![]).await?;
    ui.click_link("nav.breadcrumbs", "shop").await?;
    ui.fill("#env-name", "staging").await?;
    ui.click(&css("environment-submit")).await?;
    ui.click_link(&css("env-row-staging"), "staging").await?;
    ui.expect_text(&css("environment-name"), "staging").await?;
    ui.click(&css("new-service")).await?;
    ui.fill("#svc-name", "api").await?;
    ui.fill("#svc-image", "registry.local/app:1.0").await?;
    ui.click(&css("service-submit")).await?;
    ui.find(&css("service-row-api")).await?;
    ui.goto(service_url.path()).await?;
    ui.click(&format!("{} {}", css("release-1"), css("promote-release")))
        .await?;
    ui.select_label(&css("promote-target"), "staging").await?;
    ui.expect_text(&css("promote-preview"), "registry.local/app:2.0")
        .await?;
    ui.expect_text(&css("promote-preview"), "registry.local/app:1.0")
        .await?;
    ui.shot("promote-preview").await?;
    ui.click(&css("promote-confirm")).await?;
    ui.expect_text(&css("promote-done"), "queued").await?;
    ui.shot("promoted").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_ci_webhooks_and_approvals() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = start_server(free_port()?, &[]).await?;
    let browser = start_browser().await?;
    let mut ui = Ui {
        c: browser.client.clone(),
        base: server.url.clone(),
        shots: screenshots_dir("ci-")?,
        prefix: "ci-",
        step: 0,
    };
    let result = ci_scenario(&mut ui).await;
    finish(&mut ui, result).await
}
