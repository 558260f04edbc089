//! Pure pieces of the orchestration: names, labels, container specs, which
//! deployments to prune, route names. No IO, unit-tested.
use crate::docker::{CreateSpec, FixedPort, ManagedNetwork, MountedFile, NetworkSpec, Restart};
use slipway_types::agent::{
    labels, ContainerSpec, RolloutPlan, RunOncePlan, RunPurpose, ServiceKey,
};
use slipway_types::api::{PortMode, Protocol, MAX_CONFIG_FILES, MAX_CONFIG_FILE_BYTES};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use uuid::Uuid;

/// The agent's own labels, beyond [`slipway_types::agent::labels`]: what it
/// needs to restart / re-route a kept container without the original plan.
pub const LABEL_HEALTH: &str = "slipway.agent.health";
pub const LABEL_PUBLISH: &str = "slipway.agent.publish";
/// A TCP or exec health check (the HTTP one is [`LABEL_HEALTH`]).
pub const LABEL_PROBE: &str = "slipway.agent.probe";
/// Seconds after a start during which failed probes do not count.
pub const LABEL_START_PERIOD: &str = "slipway.agent.start-period";
/// `true`: the service rolls out stop-first (never two containers at once).
pub const LABEL_STOP_FIRST: &str = "slipway.agent.stop-first";
/// On one-off containers: the agent process that runs them
/// ([`crate::docker::Docker::session`]); reconcile removes those of others.
pub const LABEL_SESSION: &str = "slipway.agent.session";

/// A container port with its protocol, as Docker writes it: `8080/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub port: u16,
    pub udp: bool,
}

impl PortKey {
    pub fn tcp(port: u16) -> Self {
        Self { port, udp: false }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let port = port.parse().ok()?;
        match proto {
            "tcp" => Some(Self { port, udp: false }),
            "udp" => Some(Self { port, udp: true }),
            _ => None,
        }
    }
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, if self.udp { "udp" } else { "tcp" })
    }
}

/// Health check and published ports, stored on each container.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentLabels {
    /// `(port, path)` probed with HTTP GET.
    pub health: Option<(u16, String)>,
    /// `(container port, published port)`.
    pub publish: Vec<(u16, u16)>,
    /// A TCP or exec health check (when `health` is `None`).
    pub probe: Option<ProbeLabel>,
    /// Failures during this long after a start do not count.
    pub start_period_secs: u32,
    /// The service rolls out stop-first: a revert stops the failed
    /// containers before it starts the kept ones.
    pub stop_first: bool,
}

/// A health check other than HTTP, as stored on the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeLabel {
    /// A TCP connect to this container port (through its loopback host port).
    Tcp { port: u16 },
    /// `command` run in the container exits 0 within `timeout_secs`.
    Exec {
        command: Vec<String>,
        timeout_secs: u32,
    },
}

impl AgentLabels {
    pub fn from_labels(l: &HashMap<String, String>) -> Self {
        Self {
            health: l
                .get(LABEL_HEALTH)
                .and_then(|v| serde_json::from_str(v).ok()),
            publish: l
                .get(LABEL_PUBLISH)
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default(),
            probe: l
                .get(LABEL_PROBE)
                .and_then(|v| serde_json::from_str(v).ok()),
            start_period_secs: l
                .get(LABEL_START_PERIOD)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            stop_first: l.get(LABEL_STOP_FIRST).is_some_and(|v| v == "true"),
        }
    }

    /// The non-HTTP probe, start period and strategy of a container of `plan`.
    fn of_plan(plan: &RolloutPlan) -> Self {
        use slipway_types::api::Probe;
        let check = plan.container.health_check.as_ref();
        let probe = check.and_then(|h| match h.probe()? {
            Probe::Http { .. } => None,
            Probe::Tcp { port } => Some(ProbeLabel::Tcp { port: port.get() }),
            Probe::Exec { command } => Some(ProbeLabel::Exec {
                command: command.to_vec(),
                timeout_secs: h.timeout_secs.max(1),
            }),
        });
        Self {
            probe,
            start_period_secs: check.map_or(0, |h| h.start_period_secs),
            stop_first: plan.strategy == slipway_types::api::RolloutStrategy::StopFirst,
            ..Self::default()
        }
    }

    fn write(&self, l: &mut HashMap<String, String>) {
        if let Some(h) = &self.health {
            if let Ok(v) = serde_json::to_string(h) {
                l.insert(LABEL_HEALTH.into(), v);
            }
        }
        if let Ok(v) = serde_json::to_string(&self.publish) {
            l.insert(LABEL_PUBLISH.into(), v);
        }
        if let Some(p) = &self.probe {
            if let Ok(v) = serde_json::to_string(p) {
                l.insert(LABEL_PROBE.into(), v);
            }
        }
        if self.start_period_secs > 0 {
            l.insert(
                LABEL_START_PERIOD.into(),
                self.start_period_secs.to_string(),
            );
        }
        if self.stop_first {
            l.insert(LABEL_STOP_FIRST.into(), "true".into());
        }
    }
}

/// `{prefix}{project}-{environment}-{service}-r{release}-{first 8 of deployment}-{i}`.
pub fn container_name(prefix: &str, plan: &RolloutPlan, replica: u32) -> String {
    let s = &plan.service;
    let dep = plan.deployment_id.simple().to_string();
    format!(
        "{prefix}{}-{}-{}-r{}-{}-{replica}",
        s.project,
        s.environment,
        s.service,
        plan.release_number,
        &dep[..8]
    )
}

