//! Thin wrapper over bollard: everything the agent asks of the Docker Engine,
//! returning agent-side types so the orchestration code does not see bollard.
use crate::spec::{AgentLabels, PortKey};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum,
    HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StatsOptions, StopContainerOptions,
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use slipway_types::agent::{labels, ContainerHealth, ContainerState, LogStream, RegistryAuth};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// How long `docker stop` waits before SIGKILL.
const STOP_TIMEOUT_SECS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot connect to the Docker Engine at {host}: {message}")]
    Connect { host: String, message: String },
    #[error(
        "unsupported Docker host {0:?}: use unix:///path, tcp://host:port or http://host:port"
    )]
    BadHost(String),
    #[error("no such container: {0}")]
    NotFound(String),
    /// 409, e.g. a container name already in use.
    #[error("Docker Engine: {0}")]
    Conflict(String),
    #[error("Docker Engine: {0}")]
    Api(String),
}

impl From<bollard::errors::Error> for DockerError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            } => DockerError::NotFound(message),
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            } => DockerError::Conflict(message),
            other => DockerError::Api(other.to_string()),
        }
    }
}

/// A container the agent manages, as inspected.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub service_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
    pub release_number: i64,
    pub replica: u32,
    pub state: ContainerState,
    pub health: ContainerHealth,
    pub restart_count: i64,
    pub exit_code: Option<i64>,
    /// `8080/tcp` → host port on 127.0.0.1.
    pub host_ports: BTreeMap<PortKey, u16>,
    pub created_at: DateTime<Utc>,
    /// The agent's own labels (health check, published ports).
    pub agent: AgentLabels,
}

impl ManagedContainer {
    pub fn is_running(&self) -> bool {
        self.state == ContainerState::Running
    }

    /// Running or restarting: what has to be stopped to keep it stopped.
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Running | ContainerState::Restarting
        )
    }
}

/// Everything needed to create one container (already resolved from the plan).
#[derive(Clone, PartialEq)]
pub struct CreateSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    /// `KEY=value`; may hold secrets, never logged.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Published on 127.0.0.1 with an ephemeral host port.
    pub ports: Vec<PortKey>,
    pub binds: Vec<String>,
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub user: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
}

impl std::fmt::Debug for CreateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
}

#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
}

impl Docker {
    /// Connects to `host` (`unix://…`, `tcp://…`, `http://…`) and negotiates
    /// the API version with the engine (so older engines work).
    pub async fn connect(host: &str) -> Result<Self, DockerError> {
        let connect_err = |e: bollard::errors::Error| DockerError::Connect {
            host: host.to_owned(),
            message: e.to_string(),
        };
        let inner = if let Some(path) = host.strip_prefix("unix://") {
            bollard::Docker::connect_with_socket(path, 120, bollard::API_DEFAULT_VERSION)
                .map_err(connect_err)?
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            let url = host.replacen("tcp://", "http://", 1);
            bollard::Docker::connect_with_http(&url, 120, bollard::API_DEFAULT_VERSION)
                .map_err(connect_err)?
        } else if host.starts_with('/') {
            bollard::Docker::connect_with_socket(host, 120, bollard::API_DEFAULT_VERSION)
                .map_err(connect_err)?
        } else {
            return Err(DockerError::BadHost(host.to_owned()));
        };
        let inner = inner.negotiate_version().await.map_err(connect_err)?;
        Ok(Self { inner })
    }

    pub async fn version(&self) -> Result<String, DockerError> {
        let v = self.inner.version().await?;
        Ok(v.version.unwrap_or_default())
    }

