//! **Deploy environment** in the dashboard against a real agent on the test
//! Docker Engine (`SLIPWAY_TEST_DOCKER_HOST`).
//!
//! Two services of `slipway-test/web:v1`: `db`, and `api` that `depends_on`
//! db with `service_healthy` and runs a release command. The environment
//! page's button deploys both; the panel lists them in dependency order and
//! follows their states live until both succeeded (db first); api's step log
//! shows the release command's output; the service page shows the stack
//! fields. A second press finds nothing changed; a `depends_on` cycle is
//! refused with a message naming it. Screenshots:
//! `e2e/screenshots/stack-NN-name.png`; the agent's log: `stack-agent.log`.
use super::deploy::{
    api, docker_host, expect_deployment_succeeded, expect_not_reloaded, expect_served, id_of,
    mark_page, Agent, AGENT_WAIT, API_CALL, DEPLOY_WAIT,
};
use super::*;
use serde_json::{json, Value};

/// A busybox web service on `published`, healthy on `/healthz`.
fn web_spec(published: u16) -> Value {
    json!({
        "image": "slipway-test/web:v1",
        "ports": [{"container": 8080, "published": published}],
        "health_check": {"path": "/healthz", "port": 8080, "interval_secs": 1,
                         "timeout_secs": 1, "retries": 10},
    })
}

/// The states of the panel's rows, top to bottom: `(service, state)`.
async fn batch_rows(ui: &Ui) -> Result<Vec<(String, String)>> {
    let mut rows = Vec::new();
    for tr in
        ui.c.find_all(Locator::Css(&format!(
            "{} tbody tr",
            css("env-deployments")
        )))
        .await?
    {
        let name = tr.attr("data-test").await?.unwrap_or_default();
        let state = tr.attr("data-state").await?.unwrap_or_default();
        rows.push((name.trim_start_matches("env-deployment-").to_owned(), state));
    }
    Ok(rows)
}

