//! Services and their spec (the container a service runs).
use super::{Validate, MAX_VALUE_BYTES};
use crate::error::FieldError;
use crate::{Capability, EnvVarName, ImageRef, Port, ResourceName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Port the process listens on inside the container.
    pub container: Port,
    /// Port published on the host: served by the ingress proxy (`mode:
    /// http`), or bound by Docker on `host_ip` (`mode: tcp`).
    #[serde(default)]
    pub published: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default)]
    pub mode: PortMode,
    /// Address a `tcp` port is bound on; default 127.0.0.1 (an admin
    /// tunnel, e.g. PostgreSQL). Only for `mode: tcp`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<String>"))]
    pub host_ip: Option<std::net::IpAddr>,
}

/// How a published port reaches the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PortMode {
    /// Through the ingress proxy (HTTP/1.1 and WebSocket upgrades), switched
    /// with zero downtime on every deploy.
    #[default]
    Http,
    /// Bound by Docker straight to the container (any TCP protocol). Only one
    /// container can hold the port, so the service rolls out `stop-first`.
    Tcp,
}

/// Inject the environment secret `secret` as the container env var `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub env: EnvVarName,
    pub secret: EnvVarName,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A named volume (DNS label) or an absolute host path.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// What a health check asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// GET `path` on `port`; any 2xx or 3xx is healthy.
    #[default]
    Http,
    /// A TCP connect to `port` succeeds.
    Tcp,
    /// `command` run inside the container exits 0 (compose `CMD`; `CMD-SHELL`
    /// is `["/bin/sh", "-c", "…"]`), e.g. `pg_isready -U app`.
    Exec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub kind: HealthKind,
    /// HTTP path probed with GET, e.g. `/health` (`kind: http`).
    #[serde(default)]
    pub path: Option<String>,
    /// Container port probed (`kind: http` and `tcp`).
    #[serde(default)]
    pub port: Option<Port>,
    /// Command run in the container (`kind: exec`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default = "HealthCheck::default_interval")]
    pub interval_secs: u32,
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_secs: u32,
    #[serde(default = "HealthCheck::default_retries")]
    pub retries: u32,
    /// Failures during this time after start do not count.
    #[serde(default)]
    pub start_period_secs: u32,
}

/// A health check's probe, checked: what [`HealthCheck`] says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<'a> {
    Http { path: &'a str, port: Port },
    Tcp { port: Port },
    Exec { command: &'a [String] },
}

impl HealthCheck {
    fn default_interval() -> u32 {
        10
    }
    fn default_timeout() -> u32 {
        3
    }
    fn default_retries() -> u32 {
        3
    }

    /// An HTTP check of `path` on `port` with the default timings.
    pub fn http(path: impl Into<String>, port: Port) -> Self {
        Self {
            kind: HealthKind::Http,
            path: Some(path.into()),
            port: Some(port),
            command: None,
            interval_secs: Self::default_interval(),
            timeout_secs: Self::default_timeout(),
            retries: Self::default_retries(),
            start_period_secs: 0,
        }
    }

    /// A TCP connect check of `port` with the default timings.
    pub fn tcp(port: Port) -> Self {
        Self {
            kind: HealthKind::Tcp,
            path: None,
            ..Self::http("/", port)
        }
    }

    /// An exec check running `command` with the default timings.
    pub fn exec(command: Vec<String>) -> Self {
        Self {
            kind: HealthKind::Exec,
            path: None,
            port: None,
            command: Some(command),
            ..Self::http("/", Port::try_from(80).unwrap_or_else(|_| unreachable!()))
        }
    }

    /// The probe, when the fields fit the kind (see [`Validate`]).
    pub fn probe(&self) -> Option<Probe<'_>> {
        match self.kind {
            HealthKind::Http => Some(Probe::Http {
                path: self.path.as_deref()?,
                port: self.port?,
            }),
            HealthKind::Tcp => Some(Probe::Tcp { port: self.port? }),
            HealthKind::Exec => Some(Probe::Exec {
                command: self.command.as_deref()?,
            }),
        }
    }

    /// The container port the check reaches, if any.
    pub fn probed_port(&self) -> Option<Port> {
        match self.kind {
            HealthKind::Http | HealthKind::Tcp => self.port,
            HealthKind::Exec => None,
        }
    }
}

