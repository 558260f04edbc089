//! Thin wrapper over bollard: everything the agent asks of the Docker Engine,
//! returning agent-side types so the orchestration code does not see bollard.
//!
//! Creating a container also provides what it needs on this host: its
//! environment network (created on demand, see [`Docker::ensure_network`])
//! and its config files (written under the agent's files directory, see
//! [`crate::files`]). Both are shared by the containers of an environment,
//! so creates hold them shared and reconcile's cleanup exclusively
//! ([`Docker::lock_host_resources`]).
use crate::spec::{AgentLabels, PortKey};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    HealthStatusEnum, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, LogsOptions, RemoveContainerOptions, StatsOptions, StopContainerOptions,
    WaitContainerOptions,
};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use slipway_types::agent::{labels, ContainerHealth, ContainerState, LogStream, RegistryAuth};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

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
    /// A container's config files could not be provided on this host.
    #[error("config files: {0}")]
    Files(String),
    /// A network with the environment network's name that the agent does
    /// not manage.
    #[error("a network named {0} exists that Slipway does not manage; rename or remove it")]
    ForeignNetwork(String),
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
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value`; may hold secrets, never logged.
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Published on 127.0.0.1 with an ephemeral host port.
    pub ports: Vec<PortKey>,
    /// `mode: tcp` ports: bound by Docker on a fixed host address and port.
    pub bindings: Vec<FixedPort>,
    pub binds: Vec<String>,
    /// Config files, bind-mounted read-only from the agent's files directory.
    pub files: Vec<MountedFile>,
    /// `target → options` (`size=64m`).
    pub tmpfs: Vec<(String, String)>,
    /// `host:ip` (`ip` may be `host-gateway`).
    pub extra_hosts: Vec<String>,
    pub init: bool,
    /// SIGTERM → SIGKILL delay of `docker stop` (the engine's 10 s when `None`).
    pub stop_timeout_secs: Option<u32>,
    /// The environment network the container joins (else Docker's default bridge).
    pub network: Option<NetworkSpec>,
    /// DNS names of the container on [`CreateSpec::network`].
    pub aliases: Vec<String>,
    pub restart: Restart,
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub user: Option<String>,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
}

/// A port Docker binds on a fixed host address (`mode: tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPort {
    pub key: PortKey,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// A config file: stored under the agent's files directory by its SHA-256,
/// mounted read-only at `target`.
#[derive(Clone, PartialEq, Eq)]
pub struct MountedFile {
    /// Hex SHA-256 of `content`: the file's name on the host.
    pub digest: String,
    pub target: String,
    pub content: String,
}

impl std::fmt::Debug for MountedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountedFile")
            .field("digest", &self.digest)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A user-defined bridge network to create on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// What Docker does when the container's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Services: restarted, also after a reboot, until stopped.
    UnlessStopped,
    /// One-off containers.
    Never,
}

/// A network labelled for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedNetwork {
    pub id: String,
    pub name: String,
    pub environment_id: Option<Uuid>,
}