/// Waits (without reloading) until every row of the panel succeeded; fails
/// at once when one failed. Returns the order in which rows first showed
/// `succeeded`.
async fn expect_batch_succeeded(ui: &Ui, want: &[&str]) -> Result<Vec<String>> {
    let deadline = Instant::now() + DEPLOY_WAIT;
    let mut done: Vec<String> = Vec::new();
    loop {
        // A row re-rendered under us is simply read again.
        let rows = batch_rows(ui).await.unwrap_or_default();
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        if !rows.is_empty() && names != want {
            bail!("the deployments should be listed in dependency order {want:?}, are {names:?}");
        }
        for (name, state) in &rows {
            match state.as_str() {
                "succeeded" if !done.contains(name) => done.push(name.clone()),
                "failed" | "rolled_back" | "cancelled" | "rejected" => {
                    bail!("the deployment of {name} ended {state}")
                }
                _ => {}
            }
        }
        if done.len() == want.len() {
            return Ok(done);
        }
        if Instant::now() > deadline {
            bail!(
                "the environment's deployments should succeed within {} s: {rows:?}",
                DEPLOY_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn stack_scenario(
    ui: &mut Ui,
    docker_host: &str,
    artifacts: &Path,
    agent: &mut Option<Agent>,
) -> Result<()> {
    let (db_port, api_port, proxy_admin) = (free_port()?, free_port()?, free_port()?);
    let suffix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos()
        ^ std::process::id();
    let prefix = format!("e2s{suffix:x}-");

    ui.goto("/").await?;
    ui.find(&css("setup-form")).await?;
    ui.fill("#setup-username", USER).await?;
    ui.fill("#setup-password", PASSWORD).await?;
    ui.fill("#setup-confirm", PASSWORD).await?;
    ui.click(&css("setup-submit")).await?;
    ui.expect_text(&css("username"), USER).await?;

    // The seed through the API: a project, staging, a host and two services.
    let project = api(ui, "POST", "/projects", Some(json!({"name": "shop"})), None).await?;
    let env = api(
        ui,
        "POST",
        &format!("/projects/{}/environments", id_of(&project)?),
        Some(json!({"name": "staging"})),
        None,
    )
    .await?;
    let env_id = id_of(&env)?;
    let db = api(
        ui,
        "POST",
        &format!("/environments/{env_id}/services"),
        Some(json!({"name": "db", "spec": web_spec(db_port)})),
        None,
    )
    .await?;
    let mut api_spec = web_spec(api_port);
    api_spec["depends_on"] = json!({"db": "service_healthy"});
    api_spec["release_command"] = json!({
        "command": ["sh", "-c", "echo migrating the schema; echo schema at v1"],
        "timeout_secs": 60,
    });
    let api_svc = api(
        ui,
        "POST",
        &format!("/environments/{env_id}/services"),
        Some(json!({"name": "api", "spec": api_spec})),
        None,
    )
    .await?;
    let host = api(
        ui,
        "POST",
        "/hosts",
        Some(json!({"name": "worker-1", "environments": [env_id]})),
        None,
    )
    .await?;
    let host_id = id_of(&host)?;
    let enrollment = api(
        ui,
        "POST",
        &format!("/hosts/{host_id}/enrollment"),
        None,
        None,
    )
    .await?;
    let token = enrollment["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in {enrollment}"))?;
    *agent = Some(Agent::start(
        &ui.base,
        token,
        docker_host,
        proxy_admin,
        &prefix,
        &artifacts.join("stack-agent.log"),
    )?);
    let deadline = Instant::now() + AGENT_WAIT;
    loop {
        let h = api(ui, "GET", &format!("/hosts/{host_id}"), None, None).await?;
        if h["status"] == "online" {
            break;
        }
        if let Some(a) = agent.as_mut() {
            a.check_running()?;
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not come online within {} s: {h}",
                AGENT_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 1. The environment page: api waits for db.
    let env_path = format!("/environments/{env_id}");
    ui.goto(&env_path).await?;
    ui.expect_text(&css("service-row-api"), "db (healthy)")
        .await?;
    ui.shot("environment").await?;

    // 2. Deploy environment: both, db first, followed live to `succeeded`.
    mark_page(ui).await?;
    ui.click(&css("deploy-environment")).await?;
    ui.find(&css("env-deployments")).await?;
    ui.expect_text(&css("env-deployment-api"), "db (healthy)")
        .await?;
    ui.shot("environment-deploying").await?;
    let order = expect_batch_succeeded(ui, &["db", "api"]).await?;
    if order.first().map(String::as_str) != Some("db") {
        bail!("db should succeed before api, the panel showed {order:?}");
    }
    ui.expect_text(&css("env-deploy-summary"), "Deployed 2 service(s)")
        .await?;
    expect_not_reloaded(ui, "the environment's deployments").await?;
    ui.shot("environment-deployed").await?;
    expect_served(db_port, "v1").await?;
    expect_served(api_port, "v1").await?;

    // 3. api's deployment: the release command's output in the step log.
    ui.click(&format!(
        "{} {}",
        css("env-deployment-api"),
        css("deployment-link")
    ))
    .await?;
    ui.expect_path_prefix("/deployments/").await?;
    expect_deployment_succeeded(ui).await?;
    ui.expect_text("#step-log", "migrating the schema").await?;
    ui.expect_text("#step-log", "schema at v1").await?;
    ui.expect_text("#step-log", "traffic switched").await?;
    ui.shot("release-command-log").await?;

    // 4. api's service page: the stack fields.
    ui.goto(&format!("/services/{}", id_of(&api_svc)?)).await?;
    ui.expect_text(&css("spec-depends-on"), "db (healthy)")
        .await?;
    ui.expect_text(&css("spec-release-command"), "echo migrating the schema")
        .await?;
    ui.expect_text(&css("spec-strategy"), "start-first (default)")
        .await?;
    ui.expect_text(&css("spec-health-check"), "GET :8080/healthz")
        .await?;
    ui.shot("service-stack-fields").await?;

    // 5. Again: nothing changed.
    ui.goto(&env_path).await?;
    ui.click(&css("deploy-environment")).await?;
    ui.find(&css("env-deploy-nothing")).await?;
    ui.expect_text(&css("env-unchanged"), "api").await?;
    ui.expect_text(&css("env-unchanged"), "db").await?;
    ui.shot("environment-unchanged").await?;

    // 6. db depends on api too: a cycle, refused with a message naming it
    // (by the service update already, or by Deploy environment).
    let db_id = id_of(&db)?;
    let mut db_spec =
        api(ui, "GET", &format!("/services/{db_id}"), None, None).await?["spec"].clone();
    db_spec["depends_on"] = json!({"api": "service_started"});
    let patched = run_js(
        ui,
        API_CALL,
        vec![
            "PATCH".into(),
            format!("/services/{db_id}").into(),
            json!({"spec": db_spec}),
            Value::Null,
        ],
    )
    .await?;
    match patched["status"].as_u64() {
        Some(200) => {
            ui.goto(&env_path).await?;
            ui.click(&css("deploy-environment")).await?;
            ui.expect_text(&css("env-deploy-error"), "cycle").await?;
            ui.expect_text(&css("env-deploy-error"), "api").await?;
            ui.shot("environment-cycle").await?;
        }
        Some(422)
            if patched["text"]
                .as_str()
                .is_some_and(|t| t.contains("cycle")) => {}
        _ => bail!("PATCH of a depends_on cycle answered {patched}"),
    }
    // Both still serve.
    expect_served(db_port, "v1").await?;
    expect_served(api_port, "v1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_deploy_environment_in_dependency_order() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let docker_host = docker_host()?;
    let server = start_server(free_port()?, &[]).await?;
    let browser = start_browser().await?;
    let shots = screenshots_dir("stack-")?;
    let mut ui = Ui {
        c: browser.client.clone(),
        base: server.url.clone(),
        shots: shots.clone(),
        prefix: "stack-",
        step: 0,
    };
    let mut agent = None;
    let result = stack_scenario(&mut ui, &docker_host, &shots, &mut agent).await;
    let result = finish(&mut ui, result).await;
    drop(agent);
    result
}