impl Validate for HealthCheck {
    fn validate(&self) -> Result<(), FieldError> {
        let h = self;
        match h.kind {
            HealthKind::Http => {
                let Some(path) = &h.path else {
                    return Err(FieldError::new("path", "an http check needs a path"));
                };
                if !path.starts_with('/') || path.len() > 512 || path.contains(char::is_whitespace)
                {
                    return Err(FieldError::new(
                        "path",
                        "must start with '/' and contain no spaces",
                    ));
                }
                if h.port.is_none() {
                    return Err(FieldError::new("port", "an http check needs a port"));
                }
            }
            HealthKind::Tcp => {
                if h.port.is_none() {
                    return Err(FieldError::new("port", "a tcp check needs a port"));
                }
            }
            HealthKind::Exec => {
                let ok = h.command.as_ref().is_some_and(|c| {
                    !c.is_empty() && c.len() <= 64 && c.iter().all(|a| a.len() <= 4096)
                });
                if !ok {
                    return Err(FieldError::new(
                        "command",
                        "an exec check needs a command of 1–64 arguments of at most 4096 bytes",
                    ));
                }
            }
        }
        if h.kind != HealthKind::Http && h.path.is_some() {
            return Err(FieldError::new("path", "only an http check has a path"));
        }
        if h.kind != HealthKind::Exec && h.command.is_some() {
            return Err(FieldError::new(
                "command",
                "only an exec check has a command",
            ));
        }
        if h.kind == HealthKind::Exec && h.port.is_some() {
            return Err(FieldError::new("port", "an exec check has no port"));
        }
        if !(1..=3600).contains(&h.interval_secs) {
            return Err(FieldError::new("interval_secs", "must be 1–3600"));
        }
        if !(1..=300).contains(&h.timeout_secs) {
            return Err(FieldError::new("timeout_secs", "must be 1–300"));
        }
        if h.timeout_secs > h.interval_secs {
            return Err(FieldError::new(
                "timeout_secs",
                "must not exceed interval_secs",
            ));
        }
        if !(1..=50).contains(&h.retries) {
            return Err(FieldError::new("retries", "must be 1–50"));
        }
        if h.start_period_secs > 3600 {
            return Err(FieldError::new("start_period_secs", "must be 0–3600"));
        }
        Ok(())
    }
}

/// How a new release replaces the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    /// Start the new containers, wait for health, switch traffic, then stop
    /// the old ones: zero downtime (stateless services).
    StartFirst,
    /// Stop the old containers first, then start the new ones (recreate):
    /// what a database on a named volume needs. A failed start brings the
    /// previous container back on the same volume.
    StopFirst,
}

/// What a service waits for of a dependency (compose `depends_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    /// The dependency's containers run.
    ServiceStarted,
    /// The dependency's containers passed their health check.
    ServiceHealthy,
    /// The dependency is a `job` whose run exited 0.
    ServiceCompletedSuccessfully,
}

/// What a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Long-running containers, health-checked and kept running.
    #[default]
    Service,
    /// A one-off container run to completion on each deployment (e.g. a
    /// compose `migrate` service others wait for with
    /// `service_completed_successfully`); exit 0 is success.
    Job,
}

/// A command run once per deployment, in a one-off container of the new
/// release on the environment network, before any traffic switch (e.g.
/// `alembic upgrade head`). Non-zero exit or timeout fails the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseCommand {
    pub command: Vec<String>,
    #[serde(default = "ReleaseCommand::default_timeout")]
    pub timeout_secs: u32,
}

impl ReleaseCommand {
    pub fn default_timeout() -> u32 {
        600
    }
}

/// A tmpfs mount (compose `tmpfs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default)]
    pub size_mb: Option<u32>,
}

/// An `/etc/hosts` entry (compose `extra_hosts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtraHost {
    pub host: String,
    /// An IP address, or `host-gateway`.
    pub ip: String,
}

/// A configuration file (nginx.conf, prometheus.yml) stored with the
/// release and mounted read-only at `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Absolute path inside the container.
    pub target: String,
    /// UTF-8 text, at most [`MAX_CONFIG_FILE_BYTES`].
    pub content: String,
}

/// Largest config file.
pub const MAX_CONFIG_FILE_BYTES: usize = 64 * 1024;
/// Most config files per service.
pub const MAX_CONFIG_FILES: usize = 16;

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores, e.g. 0.5.
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_mb: Option<u32>,
}