    pub async fn image_present(&self, image: &str) -> Result<bool, DockerError> {
        match self.inner.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match DockerError::from(e) {
                DockerError::NotFound(_) => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Pulls `image`; the error message is Docker's.
    pub async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<(), DockerError> {
        let (from_image, tag) = split_pull_ref(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.0.clone()),
            serveraddress: a.server.clone(),
            ..Default::default()
        });
        let mut stream = self.inner.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError::Api(detail.message.unwrap_or_default()));
            }
        }
        Ok(())
    }

    pub async fn create(&self, spec: &CreateSpec) -> Result<String, DockerError> {
        let mut port_bindings = HashMap::new();
        for p in &spec.ports {
            port_bindings.insert(
                p.to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        let host_config = HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            port_bindings: Some(port_bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory_bytes,
            readonly_rootfs: Some(spec.read_only),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
            security_opt: spec
                .no_new_privileges
                .then(|| vec!["no-new-privileges:true".to_owned()]),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(spec.ports.iter().map(|p| p.to_string()).collect()),
            user: spec.user.clone(),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self.inner.create_container(Some(options), body).await?;
        Ok(created.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.inner.start_container(id, None).await?;
        Ok(())
    }

    pub async fn stop(&self, id: &str) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(STOP_TIMEOUT_SECS),
            signal: None,
        };
        match self.inner.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Force-removes the container; a container already gone is fine.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        match self.inner.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn inspect(&self, id: &str) -> Result<ManagedContainer, DockerError> {
        let resp = self.inner.inspect_container(id, None).await?;
        Ok(to_managed(resp))
    }

    /// Containers labelled for `host_id` (optionally only one service), running or not.
    pub async fn list_managed(
        &self,
        host_id: Uuid,
        service_id: Option<Uuid>,
    ) -> Result<Vec<ManagedContainer>, DockerError> {
        let mut label_filters = vec![
            format!("{}=true", labels::MANAGED),
            format!("{}={host_id}", labels::HOST),
        ];
        if let Some(s) = service_id {
            label_filters.push(format!("{}={s}", labels::SERVICE_ID));
        }
        let mut filters = HashMap::new();
        filters.insert("label".to_owned(), label_filters);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let summaries = self.inner.list_containers(Some(options)).await?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            match self.inspect(&id).await {
                Ok(c) => out.push(c),
                // Removed between list and inspect.
                Err(DockerError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The last `tail` lines the container printed (stdout and stderr).
    pub async fn tail_logs(&self, id: &str, tail: u32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut stream = self.log_stream(id, tail, false);
        while let Some(item) = stream.next().await {
            match item {
                Ok((_, line)) => lines.push(line),
                Err(_) => break,
            }
        }
        let skip = lines.len().saturating_sub(tail as usize);
        lines.split_off(skip)
    }

    /// Log lines of a container, split into lines.
    pub fn log_stream(
        &self,
        id: &str,
        tail: u32,
        follow: bool,
    ) -> impl Stream<Item = Result<(LogStream, String), DockerError>> + Send + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        self.inner.logs(id, Some(options)).flat_map(|item| {
            let lines: Vec<Result<(LogStream, String), DockerError>> = match item {
                Ok(output) => {
                    let (stream, bytes) = match output {
                        LogOutput::StdErr { message } => (LogStream::Stderr, message),
                        LogOutput::StdOut { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message } => (LogStream::Stdout, message),
                    };
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(|l| Ok((stream, l.to_owned())))
                        .collect()
                }
                Err(e) => vec![Err(DockerError::from(e))],
            };
            futures_util::stream::iter(lines)
        })
    }

    /// One CPU/memory sample (`stream: false`).
    pub async fn stats(&self, id: &str) -> Result<Option<Stats>, DockerError> {
        let options = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let mut stream = self.inner.stats(id, Some(options));
        let Some(item) = stream.next().await else {
            return Ok(None);
        };
        let s = item?;
        let usage = |c: &Option<bollard::models::ContainerCpuStats>| {
            let c = c.as_ref();
            (
                c.and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.total_usage)
                    .unwrap_or(0),
                c.and_then(|c| c.system_cpu_usage).unwrap_or(0),
                c.and_then(|c| c.online_cpus).unwrap_or(0),
            )
        };
        let (cpu, sys, online) = usage(&s.cpu_stats);
        let (pre_cpu, pre_sys, _) = usage(&s.precpu_stats);
        let memory = s.memory_stats.as_ref();
        Ok(Some(Stats {
            cpu_percent: crate::spec::cpu_percent(cpu, pre_cpu, sys, pre_sys, online),
            memory_bytes: memory.and_then(|m| m.usage).unwrap_or(0),
            memory_limit_bytes: memory.and_then(|m| m.limit),
        }))
    }
}

/// `name:tag` → (`name`, `tag`); no tag → `latest` (Docker would pull every tag);
/// a digest reference is passed whole.
pub fn split_pull_ref(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_owned(), None);
    }
    let last_slash = image.rfind('/');
    match image.rfind(':') {
        Some(i) if last_slash.is_none_or(|j| i > j) => {
            (image[..i].to_owned(), Some(image[i + 1..].to_owned()))
        }
        _ => (image.to_owned(), Some("latest".to_owned())),
    }
}

fn to_managed(resp: ContainerInspectResponse) -> ManagedContainer {
    let config_labels = resp
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let label_uuid = |k: &str| config_labels.get(k).and_then(|v| Uuid::parse_str(v).ok());
    let state = resp.state.as_ref();
    let status = state.and_then(|s| s.status);
    let container_state = match status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        _ => ContainerState::Unknown,
    };
    let health = match state.and_then(|s| s.health.as_ref()).and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => ContainerHealth::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => ContainerHealth::Unhealthy,
        Some(HealthStatusEnum::STARTING) => ContainerHealth::Starting,
        _ => ContainerHealth::None,
    };
    let mut host_ports = BTreeMap::new();
    if let Some(ports) = resp
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    {
        for (key, bindings) in ports {
            let Some(key) = PortKey::parse(key) else {
                continue;
            };
            let host_port = bindings
                .iter()
                .flatten()
                .filter(|b| {
                    b.host_ip
                        .as_deref()
                        .is_none_or(|ip| ip == "127.0.0.1" || ip == "0.0.0.0")
                })
                .find_map(|b| b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()));
            if let Some(p) = host_port {
                host_ports.insert(key, p);
            }
        }
    }
    let created_at = resp
        .created
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default();
    ManagedContainer {
        id: resp.id.unwrap_or_default(),
        name: resp
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: resp
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        service_id: label_uuid(labels::SERVICE_ID),
        deployment_id: label_uuid(labels::DEPLOYMENT),
        release_number: config_labels
            .get(labels::RELEASE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        replica: config_labels
            .get(labels::REPLICA)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        state: container_state,
        health,
        restart_count: resp.restart_count.unwrap_or(0),
        exit_code: state.and_then(|s| s.exit_code),
        host_ports,
        created_at,
        agent: AgentLabels::from_labels(&config_labels),
    }
}

