//! Rollout / Revert / Reconcile / logs: the orchestration of Docker and the
//! ingress proxy for one host.
use crate::docker::{Docker, DockerError, ManagedContainer};
use crate::spec::{self, PortKey};
use futures_util::StreamExt;
use slipway_proxy::{ProxyClient, ProxyClientError, RouteSpec, RouteStatus};
use slipway_types::agent::{
    AgentError, AgentErrorCode, AgentEvent, AgentResponse, ContainerHealth, ContainerState,
    ContainerStats, ContainerStatus, ReconcilePlan, RevertPlan, RolloutPhase, RolloutPlan,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Health wait when a plan does not say (Revert, Reconcile).
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a container without any health check must stay running.
const RUNNING_GRACE: Duration = Duration::from_secs(1);
/// Health probes of a starting container: often, so a deploy is as quick as the
/// container (one probe is a loopback GET and an inspect).
const POLL: Duration = Duration::from_millis(25);
const LOG_LINES_ON_FAILURE: u32 = 20;

/// Where step events of a request go.
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<AgentEvent>>,
}

impl Progress {
    pub fn new(tx: mpsc::UnboundedSender<AgentEvent>) -> Self {
        Self { tx: Some(tx) }
    }

    /// Events are only logged.
    pub fn discard() -> Self {
        Self { tx: None }
    }

    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(step = %message);
        if let Some(tx) = &self.tx {
            let _ = tx.send(AgentEvent::Step { message });
        }
    }

    fn event(&self, event: AgentEvent) -> bool {
        match &self.tx {
            Some(tx) => tx.send(event).is_ok(),
            None => true,
        }
    }
}

/// Runs plans on one host.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    /// `None` = `--no-proxy`.
    pub proxy: Option<ProxyClient>,
    pub host_id: Uuid,
    pub prefix: String,
    pub proxy_bind_ip: IpAddr,
    /// Called before each request that needs the proxy (starts it if it died).
    pub proxy_guard: Option<Arc<crate::proxy::ProxyLauncher>>,
}

fn err(code: AgentErrorCode, message: impl Into<String>) -> AgentError {
    AgentError::new(code, message)
}

fn docker_err(e: DockerError) -> AgentError {
    match e {
        DockerError::NotFound(m) => err(AgentErrorCode::NotFound, m),
        other => err(AgentErrorCode::Docker, other.to_string()),
    }
}

fn proxy_err(e: ProxyClientError) -> AgentError {
    match e {
        ProxyClientError::PortConflict(m) => err(AgentErrorCode::PortConflict, m),
        other => err(AgentErrorCode::Proxy, other.to_string()),
    }
}

fn cancelled() -> AgentError {
    err(AgentErrorCode::Cancelled, "cancelled")
}

/// Runs `fut` unless `cancel` fires first.
async fn or_cancel<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, AgentError>>,
) -> Result<T, AgentError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(cancelled()),
        r = fut => r,
    }
}

/// Upstream addresses of the given containers for one container port.
fn upstreams(
    containers: &[ManagedContainer],
    container_port: u16,
) -> Result<Vec<SocketAddr>, AgentError> {
    containers
        .iter()
        .map(|c| {
            c.host_ports
                .get(&PortKey::tcp(container_port))
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .ok_or_else(|| {
                    err(
                        AgentErrorCode::Docker,
                        format!(
                            "container {} publishes no host port for {container_port}/tcp",
                            c.name
                        ),
                    )
                })
        })
        .collect()
}

/// Routes a set of containers should have: name → spec.
type RouteSet = BTreeMap<String, RouteSpec>;

impl Engine {
    fn proxy(&self) -> Result<&ProxyClient, AgentError> {
        self.proxy.as_ref().ok_or_else(|| {
            err(
                AgentErrorCode::InvalidSpec,
                "this agent runs without the ingress proxy (--no-proxy)",
            )
        })
    }

    async fn ensure_proxy(&self) -> Result<(), AgentError> {
        if let Some(g) = &self.proxy_guard {
            g.ensure_running()
                .await
                .map_err(|e| err(AgentErrorCode::Proxy, e.to_string()))?;
        }
        Ok(())
    }