/// Container hardening, as the seeds recommend (non-root user, read-only root
/// filesystem, dropped capabilities, no-new-privileges).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Hardening {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_drop: Vec<Capability>,
    #[serde(default)]
    pub cap_add: Vec<Capability>,
    #[serde(default = "default_true")]
    pub no_new_privileges: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Self {
            user: None,
            read_only: false,
            cap_drop: Vec::new(),
            cap_add: Vec::new(),
            no_new_privileges: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> u32 {
    1
}

/// Everything needed to run a service; also the config snapshot of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: ImageRef,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub env: BTreeMap<EnvVarName, String>,
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub hardening: Hardening,
    #[serde(default)]
    pub kind: ServiceKind,
    /// Overrides the image's ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// How long a stopping container gets after SIGTERM before SIGKILL
    /// (default 10 s).
    #[serde(default)]
    pub stop_grace_period_secs: Option<u32>,
    /// Run an init process as PID 1 (reaps zombies, forwards signals).
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub extra_hosts: Vec<ExtraHost>,
    #[serde(default)]
    pub files: Vec<ConfigFile>,
    /// `None`: `stop-first` when the service mounts a named volume
    /// read-write or publishes a `tcp` port, else `start-first`.
    #[serde(default)]
    pub strategy: Option<RolloutStrategy>,
    /// Services of the same environment this one waits for when the
    /// environment is deployed.
    #[serde(default)]
    pub depends_on: BTreeMap<ResourceName, DependsCondition>,
    #[serde(default)]
    pub release_command: Option<ReleaseCommand>,
    /// More DNS names on the environment network (the service name always is one).
    #[serde(default)]
    pub aliases: Vec<ResourceName>,
}

impl ServiceSpec {
    /// The strategy a rollout uses: the one set, else `stop-first` for a
    /// service that mounts a named volume read-write or binds a `tcp` port
    /// (two containers cannot share either), else `start-first`.
    pub fn effective_strategy(&self) -> RolloutStrategy {
        if let Some(s) = self.strategy {
            return s;
        }
        let named_rw = self
            .volumes
            .iter()
            .any(|v| !v.source.starts_with('/') && !v.read_only);
        if named_rw || self.binds_tcp_port() {
            RolloutStrategy::StopFirst
        } else {
            RolloutStrategy::StartFirst
        }
    }

    /// Whether a port is published straight by Docker (`mode: tcp`).
    pub fn binds_tcp_port(&self) -> bool {
        self.ports
            .iter()
            .any(|p| p.mode == PortMode::Tcp && p.published.is_some())
    }

    /// A minimal spec of `image` with every default.
    pub fn of_image(image: ImageRef) -> Self {
        Self {
            image,
            command: None,
            ports: Vec::new(),
            env: BTreeMap::new(),
            secrets: Vec::new(),
            volumes: Vec::new(),
            health_check: None,
            replicas: 1,
            resources: Resources::default(),
            hardening: Hardening::default(),
            kind: ServiceKind::Service,
            entrypoint: None,
            tmpfs: Vec::new(),
            stop_grace_period_secs: None,
            init: false,
            extra_hosts: Vec::new(),
            files: Vec::new(),
            strategy: None,
            depends_on: BTreeMap::new(),
            release_command: None,
            aliases: Vec::new(),
        }
    }
}

fn check_argv(field: &str, argv: &[String]) -> Result<(), FieldError> {
    if argv.is_empty() || argv.len() > 64 || argv.iter().any(|a| a.len() > 4096) {
        return Err(FieldError::new(
            field,
            "must have 1–64 arguments of at most 4096 bytes",
        ));
    }
    Ok(())
}