/// A one-off container (labelled [`labels::RUN`]) of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContainer {
    pub id: String,
    pub name: String,
    /// The agent process ([`Docker::session`]) that created it.
    pub session: Option<Uuid>,
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
    /// Where config files are written (`None`: containers with files are refused).
    files_dir: Option<Arc<PathBuf>>,
    /// Held shared by a create from ensuring its network and writing its
    /// files until the container exists (then it references both); held
    /// exclusively while removing unused networks and files.
    resources: Arc<tokio::sync::RwLock<()>>,
    /// Environment networks known to exist: name → id. Also serializes
    /// this process's network creates.
    networks: Arc<tokio::sync::Mutex<HashMap<String, String>>>,
    /// This process: one-off containers carry it, so a leftover of an
    /// earlier (crashed) agent is told from one running now.
    session: Uuid,
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
        Ok(Self {
            inner,
            files_dir: None,
            resources: Arc::default(),
            networks: Arc::default(),
            session: Uuid::new_v4(),
        })
    }

    /// Config files of containers go to `dir` (created 0700 on first use).
    pub fn with_files_dir(mut self, dir: PathBuf) -> Self {
        self.files_dir = Some(Arc::new(dir));
        self
    }

    pub fn files_dir(&self) -> Option<&Path> {
        self.files_dir.as_deref().map(PathBuf::as_path)
    }

    /// This agent process's id, on the one-off containers it creates.
    pub fn session(&self) -> Uuid {
        self.session
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

    /// Creates the container, first its network (if missing) and its config
    /// files. A network removed meanwhile (by another agent) is created again.
    pub async fn create(&self, spec: &CreateSpec) -> Result<String, DockerError> {
        let _shared = self.resources.read().await;
        let binds = self.provide_files(spec).await?;
        let Some(net) = &spec.network else {
            return self.create_container(spec, binds, None).await;
        };
        // Joined by name: Docker records a container's networks by name (a
        // created or stopped container's endpoint has no network id yet),
        // and a kept container restarts on a network created again.
        self.ensure_network(net).await?;
        match self
            .create_container(spec, binds.clone(), Some(&net.name))
            .await
        {
            Err(DockerError::NotFound(m)) if m.contains("network") => {
                self.networks.lock().await.remove(&net.name);
                self.ensure_network(net).await?;
                self.create_container(spec, binds, Some(&net.name)).await
            }
            other => other,
        }
    }

    /// Writes the spec's config files; the bind mounts of all its volumes.
    async fn provide_files(&self, spec: &CreateSpec) -> Result<Vec<String>, DockerError> {
        let mut binds = spec.binds.clone();
        if spec.files.is_empty() {
            return Ok(binds);
        }
        let Some(dir) = self.files_dir.clone() else {
            return Err(DockerError::Files(
                "this agent has no directory for config files".into(),
            ));
        };
        let files = spec.files.clone();
        let written = tokio::task::spawn_blocking(move || {
            for f in &files {
                crate::files::write(&dir, f)?;
            }
            files
                .iter()
                .map(|f| crate::spec::file_bind(&dir, f))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| std::io::Error::other(e.0))
        })
        .await
        .map_err(|e| DockerError::Files(e.to_string()))?
        .map_err(|e| DockerError::Files(e.to_string()))?;
        binds.extend(written);
        Ok(binds)
    }

    async fn create_container(
        &self,
        spec: &CreateSpec,
        binds: Vec<String>,
        network: Option<&str>,
    ) -> Result<String, DockerError> {
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for p in &spec.ports {
            port_bindings
                .entry(p.to_string())
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                });
        }
        for b in &spec.bindings {
            port_bindings
                .entry(b.key.to_string())
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(b.host_ip.to_string()),
                    host_port: Some(b.host_port.to_string()),
                });
        }
        let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
        exposed.sort();
        let restart = match spec.restart {
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            Restart::Never => RestartPolicyNameEnum::NO,
        };
        let host_config = HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: Some(port_bindings),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
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
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.iter().cloned().collect()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            init: spec.init.then_some(true),
            network_mode: network.map(str::to_owned),
            ..Default::default()
        };
        let networking_config = network.map(|name| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.to_owned(),
                EndpointSettings {
                    aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(exposed),
            user: spec.user.clone(),
            stop_timeout: spec.stop_timeout_secs.map(i64::from),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = self.inner.create_container(Some(options), body).await?;
        Ok(created.id)
    }

    /// The id of the network `net`, created when missing. Docker before 25
    /// creates a second network of the same name when asked twice at once
    /// (from another process): then the oldest one wins and the others go.
    pub async fn ensure_network(&self, net: &NetworkSpec) -> Result<String, DockerError> {
        let mut known = self.networks.lock().await;
        if let Some(id) = known.get(&net.name) {
            return Ok(id.clone());
        }
        let id = match self.network_named(&net.name).await? {
            Some(id) => id,
            None => {
                let request = NetworkCreateRequest {
                    name: net.name.clone(),
                    driver: Some("bridge".into()),
                    labels: Some(net.labels.clone()),
                    ..Default::default()
                };
                match self
                    .inner
                    .create_network(request)
                    .await
                    .map_err(DockerError::from)
                {
                    // Docker 25+: someone else created it just now.
                    Ok(_) | Err(DockerError::Conflict(_)) => {}
                    // Not an image or container that is missing (e.g. the
                    // engine's address pools are used up): say what failed.
                    Err(e) => {
                        return Err(DockerError::Api(format!(
                            "cannot create the environment network {}: {}",
                            net.name,
                            e.to_string().trim_start_matches("no such container: ")
                        )))
                    }
                }
                self.network_named(&net.name)
                    .await?
                    .ok_or_else(|| DockerError::NotFound(format!("network {}", net.name)))?
            }
        };
        known.insert(net.name.clone(), id.clone());
        Ok(id)
    }

    /// The managed network called exactly `name` (the oldest when Docker
    /// holds several; the younger empty ones are removed).
    async fn network_named(&self, name: &str) -> Result<Option<String>, DockerError> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
        };
        let mut found: Vec<(DateTime<Utc>, String, bool)> =
            self.inner
                .list_networks(Some(options))
                .await?
                .into_iter()
                .filter(|n| n.name.as_deref() == Some(name))
                .filter_map(|n| {
                    let created = n
                        .created
                        .as_deref()
                        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                        .map(|d| d.with_timezone(&Utc))
                        .unwrap_or_default();
                    let managed = n.labels.as_ref().is_some_and(|l| {
                        l.get(labels::MANAGED).map(String::as_str) == Some("true")
                    });
                    Some((created, n.id?, managed))
                })
                .collect();
        found.sort();
        let Some((_, winner, managed)) = found.first().cloned() else {
            return Ok(None);
        };
        if !managed {
            return Err(DockerError::ForeignNetwork(name.to_owned()));
        }
        // Every agent picks the oldest, so the younger ones are unused (and
        // Docker refuses to remove one with a running container anyway).
        for (_, id, managed) in found.iter().skip(1) {
            if *managed {
                tracing::info!(network = %name, %id, "removing a duplicate network");
                let _ = self.inner.remove_network(id).await;
            }
        }
        Ok(Some(winner))
    }

    /// Networks labelled for `host_id`.
    pub async fn list_networks(&self, host_id: Uuid) -> Result<Vec<ManagedNetwork>, DockerError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{}=true", labels::MANAGED),
                format!("{}={host_id}", labels::HOST),
            ],
        )]);
        let options = ListNetworksOptions {
            filters: Some(filters),
        };
        let mut out: Vec<ManagedNetwork> = self
            .inner
            .list_networks(Some(options))
            .await?
            .into_iter()
            .filter_map(|n| {
                let environment_id = n
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(labels::ENVIRONMENT_ID))
                    .and_then(|v| Uuid::parse_str(v).ok());
                Some(ManagedNetwork {
                    id: n.id?,
                    name: n.name.unwrap_or_default(),
                    environment_id,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether any container, in any state, is configured on network `net`
    /// (Docker only counts running ones as attached, and would remove a
    /// network a created or stopped container still needs). By name: that is
    /// how a container that never ran refers to it.
    pub async fn network_in_use(&self, net: &ManagedNetwork) -> Result<bool, DockerError> {
        let options = ListContainersOptions {
            all: true,
            limit: Some(1),
            filters: Some(HashMap::from([(
                "network".to_owned(),
                vec![net.name.clone()],
            )])),
            ..Default::default()
        };
        Ok(!self.inner.list_containers(Some(options)).await?.is_empty())
    }

    /// Removes network `net` (call it holding [`Docker::lock_host_resources`],
    /// having checked [`Docker::network_in_use`]); one gone already is fine.
    pub async fn remove_network(&self, net: &ManagedNetwork) -> Result<(), DockerError> {
        self.networks.lock().await.remove(&net.name);
        match self.inner.remove_network(&net.id).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Excludes creates while held: removing networks and files nobody uses.
    pub async fn lock_host_resources(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.resources.write().await
    }

    /// Config files (their digests) that containers of `host_id`, in any
    /// state, mount.
    pub async fn files_in_use(&self, host_id: Uuid) -> Result<HashSet<String>, DockerError> {
        let Some(dir) = self.files_dir.clone() else {
            return Ok(HashSet::new());
        };
        let mut used = HashSet::new();
        for id in self.container_ids(host_id, &[]).await? {
            let resp = match self.inner.inspect_container(&id, None).await {
                Ok(r) => r,
                Err(e) => match DockerError::from(e) {
                    DockerError::NotFound(_) => continue,
                    other => return Err(other),
                },
            };
            let binds = resp.host_config.and_then(|h| h.binds).unwrap_or_default();
            used.extend(
                binds
                    .iter()
                    .filter_map(|b| crate::spec::file_digest_of_bind(&dir, b)),
            );
        }
        Ok(used)
    }

    /// One-off containers of `host_id`.
    pub async fn list_runs(&self, host_id: Uuid) -> Result<Vec<RunContainer>, DockerError> {
        let summaries = self.summaries(host_id, &[labels::RUN.to_owned()]).await?;
        Ok(summaries
            .into_iter()
            .filter_map(|s| {
                let labels = s.labels.unwrap_or_default();
                Some(RunContainer {
                    id: s.id?,
                    name: s
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_owned(),
                    session: labels
                        .get(crate::spec::LABEL_SESSION)
                        .and_then(|v| Uuid::parse_str(v).ok()),
                })
            })
            .collect())
    }

    async fn summaries(
        &self,
        host_id: Uuid,
        extra: &[String],
    ) -> Result<Vec<bollard::models::ContainerSummary>, DockerError> {
        let mut label_filters = vec![
            format!("{}=true", labels::MANAGED),
            format!("{}={host_id}", labels::HOST),
        ];
        label_filters.extend(extra.iter().cloned());
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), label_filters)])),
            ..Default::default()
        };
        Ok(self.inner.list_containers(Some(options)).await?)
    }

    async fn container_ids(
        &self,
        host_id: Uuid,
        extra: &[String],
    ) -> Result<Vec<String>, DockerError> {
        Ok(self
            .summaries(host_id, extra)
            .await?
            .into_iter()
            .filter_map(|s| s.id)
            .collect())
    }

    /// Sends SIGKILL; a container that is not running is fine.
    pub async fn kill(&self, id: &str) -> Result<(), DockerError> {
        let options = KillContainerOptions {
            signal: "KILL".into(),
        };
        match self.inner.kill_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the container is not running; its exit code.
    pub async fn wait_exit(&self, id: &str) -> Result<i64, DockerError> {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut stream = self.inner.wait_container(id, Some(options));
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Ok(self.inspect(id).await?.exit_code.unwrap_or(-1)),
        }
    }

    /// Everything the container printed, following it until it stops.
    pub fn follow_logs(
        &self,
        id: &str,
    ) -> impl Stream<Item = Result<(LogStream, String), DockerError>> + Send + 'static {
        self.logs(id, "all".into(), true)
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.inner.start_container(id, None).await?;
        Ok(())
    }

    pub async fn stop(&self, id: &str) -> Result<(), DockerError> {
        // No `t`: the container's own stop timeout (its service's
        // `stop_grace_period`, else the engine's 10 s).
        let options = StopContainerOptions {
            t: None,
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

    /// Containers labelled for `host_id` (optionally only one service), running
    /// or not; not the one-off containers ([`Docker::list_runs`]).
    pub async fn list_managed(
        &self,
        host_id: Uuid,
        service_id: Option<Uuid>,
    ) -> Result<Vec<ManagedContainer>, DockerError> {
        let extra: Vec<String> = service_id
            .map(|s| format!("{}={s}", labels::SERVICE_ID))
            .into_iter()
            .collect();
        let summaries = self.summaries(host_id, &extra).await?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            // One-off containers are no replicas of a deployment: `run` owns them.
            if s.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::RUN))
            {
                continue;
            }
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
        self.logs(id, tail.to_string(), follow)
    }

    fn logs(
        &self,
        id: &str,
        tail: String,
        follow: bool,
    ) -> impl Stream<Item = Result<(LogStream, String), DockerError>> + Send + 'static {
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail,
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