    async fn service_containers(
        &self,
        service_id: Uuid,
    ) -> Result<Vec<ManagedContainer>, AgentError> {
        self.docker
            .list_managed(self.host_id, Some(service_id))
            .await
            .map_err(docker_err)
    }

    /// Routes of this service currently in the proxy.
    async fn current_routes(&self, service_id: Uuid) -> Result<Vec<RouteStatus>, AgentError> {
        let Some(proxy) = &self.proxy else {
            return Ok(Vec::new());
        };
        let p = spec::route_prefix(&self.prefix, service_id);
        Ok(proxy
            .routes()
            .await
            .map_err(proxy_err)?
            .into_iter()
            .filter(|r| r.name.starts_with(&p))
            .collect())
    }

    /// Routes that make `containers` (one deployment) serve.
    fn desired_routes(
        &self,
        service_id: Uuid,
        containers: &[ManagedContainer],
    ) -> Result<RouteSet, AgentError> {
        let mut out = RouteSet::new();
        let Some(first) = containers.first() else {
            return Ok(out);
        };
        for &(container_port, published) in &first.agent.publish {
            out.insert(
                spec::route_name(&self.prefix, service_id, published),
                RouteSpec {
                    listen: SocketAddr::new(self.proxy_bind_ip, published),
                    upstreams: upstreams(containers, container_port)?,
                },
            );
        }
        Ok(out)
    }

    /// Puts `routes`; on failure restores what was there before and returns the error.
    async fn switch_routes(
        &self,
        routes: &RouteSet,
        before: &[RouteStatus],
    ) -> Result<(), AgentError> {
        if routes.is_empty() {
            return Ok(());
        }
        let proxy = self.proxy()?;
        let mut done: Vec<&String> = Vec::new();
        for (name, spec) in routes {
            if let Err(e) = proxy.put_route(name, spec).await {
                for n in done {
                    self.restore_route(n, before).await;
                }
                let mut e = proxy_err(e);
                if e.code == AgentErrorCode::PortConflict {
                    e.message = format!(
                        "published port {} is in use on this host: {}",
                        spec.listen.port(),
                        e.message
                    );
                }
                return Err(e);
            }
            done.push(name);
        }
        Ok(())
    }

    async fn restore_route(&self, name: &str, before: &[RouteStatus]) {
        let Some(proxy) = &self.proxy else { return };
        let result = match before.iter().find(|r| r.name == name) {
            Some(r) => proxy
                .put_route(
                    name,
                    &RouteSpec {
                        listen: r.listen,
                        upstreams: r.upstreams.iter().map(|u| u.addr).collect(),
                    },
                )
                .await
                .map(|_| ()),
            None => proxy.delete_route(name).await,
        };
        if let Err(e) = result {
            tracing::warn!(route = name, error = %e, "could not restore proxy route");
        }
    }

    /// Drains upstreams of `before` that are no longer in `routes`.
    async fn drain_old(
        &self,
        routes: &RouteSet,
        before: &[RouteStatus],
        timeout: Duration,
        progress: &Progress,
    ) {
        let Some(proxy) = &self.proxy else { return };
        for r in before {
            let Some(new) = routes.get(&r.name) else {
                continue;
            };
            for u in &r.upstreams {
                if new.upstreams.contains(&u.addr) {
                    continue;
                }
                match proxy.drain(&r.name, u.addr, timeout).await {
                    Ok(d) if d.drained => {
                        progress.step(format!("drained {} on {}", u.addr, r.name))
                    }
                    Ok(d) => progress.step(format!(
                        "drain of {} timed out with {} request(s) in flight",
                        u.addr, d.in_flight
                    )),
                    Err(ProxyClientError::NotFound(_)) => {}
                    Err(e) => tracing::warn!(route = %r.name, error = %e, "drain failed"),
                }
            }
        }
    }

    /// Deletes routes of the service that are not in `keep`.
    async fn delete_stale_routes(
        &self,
        keep: &RouteSet,
        before: &[RouteStatus],
        actions: &mut Vec<String>,
    ) {
        let Some(proxy) = &self.proxy else { return };
        for r in before {
            if keep.contains_key(&r.name) {
                continue;
            }
            match proxy.delete_route(&r.name).await {
                Ok(()) | Err(ProxyClientError::NotFound(_)) => {
                    actions.push(format!("removed route {}", r.name))
                }
                Err(e) => tracing::warn!(route = %r.name, error = %e, "could not remove route"),
            }
        }
    }