impl Validate for ServiceSpec {
    /// Checks that span several fields or bound sizes; single values are
    /// already checked by their types.
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(cmd) = &self.command {
            check_argv("command", cmd)?;
        }
        if let Some(e) = &self.entrypoint {
            check_argv("entrypoint", e)?;
        }
        if self.ports.len() > 32 {
            return Err(FieldError::new("ports", "at most 32 port mappings"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(h) = p.published {
                if !seen.insert((h, p.protocol as u8)) {
                    return Err(FieldError::new(
                        format!("ports[{i}].published"),
                        format!("port {h} is published twice"),
                    ));
                }
            }
        }
        if self.env.len() > 256 {
            return Err(FieldError::new("env", "at most 256 variables"));
        }
        for (k, v) in &self.env {
            if v.len() > MAX_VALUE_BYTES {
                return Err(FieldError::new(
                    format!("env.{k}"),
                    format!("value must be at most {MAX_VALUE_BYTES} bytes"),
                ));
            }
            // `${NAME}` templates, resolved at deploy time.
            crate::template::parse(v)
                .map_err(|e| FieldError::new(format!("env.{k}"), e.to_string()))?;
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if self.env.contains_key(&s.env) {
                return Err(FieldError::new(
                    format!("secrets[{i}].env"),
                    format!("{} is also set as a plain env var", s.env),
                ));
            }
        }
        for (i, v) in self.volumes.iter().enumerate() {
            let named = crate::names::check_dns_label(&v.source).is_ok();
            if !named && !is_abs_path(&v.source) {
                return Err(FieldError::new(
                    format!("volumes[{i}].source"),
                    "must be a volume name (DNS label) or an absolute host path",
                ));
            }
            if !is_abs_path(&v.target) {
                return Err(FieldError::new(
                    format!("volumes[{i}].target"),
                    "must be an absolute path",
                ));
            }
        }
        if let Some(h) = &self.health_check {
            h.validate().map_err(|e| e.under("health_check"))?;
        }
        if !(1..=100).contains(&self.replicas) {
            return Err(FieldError::new("replicas", "must be 1–100"));
        }
        if let Some(c) = self.resources.cpus {
            if !(c.is_finite() && (0.01..=256.0).contains(&c)) {
                return Err(FieldError::new("resources.cpus", "must be 0.01–256"));
            }
        }
        if let Some(m) = self.resources.memory_mb {
            if !(6..=1_048_576).contains(&m) {
                return Err(FieldError::new("resources.memory_mb", "must be 6–1048576"));
            }
        }
        if let Some(u) = &self.hardening.user {
            let ok = !u.is_empty()
                && u.len() <= 64
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c));
            if !ok {
                return Err(FieldError::new(
                    "hardening.user",
                    "must be a user name or uid[:gid]",
                ));
            }
        }
        self.validate_stack()
    }
}

