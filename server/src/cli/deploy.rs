//! `slipway deploy`: an HTTP client of `/api/v1` for CI. It needs no server
//! settings. `--service` deploys one service; `--environment` deploys an
//! environment (**Deploy environment**: its changed services, or the chosen
//! ones, in dependency order). Exit codes: 0 accepted (or, with --wait,
//! succeeded: every deployment of the batch), 1 ended failed/cancelled/
//! rejected/rolled back or the server was unreachable, 2 bad input or
//! refused (4xx), 3 timed out waiting.
use reqwest::{Client, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use slipway_types::api::{
    Deployment, DeploymentState, Environment, EnvironmentDeployment, Page, Project, Service,
};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Service id, or `project/env/service`, or a name within --env. With
    /// --environment: the name of a service of it to deploy (repeatable;
    /// default: every changed service).
    #[arg(long, required_unless_present = "environment")]
    pub service: Vec<String>,
    /// Environment id or `project/env` (needed when --service is a bare name).
    #[arg(long, conflicts_with = "environment")]
    pub env: Option<String>,
    /// Deploy an environment (`project/env` or id): its changed services in
    /// dependency order, each waiting for its dependencies.
    #[arg(long)]
    pub environment: Option<String>,
    /// With --environment: deploy the services even when what serves
    /// matches their spec.
    #[arg(long, requires = "environment")]
    pub all: bool,
    /// Image to deploy (default: the service's current image).
    #[arg(long, conflicts_with = "environment")]
    pub image: Option<String>,
    #[arg(long, env = "SLIPWAY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token (deployer or above).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, conflicts_with = "environment")]
    pub git_sha: Option<String>,
    #[arg(long, conflicts_with = "environment")]
    pub git_ref: Option<String>,
    /// Admins: deploy despite a freeze (audited).
    #[arg(long, conflicts_with = "environment")]
    pub override_reason: Option<String>,
    /// Wait until the deployment (every deployment of an environment's
    /// batch) finishes.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 30s, 10m, 1h.
    #[arg(long, default_value = "10m")]
    pub timeout: String,
}

/// A failure with its exit code.
struct Fail(i32, String);

type R<T> = Result<T, Fail>;

fn bad(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

pub async fn run(args: DeployArgs) -> i32 {
    match deploy(args).await {
        Ok(code) => code,
        Err(Fail(code, msg)) => {
            eprintln!("error: {msg}");
            code
        }
    }
}

/// `30s`, `10m`, `1h`, or plain seconds.
pub fn parse_timeout(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        's' => (&s[..s.len() - 1], 1),
        'm' => (&s[..s.len() - 1], 60),
        'h' => (&s[..s.len() - 1], 3600),
        c if c.is_ascii_digit() => (s, 1),
        _ => return None,
    };
    let n: u64 = num.parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(mult)?))
}

struct Api {
    client: Client,
    base: String,
    token: String,
}

impl Api {
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> R<T> {
        let mut rb = self
            .client
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb
            .send()
            .await
            .map_err(|e| Fail(1, format!("cannot reach {}: {e}", self.base)))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| Fail(1, format!("reading the answer: {e}")))?;
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    Some(format!(
                        "{}: {}",
                        v.get("error")?.as_str()?,
                        v.get("message")?.as_str()?
                    ))
                })
                .unwrap_or(text);
            let code = if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
                2
            } else {
                1
            };
            return Err(Fail(code, format!("server answered {status}: {msg}")));
        }
        serde_json::from_str(&text).map_err(|e| Fail(1, format!("unexpected answer: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> R<T> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn project(&self, name: &str) -> R<Project> {
        let all: Page<Project> = self.get("/projects?limit=500").await?;
        all.items
            .into_iter()
            .find(|p| p.name.as_str() == name)
            .ok_or_else(|| bad(format!("no project named {name}")))
    }

    /// `id` or `project/env`.
    async fn environment(&self, spec: &str) -> R<Environment> {
        if let Ok(id) = Uuid::parse_str(spec) {
            return self.get(&format!("/environments/{id}")).await;
        }
        let (p, e) = spec
            .split_once('/')
            .ok_or_else(|| bad(format!("--env {spec}: give an id or project/env")))?;
        let p = self.project(p).await?;
        let envs: Page<Environment> = self
            .get(&format!("/projects/{}/environments?limit=500", p.id))
            .await?;
        envs.items
            .into_iter()
            .find(|x| x.name.as_str() == e)
            .ok_or_else(|| bad(format!("no environment {spec}")))
    }

    async fn service_in(&self, env: &Environment, name: &str) -> R<Service> {
        let svcs: Page<Service> = self
            .get(&format!("/environments/{}/services?limit=500", env.id))
            .await?;
        svcs.items
            .into_iter()
            .find(|s| s.name.as_str() == name)
            .ok_or_else(|| bad(format!("no service {name} in environment {}", env.name)))
    }

    async fn service(&self, spec: &str, env: Option<&str>) -> R<Service> {
        let env = match env {
            Some(e) => Some(self.environment(e).await?),
            None => None,
        };
        if let Ok(id) = Uuid::parse_str(spec) {
            let s: Service = self.get(&format!("/services/{id}")).await?;
            if env.as_ref().is_some_and(|e| e.id != s.environment_id) {
                return Err(bad("--service is not in --env"));
            }
            return Ok(s);
        }
        match (spec.rsplit_once('/'), env) {
            (Some((env_spec, name)), None) => {
                let e = self.environment(env_spec).await?;
                self.service_in(&e, name).await
            }
            (Some((env_spec, name)), Some(e)) => {
                let from_path = self.environment(env_spec).await?;
                if from_path.id != e.id {
                    return Err(bad("--service is not in --env"));
                }
                self.service_in(&e, name).await
            }
            (None, Some(e)) => self.service_in(&e, spec).await,
            (None, None) => Err(bad(
                "--service: give an id, project/env/service, or a name with --env",
            )),
        }
    }
}

async fn deploy(args: DeployArgs) -> R<i32> {
    let timeout = parse_timeout(&args.timeout).ok_or_else(|| {
        bad(format!(
            "invalid --timeout {}: use e.g. 30s, 10m, 1h",
            args.timeout
        ))
    })?;
    if args.token.trim().is_empty() {
        return Err(bad("no API token: pass --token or set SLIPWAY_TOKEN"));
    }
    let url = reqwest::Url::parse(&args.url)
        .map_err(|e| bad(format!("invalid --url {}: {e}", args.url)))?;
    let api = Api {
        client: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Fail(1, e.to_string()))?,
        base: url.as_str().trim_end_matches('/').to_owned(),
        token: args.token.trim().to_owned(),
    };
    if let Some(env) = &args.environment {
        return deploy_environment(&api, env, &args, timeout).await;
    }
    let [service] = args.service.as_slice() else {
        return Err(bad("--service: give one service (or --environment)"));
    };
    let svc = api.service(service, args.env.as_deref()).await?;
    let mut body = json!({});
    for (k, v) in [
        ("image", &args.image),
        ("git_sha", &args.git_sha),
        ("git_ref", &args.git_ref),
        ("override_reason", &args.override_reason),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let d: Deployment = api
        .call(
            reqwest::Method::POST,
            &format!("/services/{}/deployments", svc.id),
            Some(body),
        )
        .await?;
    announce(&d, svc.name.as_str());
    if !args.wait {
        return Ok(0);
    }
    let start = Instant::now();
    let mut last = d.state;
    loop {
        let d: Deployment = api.get(&format!("/deployments/{}", d.id)).await?;
        if d.state != last {
            eprintln!("deployment {}: {}", d.id, d.state.as_str());
            last = d.state;
        }
        if d.state.is_terminal() {
            return Ok(if d.state == DeploymentState::Succeeded {
                0
            } else {
                if let Some(r) = &d.reason {
                    eprintln!("reason: {r}");
                }
                1
            });
        }
        if start.elapsed() >= timeout {
            eprintln!(
                "timed out after {:?}; deployment {} is still {}",
                timeout,
                d.id,
                d.state.as_str()
            );
            return Ok(3);
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(2))).await;
    }
}