    async fn remove_all(&self, ids: &[String]) {
        for id in ids {
            if let Err(e) = self.docker.remove(id).await {
                tracing::warn!(container = %id, error = %e, "could not remove container");
            }
        }
    }

    /// Removes the new containers after a failure; `e` gets the logs of the
    /// container that failed if it has none yet.
    async fn abort_rollout(
        &self,
        created: &[String],
        mut e: AgentError,
        failed: Option<&str>,
    ) -> AgentError {
        if e.logs.is_empty() {
            if let Some(id) = failed {
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
            }
        }
        self.remove_all(created).await;
        e
    }

    // ------------------------------------------------------------ health

    /// Waits until the container is healthy. Errors carry the container's logs.
    async fn wait_healthy(&self, id: &str, timeout: Duration) -> Result<Duration, AgentError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| err(AgentErrorCode::Docker, e.to_string()))?;
        let mut running_since: Option<Instant> = None;
        let mut last_problem = String::from("no answer yet");
        loop {
            let c = self.docker.inspect(id).await.map_err(docker_err)?;
            let crashed = matches!(
                c.state,
                ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting
            ) || c.restart_count > 0;
            if crashed {
                let mut e = err(
                    AgentErrorCode::Crashed,
                    match c.exit_code {
                        Some(code) if c.state != ContainerState::Running => {
                            format!(
                                "container {} exited with code {code} while starting",
                                c.name
                            )
                        }
                        _ => format!("container {} exited while starting", c.name),
                    },
                );
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                return Err(e);
            }
            if c.is_running() {
                let healthy = if let Some((port, path)) = &c.agent.health {
                    match c.host_ports.get(&PortKey::tcp(*port)) {
                        Some(host_port) => {
                            let url = format!("http://127.0.0.1:{host_port}{path}");
                            match http.get(&url).send().await {
                                Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                                    true
                                }
                                Ok(r) => {
                                    last_problem = format!("GET {path} answered {}", r.status());
                                    false
                                }
                                Err(e) => {
                                    last_problem =
                                        format!("GET {path} failed: {}", e.without_url());
                                    false
                                }
                            }
                        }
                        None => {
                            return Err(err(
                                AgentErrorCode::Docker,
                                format!("health check port {port} is not published"),
                            ))
                        }
                    }
                } else {
                    match c.health {
                        ContainerHealth::Healthy => true,
                        ContainerHealth::Unhealthy => {
                            let mut e = err(
                                AgentErrorCode::Unhealthy,
                                format!(
                                    "container {} reports unhealthy (image HEALTHCHECK)",
                                    c.name
                                ),
                            );
                            e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                            return Err(e);
                        }
                        ContainerHealth::Starting => {
                            last_problem = "image HEALTHCHECK still starting".into();
                            false
                        }
                        ContainerHealth::None => {
                            let since = *running_since.get_or_insert_with(Instant::now);
                            last_problem = "not running for 1 s yet".into();
                            since.elapsed() >= RUNNING_GRACE
                        }
                    }
                };
                if healthy {
                    return Ok(start.elapsed());
                }
            }
            if Instant::now() >= deadline {
                let mut e = err(
                    AgentErrorCode::Unhealthy,
                    format!(
                        "container {} not healthy after {} s: {last_problem}",
                        c.name,
                        timeout.as_secs()
                    ),
                );
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                return Err(e);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for all containers; the first failure wins.
    async fn wait_all_healthy(
        &self,
        containers: &[(String, String)],
        timeout: Duration,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), (AgentError, Option<String>)> {
        let waits = containers.iter().map(|(id, name)| async move {
            match self.wait_healthy(id, timeout).await {
                Ok(took) => {
                    progress.step(format!("{name} healthy after {:.1} s", took.as_secs_f64()));
                    Ok(())
                }
                Err(e) => Err((e, Some(id.clone()))),
            }
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err((cancelled(), None)),
            r = futures_util::future::try_join_all(waits) => r.map(|_| ()),
        }
    }

    // ------------------------------------------------------------ rollout

    /// The whole rollout, retiring the old containers before it answers.
    pub async fn rollout(
        &self,
        plan: &RolloutPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let (answer, retire) = self.rollout_serving(plan, progress, cancel).await?;
        if let Some(r) = retire {
            self.retire(r, progress).await;
        }
        Ok(answer)
    }

    /// Rolls out up to the moment the new containers serve (and the old ones
    /// are drained). What remains — stopping and pruning the old containers —
    /// is returned as a [`Retire`], so the caller can answer first: the
    /// deployment is live, and with several hosts the next one can switch.
    pub async fn rollout_serving(
        &self,
        plan: &RolloutPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(AgentResponse, Option<Retire>), AgentError> {
        let specs = spec::create_specs(&self.prefix, self.host_id, plan, self.proxy.is_some())
            .map_err(|e| err(AgentErrorCode::InvalidSpec, e.0))?;
        let service_id = plan.service.service_id;
        let image = plan.container.image.as_str();
        let publishes = plan.container.ports.iter().any(|p| p.published.is_some());
        if publishes {
            self.ensure_proxy().await?;
        }

        let switch_only = plan.phase == RolloutPhase::Switch;
        // (a) image
        or_cancel(cancel, async {
            if switch_only {
                return Ok(());
            }
            if self.docker.image_present(image).await.map_err(docker_err)? {
                progress.step(format!("image {image} present"));
                return Ok(());
            }
            progress.step(format!("pulling image {image}…"));
            self.docker
                .pull(image, plan.registry_auth.as_ref())
                .await
                .map_err(|e| {
                    err(
                        AgentErrorCode::ImageMissing,
                        format!("cannot pull {image}: {e}"),
                    )
                })?;
            progress.step(format!("pulled image {image}"));
            Ok(())
        })
        .await?;

        let existing = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;

        // The same deployment again (e.g. resent after a reconnect).
        let same: Vec<ManagedContainer> = existing
            .iter()
            .filter(|c| c.deployment_id == Some(plan.deployment_id))
            .cloned()
            .collect();
        if !same.is_empty() {
            let all_running = same.len() == specs.len() && same.iter().all(|c| c.is_running());
            let routed = all_running
                && self.desired_routes(service_id, &same).is_ok_and(|want| {
                    want.iter().all(|(name, spec)| {
                        routes_before.iter().any(|r| {
                            &r.name == name
                                && r.upstreams.iter().map(|u| u.addr).collect::<BTreeSet<_>>()
                                    == spec.upstreams.iter().copied().collect()
                        })
                    })
                });
            if routed && plan.phase == RolloutPhase::Prepare {
                // Resent prepare (or a service without published ports, which
                // has no routes to compare): the containers are ready.
                progress.step("prepared: new containers healthy, traffic not switched yet");
                let answer = AgentResponse::Prepared {
                    containers: same.iter().map(|c| c.id.clone()).collect(),
                };
                return Ok((answer, None));
            }
            if routed {
                progress.step("deployment serving on this host");
                let old: Vec<ManagedContainer> = existing
                    .into_iter()
                    .filter(|c| c.deployment_id != Some(plan.deployment_id))
                    .collect();
                let previous = spec::previous_serving(&deployment_infos(&old), plan.deployment_id);
                let answer = AgentResponse::RolledOut {
                    containers: same.iter().map(|c| c.id.clone()).collect(),
                    previous_deployment_id: previous,
                };
                // The old containers are retired here too (idempotent when a
                // resent request finds them stopped already): a service without
                // published ports is switched by this very answer.
                let retire = Retire {
                    old,
                    deployment_id: plan.deployment_id,
                    keep_previous: plan.keep_previous as usize,
                };
                return Ok((answer, Some(retire)));
            }
            if !(switch_only && all_running) {
                progress.step("removing containers of an earlier attempt of this deployment");
                let ids: Vec<String> = same.iter().map(|c| c.id.clone()).collect();
                self.remove_all(&ids).await;
            }
        }
        let prepared: Option<Vec<String>> = if switch_only {
            let ready = same.len() == specs.len() && same.iter().all(|c| c.is_running());
            if !ready {
                return Err(err(
                    AgentErrorCode::NotFound,
                    "this deployment's prepared containers are gone from this host",
                ));
            }
            Some(same.iter().map(|c| c.id.clone()).collect())
        } else {
            None
        };
        let old: Vec<ManagedContainer> = existing
            .into_iter()
            .filter(|c| c.deployment_id != Some(plan.deployment_id))
            .collect();

        // (b) create + start (a `switch` uses the prepared containers)
        let mut created: Vec<String> = prepared.clone().unwrap_or_default();
        let mut names: Vec<(String, String)> = Vec::new();
        for s in specs.iter().filter(|_| prepared.is_none()) {
            if cancel.is_cancelled() {
                return Err(self.abort_rollout(&created, cancelled(), None).await);
            }
            // A leftover with the same name (e.g. from a crash) is replaced:
            // only then is it worth a second round trip.
            let first = match self.docker.create(s).await {
                Err(DockerError::Conflict(m)) => {
                    tracing::info!(container = %s.name, conflict = %m, "replacing a leftover container");
                    if let Err(e) = self.docker.remove(&s.name).await {
                        tracing::warn!(error = %e, "could not remove the leftover container");
                    }
                    None
                }
                other => Some(other),
            };
            let result = match first {
                Some(r) => r,
                None => self.docker.create(s).await,
            };
            match result {
                Ok(id) => {
                    progress.step(format!("created container {}", s.name));
                    created.push(id.clone());
                    names.push((id, s.name.clone()));
                }
                Err(e) => {
                    let e = match e {
                        DockerError::NotFound(m) => err(AgentErrorCode::ImageMissing, m),
                        other => err(
                            AgentErrorCode::Docker,
                            format!("cannot create {}: {other}", s.name),
                        ),
                    };
                    return Err(self.abort_rollout(&created, e, None).await);
                }
            }
        }
        for (id, name) in &names {
            if let Err(e) = self.docker.start(id).await {
                let e = err(AgentErrorCode::Crashed, format!("cannot start {name}: {e}"));
                return Err(self.abort_rollout(&created, e, Some(id)).await);
            }
            progress.step(format!("started container {name}"));
        }

        // (c) wait healthy (nothing to wait for on a switch: `names` is empty)
        let timeout = Duration::from_secs(u64::from(plan.health_timeout_secs.max(1)));
        if let Err((e, failed)) = self
            .wait_all_healthy(&names, timeout, progress, cancel)
            .await
        {
            progress.step(format!(
                "rollout failed: {}; removing new containers",
                e.message
            ));
            return Err(self.abort_rollout(&created, e, failed.as_deref()).await);
        }

        if plan.phase == RolloutPhase::Prepare {
            progress.step("prepared: new containers healthy, traffic not switched yet");
            let answer = AgentResponse::Prepared {
                containers: created,
            };
            return Ok((answer, None));
        }

        // (d) switch traffic
        let mut new_containers = Vec::new();
        for id in &created {
            match self.docker.inspect(id).await {
                Ok(c) => new_containers.push(c),
                Err(e) => return Err(self.abort_rollout(&created, docker_err(e), None).await),
            }
        }
        let routes = match self.desired_routes(service_id, &new_containers) {
            Ok(r) => r,
            Err(e) => return Err(self.abort_rollout(&created, e, None).await),
        };
        if cancel.is_cancelled() {
            return Err(self.abort_rollout(&created, cancelled(), None).await);
        }
        if let Err(e) = self.switch_routes(&routes, &routes_before).await {
            progress.step(format!("switching traffic failed: {}", e.message));
            return Err(self.abort_rollout(&created, e, None).await);
        }
        // From here on the new deployment serves: no more aborts.
        if !routes.is_empty() {
            progress.step(format!(
                "traffic switched to the new containers ({})",
                routes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let mut ignored = Vec::new();
        self.delete_stale_routes(&routes, &routes_before, &mut ignored)
            .await;

        // (e) drain + stop old
        let drain = Duration::from_secs(u64::from(plan.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;
        let deps = deployment_infos(&old);
        let previous = spec::previous_serving(&deps, plan.deployment_id);
        let answer = AgentResponse::RolledOut {
            containers: created,
            previous_deployment_id: previous,
        };
        let retire = Retire {
            old,
            deployment_id: plan.deployment_id,
            keep_previous: plan.keep_previous as usize,
        };
        Ok((answer, Some(retire)))
    }

    /// Stops the old containers (kept for rollback) and removes those beyond
    /// the newest `keep_previous` earlier deployments.
    pub async fn retire(&self, r: Retire, progress: &Progress) {
        let deps = deployment_infos(&r.old);
        // Concurrently: each stop may take the engine's stop timeout.
        let stops = r
            .old
            .iter()
            .filter(|c| c.is_running() || c.state == ContainerState::Restarting)
            .map(|c| async move {
                match self.docker.stop(&c.id).await {
                    Ok(()) => progress.step(format!("stopped old container {}", c.name)),
                    // Pruned meanwhile by the retire of an earlier rollout
                    // (this list was read before that one finished).
                    Err(DockerError::NotFound(_)) => {}
                    Err(e) => {
                        progress.step(format!("could not stop old container {}: {e}", c.name))
                    }
                }
            });
        futures_util::future::join_all(stops).await;
        let prune = spec::deployments_to_prune(&deps, r.deployment_id, r.keep_previous);
        for c in r
            .old
            .iter()
            .filter(|c| c.deployment_id.is_none_or(|d| prune.contains(&d)))
        {
            match self.docker.remove(&c.id).await {
                Ok(()) => progress.step(format!("removed old container {}", c.name)),
                Err(e) => progress.step(format!("could not remove old container {}: {e}", c.name)),
            }
        }
        progress.step("rollout complete");
    }

    // ------------------------------------------------------------ revert

    pub async fn revert(
        &self,
        plan: &RevertPlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let service_id = plan.service.service_id;
        if self.proxy.is_some() {
            self.ensure_proxy().await?;
        }
        let all = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;
        let failed: Vec<&ManagedContainer> = all
            .iter()
            .filter(|c| c.deployment_id == Some(plan.failed_deployment_id))
            .collect();
        let restore: Vec<&ManagedContainer> = match plan.restore_deployment_id {
            Some(d) => all.iter().filter(|c| c.deployment_id == Some(d)).collect(),
            None => Vec::new(),
        };
        if plan.restore_deployment_id.is_some() && restore.is_empty() {
            progress.step("no kept containers of the deployment to restore on this host");
        }

        let mut restored = Vec::new();
        if !restore.is_empty() {
            let mut ids = Vec::new();
            for c in &restore {
                if !c.is_running() {
                    or_cancel(cancel, async {
                        self.docker.start(&c.id).await.map_err(docker_err)
                    })
                    .await?;
                    progress.step(format!("started kept container {}", c.name));
                }
                ids.push((c.id.clone(), c.name.clone()));
            }
            if let Err((e, _)) = self
                .wait_all_healthy(&ids, DEFAULT_HEALTH_TIMEOUT, progress, cancel)
                .await
            {
                // Leave the failed deployment serving; stop what we started.
                for c in restore.iter().filter(|c| !c.is_running()) {
                    let _ = self.docker.stop(&c.id).await;
                }
                return Err(e);
            }
            for (id, _) in &ids {
                restored.push(self.docker.inspect(id).await.map_err(docker_err)?);
            }
        }
        let routes = self.desired_routes(service_id, &restored)?;
        self.switch_routes(&routes, &routes_before).await?;
        if !routes.is_empty() {
            progress.step("traffic switched back");
        }
        let mut ignored = Vec::new();
        self.delete_stale_routes(&routes, &routes_before, &mut ignored)
            .await;
        let drain = Duration::from_secs(u64::from(plan.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;
        for c in failed {
            match self.docker.remove(&c.id).await {
                Ok(()) => progress.step(format!("removed container {}", c.name)),
                Err(e) => progress.step(format!("could not remove container {}: {e}", c.name)),
            }
        }
        progress.step("revert complete");
        Ok(AgentResponse::Reverted {
            containers: restored.into_iter().map(|c| c.id).collect(),
        })
    }

    // ------------------------------------------------------------ reconcile

    /// Converges one service; `actions` gets one line per change.
    pub async fn reconcile_service(
        &self,
        desired: &slipway_types::agent::DesiredService,
        progress: &Progress,
        cancel: &CancellationToken,
        actions: &mut Vec<String>,
    ) -> Result<(), AgentError> {
        let service_id = desired.service.service_id;
        let all = self.service_containers(service_id).await?;
        let routes_before = self.current_routes(service_id).await?;
        let keep: HashSet<Uuid> = desired.keep.iter().copied().collect();

        let mut serving = Vec::new();
        if let Some(d) = desired.serving {
            let mine: Vec<&ManagedContainer> =
                all.iter().filter(|c| c.deployment_id == Some(d)).collect();
            if mine.is_empty() {
                actions.push(format!(
                    "cannot serve deployment {d}: none of its containers exist on this host"
                ));
            }
            let mut started = Vec::new();
            for c in &mine {
                if !c.is_running() {
                    or_cancel(cancel, async {
                        self.docker.start(&c.id).await.map_err(docker_err)
                    })
                    .await?;
                    actions.push(format!("started {}", c.name));
                    started.push((c.id.clone(), c.name.clone()));
                }
            }
            if !started.is_empty() {
                self.wait_all_healthy(&started, DEFAULT_HEALTH_TIMEOUT, progress, cancel)
                    .await
                    .map_err(|(e, _)| e)?;
            }
            for c in &mine {
                serving.push(self.docker.inspect(&c.id).await.map_err(docker_err)?);
            }
        }
        let routes = if self.proxy.is_some() {
            self.desired_routes(service_id, &serving)?
        } else {
            RouteSet::new()
        };
        for (name, want) in &routes {
            let have = routes_before.iter().find(|r| &r.name == name);
            let same = have.is_some_and(|r| {
                r.listen == want.listen
                    && r.upstreams.iter().map(|u| u.addr).collect::<BTreeSet<_>>()
                        == want.upstreams.iter().copied().collect()
            });
            if !same {
                let one: RouteSet = [(name.clone(), want.clone())].into_iter().collect();
                self.switch_routes(&one, &routes_before).await?;
                actions.push(format!(
                    "routed {name} to {} container(s)",
                    want.upstreams.len()
                ));
            }
        }
        self.delete_stale_routes(&routes, &routes_before, actions)
            .await;
        let drain = Duration::from_secs(u64::from(desired.drain_timeout_secs));
        self.drain_old(&routes, &routes_before, drain, progress)
            .await;

        for c in &all {
            let dep = c.deployment_id;
            if dep.is_some() && dep == desired.serving {
                continue;
            }
            if dep.is_some_and(|d| keep.contains(&d)) {
                if c.is_running() || c.state == ContainerState::Restarting {
                    self.docker.stop(&c.id).await.map_err(docker_err)?;
                    actions.push(format!("stopped {}", c.name));
                }
                continue;
            }
            self.docker.remove(&c.id).await.map_err(docker_err)?;
            actions.push(format!("removed {}", c.name));
        }
        Ok(())
    }

    pub async fn reconcile(
        &self,
        plan: &ReconcilePlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        if self.proxy.is_some() {
            self.ensure_proxy().await?;
        }
        let mut actions = Vec::new();
        for s in &plan.services {
            if cancel.is_cancelled() {
                return Err(cancelled());
            }
            self.reconcile_service(s, progress, cancel, &mut actions)
                .await?;
        }
        for a in &actions {
            progress.step(a.clone());
        }
        Ok(AgentResponse::Reconciled { actions })
    }

    // ------------------------------------------------------------ logs & status

    pub async fn logs(
        &self,
        container_id: &str,
        tail: u32,
        follow: bool,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let c = self
            .docker
            .inspect(container_id)
            .await
            .map_err(docker_err)?;
        let ours = self
            .docker
            .list_managed(self.host_id, c.service_id)
            .await
            .map_err(docker_err)?
            .iter()
            .any(|m| m.id == c.id);
        if !ours {
            return Err(err(
                AgentErrorCode::NotFound,
                format!("container {container_id} is not managed by this host"),
            ));
        }
        let mut stream = Box::pin(self.docker.log_stream(&c.id, tail, follow));
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                item = stream.next() => match item {
                    Some(Ok((stream, line))) => {
                        if !progress.event(AgentEvent::Log { stream, line }) {
                            break;
                        }
                    }
                    Some(Err(e)) => return Err(docker_err(e)),
                    None => break,
                }
            }
        }
        Ok(AgentResponse::LogsEnded)
    }

    /// This host's containers and their resource use.
    pub async fn status(&self) -> Result<(Vec<ContainerStatus>, Vec<ContainerStats>), AgentError> {
        let containers = self
            .docker
            .list_managed(self.host_id, None)
            .await
            .map_err(docker_err)?;
        let routed: HashSet<SocketAddr> = match &self.proxy {
            Some(p) => match p.routes().await {
                Ok(routes) => routes
                    .iter()
                    .filter(|r| r.name.starts_with(&self.prefix))
                    .flat_map(|r| r.upstreams.iter().map(|u| u.addr))
                    .collect(),
                Err(e) => {
                    tracing::debug!(error = %e, "proxy routes unavailable for status");
                    HashSet::new()
                }
            },
            None => HashSet::new(),
        };
        // Containers with Slipway's HTTP check report what one probe says
        // now (Docker knows nothing of that check).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(1))
            .build()
            .ok();
        let probes = containers.iter().map(|c| {
            let http = http.clone();
            async move {
                let (Some(http), Some((port, path))) = (http, &c.agent.health) else {
                    return c.health;
                };
                let Some(host_port) = c.host_ports.get(&PortKey::tcp(*port)) else {
                    return c.health;
                };
                if !c.is_running() {
                    return c.health;
                }
                match http
                    .get(format!("http://127.0.0.1:{host_port}{path}"))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                        ContainerHealth::Healthy
                    }
                    _ => ContainerHealth::Unhealthy,
                }
            }
        });
        let health = futures_util::future::join_all(probes).await;
        let mut statuses = Vec::new();
        for (c, health) in containers.iter().zip(health) {
            let (Some(service_id), Some(deployment_id)) = (c.service_id, c.deployment_id) else {
                continue;
            };
            let serving = c.is_running()
                && c.host_ports
                    .values()
                    .any(|p| routed.contains(&SocketAddr::from(([127, 0, 0, 1], *p))));
            statuses.push(ContainerStatus {
                id: c.id.clone(),
                name: c.name.clone(),
                service_id,
                deployment_id,
                release_number: c.release_number,
                image: c.image.clone(),
                state: c.state,
                health,
                serving,
                created_at: c.created_at,
            });
        }
        let running: Vec<(String, String)> = containers
            .iter()
            .filter(|c| c.is_running())
            .map(|c| (c.id.clone(), c.name.clone()))
            .collect();
        let mut samples = Vec::new();
        // Each one-shot sample takes about a second on the engine side: 8 at a time.
        for chunk in running.chunks(8) {
            let mut set = tokio::task::JoinSet::new();
            for (id, name) in chunk.iter().cloned() {
                let docker = self.docker.clone();
                set.spawn(async move {
                    match docker.stats(&id).await {
                        Ok(Some(s)) => Some(ContainerStats {
                            id,
                            cpu_percent: s.cpu_percent,
                            memory_bytes: s.memory_bytes,
                            memory_limit_bytes: s.memory_limit_bytes,
                        }),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::debug!(container = %name, error = %e, "no stats");
                            None
                        }
                    }
                });
            }
            while let Some(r) = set.join_next().await {
                if let Ok(Some(s)) = r {
                    samples.push(s);
                }
            }
        }
        Ok((statuses, samples))
    }
}

/// What a rollout leaves to do once the new containers serve.
pub struct Retire {
    old: Vec<ManagedContainer>,
    deployment_id: Uuid,
    keep_previous: usize,
}

fn deployment_infos(containers: &[ManagedContainer]) -> Vec<spec::DeploymentInfo> {
    let items: Vec<(Uuid, i64, i64, bool)> = containers
        .iter()
        .filter_map(|c| {
            c.deployment_id.map(|d| {
                (
                    d,
                    c.release_number,
                    c.created_at.timestamp(),
                    c.is_running(),
                )
            })
        })
        .collect();
    spec::group_deployments(&items)
}
