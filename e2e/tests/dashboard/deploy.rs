//! Hosts, deploys, the live step log, rollback and approvals against a real
//! agent on the test Docker Engine (`SLIPWAY_TEST_DOCKER_HOST`).
//!
//! The browser adds a host and shows its one-time enrollment command; the
//! test starts `slipway agent` with that token, then deploys
//! `slipway-test/web:v1` and `v2` from the dashboard, rolls back, and approves
//! a CI token's deployment; then it protects production and shows the
//! typed-name confirmation before delete (refused by the API: the service
//! runs), deploy and rollback. Every rollout is checked over plain HTTP on the
//! published loopback port. Screenshots: `e2e/screenshots/deploy-NN-name.png`;
//! the agent's log: `e2e/screenshots/deploy-agent.log`.
use super::*;
use serde_json::{json, Value};

/// A deployment has this long to finish.
pub(crate) const DEPLOY_WAIT: Duration = Duration::from_secs(90);
/// The agent has this long to connect and report its facts.
pub(crate) const AGENT_WAIT: Duration = Duration::from_secs(45);

/// The test Docker Engine; the test fails (not skips) without it.
pub(crate) fn docker_host() -> Result<String> {
    match std::env::var("SLIPWAY_TEST_DOCKER_HOST") {
        Ok(h) if !h.trim().is_empty() => Ok(h),
        _ => bail!(
            "SLIPWAY_TEST_DOCKER_HOST is not set: the deploy test needs a Docker Engine with the \
             slipway-test/web:v1 and :v2 images (scripts/test starts one; locally: \
             export SLIPWAY_TEST_DOCKER_HOST=unix:///tmp/dk/docker.sock)"
        ),
    }
}