/// Proxy route name of one published port of a service.
pub fn route_name(prefix: &str, service_id: Uuid, published: u16) -> String {
    format!("{}{published}", route_prefix(prefix, service_id))
}

/// Every route of a service starts with this.
pub fn route_prefix(prefix: &str, service_id: Uuid) -> String {
    format!("{prefix}{service_id}-")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// `{prefix}{project}-{environment}-{first 8 of the environment id}`: the
/// environment's network on this host.
pub fn network_name(prefix: &str, s: &ServiceKey) -> String {
    let env = s.environment_id.simple().to_string();
    format!("{prefix}{}-{}-{}", s.project, s.environment, &env[..8])
}

/// The network every container of the service's environment on this host joins.
pub fn environment_network(prefix: &str, host_id: Uuid, s: &ServiceKey) -> NetworkSpec {
    let mut l = HashMap::new();
    l.insert(labels::MANAGED.into(), "true".into());
    l.insert(labels::HOST.into(), host_id.to_string());
    l.insert(labels::NETWORK.into(), NETWORK_ENVIRONMENT.into());
    l.insert(labels::PROJECT.into(), s.project.clone());
    l.insert(labels::ENVIRONMENT.into(), s.environment.clone());
    l.insert(labels::ENVIRONMENT_ID.into(), s.environment_id.to_string());
    NetworkSpec {
        name: network_name(prefix, s),
        labels: l,
    }
}

/// The value of [`labels::NETWORK`] on environment networks.
pub const NETWORK_ENVIRONMENT: &str = "environment";

/// A config file as mounted: named by the SHA-256 of its content.
pub fn mounted_file(target: &str, content: &str) -> MountedFile {
    use sha2::Digest;
    MountedFile {
        digest: format!("{:x}", sha2::Sha256::digest(content.as_bytes())),
        target: target.to_owned(),
        content: content.to_owned(),
    }
}

/// The read-only bind mount of `f` stored in `dir`.
pub fn file_bind(dir: &Path, f: &MountedFile) -> Result<String, InvalidSpec> {
    let source = dir.join(&f.digest);
    let source = source
        .to_str()
        .filter(|s| !s.contains(':'))
        .ok_or_else(|| {
            InvalidSpec(format!(
                "the agent's files directory {} cannot be bind-mounted",
                dir.display()
            ))
        })?;
    Ok(format!("{source}:{}:ro", f.target))
}

/// The digest of the config file a bind mount (`source:target[:opts]`)
/// mounts from `dir`, if it is one.
pub fn file_digest_of_bind(dir: &Path, bind: &str) -> Option<String> {
    let source = Path::new(bind.split(':').next()?);
    (source.parent()? == dir)
        .then(|| source.file_name()?.to_str().map(str::to_owned))
        .flatten()
}

/// What a container of `c` is, whatever it runs as: everything but its
/// name, replica labels, ports and DNS aliases.
fn base_spec(
    prefix: &str,
    host_id: Uuid,
    service: &ServiceKey,
    c: &ContainerSpec,
) -> Result<CreateSpec, InvalidSpec> {
    let mut binds = Vec::new();
    for v in &c.volumes {
        if !v.target.starts_with('/') {
            return Err(InvalidSpec(format!(
                "volume target {:?} must be an absolute path",
                v.target
            )));
        }
        if v.source.is_empty() || v.source.contains(':') || v.target.contains(':') {
            return Err(InvalidSpec(format!(
                "invalid volume {:?} → {:?}",
                v.source, v.target
            )));
        }
        let mut b = format!("{}:{}", v.source, v.target);
        if v.read_only {
            b.push_str(":ro");
        }
        binds.push(b);
    }
    let mut tmpfs = Vec::new();
    for t in &c.tmpfs {
        if !t.target.starts_with('/') || t.target.contains([':', ',']) {
            return Err(InvalidSpec(format!(
                "tmpfs target {:?} must be an absolute path",
                t.target
            )));
        }
        let options = match t.size_mb {
            Some(0) => return Err(InvalidSpec(format!("tmpfs {} has size 0", t.target))),
            Some(mb) => format!("size={mb}m"),
            None => String::new(),
        };
        tmpfs.push((t.target.clone(), options));
    }
    let mut extra_hosts = Vec::new();
    for h in &c.extra_hosts {
        if h.host.is_empty() || h.host.contains(|ch: char| ch == ':' || ch.is_whitespace()) {
            return Err(InvalidSpec(format!("invalid extra host name {:?}", h.host)));
        }
        if h.ip != "host-gateway" && h.ip.parse::<IpAddr>().is_err() {
            return Err(InvalidSpec(format!(
                "extra host {}: {:?} is neither an IP address nor host-gateway",
                h.host, h.ip
            )));
        }
        extra_hosts.push(format!("{}:{}", h.host, h.ip));
    }
    if c.files.len() > MAX_CONFIG_FILES {
        return Err(InvalidSpec(format!(
            "at most {MAX_CONFIG_FILES} config files (got {})",
            c.files.len()
        )));
    }
    let mut files: Vec<MountedFile> = Vec::new();
    for f in &c.files {
        if !f.target.starts_with('/') || f.target.contains(':') {
            return Err(InvalidSpec(format!(
                "config file target {:?} must be an absolute path",
                f.target
            )));
        }
        if f.content.len() > MAX_CONFIG_FILE_BYTES {
            return Err(InvalidSpec(format!(
                "config file {} is larger than {MAX_CONFIG_FILE_BYTES} bytes",
                f.target
            )));
        }
        if files.iter().any(|g| g.target == f.target) {
            return Err(InvalidSpec(format!(
                "config file {} is mounted twice",
                f.target
            )));
        }
        files.push(mounted_file(&f.target, &f.content));
    }
    let nano_cpus = match c.resources.cpus {
        Some(cpus) if !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0) => {
            return Err(InvalidSpec(format!("invalid CPU limit {cpus}")));
        }
        Some(cpus) => Some((cpus * 1e9).round() as i64),
        None => None,
    };
    let memory_bytes = c.resources.memory_mb.map(|mb| i64::from(mb) * 1024 * 1024);
    if let Some((k, _)) = c.env.iter().find(|(k, _)| k.is_empty() || k.contains('=')) {
        return Err(InvalidSpec(format!(
            "invalid environment variable name {k:?}"
        )));
    }
    let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={}", v.0)).collect();
    Ok(CreateSpec {
        name: String::new(),
        image: c.image.as_str().to_owned(),
        command: c.command.clone(),
        entrypoint: c.entrypoint.clone(),
        env,
        labels: base_labels(host_id, service),
        ports: Vec::new(),
        bindings: Vec::new(),
        binds,
        files,
        tmpfs,
        extra_hosts,
        init: c.init,
        stop_timeout_secs: c.stop_grace_period_secs,
        network: Some(environment_network(prefix, host_id, service)),
        aliases: Vec::new(),
        restart: Restart::UnlessStopped,
        nano_cpus,
        memory_bytes,
        user: c.user.clone(),
        read_only: c.read_only,
        cap_add: c.cap_add.iter().map(|c| c.as_str().to_owned()).collect(),
        cap_drop: c.cap_drop.iter().map(|c| c.as_str().to_owned()).collect(),
        no_new_privileges: c.no_new_privileges,
    })
}