/// `--environment`: one **Deploy environment**; with --wait, waits for every
/// deployment of the batch, then prints each one's outcome in order.
async fn deploy_environment(api: &Api, spec: &str, args: &DeployArgs, timeout: Duration) -> R<i32> {
    let env = api.environment(spec).await?;
    let mut body = json!({"all": args.all});
    if !args.service.is_empty() {
        body["services"] = json!(args.service);
    }
    let batch: EnvironmentDeployment = api
        .call(
            reqwest::Method::POST,
            &format!("/environments/{}/deployments", env.id),
            Some(body),
        )
        .await?;
    let svcs: Page<Service> = api
        .get(&format!("/environments/{}/services?limit=500", env.id))
        .await?;
    let name_of = |d: &Deployment| {
        svcs.items
            .iter()
            .find(|s| s.id == d.service_id)
            .map_or_else(|| d.service_id.to_string(), |s| s.name.to_string())
    };
    if !batch.unchanged.is_empty() {
        eprintln!("unchanged: {}", batch.unchanged.join(", "));
    }
    if batch.deployments.is_empty() {
        eprintln!("nothing to deploy in {spec}: every service is unchanged");
        return Ok(0);
    }
    for d in &batch.deployments {
        announce(d, &name_of(d));
    }
    if !args.wait {
        return Ok(0);
    }
    let start = Instant::now();
    let mut last: Vec<Deployment> = batch.deployments;
    loop {
        let mut now = Vec::with_capacity(last.len());
        for d in &last {
            if d.state.is_terminal() {
                now.push(d.clone());
                continue;
            }
            let n: Deployment = api.get(&format!("/deployments/{}", d.id)).await?;
            if n.state != d.state {
                eprintln!("{} ({}): {}", name_of(&n), n.id, n.state.as_str());
            }
            now.push(n);
        }
        last = now;
        if last.iter().all(|d| d.state.is_terminal()) {
            break;
        }
        if start.elapsed() >= timeout {
            eprintln!("timed out after {timeout:?}:");
            for d in &last {
                eprintln!("  {}: {}", name_of(d), d.state.as_str());
            }
            return Ok(3);
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(2))).await;
    }
    let mut code = 0;
    for d in &last {
        match (&d.reason, d.state) {
            (_, DeploymentState::Succeeded) => eprintln!("{}: succeeded", name_of(d)),
            (Some(r), st) => eprintln!("{}: {}: {r}", name_of(d), st.as_str()),
            (None, st) => eprintln!("{}: {}", name_of(d), st.as_str()),
        }
        if d.state != DeploymentState::Succeeded {
            code = 1;
        }
    }
    Ok(code)
}

/// A started deployment: its id on stdout (for scripts), what it is on stderr.
fn announce(d: &Deployment, service: &str) {
    println!("{}", d.id);
    eprintln!(
        "deployment {} of {service} release #{} ({}): {}",
        d.id,
        d.release_number,
        d.image,
        d.state.as_str()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_timeout("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout("soon"), None);
        assert_eq!(parse_timeout(""), None);
    }
}