/// Runs the docker CLI against `host`; its trimmed stdout.
pub(crate) fn docker(host: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(std::env::var("DOCKER").unwrap_or_else(|_| "docker".into()))
        .env("DOCKER_HOST", host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A plain HTTP/1.0 GET on loopback: status and body.
fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {text:?}"))?;
    let status = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Waits until `http://127.0.0.1:{port}/` answers 200 with `want`.
pub(crate) async fn expect_served(port: u16, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = tokio::task::spawn_blocking(move || http_get(port, "/")).await?;
        match &got {
            Ok((200, body)) if body.trim() == want => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("http://127.0.0.1:{port}/ should answer {want:?}, got {got:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The running agent and what it leaves behind: killed and removed on drop,
/// so a failing test cleans up too.
pub(crate) struct Agent {
    child: Option<Child>,
    /// The ingress proxy's admin port: names the detached proxy process.
    proxy_admin: u16,
    prefix: String,
    docker_host: String,
    /// Its `--data-dir`, removed after the agent and proxy are gone.
    _data_dir: tempfile::TempDir,
}

impl Agent {
    pub(crate) fn start(
        server: &str,
        token: &str,
        docker_host: &str,
        proxy_admin: u16,
        prefix: &str,
        log: &Path,
    ) -> Result<Agent> {
        let data_dir = tempfile::tempdir()?;
        let bin =
            std::env::var_os("SLIPWAY_BIN").ok_or_else(|| anyhow!("SLIPWAY_BIN is not set"))?;
        let log = std::fs::File::create(log)?;
        let mut cmd = Command::new(&bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SLIPWAY_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("agent")
            .args(["--server", server, "--token", token, "--data-dir"])
            .arg(data_dir.path())
            .args([
                "--docker-host",
                docker_host,
                "--container-prefix",
                prefix,
                "--proxy-admin",
                &format!("127.0.0.1:{proxy_admin}"),
                "--proxy-bind-ip",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting slipway agent")?;
        Ok(Agent {
            child: Some(child),
            proxy_admin,
            prefix: prefix.to_owned(),
            docker_host: docker_host.to_owned(),
            _data_dir: data_dir,
        })
    }

    /// Fails when the agent has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("the agent exited with {status} (see deploy-agent.log)");
            }
        }
        Ok(())
    }

    /// Pids of `… proxy --admin 127.0.0.1:{port} …` processes (the agent
    /// starts the ingress proxy in its own process group; it outlives it).
    fn proxy_pids(&self) -> Vec<String> {
        let admin = format!("127.0.0.1:{}", self.proxy_admin);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().into_owned();
                if !pid.chars().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let is_proxy = args.iter().any(|a| a == "proxy")
                    && args.windows(2).any(|w| w[0] == "--admin" && w[1] == admin);
                is_proxy.then_some(pid)
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in self.proxy_pids() {
            let _ = Command::new("kill").arg(&pid).status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.proxy_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.proxy_pids() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let filter = format!("name={}", self.prefix);
        if let Ok(ids) = docker(&self.docker_host, &["ps", "-aq", "--filter", &filter]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = docker(&self.docker_host, &args);
            }
        }
        // And its environment networks (Docker has address space for a few dozen).
        let nets = docker(
            &self.docker_host,
            &[
                "network",
                "ls",
                "-q",
                "--filter",
                "label=slipway.managed",
                "--filter",
                &filter,
            ],
        );
        if let Ok(nets) = nets {
            let nets: Vec<&str> = nets.split_whitespace().collect();
            if !nets.is_empty() {
                let mut args = vec!["network", "rm"];
                args.extend(nets);
                let _ = docker(&self.docker_host, &args);
            }
        }
    }
}

/// One call to `/api/v1{path}` from the page: with the admin's session (and
/// its CSRF token), or with `bearer` and no cookies.
pub(crate) const API_CALL: &str = r#"
    const [method, path, body, bearer] = args;
    const h = {'Accept': 'application/json'};
    if (body !== null) h['Content-Type'] = 'application/json';
    let credentials = 'same-origin';
    if (bearer) {
        h['Authorization'] = 'Bearer ' + bearer;
        credentials = 'omit';
    } else if (method !== 'GET') {
        const me = await (await fetch('/api/v1/auth/me', {credentials, headers: {'Accept': 'application/json'}})).json();
        h['X-CSRF-Token'] = me.csrf_token;
    }
    const r = await fetch('/api/v1' + path, {method, credentials, headers: h,
        body: body === null ? undefined : JSON.stringify(body)});
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (e) {}
    return {status: r.status, body: json, text};
"#;

/// Calls the API and fails unless it answers 2xx; the JSON body.
pub(crate) async fn api(
    ui: &Ui,
    method: &str,
    path: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> Result<Value> {
    let r = run_js(
        ui,
        API_CALL,
        vec![
            method.into(),
            path.into(),
            body.unwrap_or(Value::Null),
            bearer.map_or(Value::Null, Value::from),
        ],
    )
    .await?;
    if let Some(e) = r.get("error") {
        bail!("{method} {path}: {e}");
    }
    match r["status"].as_u64() {
        Some(s) if (200..300).contains(&s) => Ok(r["body"].clone()),
        _ => bail!("{method} {path} answered {} {}", r["status"], r["text"]),
    }
}

pub(crate) fn id_of(v: &Value) -> Result<String> {
    v["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no id in {v}"))
}

/// On the deployment page: waits (without reloading) until it succeeded;
/// fails at once when it failed, naming the reason and the step log.
pub(crate) async fn expect_deployment_succeeded(ui: &Ui) -> Result<()> {
    let deadline = Instant::now() + DEPLOY_WAIT;
    loop {
        let state = match ui.c.find(Locator::Css(&css("deployment-state"))).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if state.contains("succeeded") {
            return Ok(());
        }
        let over = ["failed", "cancelled", "rejected"]
            .iter()
            .any(|s| state.contains(s));
        if over || Instant::now() > deadline {
            let text = |sel: String| async move {
                match ui.c.find(Locator::Css(&sel)).await {
                    Ok(el) => el.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            };
            let reason = text(css("deployment-reason")).await;
            let steps = text("#step-log".into()).await;
            bail!(
                "the deployment should succeed within {} s, is {state:?}; reason: {reason:?}\nsteps:\n{steps}",
                DEPLOY_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls the API until the deployment succeeded.
pub(crate) async fn api_deployment_succeeded(ui: &Ui, id: &str) -> Result<()> {
    let deadline = Instant::now() + DEPLOY_WAIT;
    loop {
        let d = api(ui, "GET", &format!("/deployments/{id}"), None, None).await?;
        let state = d["state"].as_str().unwrap_or_default().to_owned();
        match state.as_str() {
            "succeeded" => return Ok(()),
            "failed" | "cancelled" | "rejected" => {
                bail!("deployment {id} ended {state}: {}", d["reason"])
            }
            _ if Instant::now() > deadline => {
                bail!(
                    "deployment {id} is still {state} after {} s",
                    DEPLOY_WAIT.as_secs()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Marks the loaded document, so that [`expect_not_reloaded`] can tell a live
/// update from a reload.
pub(crate) async fn mark_page(ui: &Ui) -> Result<()> {
    ui.c.execute("window.__slipwayE2e = true;", vec![]).await?;
    Ok(())
}

/// Fails when the document was reloaded since [`mark_page`].
pub(crate) async fn expect_not_reloaded(ui: &Ui, what: &str) -> Result<()> {
    let marked =
        ui.c.execute("return window.__slipwayE2e === true;", vec![])
            .await?;
    if marked != Value::Bool(true) {
        bail!("the page was reloaded while waiting for {what}");
    }
    Ok(())
}

/// The `data-test` of the host page's container row that runs `image`,
/// serves traffic and is named with the test's prefix.
async fn serving_container(ui: &Ui, prefix: &str, image: &str) -> Result<Option<String>> {
    let rows =
        ui.c.find_all(Locator::Css(&format!("{} tr", css("containers"))))
            .await?;
    for row in rows {
        let Ok(serving) = row.find(Locator::Css(&css("container-serving"))).await else {
            continue; // the header
        };
        let state = row.find(Locator::Css(&css("container-state"))).await?;
        let name = row.attr("data-test").await?.unwrap_or_default();
        if name.starts_with(&format!("container-{prefix}"))
            && serving.text().await?.trim() == "yes"
            && state.text().await?.trim() == "running"
            && row.text().await?.contains(image)
        {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Opens the Deploy panel on the service page, sets the image and submits;
/// then waits on the deployment page until it succeeded.
async fn deploy_image(ui: &mut Ui, service_path: &str, image: &str, shot: &str) -> Result<()> {
    ui.goto(service_path).await?;
    ui.expect_text(&css("service-name"), "web").await?;
    ui.click(&css("deploy")).await?;
    ui.find(&css("deploy-form")).await?;
    // The panel starts from the service's image.
    let prefilled = ui.find("#deploy-image").await?.prop("value").await?;
    if prefilled.as_deref() != Some("slipway-test/web:v1") {
        bail!("#deploy-image should start as slipway-test/web:v1, has {prefilled:?}");
    }
    if image != "slipway-test/web:v1" {
        ui.fill("#deploy-image", image).await?;
    }
    mark_page(ui).await?;
    ui.click(&css("deploy-submit")).await?;
    ui.expect_path_prefix("/deployments/").await?;
    ui.find(&css("deployment-title")).await?;
    // The live step log fills while the deployment runs.
    ui.expect_text_within("#step-log", "healthy", DEPLOY_WAIT)
        .await?;
    expect_deployment_succeeded(ui).await?;
    ui.expect_text("#step-log", "traffic switched").await?;
    ui.find(&css("deployment-outcome")).await?;
    expect_not_reloaded(ui, "the deployment to finish").await?;
    ui.shot(shot).await
}

async fn deploy_scenario(
    ui: &mut Ui,
    docker_host: &str,
    artifacts: &Path,
    agent: &mut Option<Agent>,
) -> Result<()> {
    let published = free_port()?;
    let proxy_admin = free_port()?;
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos()
        ^ std::process::id();
    let prefix = format!("e2e{suffix:x}-");

    // First run: the admin.
    ui.goto("/").await?;
    ui.find(&css("setup-form")).await?;
    ui.fill("#setup-username", USER).await?;
    ui.fill("#setup-password", PASSWORD).await?;
    ui.fill("#setup-confirm", PASSWORD).await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;

    // The rest of the seed through the API.
    let project = api(ui, "POST", "/projects", Some(json!({"name": "shop"})), None).await?;
    let env = api(
        ui,
        "POST",
        &format!("/projects/{}/environments", id_of(&project)?),
        Some(json!({"name": "production"})),
        None,
    )
    .await?;
    let env_id = id_of(&env)?;
    let service = api(
        ui,
        "POST",
        &format!("/environments/{env_id}/services"),
        Some(json!({
            "name": "web",
            "spec": {
                "image": "slipway-test/web:v1",
                "ports": [{"container": 8080, "published": published}],
                "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1,
                                 "timeout_secs": 1, "retries": 10},
            },
        })),
        None,
    )
    .await?;
    let service_id = id_of(&service)?;
    let service_path = format!("/services/{service_id}");

    // 1. A host serving shop / production; its enrollment command, once.
    ui.click_link(&css("nav"), "Hosts").await?;
    ui.expect_path("/hosts").await?;
    ui.fill("#host-name", "worker-1").await?;
    ui.click(&css("host-form-env-shop / production")).await?;
    ui.click(&css("host-submit")).await?;
    ui.expect_text(&css("enroll-command-value"), "--token")
        .await?;
    let command = ui.find(&css("enroll-command-value")).await?.text().await?;
    let token = command
        .split_whitespace()
        .skip_while(|w| *w != "--token")
        .nth(1)
        .ok_or_else(|| anyhow!("no --token in the enrollment command {command:?}"))?
        .to_owned();
    ui.expect_text(&css("host-row-worker-1"), "pending").await?;
    ui.shot("host-added").await?;
    mark_page(ui).await?;
    *agent = Some(Agent::start(
        &ui.base,
        &token,
        docker_host,
        proxy_admin,
        &prefix,
        &artifacts.join("deploy-agent.log"),
    )?);

    // 2. It turns online without a reload; its page shows the facts.
    let online = format!("{} {}", css("host-row-worker-1"), css("host-status"));
    let waited = ui.expect_text_within(&online, "online", AGENT_WAIT).await;
    if let Some(a) = agent.as_mut() {
        a.check_running()?;
    }
    waited?;
    expect_not_reloaded(ui, "the host to come online").await?;
    ui.shot("host-online").await?;
    ui.click_link(&css("host-row-worker-1"), "worker-1").await?;
    ui.expect_text(&css("host-name"), "worker-1").await?;
    ui.expect_text(&css("host-status"), "online").await?;
    let docker_version = docker(docker_host, &["version", "--format", "{{.Server.Version}}"])?;
    ui.expect_text_within(&css("fact-docker"), &docker_version, AGENT_WAIT)
        .await?;
    let host_path = ui.c.current_url().await?.path().to_owned();
    ui.shot("host-facts").await?;

    // 3. Deploy v1 from the dashboard; the live step log; served on P.
    deploy_image(ui, &service_path, "slipway-test/web:v1", "deployed-v1").await?;
    expect_served(published, "v1").await?;

    // 4. Deploy v2.
    deploy_image(ui, &service_path, "slipway-test/web:v2", "deployed-v2").await?;
    expect_served(published, "v2").await?;

    // 5. Roll back to release #1 from the releases table.
    ui.goto(&service_path).await?;
    ui.expect_text(
        &format!("{} {}", css("release-2"), css("current-release")),
        "current",
    )
    .await?;
    mark_page(ui).await?;
    ui.click(&format!("{} {}", css("release-1"), css("rollback-release")))
        .await?;
    ui.expect_path_prefix("/deployments/").await?;
    // Containers are named `…-r{release}-{first 8 of the deployment id}-{replica}`.
    let rollback_id = ui.c.current_url().await?.path()["/deployments/".len()..].to_owned();
    let rollback_container = format!("-r1-{}-", rollback_id.get(..8).unwrap_or(&rollback_id));
    expect_deployment_succeeded(ui).await?;
    expect_not_reloaded(ui, "the rollback to finish").await?;
    ui.expect_text(&css("deployment-release"), "#1").await?;
    expect_served(published, "v1").await?;
    ui.shot("rolled-back").await?;
    ui.goto(&service_path).await?;
    ui.expect_text(
        &format!("{} {}", css("release-1"), css("current-release")),
        "current",
    )
    .await?;
    if ui
        .c
        .find(Locator::Css(&format!(
            "{} {}",
            css("release-2"),
            css("current-release")
        )))
        .await
        .is_ok()
    {
        bail!("release #2 is still marked current after the rollback");
    }
    ui.c.execute(
        "document.querySelector('[data-test=releases]').scrollIntoView()",
        vec![],
    )
    .await?;
    ui.shot("releases-after-rollback").await?;

    // 6. The host's containers; the serving one's logs.
    ui.goto(&host_path).await?;
    // The page follows the agent's status reports (every 5 s): the rollback's
    // container replaces the old ones there a moment after the rollout. A
    // report taken before it may still show release #1's first container
    // running and serving; that one is stopped by now, so wait for the new one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs_link = loop {
        // A row re-rendered under us is simply looked at again.
        if let Ok(Some(name)) = serving_container(ui, &prefix, "slipway-test/web:v1").await {
            if name.contains(&rollback_container) {
                break format!("{} {}", css(&name), css("container-logs"));
            }
        }
        if Instant::now() > deadline {
            let table = match ui.c.find(Locator::Css(&css("host-containers"))).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            bail!("no running, serving slipway-test/web:v1 container {prefix}… on the host page: {table}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ui.shot("host-containers").await?;
    // Something for the container to print, when its server logs requests.
    expect_served(published, "v1").await?;
    ui.click(&logs_link).await?;
    ui.find("#log-view").await?;
    ui.expect_text_within("#logs-status", "Live", Duration::from_secs(20))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while ui.c.find(Locator::Css(&css("log-line"))).await.is_err()
        && ui
            .c
            .find(Locator::Css(&css("log-line-stderr")))
            .await
            .is_err()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // No line at all is fine for a quiet server: the stream is live either way.
    ui.expect_text("#logs-status", "Live").await?;
    ui.shot("container-logs").await?;

    // 7. CI: production needs one approval; a deployer token asks for v2.
    api(
        ui,
        "PATCH",
        &format!("/environments/{env_id}/policy"),
        Some(json!({"required_approvals": 1})),
        None,
    )
    .await?;
    let created = api(
        ui,
        "POST",
        "/tokens",
        Some(json!({"name": "ci", "role": "deployer"})),
        None,
    )
    .await?;
    let secret = created["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("no secret in {created}"))?
        .to_owned();
    let requested = api(
        ui,
        "POST",
        &format!("/services/{service_id}/deployments"),
        Some(json!({"image": "slipway-test/web:v2"})),
        Some(&secret),
    )
    .await?;
    if requested["state"] != "awaiting_approval" {
        bail!("the token's deployment should await approval: {requested}");
    }
    let requested_id = id_of(&requested)?;
    // The admin (another identity) approves it in the dashboard.
    ui.click_link(&css("nav"), "Approvals").await?;
    let row = css("approval-token:ci");
    ui.expect_text(&row, "0 / 1").await?;
    ui.expect_text(&row, "slipway-test/web:v2").await?;
    ui.shot("approval-pending").await?;
    ui.click(&format!("{row} {}", css("approve"))).await?;
    // An optional comment form, when the page asks for one.
    if let Ok(submit) =
        ui.c.wait()
            .at_most(Duration::from_secs(1))
            .for_element(Locator::Css(&format!("{row} {}", css("approve-submit"))))
            .await
    {
        submit.click().await?;
    }
    ui.find(&css("approvals-empty")).await?;
    api_deployment_succeeded(ui, &requested_id).await?;
    expect_served(published, "v2").await?;
    ui.goto(&format!("/deployments/{requested_id}")).await?;
    expect_deployment_succeeded(ui).await?;
    ui.expect_text(&css("deployment-requested-by"), "token:ci")
        .await?;
    ui.shot("approved-deployed").await?;

    // 8. Production becomes protected: deleting, deploying and rolling back
    // there wait for its name, typed; the API refuses deleting what runs.
    api(
        ui,
        "PATCH",
        &format!("/environments/{env_id}"),
        Some(json!({"protected": true})),
        None,
    )
    .await?;
    ui.goto(&service_path).await?;
    ui.expect_text(&css("service-name"), "web").await?;
    ui.click(&css("delete-service")).await?;
    ui.expect_text(&css("confirm-protected"), "production is protected")
        .await?;
    expect_confirm_enabled(ui, false).await?;
    ui.fill(&css("confirm-name"), "prod").await?;
    expect_confirm_enabled(ui, false).await?;
    ui.fill(&css("confirm-name"), "production").await?;
    expect_confirm_enabled(ui, true).await?;
    ui.click(&css("confirm-submit")).await?;
    ui.expect_text(
        &css("form-error"),
        "production is protected and service web runs there",
    )
    .await?;
    ui.expect_path(&service_path).await?;
    ui.shot("protected-delete-refused").await?;

    ui.click(&css("deploy")).await?;
    ui.find(&css("deploy-form")).await?;
    ui.click(&css("deploy-submit")).await?;
    ui.expect_text(&css("confirm-protected"), "Type its name to deploy")
        .await?;
    ui.fill(&css("confirm-name"), "production").await?;
    ui.shot("protected-deploy-confirm").await?;
    ui.click(&css("confirm-submit")).await?;
    ui.expect_path_prefix("/deployments/").await?;
    ui.find(&css("deployment-title")).await?;

    ui.goto(&service_path).await?;
    ui.click(&css("rollback-release")).await?;
    ui.expect_text(&css("confirm-protected"), "Type its name to roll back")
        .await?;
    ui.shot("protected-rollback-confirm").await?;
    ui.click(&css("confirm-cancel")).await?;
    if ui
        .c
        .find(Locator::Css(&css("confirm-protected")))
        .await
        .is_ok()
    {
        bail!("the confirmation should close on Cancel");
    }
    Ok(())
}

/// Whether the typed-name confirmation's button is enabled, waited for.
async fn expect_confirm_enabled(ui: &Ui, enabled: bool) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let button = ui.find(&css("confirm-submit")).await?;
        if button.is_enabled().await? == enabled {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the confirm button should be enabled={enabled}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_hosts_deploy_live_log_and_rollback() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let docker_host = docker_host()?;
    let server = start_server(free_port()?, &[]).await?;
    let browser = start_browser().await?;
    let shots = screenshots_dir("deploy-")?;
    let mut ui = Ui {
        c: browser.client.clone(),
        base: server.url.clone(),
        shots: shots.clone(),
        prefix: "deploy-",
        step: 0,
    };
    let mut agent = None;
    let result = deploy_scenario(&mut ui, &docker_host, &shots, &mut agent).await;
    let result = finish(&mut ui, result).await;
    // Agent, ingress proxy and containers go before the server does.
    drop(agent);
    result
}