/// The service's DNS names: the plan's aliases (service name first), or the
/// service name when the plan has none; each once.
fn dns_aliases(s: &ServiceKey, c: &ContainerSpec) -> Result<Vec<String>, InvalidSpec> {
    let mut out: Vec<String> = Vec::new();
    let wanted = if c.aliases.is_empty() {
        std::slice::from_ref(&s.service)
    } else {
        c.aliases.as_slice()
    };
    for a in wanted {
        if a.is_empty() || a.len() > 253 || a.contains(|ch: char| ch.is_whitespace()) {
            return Err(InvalidSpec(format!("invalid network alias {a:?}")));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// The containers a rollout creates, replica 0..replicas.
pub fn create_specs(
    prefix: &str,
    host_id: Uuid,
    plan: &RolloutPlan,
    proxy_enabled: bool,
) -> Result<Vec<CreateSpec>, InvalidSpec> {
    if plan.replicas == 0 {
        return Err(InvalidSpec("replicas must be at least 1".into()));
    }
    if plan.replicas > 64 {
        return Err(InvalidSpec(format!(
            "at most 64 replicas per host (got {})",
            plan.replicas
        )));
    }
    let c = &plan.container;
    let mut ports: Vec<PortKey> = Vec::new();
    let mut publish = Vec::new();
    let mut bindings: Vec<FixedPort> = Vec::new();
    for p in &c.ports {
        let key = PortKey {
            port: p.container.get(),
            udp: p.protocol == Protocol::Udp,
        };
        match (p.published, p.mode) {
            (Some(published), PortMode::Http) => {
                if key.udp {
                    return Err(InvalidSpec(format!(
                        "port {} is UDP; the ingress proxy publishes HTTP (TCP) ports only (use mode tcp)",
                        p.container
                    )));
                }
                if !proxy_enabled {
                    return Err(InvalidSpec(format!(
                        "port {published} is published, but this agent runs without the ingress proxy (--no-proxy)"
                    )));
                }
                if publish.iter().any(|(_, pb)| *pb == published.get())
                    || bindings.iter().any(|b| b.host_port == published.get())
                {
                    return Err(InvalidSpec(format!("port {published} is published twice")));
                }
                publish.push((p.container.get(), published.get()));
            }
            (Some(published), PortMode::Tcp) => {
                let host_ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
                if publish.iter().any(|(_, pb)| *pb == published.get())
                    || bindings
                        .iter()
                        .any(|b| b.host_port == published.get() && b.key.udp == key.udp)
                {
                    return Err(InvalidSpec(format!("port {published} is published twice")));
                }
                bindings.push(FixedPort {
                    key,
                    host_ip,
                    host_port: published.get(),
                });
            }
            (None, _) => {}
        }
        if !ports.contains(&key) {
            ports.push(key);
        }
    }
    let health = c.health_check.as_ref().and_then(|h| match h.probe()? {
        slipway_types::api::Probe::Http { path, port } => {
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            Some((port.get(), path))
        }
        _ => None,
    });
    // A probed port (HTTP or TCP check) is reached on loopback like any other.
    if let Some(port) = c.health_check.as_ref().and_then(|h| h.probed_port()) {
        let key = PortKey::tcp(port.get());
        if !ports.contains(&key) {
            ports.push(key);
        }
    }
    let mut base = base_spec(prefix, host_id, &plan.service, c)?;
    base.ports = ports;
    base.bindings = bindings;
    base.aliases = dns_aliases(&plan.service, c)?;
    base.labels
        .insert(labels::RELEASE.into(), plan.release_number.to_string());
    base.labels
        .insert(labels::DEPLOYMENT.into(), plan.deployment_id.to_string());
    let agent = AgentLabels {
        health,
        publish,
        ..AgentLabels::of_plan(plan)
    };
    agent.write(&mut base.labels);
    let mut out = Vec::new();
    for i in 0..plan.replicas {
        let mut spec = base.clone();
        spec.name = container_name(prefix, plan, i);
        spec.labels.insert(labels::REPLICA.into(), i.to_string());
        out.push(spec);
    }
    Ok(out)
}

/// `{prefix}{project}-{environment}-{service}-r{release}-{first 8 of
/// deployment}-{release-command|job}`.
pub fn run_container_name(prefix: &str, plan: &RunOncePlan) -> String {
    let s = &plan.service;
    let dep = plan.deployment_id.simple().to_string();
    let purpose = match plan.purpose {
        RunPurpose::ReleaseCommand => "release-command",
        RunPurpose::Job => "job",
    };
    format!(
        "{prefix}{}-{}-{}-r{}-{}-{purpose}",
        s.project,
        s.environment,
        s.service,
        plan.release_number,
        &dep[..8]
    )
}

/// The value of [`labels::RUN`].
pub fn run_label(purpose: RunPurpose) -> &'static str {
    match purpose {
        RunPurpose::ReleaseCommand => "release_command",
        RunPurpose::Job => "job",
    }
}

/// The one-off container of a [`RunOncePlan`]: the release's container with
/// `plan.command`, on the environment network without the service's DNS
/// names (it must not take the service's traffic), no published port,
/// never restarted; labelled with the agent process (`session`) that runs it.
pub fn run_spec(
    prefix: &str,
    host_id: Uuid,
    session: Uuid,
    plan: &RunOncePlan,
) -> Result<CreateSpec, InvalidSpec> {
    if plan.timeout_secs == 0 {
        return Err(InvalidSpec(
            "the timeout of a one-off run must be at least 1 s".into(),
        ));
    }
    let mut spec = base_spec(prefix, host_id, &plan.service, &plan.container)?;
    spec.name = run_container_name(prefix, plan);
    if let Some(command) = &plan.command {
        spec.command = Some(command.clone());
    }
    spec.restart = Restart::Never;
    let l = &mut spec.labels;
    l.insert(labels::RUN.into(), run_label(plan.purpose).into());
    l.insert(labels::RELEASE.into(), plan.release_number.to_string());
    l.insert(labels::DEPLOYMENT.into(), plan.deployment_id.to_string());
    l.insert(LABEL_SESSION.into(), session.to_string());
    Ok(spec)
}

/// Environment networks reconcile removes: those of no environment with a
/// desired service and with no container (`in_use`).
pub fn networks_to_remove<'a>(
    networks: &'a [(ManagedNetwork, bool)],
    desired_environments: &HashSet<Uuid>,
) -> Vec<&'a ManagedNetwork> {
    networks
        .iter()
        .filter(|(n, in_use)| {
            !in_use
                && n.environment_id
                    .is_none_or(|e| !desired_environments.contains(&e))
        })
        .map(|(n, _)| n)
        .collect()
}