// --- Rollout choreography: graceful stops and exec health checks. ---

/// What a command run in a container ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    pub exit_code: i64,
    /// Its last lines of output (stdout and stderr), at most [`EXEC_OUTPUT_LINES`].
    pub output: Vec<String>,
}

/// Lines of an exec's output kept for messages.
pub const EXEC_OUTPUT_LINES: usize = 5;

impl Docker {
    /// Stops the container with its own stop timeout: the `StopTimeout` it
    /// was created with (the service's stop grace period), else Docker's
    /// 10 s. Returns once it is stopped (or killed); stopped already is fine.
    pub async fn stop_graceful(&self, id: &str) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: None,
            signal: None,
        };
        match self.inner.stop_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `cmd` in the running container `id` and waits until it exits.
    /// Unbounded: the caller puts a timeout around it.
    pub async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutcome, DockerError> {
        use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
        let options = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = self.inner.create_exec(id, options).await?;
        let start = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let mut output: std::collections::VecDeque<String> = Default::default();
        if let StartExecResults::Attached {
            output: mut out, ..
        } = self.inner.start_exec(&exec.id, Some(start)).await?
        {
            while let Some(item) = out.next().await {
                let bytes = match item? {
                    LogOutput::StdErr { message }
                    | LogOutput::StdOut { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message } => message,
                };
                for line in String::from_utf8_lossy(&bytes).lines() {
                    if output.len() == EXEC_OUTPUT_LINES {
                        output.pop_front();
                    }
                    output.push_back(line.to_owned());
                }
            }
        }
        let inspected = self.inner.inspect_exec(&exec.id).await?;
        Ok(ExecOutcome {
            // Still running (the stream ended early) counts as a failure.
            exit_code: match inspected.running {
                Some(true) => -1,
                _ => inspected.exit_code.unwrap_or(-1),
            },
            output: output.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_refs() {
        assert_eq!(
            split_pull_ref("busybox"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(
            split_pull_ref("registry:5000/app:1.2"),
            ("registry:5000/app".into(), Some("1.2".into()))
        );
        assert_eq!(
            split_pull_ref("registry:5000/app"),
            ("registry:5000/app".into(), Some("latest".into()))
        );
        let digest = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(split_pull_ref(&digest), (digest.clone(), None));
    }
}