impl ServiceSpec {
    /// The checks of the stack fields (ports modes, files, tmpfs, hosts,
    /// strategy, dependencies, release command).
    fn validate_stack(&self) -> Result<(), FieldError> {
        for (i, p) in self.ports.iter().enumerate() {
            if p.host_ip.is_some() && p.mode != PortMode::Tcp {
                return Err(FieldError::new(
                    format!("ports[{i}].host_ip"),
                    "only a `tcp` port is bound on an address (http ports are served by the proxy)",
                ));
            }
            if p.mode == PortMode::Tcp && p.published.is_none() {
                return Err(FieldError::new(
                    format!("ports[{i}].published"),
                    "a `tcp` port needs the published port",
                ));
            }
        }
        if self.binds_tcp_port() && self.strategy == Some(RolloutStrategy::StartFirst) {
            return Err(FieldError::new(
                "strategy",
                "a service that binds a `tcp` port rolls out stop-first (two containers cannot hold one port)",
            ));
        }
        if self.binds_tcp_port() && self.replicas > 1 {
            return Err(FieldError::new(
                "replicas",
                "a service that binds a `tcp` port runs one replica per host",
            ));
        }
        if self.tmpfs.len() > 16 {
            return Err(FieldError::new("tmpfs", "at most 16 tmpfs mounts"));
        }
        for (i, t) in self.tmpfs.iter().enumerate() {
            if !is_abs_path(&t.target) || t.target.contains(':') {
                return Err(FieldError::new(
                    format!("tmpfs[{i}].target"),
                    "must be an absolute path",
                ));
            }
            if t.size_mb.is_some_and(|m| !(1..=1_048_576).contains(&m)) {
                return Err(FieldError::new(
                    format!("tmpfs[{i}].size_mb"),
                    "must be 1–1048576",
                ));
            }
        }
        if let Some(g) = self.stop_grace_period_secs {
            if g > 3600 {
                return Err(FieldError::new("stop_grace_period_secs", "must be 0–3600"));
            }
        }
        if self.extra_hosts.len() > 64 {
            return Err(FieldError::new("extra_hosts", "at most 64 entries"));
        }
        for (i, h) in self.extra_hosts.iter().enumerate() {
            if crate::names::check_hostname(&h.host).is_err() {
                return Err(FieldError::new(
                    format!("extra_hosts[{i}].host"),
                    "must be a host name",
                ));
            }
            if h.ip != "host-gateway" && h.ip.parse::<std::net::IpAddr>().is_err() {
                return Err(FieldError::new(
                    format!("extra_hosts[{i}].ip"),
                    "must be an IP address or `host-gateway`",
                ));
            }
        }
        if self.files.len() > MAX_CONFIG_FILES {
            return Err(FieldError::new(
                "files",
                format!("at most {MAX_CONFIG_FILES} config files"),
            ));
        }
        let mut targets = std::collections::BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            if !is_abs_path(&f.target) || f.target.ends_with('/') || f.target.contains(':') {
                return Err(FieldError::new(
                    format!("files[{i}].target"),
                    "must be an absolute file path",
                ));
            }
            if !targets.insert(f.target.as_str()) {
                return Err(FieldError::new(
                    format!("files[{i}].target"),
                    format!("{} is mounted twice", f.target),
                ));
            }
            if f.content.len() > MAX_CONFIG_FILE_BYTES {
                return Err(FieldError::new(
                    format!("files[{i}].content"),
                    format!("must be at most {MAX_CONFIG_FILE_BYTES} bytes"),
                ));
            }
        }
        if self.depends_on.len() > 64 {
            return Err(FieldError::new("depends_on", "at most 64 dependencies"));
        }
        if let Some(rc) = &self.release_command {
            check_argv("release_command.command", &rc.command)?;
            if !(1..=86_400).contains(&rc.timeout_secs) {
                return Err(FieldError::new(
                    "release_command.timeout_secs",
                    "must be 1–86400",
                ));
            }
            if self.kind == ServiceKind::Job {
                return Err(FieldError::new(
                    "release_command",
                    "a job has no release command (its command is what runs)",
                ));
            }
        }
        if self.kind == ServiceKind::Job {
            if self.ports.iter().any(|p| p.published.is_some()) {
                return Err(FieldError::new("ports", "a job publishes no ports"));
            }
            if self.health_check.is_some() {
                return Err(FieldError::new(
                    "health_check",
                    "a job has no health check (exit 0 is success)",
                ));
            }
        }
        if self.aliases.len() > 16 {
            return Err(FieldError::new("aliases", "at most 16 aliases"));
        }
        Ok(())
    }
}

fn is_abs_path(s: &str) -> bool {
    s.starts_with('/') && s.len() <= 1024 && !s.split('/').any(|c| c == "..") && !s.contains('\0')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Service {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub name: ResourceName,
    pub spec: ServiceSpec,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::time::rfc3339")]
    #[cfg_attr(feature = "schema", schemars(with = "DateTime<Utc>"))]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NewService {
    pub name: ResourceName,
    pub spec: ServiceSpec,
}

/// Replace a service's name and/or spec (the spec is replaced whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateService {
    #[serde(default)]
    pub name: Option<ResourceName>,
    #[serde(default)]
    pub spec: Option<ServiceSpec>,
}

impl Validate for NewService {
    fn validate(&self) -> Result<(), FieldError> {
        self.spec.validate().map_err(|e| e.under("spec"))
    }
}