fn base_labels(host_id: Uuid, s: &ServiceKey) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(labels::MANAGED.into(), "true".into());
    l.insert(labels::HOST.into(), host_id.to_string());
    l.insert(labels::PROJECT.into(), s.project.clone());
    l.insert(labels::ENVIRONMENT.into(), s.environment.clone());
    l.insert(labels::SERVICE.into(), s.service.clone());
    l.insert(labels::SERVICE_ID.into(), s.service_id.to_string());
    l.insert(labels::ENVIRONMENT_ID.into(), s.environment_id.to_string());
    l
}

/// One earlier deployment of a service on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentInfo {
    pub deployment_id: Uuid,
    pub release_number: i64,
    /// Newest container creation time (Unix seconds) — tiebreaker.
    pub created: i64,
    pub running: bool,
}

/// Groups containers `(deployment, release, created, running)` by deployment.
pub fn group_deployments(items: &[(Uuid, i64, i64, bool)]) -> Vec<DeploymentInfo> {
    let mut by: BTreeMap<Uuid, DeploymentInfo> = BTreeMap::new();
    for &(d, release, created, running) in items {
        let e = by.entry(d).or_insert(DeploymentInfo {
            deployment_id: d,
            release_number: release,
            created,
            running: false,
        });
        e.release_number = e.release_number.max(release);
        e.created = e.created.max(created);
        e.running |= running;
    }
    let mut v: Vec<_> = by.into_values().collect();
    // Newest first.
    v.sort_by(|a, b| {
        (b.release_number, b.created, b.deployment_id).cmp(&(
            a.release_number,
            a.created,
            a.deployment_id,
        ))
    });
    v
}

/// Deployments whose containers are removed: all but `current` and the
/// newest `keep` others.
pub fn deployments_to_prune(
    deployments: &[DeploymentInfo],
    current: Uuid,
    keep: usize,
) -> Vec<Uuid> {
    let mut sorted: Vec<&DeploymentInfo> = deployments
        .iter()
        .filter(|d| d.deployment_id != current)
        .collect();
    sorted.sort_by(|a, b| {
        (b.release_number, b.created, b.deployment_id).cmp(&(
            a.release_number,
            a.created,
            a.deployment_id,
        ))
    });
    sorted.iter().skip(keep).map(|d| d.deployment_id).collect()
}

/// The deployment that served before `current`: the newest one with a
/// running container.
pub fn previous_serving(deployments: &[DeploymentInfo], current: Uuid) -> Option<Uuid> {
    deployments
        .iter()
        .filter(|d| d.deployment_id != current && d.running)
        .max_by_key(|d| (d.release_number, d.created))
        .map(|d| d.deployment_id)
}

/// CPU percent of one core from two cumulative samples (Docker's formula).
pub fn cpu_percent(cpu: u64, pre_cpu: u64, sys: u64, pre_sys: u64, online_cpus: u32) -> f64 {
    let cpu_delta = cpu.saturating_sub(pre_cpu) as f64;
    let sys_delta = sys.saturating_sub(pre_sys) as f64;
    if cpu_delta <= 0.0 || sys_delta <= 0.0 {
        return 0.0;
    }
    let cpus = f64::from(online_cpus.max(1));
    cpu_delta / sys_delta * cpus * 100.0
}