impl Validate for UpdateService {
    fn validate(&self) -> Result<(), FieldError> {
        match &self.spec {
            Some(spec) => spec.validate().map_err(|e| e.under("spec")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        serde_json::from_value(serde_json::json!({"image": "app:1"})).expect("minimal spec")
    }

    #[test]
    fn minimal_spec_gets_safe_defaults() {
        let s = spec();
        assert_eq!(s.replicas, 1);
        assert!(s.hardening.no_new_privileges);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn spec_rejects_duplicate_published_ports() {
        let mut s = spec();
        let p = PortMapping {
            container: Port::try_from(80).expect("port"),
            published: Some(Port::try_from(8080).expect("port")),
            protocol: Protocol::Tcp,
            mode: PortMode::Http,
            host_ip: None,
        };
        s.ports = vec![p.clone(), p];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("ports[1].published".into())
        );
    }

    #[test]
    fn env_templates_are_checked_where_specs_are_saved() {
        let mut s = spec();
        let k = EnvVarName::try_from("DATABASE_URL").expect("name");
        s.env.insert(
            k.clone(),
            "postgresql://app:${DB_PASSWORD}@postgres/app".into(),
        );
        assert!(s.validate().is_ok());
        s.env.insert(k.clone(), "price: 5$, $$HOME".into());
        assert!(s.validate().is_ok());
        s.env
            .insert(k.clone(), "postgresql://app:${DB_PASSWORD@postgres".into());
        let e = s.validate().expect_err("unterminated");
        assert_eq!(e.field, "env.DATABASE_URL");
        assert!(e.message.contains("not closed"), "{}", e.message);
        s.env.insert(k, "${X:-default}".into());
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("env.DATABASE_URL".into())
        );
    }

    #[test]
    fn spec_rejects_bad_health_check_and_volumes() {
        let mut s = spec();
        s.health_check = Some(HealthCheck::http(
            "health",
            Port::try_from(80).expect("port"),
        ));
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("health_check.path".into())
        );
        let mut s = spec();
        s.volumes = vec![VolumeMount {
            source: "../etc".into(),
            target: "/data".into(),
            read_only: false,
        }];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("volumes[0].source".into())
        );
    }

    #[test]
    fn health_checks_of_every_kind() {
        let mut s = spec();
        let port = Port::try_from(5432).expect("port");
        s.health_check = Some(HealthCheck::tcp(port));
        assert!(s.validate().is_ok());
        s.health_check = Some(HealthCheck::exec(vec!["pg_isready".into()]));
        assert!(s.validate().is_ok());
        let mut h = HealthCheck::exec(vec![]);
        s.health_check = Some(h.clone());
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("health_check.command".into())
        );
        h.kind = HealthKind::Http;
        h.command = None;
        s.health_check = Some(h);
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("health_check.path".into())
        );
        // A stored spec from before health kinds reads as an http check.
        let old: HealthCheck =
            serde_json::from_value(serde_json::json!({"path": "/h", "port": 80})).expect("old");
        assert_eq!(
            old.probe(),
            Some(Probe::Http {
                path: "/h",
                port: Port::try_from(80).expect("port")
            })
        );
    }

    #[test]
    fn named_volumes_and_tcp_ports_default_to_stop_first() {
        let mut s = spec();
        assert_eq!(s.effective_strategy(), RolloutStrategy::StartFirst);
        s.volumes = vec![VolumeMount {
            source: "/srv/static".into(),
            target: "/static".into(),
            read_only: false,
        }];
        assert_eq!(s.effective_strategy(), RolloutStrategy::StartFirst);
        s.volumes.push(VolumeMount {
            source: "pgdata".into(),
            target: "/var/lib/postgresql".into(),
            read_only: false,
        });
        assert_eq!(s.effective_strategy(), RolloutStrategy::StopFirst);
        s.strategy = Some(RolloutStrategy::StartFirst);
        assert_eq!(s.effective_strategy(), RolloutStrategy::StartFirst);
        let mut s = spec();
        s.ports = vec![PortMapping {
            container: Port::try_from(5432).expect("port"),
            published: Some(Port::try_from(15432).expect("port")),
            protocol: Protocol::Tcp,
            mode: PortMode::Tcp,
            host_ip: None,
        }];
        assert_eq!(s.effective_strategy(), RolloutStrategy::StopFirst);
        s.strategy = Some(RolloutStrategy::StartFirst);
        assert_eq!(s.validate().map_err(|e| e.field), Err("strategy".into()));
    }

    #[test]
    fn jobs_publish_nothing_and_files_are_bounded() {
        let mut s = spec();
        s.kind = ServiceKind::Job;
        s.release_command = Some(ReleaseCommand {
            command: vec!["migrate".into()],
            timeout_secs: 60,
        });
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("release_command".into())
        );
        let mut s = spec();
        s.files = vec![
            ConfigFile {
                target: "/etc/nginx/nginx.conf".into(),
                content: "events {}".into(),
            };
            2
        ];
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("files[1].target".into())
        );
        s.files.pop();
        assert!(s.validate().is_ok());
        s.files[0].content = "x".repeat(MAX_CONFIG_FILE_BYTES + 1);
        assert_eq!(
            s.validate().map_err(|e| e.field),
            Err("files[0].content".into())
        );
    }

    #[test]
    fn unknown_spec_fields_are_rejected() {
        let r: Result<ServiceSpec, _> =
            serde_json::from_value(serde_json::json!({"image": "app:1", "privileged": true}));
        assert!(r.is_err());
    }
}