/// Exponential backoff with full jitter: attempt 0 → up to 0.5 s, doubling,
/// capped at 30 s. `unit` in [0, 1) picks the point in the window.
pub fn backoff(attempt: u32, unit: f64) -> std::time::Duration {
    let base = 0.5_f64 * 2f64.powi(attempt.min(16) as i32);
    let cap = base.min(30.0);
    std::time::Duration::from_secs_f64(cap * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::agent::{ContainerPort, Sensitive};
    use slipway_types::api::{ConfigFile, ExtraHost, HealthCheck, Resources, Tmpfs, VolumeMount};
    use slipway_types::{ImageRef, Port};

    fn port(p: i64) -> Port {
        Port::try_from(p).unwrap()
    }

    fn plan() -> RolloutPlan {
        let mut env = std::collections::BTreeMap::new();
        env.insert("SECRET".into(), Sensitive("hunter2".into()));
        RolloutPlan {
            deployment_id: Uuid::parse_str("0123456789abcdef0123456789abcdef").unwrap(),
            release_id: Uuid::new_v4(),
            release_number: 7,
            service: ServiceKey {
                project: "shop".into(),
                environment: "prod".into(),
                service: "web".into(),
                service_id: Uuid::new_v4(),
                environment_id: Uuid::new_v4(),
            },
            container: ContainerSpec {
                image: ImageRef::try_from("nginx:1").unwrap(),
                command: None,
                env,
                ports: vec![ContainerPort {
                    container: port(80),
                    published: Some(port(8080)),
                    protocol: Protocol::Tcp,
                    mode: Default::default(),
                    host_ip: None,
                }],
                volumes: vec![
                    VolumeMount {
                        source: "data".into(),
                        target: "/data".into(),
                        read_only: false,
                    },
                    VolumeMount {
                        source: "/etc/ssl".into(),
                        target: "/ssl".into(),
                        read_only: true,
                    },
                ],
                health_check: Some(HealthCheck {
                    interval_secs: 1,
                    timeout_secs: 1,
                    retries: 1,
                    ..HealthCheck::http("healthz", port(9000))
                }),
                resources: Resources {
                    cpus: Some(0.5),
                    memory_mb: Some(256),
                },
                user: Some("1000".into()),
                read_only: true,
                cap_drop: vec![slipway_types::Capability::try_from("ALL").unwrap()],
                cap_add: vec![],
                no_new_privileges: true,
                ..ContainerSpec::of_image(ImageRef::try_from("x:1").unwrap())
            },
            replicas: 2,
            keep_previous: 1,
            health_timeout_secs: 30,
            drain_timeout_secs: 5,
            registry_auth: None,
            phase: Default::default(),
            strategy: slipway_types::api::RolloutStrategy::StartFirst,
        }
    }

    #[test]
    fn names() {
        let p = plan();
        assert_eq!(
            container_name("slipway-", &p, 1),
            "slipway-shop-prod-web-r7-01234567-1"
        );
        let sid = p.service.service_id;
        assert_eq!(route_name("slipway-", sid, 80), format!("slipway-{sid}-80"));
        assert!(route_name("slipway-", sid, 80).starts_with(&route_prefix("slipway-", sid)));
    }

    #[test]
    fn specs_from_plan() {
        let p = plan();
        let host = Uuid::new_v4();
        let specs = create_specs("slipway-", host, &p, true).unwrap();
        assert_eq!(specs.len(), 2);
        let s = &specs[1];
        assert_eq!(s.labels[labels::REPLICA], "1");
        assert_eq!(s.labels[labels::HOST], host.to_string());
        assert_eq!(s.labels[labels::RELEASE], "7");
        assert_eq!(s.labels[labels::MANAGED], "true");
        assert_eq!(s.ports, vec![PortKey::tcp(80), PortKey::tcp(9000)]);
        assert_eq!(s.binds, vec!["data:/data", "/etc/ssl:/ssl:ro"]);
        assert_eq!(s.nano_cpus, Some(500_000_000));
        assert_eq!(s.memory_bytes, Some(256 * 1024 * 1024));
        assert_eq!(s.env, vec!["SECRET=hunter2"]);
        assert!(s.no_new_privileges && s.read_only);
        assert_eq!(s.cap_drop, vec!["ALL"]);
        let agent = AgentLabels::from_labels(&s.labels);
        assert_eq!(agent.health, Some((9000, "/healthz".into())));
        assert_eq!(agent.publish, vec![(80, 8080)]);
        // Secrets never in Debug output.
        assert!(!format!("{s:?}").contains("hunter2"));
        // On the environment's network under the service's name.
        let net = s.network.as_ref().unwrap();
        assert_eq!(net.name, network_name("slipway-", &p.service));
        assert_eq!(s.aliases, vec!["web"]);
        assert_eq!(s.restart, Restart::UnlessStopped);
        assert!(s.bindings.is_empty() && s.files.is_empty() && s.tmpfs.is_empty());
    }

    #[test]
    fn environment_networks() {
        let p = plan();
        let host = Uuid::new_v4();
        let env8 = &p.service.environment_id.simple().to_string()[..8];
        assert_eq!(
            network_name("slipway-", &p.service),
            format!("slipway-shop-prod-{env8}")
        );
        let n = environment_network("slipway-", host, &p.service);
        assert_eq!(n.labels[labels::MANAGED], "true");
        assert_eq!(n.labels[labels::HOST], host.to_string());
        assert_eq!(n.labels[labels::NETWORK], NETWORK_ENVIRONMENT);
        assert_eq!(n.labels[labels::PROJECT], "shop");
        assert_eq!(n.labels[labels::ENVIRONMENT], "prod");
        assert_eq!(
            n.labels[labels::ENVIRONMENT_ID],
            p.service.environment_id.to_string()
        );
        // Another environment of the same name (another project) differs.
        let mut other = p.service.clone();
        other.environment_id = Uuid::new_v4();
        assert_ne!(network_name("slipway-", &other), n.name);

        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let net = |name: &str, env: Option<Uuid>| ManagedNetwork {
            id: format!("id-{name}"),
            name: name.into(),
            environment_id: env,
        };
        let all = vec![
            (net("a-used", Some(a)), true),
            (net("a-empty", Some(a)), false),
            (net("b-empty", Some(b)), false),
            (net("b-used", Some(b)), true),
            (net("unlabelled", None), false),
        ];
        let desired: HashSet<Uuid> = [a].into();
        let names: Vec<&str> = networks_to_remove(&all, &desired)
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(names, vec!["b-empty", "unlabelled"]);
    }

    #[test]
    fn container_options() {
        let mut p = plan();
        let c = &mut p.container;
        c.aliases = vec!["web".into(), "www".into(), "web".into()];
        c.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
        c.tmpfs = vec![
            Tmpfs {
                target: "/tmp".into(),
                size_mb: Some(64),
            },
            Tmpfs {
                target: "/run".into(),
                size_mb: None,
            },
        ];
        c.init = true;
        c.stop_grace_period_secs = Some(3);
        c.extra_hosts = vec![
            ExtraHost {
                host: "host.docker.internal".into(),
                ip: "host-gateway".into(),
            },
            ExtraHost {
                host: "db6".into(),
                ip: "::1".into(),
            },
        ];
        c.files = vec![ConfigFile {
            target: "/etc/nginx/nginx.conf".into(),
            content: "events {}\n".into(),
        }];
        c.ports.push(ContainerPort {
            container: port(5432),
            published: Some(port(15432)),
            protocol: Protocol::Tcp,
            mode: PortMode::Tcp,
            host_ip: None,
        });
        c.ports.push(ContainerPort {
            container: port(53),
            published: Some(port(5353)),
            protocol: Protocol::Udp,
            mode: PortMode::Tcp,
            host_ip: Some("0.0.0.0".parse().unwrap()),
        });
        c.health_check = Some(HealthCheck::tcp(port(6379)));
        let specs = create_specs("slipway-", Uuid::nil(), &p, true).unwrap();
        let s = &specs[0];
        assert_eq!(s.aliases, vec!["web", "www"]);
        assert_eq!(s.entrypoint.as_deref().unwrap(), ["/bin/sh", "-c"]);
        assert_eq!(
            s.tmpfs,
            vec![
                ("/tmp".to_string(), "size=64m".to_string()),
                ("/run".to_string(), String::new())
            ]
        );
        assert!(s.init);
        assert_eq!(s.stop_timeout_secs, Some(3));
        assert_eq!(
            s.extra_hosts,
            vec!["host.docker.internal:host-gateway", "db6:::1"]
        );
        // Files: by content digest, mounted read-only from the files directory.
        assert_eq!(s.files.len(), 1);
        let f = &s.files[0];
        assert_eq!(f.digest.len(), 64);
        assert_eq!(f, &mounted_file("/etc/nginx/nginx.conf", "events {}\n"));
        let dir = Path::new("/var/lib/slipway-agent/files");
        let bind = file_bind(dir, f).unwrap();
        assert_eq!(
            bind,
            format!(
                "/var/lib/slipway-agent/files/{}:/etc/nginx/nginx.conf:ro",
                f.digest
            )
        );
        assert_eq!(file_digest_of_bind(dir, &bind), Some(f.digest.clone()));
        assert_eq!(file_digest_of_bind(dir, "data:/data"), None);
        assert!(file_bind(Path::new("/a:b"), f).is_err());
        // TCP ports: bound by Docker on 127.0.0.1 (default) or the given
        // address, and on loopback like every port; the TCP-probed port too.
        assert_eq!(
            s.bindings,
            vec![
                FixedPort {
                    key: PortKey::tcp(5432),
                    host_ip: "127.0.0.1".parse().unwrap(),
                    host_port: 15432,
                },
                FixedPort {
                    key: PortKey {
                        port: 53,
                        udp: true
                    },
                    host_ip: "0.0.0.0".parse().unwrap(),
                    host_port: 5353,
                },
            ]
        );
        assert_eq!(
            s.ports,
            vec![
                PortKey::tcp(80),
                PortKey::tcp(5432),
                PortKey {
                    port: 53,
                    udp: true
                },
                PortKey::tcp(6379)
            ]
        );
        // Only HTTP ports go through the proxy; no HTTP check, no health label.
        let agent = AgentLabels::from_labels(&s.labels);
        assert_eq!(agent.publish, vec![(80, 8080)]);
        assert_eq!(agent.health, None);

        // An exec check publishes nothing more.
        let mut p2 = plan();
        p2.container.health_check = Some(HealthCheck::exec(vec!["true".into()]));
        let s2 = &create_specs("slipway-", Uuid::nil(), &p2, true).unwrap()[0];
        assert_eq!(s2.ports, vec![PortKey::tcp(80)]);

        // Without the proxy, TCP ports still work.
        let mut p3 = plan();
        p3.container.ports[0].mode = PortMode::Tcp;
        let s3 = &create_specs("slipway-", Uuid::nil(), &p3, false).unwrap()[0];
        assert_eq!(s3.bindings[0].host_port, 8080);
        assert!(AgentLabels::from_labels(&s3.labels).publish.is_empty());
    }

    #[test]
    fn invalid_options() {
        let bad = |f: &dyn Fn(&mut ContainerSpec)| {
            let mut p = plan();
            f(&mut p.container);
            create_specs("s-", Uuid::nil(), &p, true).unwrap_err().0
        };
        assert!(bad(&|c| c.tmpfs = vec![Tmpfs {
            target: "tmp".into(),
            size_mb: None
        }])
        .contains("tmpfs"));
        assert!(bad(&|c| c.tmpfs = vec![Tmpfs {
            target: "/t".into(),
            size_mb: Some(0)
        }])
        .contains("size 0"));
        assert!(bad(&|c| c.extra_hosts = vec![ExtraHost {
            host: "a".into(),
            ip: "nope".into()
        }])
        .contains("host-gateway"));
        assert!(bad(&|c| c.extra_hosts = vec![ExtraHost {
            host: "a:b".into(),
            ip: "1.2.3.4".into()
        }])
        .contains("extra host"));
        let file = |t: &str| ConfigFile {
            target: t.into(),
            content: "x".into(),
        };
        assert!(bad(&|c| c.files = vec![file("etc/x")]).contains("absolute"));
        assert!(bad(&|c| c.files = vec![file("/x"), file("/x")]).contains("twice"));
        assert!(bad(&|c| c.files = (0..=MAX_CONFIG_FILES)
            .map(|i| file(&format!("/f{i}")))
            .collect())
        .contains("at most"));
        assert!(bad(&|c| c.aliases = vec!["a b".into()]).contains("alias"));
        // The same host port twice, across HTTP and TCP modes.
        assert!(bad(&|c| c.ports.push(ContainerPort {
            container: port(81),
            published: Some(port(8080)),
            protocol: Protocol::Tcp,
            mode: PortMode::Tcp,
            host_ip: None,
        }))
        .contains("twice"));
    }

    fn run_plan() -> RunOncePlan {
        let p = plan();
        RunOncePlan {
            deployment_id: p.deployment_id,
            release_number: 7,
            service: p.service,
            purpose: RunPurpose::ReleaseCommand,
            container: p.container,
            command: Some(vec!["migrate".into()]),
            timeout_secs: 60,
            registry_auth: None,
        }
    }

    #[test]
    fn one_off_containers() {
        let p = run_plan();
        let (host, session) = (Uuid::new_v4(), Uuid::new_v4());
        let s = run_spec("slipway-", host, session, &p).unwrap();
        assert_eq!(s.name, "slipway-shop-prod-web-r7-01234567-release-command");
        assert_eq!(s.command.as_deref().unwrap(), ["migrate"]);
        assert_eq!(s.labels[labels::RUN], "release_command");
        assert_eq!(s.labels[labels::DEPLOYMENT], p.deployment_id.to_string());
        assert_eq!(
            s.labels[labels::SERVICE_ID],
            p.service.service_id.to_string()
        );
        assert_eq!(s.labels[LABEL_SESSION], session.to_string());
        assert!(!s.labels.contains_key(labels::REPLICA));
        // Same network, but not the service's name, no port, no restart.
        assert_eq!(
            s.network.as_ref().unwrap().name,
            network_name("slipway-", &p.service)
        );
        assert!(s.aliases.is_empty());
        assert!(s.ports.is_empty() && s.bindings.is_empty());
        assert_eq!(s.restart, Restart::Never);
        // The release's container otherwise.
        assert_eq!(s.binds, vec!["data:/data", "/etc/ssl:/ssl:ro"]);
        assert_eq!(s.env, vec!["SECRET=hunter2"]);
        let mut job = run_plan();
        job.purpose = RunPurpose::Job;
        job.command = None;
        let j = run_spec("slipway-", host, session, &job).unwrap();
        assert!(j.name.ends_with("-job"));
        assert_eq!(j.labels[labels::RUN], "job");
        assert_eq!(j.command, None);
        job.timeout_secs = 0;
        assert!(run_spec("slipway-", host, session, &job).is_err());
    }

    #[test]
    fn tcp_and_exec_checks_and_stop_first_in_labels() {
        let mut p = plan();
        p.container.health_check = Some(HealthCheck {
            start_period_secs: 30,
            ..HealthCheck::tcp(port(5432))
        });
        p.strategy = slipway_types::api::RolloutStrategy::StopFirst;
        let s = &create_specs("slipway-", Uuid::nil(), &p, true).unwrap()[0];
        // The probed port is published on loopback like the HTTP check's.
        assert!(s.ports.contains(&PortKey::tcp(5432)), "{:?}", s.ports);
        let agent = AgentLabels::from_labels(&s.labels);
        assert_eq!(agent.health, None);
        assert_eq!(agent.probe, Some(ProbeLabel::Tcp { port: 5432 }));
        assert_eq!(agent.start_period_secs, 30);
        assert!(agent.stop_first);

        let mut p = plan();
        p.container.health_check = Some(HealthCheck {
            timeout_secs: 2,
            ..HealthCheck::exec(vec!["pg_isready".into(), "-U".into(), "app".into()])
        });
        let s = &create_specs("slipway-", Uuid::nil(), &p, true).unwrap()[0];
        let agent = AgentLabels::from_labels(&s.labels);
        assert_eq!(
            agent.probe,
            Some(ProbeLabel::Exec {
                command: vec!["pg_isready".into(), "-U".into(), "app".into()],
                timeout_secs: 2
            })
        );
        assert_eq!(agent.start_period_secs, 0);
        assert!(!agent.stop_first);
        assert!(!s.labels.contains_key(LABEL_STOP_FIRST));
    }

    #[test]
    fn invalid_specs() {
        let mut p = plan();
        assert!(create_specs("s-", Uuid::nil(), &p, false)
            .unwrap_err()
            .0
            .contains("--no-proxy"));
        p.replicas = 0;
        assert!(create_specs("s-", Uuid::nil(), &p, true).is_err());
        let mut p = plan();
        p.container.volumes[0].target = "data".into();
        assert!(create_specs("s-", Uuid::nil(), &p, true).is_err());
        let mut p = plan();
        p.container.resources.cpus = Some(f64::NAN);
        assert!(create_specs("s-", Uuid::nil(), &p, true).is_err());
        let mut p = plan();
        p.container.ports[0].protocol = Protocol::Udp;
        assert!(create_specs("s-", Uuid::nil(), &p, true).is_err());
    }

    #[test]
    fn prune_keeps_newest() {
        let (a, b, c, d) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let deps = group_deployments(&[
            (a, 1, 100, false),
            (b, 2, 200, false),
            (b, 2, 201, false),
            (c, 3, 300, true),
            (d, 4, 400, false),
        ]);
        assert_eq!(deps.len(), 4);
        assert_eq!(deps[0].deployment_id, d);
        // d is the new deployment; keep one earlier → c kept, a and b removed.
        let mut pruned = deployments_to_prune(&deps, d, 1);
        pruned.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(pruned, want);
        assert!(deployments_to_prune(&deps, d, 10).is_empty());
        assert_eq!(deployments_to_prune(&deps, d, 0).len(), 3);
        assert_eq!(previous_serving(&deps, d), Some(c));
        assert_eq!(previous_serving(&deps, c), None);
    }

    #[test]
    fn cpu_and_backoff() {
        assert_eq!(cpu_percent(200, 100, 2000, 1000, 2), 20.0);
        assert_eq!(cpu_percent(100, 100, 2000, 1000, 2), 0.0);
        assert_eq!(backoff(0, 1.0).as_millis(), 500);
        assert_eq!(backoff(3, 1.0).as_secs(), 4);
        assert_eq!(backoff(20, 1.0).as_secs(), 30);
        assert_eq!(backoff(5, 0.0).as_secs(), 0);
    }

    #[test]
    fn port_keys() {
        assert_eq!(PortKey::parse("8080/tcp"), Some(PortKey::tcp(8080)));
        assert_eq!(PortKey::parse("53/udp").map(|k| k.udp), Some(true));
        assert_eq!(PortKey::parse("x/tcp"), None);
        assert_eq!(PortKey::tcp(80).to_string(), "80/tcp");
    }
}
