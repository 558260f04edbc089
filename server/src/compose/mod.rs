//! docker-compose import: turns a compose file into Slipway service specs.
//!
//! Pure conversion (no IO, no actix/SeaORM types): [`convert`] parses the
//! file with `compose_spec`, maps every key Slipway can honour onto a
//! [`ServiceSpec`], lists the keys it accepts but ignores, and collects
//! *every* problem (unsupported keys, values it cannot express, files that
//! were not uploaded) into one [`ComposeError::Rejected`], so nothing is ever
//! half-imported. The mapping table is documented in `docs/compose.md`.
//!
//! ```text
//! YAML ─ parse (merge keys, raw extra_hosts) ─ Compose
//!   ├ pre-pass: service names, jobs (waited for with service_completed_successfully)
//!   ├ per service: keys (mapped / ignored / refused with a hint), values:
//!   │   env (+ env_file from `files`) · mounts (+ config files from `files`)
//!   │   · ports / networks / extra_hosts · healthcheck · deploy · depends_on
//!   └ whole file: dependency cycles, aliases vs service names, unused uploads
//! ```
mod deploy;
mod env;
mod envfile;
mod health;
mod mounts;
mod network;
pub mod routes;
mod values;

use compose_spec::{
    service::{Command, Condition, Restart},
    Compose, ShortOrLong,
};
use deploy::{capabilities, classify_deploy, convert_limits, memory_mb, no_new_privileges};
use slipway_types::{
    api::{
        DependsCondition, NewService, ReleaseCommand, Resources, ServiceKind, ServiceSpec, Validate,
    },
    ImageRef, ResourceName,
};
use std::collections::{BTreeMap, BTreeSet};
use values::{not_interpolated, secs_ceil, split_shell, unescape};

/// Largest compose file accepted, in bytes.
pub const MAX_COMPOSE_BYTES: usize = 256 * 1024;
/// Most services one import may create.
pub const MAX_SERVICES: usize = 100;
/// The service extension read as the release command.
pub const RELEASE_COMMAND_KEY: &str = "x-slipway-release-command";

/// The result of a successful conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// In file order.
    pub services: Vec<NewService>,
    /// Keys accepted but not acted upon, with the reason (informational).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComposeError {
    /// Not YAML, or not a compose file (the message carries line and column).
    #[error("the compose file cannot be read: {0}")]
    Syntax(String),
    #[error("the compose file is larger than {MAX_COMPOSE_BYTES} bytes")]
    TooLarge,
    #[error("the compose file defines no services")]
    NoServices,
    #[error("the compose file defines more than {MAX_SERVICES} services")]
    TooManyServices,
    /// Everything Slipway cannot honour, all at once.
    #[error("{}", rejected_message(.unsupported, .invalid))]
    Rejected {
        /// Key paths (`services.db.privileged`), optionally with a hint.
        unsupported: Vec<String>,
        /// `path: reason` for values that cannot be expressed.
        invalid: Vec<String>,
    },
}

fn rejected_message(unsupported: &[String], invalid: &[String]) -> String {
    let mut parts = Vec::new();
    if !unsupported.is_empty() {
        parts.push(format!(
            "the compose file uses keys Slipway cannot honour: {}",
            unsupported.join(", ")
        ));
    }
    if !invalid.is_empty() {
        let lead = if parts.is_empty() {
            "the compose file has values Slipway cannot import"
        } else {
            "and values Slipway cannot import"
        };
        parts.push(format!("{lead}: {}", invalid.join("; ")));
    }
    parts.join("; ")
}

/// Collects problems and ignored keys while converting.
#[derive(Default)]
struct Report {
    unsupported: Vec<String>,
    invalid: Vec<String>,
    ignored: Vec<String>,
    /// Uploaded files read, by their key in the request.
    used_files: BTreeSet<String>,
}

impl Report {
    fn unsupported(&mut self, path: impl Into<String>) {
        self.unsupported.push(path.into());
    }
    fn invalid(&mut self, path: &str, reason: impl AsRef<str>) {
        self.invalid.push(format!("{path}: {}", reason.as_ref()));
    }
    fn ignore(&mut self, path: &str, why: &str) {
        self.ignored.push(format!("{path} ({why})"));
    }
    fn errors(&self) -> usize {
        self.unsupported.len() + self.invalid.len()
    }
}

/// The files uploaded with the import, found by the path the compose file
/// writes: `./nginx.conf` and `nginx.conf` are the same file.
struct Uploads<'a> {
    by_path: BTreeMap<String, (&'a str, &'a str)>,
}

/// `a/./b//c` → `a/b/c`, without a leading `./`.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

impl<'a> Uploads<'a> {
    fn new(files: &'a BTreeMap<String, String>) -> Self {
        let by_path = files
            .iter()
            .map(|(k, v)| (normalize(k), (k.as_str(), v.as_str())))
            .collect();
        Self { by_path }
    }

    /// The content of `path`, noting that it was used.
    fn get(&self, path: &str, r: &mut Report) -> Option<&'a str> {
        let (key, content) = self.by_path.get(&normalize(path))?;
        r.used_files.insert((*key).to_owned());
        Some(content)
    }
}

/// Service keys mapped onto the spec.
const MAPPED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "ports",
    "environment",
    "env_file",
    "volumes",
    "tmpfs",
    "healthcheck",
    "deploy",
    "scale",
    "user",
    "read_only",
    "cap_drop",
    "cap_add",
    "security_opt",
    "cpus",
    "mem_limit",
    "depends_on",
    "networks",
    "restart",
    "stop_grace_period",
    "init",
    "extra_hosts",
];

/// Service keys accepted and ignored, with the reason.
const IGNORED: &[(&str, &str)] = &[
    ("container_name", "Slipway names containers itself"),
    ("labels", "Slipway sets its own container labels"),
    ("logging", "Slipway collects container output itself"),
    ("expose", "informational only"),
    (
        "links",
        "services reach each other by name on the environment network",
    ),
    ("mem_reservation", "Slipway applies limits only"),
    ("pull_policy", "Slipway pulls the release's image itself"),
    ("tty", "services run detached, without a terminal"),
    ("stdin_open", "services run detached, without a terminal"),
    ("develop", "development only"),
    ("annotations", "informational only"),
];

/// Hints for the service keys Slipway refuses.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "build" => "build and push the image elsewhere, then set image",
        "secrets" => "reference environment secrets as ${NAME} in environment",
        "configs" => "bind-mount the file (./file:/path) and upload it with the import",
        "network_mode" => "services run on the environment's network",
        "privileged" => "Slipway runs no privileged containers: grant what is needed with cap_add",
        "pid" | "ipc" | "uts" | "userns_mode" | "cgroup" => "containers keep their own namespaces",
        "devices" | "device_cgroup_rules" => "Slipway passes no host devices",
        "sysctls" => "set kernel parameters on the host",
        "ulimits" => "set default ulimits in the host's Docker daemon",
        "hostname" | "domainname" => {
            "services are found by service name and networks aliases on the environment network"
        }
        "dns" | "dns_search" | "dns_opt" => "containers use the environment network's DNS",
        "profiles" => "import only the services you want: remove the others from the file",
        "working_dir" => "set WORKDIR in the image",
        "stop_signal" => "make the process stop on SIGTERM, or set init: true",
        "extends" => "write the extended keys into the service (YAML anchors and <<: work)",
        "volumes_from" => "mount the same named volume in both services",
        "platform" => "push an image built for the host's platform",
        "group_add" => "add the groups in the image",
        "shm_size" => "mount a tmpfs on /dev/shm (tmpfs: /dev/shm:size=…)",
        "cpu_count" | "cpu_percent" | "cpu_shares" | "cpu_period" | "cpu_quota"
        | "cpu_rt_runtime" | "cpu_rt_period" | "cpuset" => {
            "limit CPUs with cpus or deploy.resources.limits.cpus"
        }
        "memswap_limit" | "mem_swappiness" | "oom_kill_disable" | "oom_score_adj" => {
            "limit memory with mem_limit or deploy.resources.limits.memory"
        }
        "pids_limit" => "not supported",
        _ => return None,
    })
}

/// The YAML as compose reads it, and each service's raw `extra_hosts`.
fn parse(yaml: &str) -> Result<(Compose, BTreeMap<String, serde_yaml::Value>), ComposeError> {
    let syntax = |e: serde_yaml::Error| ComposeError::Syntax(e.to_string());
    let mut raw: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(syntax)?;
    let merges = yaml.contains("<<");
    if merges {
        raw.apply_merge().map_err(syntax)?;
    }
    let mut hosts = BTreeMap::new();
    if let Some(services) = raw.get_mut("services").and_then(|s| s.as_mapping_mut()) {
        for (id, svc) in services.iter_mut() {
            if let (Some(id), Some(svc)) = (id.as_str(), svc.as_mapping_mut()) {
                if let Some(h) = svc.remove("extra_hosts") {
                    hosts.insert(id.to_owned(), h);
                }
            }
        }
    }
    // Straight from the text, errors carry the line and column; merge keys
    // and `host-gateway` (which the parser refuses) need the edited value.
    let compose = match Compose::options().from_yaml_str(yaml) {
        Ok(c) => c,
        Err(e) if !merges && hosts.is_empty() => return Err(syntax(e)),
        Err(e) => match Compose::options().from_yaml_value(raw) {
            Ok(c) => c,
            Err(e2) => return Err(syntax(if merges { e2 } else { e })),
        },
    };
    Ok((compose, hosts))
}

/// What every service's conversion may look at.
struct Context<'a> {
    uploads: Uploads<'a>,
    /// The file's service names.
    names: BTreeSet<String>,
    /// Services others wait for with `service_completed_successfully`.
    jobs: BTreeSet<String>,
    extra_hosts: BTreeMap<String, serde_yaml::Value>,
}

/// Converts a compose file, with the `files` uploaded beside it (path as
/// written in the compose file → content). All or nothing: any problem
/// yields [`ComposeError::Rejected`] listing every problem found.
pub fn convert(yaml: &str, files: &BTreeMap<String, String>) -> Result<Converted, ComposeError> {
    if yaml.len() > MAX_COMPOSE_BYTES {
        return Err(ComposeError::TooLarge);
    }
    let (compose, extra_hosts) = parse(yaml)?;
    if compose.services.is_empty() {
        return Err(ComposeError::NoServices);
    }
    if compose.services.len() > MAX_SERVICES {
        return Err(ComposeError::TooManyServices);
    }
    let mut r = Report::default();
    classify_top_level(&compose, &mut r);

    let mut jobs = BTreeSet::new();
    for svc in compose.services.values() {
        if let ShortOrLong::Long(deps) = &svc.depends_on {
            for (dep, d) in deps {
                if d.condition == Condition::ServiceCompletedSuccessfully {
                    jobs.insert(dep.to_string());
                }
            }
        }
    }
    let cx = Context {
        uploads: Uploads::new(files),
        names: compose.services.keys().map(ToString::to_string).collect(),
        jobs,
        extra_hosts,
    };

    let mut services = Vec::new();
    for (id, svc) in compose.services {
        let path = format!("services.{id}");
        let name = ResourceName::try_from(id.as_str());
        if let Err(e) = &name {
            r.invalid(&path, format!("service name {:?} {e}", id.as_str()));
        }
        let spec = convert_service(&path, id.as_str(), svc, &cx, &mut r);
        if let (Ok(name), Some(spec)) = (name, spec) {
            services.push(NewService { name, spec });
        }
    }
    check_stack(&services, &mut r);
    for key in files.keys() {
        if !r.used_files.contains(key) {
            r.ignore(
                &format!("files[{key:?}]"),
                "not used by the compose file: no bind mount or env_file names it",
            );
        }
    }
    if r.errors() == 0 {
        Ok(Converted {
            services,
            ignored: r.ignored,
        })
    } else {
        Err(ComposeError::Rejected {
            unsupported: r.unsupported,
            invalid: r.invalid,
        })
    }
}

fn classify_top_level(compose: &Compose, r: &mut Report) {
    if compose.version.is_some() {
        r.ignore("version", "obsolete");
    }
    if compose.name.is_some() {
        r.ignore("name", "the environment is the project");
    }
    if !compose.include.is_empty() {
        r.unsupported("include (paste the included services into the file)");
    }
    if !compose.secrets.is_empty() {
        r.unsupported("secrets (use the environment's secrets, referenced as ${NAME})");
    }
    if !compose.configs.is_empty() {
        r.unsupported("configs (bind-mount the file and upload it with the import)");
    }
    for (name, decl) in &compose.volumes {
        if decl.is_some() {
            r.ignore(
                &format!("volumes.{name}"),
                "volume options are ignored: Slipway creates plain local volumes",
            );
        }
    }
    for name in compose.networks.keys() {
        r.ignore(
            &format!("networks.{name}"),
            "the services of an environment share one network: merged into it",
        );
    }
    for key in compose.extensions.keys() {
        r.ignore(key.as_str(), "extension");
    }
}

/// The keys a service sets to something other than their default.
fn set_keys<T: serde::Serialize>(value: &T) -> Result<Vec<String>, String> {
    match serde_json::to_value(value).map_err(|e| e.to_string())? {
        serde_json::Value::Object(m) => Ok(m.keys().cloned().collect()),
        serde_json::Value::Null => Ok(Vec::new()),
        other => Err(format!("unexpected value {other}")),
    }
}

fn classify_keys(path: &str, svc: &compose_spec::Service, r: &mut Report) {
    let keys = match set_keys(svc) {
        Ok(keys) => keys,
        Err(e) => return r.invalid(path, e),
    };
    for key in keys {
        if MAPPED.contains(&key.as_str()) || key == RELEASE_COMMAND_KEY {
            continue;
        }
        let kpath = format!("{path}.{key}");
        if key.starts_with("x-slipway-") {
            r.unsupported(format!(
                "{kpath} (unknown Slipway extension: {RELEASE_COMMAND_KEY} is the one Slipway reads)"
            ));
        } else if key.starts_with("x-") {
            r.ignore(&kpath, "extension");
        } else if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
            r.ignore(&kpath, why);
        } else if let Some(h) = hint(&key) {
            r.unsupported(format!("{kpath} ({h})"));
        } else {
            r.unsupported(kpath);
        }
    }
}

/// A `command`-like value: a string split as a shell would, or a list.
fn argv(path: &str, c: &Command, r: &mut Report) -> Option<Vec<String>> {
    let raw = match c {
        Command::String(s) => match split_shell(s) {
            Ok(w) => w,
            Err(e) => {
                r.invalid(path, e);
                return None;
            }
        },
        Command::List(v) => v.clone(),
    };
    let mut out = Vec::with_capacity(raw.len());
    for arg in raw {
        match unescape(&arg) {
            Ok(a) => out.push(a),
            Err(var) => {
                r.invalid(path, not_interpolated(&var));
                return None;
            }
        }
    }
    Some(out)
}

/// `x-slipway-release-command`: a string (split like `command`) or a list.
fn release_command(
    path: &str,
    svc: &compose_spec::Service,
    r: &mut Report,
) -> Option<ReleaseCommand> {
    let value = svc
        .extensions
        .iter()
        .find(|(k, _)| k.as_str() == RELEASE_COMMAND_KEY)?
        .1;
    let rpath = format!("{path}.{RELEASE_COMMAND_KEY}");
    let command = match value {
        serde_yaml::Value::String(s) => Command::String(s.clone()),
        serde_yaml::Value::Sequence(items) => {
            let list: Option<Vec<String>> = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect();
            match list {
                Some(l) => Command::List(l),
                None => {
                    r.invalid(&rpath, "expected a string or a list of strings");
                    return None;
                }
            }
        }
        _ => {
            r.invalid(&rpath, "expected a string or a list of strings");
            return None;
        }
    };
    Some(ReleaseCommand {
        command: argv(&rpath, &command, r)?,
        timeout_secs: ReleaseCommand::default_timeout(),
    })
}

fn convert_depends_on(
    path: &str,
    id: &str,
    svc: &compose_spec::Service,
    cx: &Context,
    r: &mut Report,
) -> BTreeMap<ResourceName, DependsCondition> {
    let dpath = format!("{path}.depends_on");
    let deps: Vec<(String, Condition)> = match &svc.depends_on {
        ShortOrLong::Short(set) => set
            .iter()
            .map(|d| (d.to_string(), Condition::ServiceStarted))
            .collect(),
        ShortOrLong::Long(map) => map
            .iter()
            .map(|(d, o)| {
                if o.restart {
                    r.ignore(
                        &format!("{dpath}.{d}.restart"),
                        "Slipway does not restart dependents when a dependency is redeployed",
                    );
                }
                if !o.required {
                    r.ignore(
                        &format!("{dpath}.{d}.required"),
                        "every dependency is required",
                    );
                }
                (d.to_string(), o.condition)
            })
            .collect(),
    };
    let mut out = BTreeMap::new();
    for (dep, condition) in deps {
        if dep == id {
            r.invalid(&dpath, format!("{id} depends on itself"));
            continue;
        }
        if !cx.names.contains(&dep) {
            r.invalid(
                &dpath,
                format!(
                    "{dep} is not a service of this file (a dependency must be imported with \
                     the services that wait for it)"
                ),
            );
            continue;
        }
        if condition == Condition::ServiceHealthy && cx.jobs.contains(&dep) {
            r.invalid(
                &format!("{dpath}.{dep}"),
                format!(
                    "{dep} runs to completion (another service waits for it with \
                     service_completed_successfully): it has no health to wait for"
                ),
            );
            continue;
        }
        // An invalid service name is reported with that service.
        let Ok(name) = ResourceName::try_from(dep.as_str()) else {
            continue;
        };
        out.insert(
            name,
            match condition {
                Condition::ServiceStarted => DependsCondition::ServiceStarted,
                Condition::ServiceHealthy => DependsCondition::ServiceHealthy,
                Condition::ServiceCompletedSuccessfully => {
                    DependsCondition::ServiceCompletedSuccessfully
                }
            },
        );
    }
    out
}

fn convert_service(
    path: &str,
    id: &str,
    svc: compose_spec::Service,
    cx: &Context,
    r: &mut Report,
) -> Option<ServiceSpec> {
    classify_keys(path, &svc, r);
    let errors_before = r.errors();
    let is_job = cx.jobs.contains(id);

    let image = match &svc.image {
        Some(img) => match ImageRef::try_from(img.as_ref()) {
            Ok(i) => Some(i),
            Err(e) => {
                r.invalid(&format!("{path}.image"), e);
                None
            }
        },
        None => {
            // `build:` without `image:` is already listed as unsupported.
            if svc.build.is_none() {
                r.invalid(path, "image is required");
            }
            None
        }
    };

    let command = svc
        .command
        .as_ref()
        .and_then(|c| argv(&format!("{path}.command"), c, r));
    let entrypoint = svc.entrypoint.as_ref().and_then(|c| {
        let epath = format!("{path}.entrypoint");
        let e = argv(&epath, c, r)?;
        if e.is_empty() {
            r.invalid(
                &epath,
                "an empty entrypoint (clearing the image's) is not supported: set the command \
                 to run as entrypoint",
            );
            return None;
        }
        Some(e)
    });
    let ports = network::convert_ports(path, &svc.ports, r);
    let env = env::convert(
        path,
        svc.env_file.as_ref(),
        &svc.environment,
        &cx.uploads,
        r,
    );
    let mut mounts = mounts::Mounts::default();
    mounts::convert_volumes(path, &svc.volumes, &cx.uploads, r, &mut mounts);
    if let Some(t) = &svc.tmpfs {
        let entries: Vec<&str> = match t {
            compose_spec::ItemOrList::Item(p) => vec![p.as_path().to_str().unwrap_or_default()],
            compose_spec::ItemOrList::List(l) => l
                .iter()
                .map(|p| p.as_path().to_str().unwrap_or_default())
                .collect(),
        };
        mounts::convert_tmpfs(path, entries, r, &mut mounts);
    }
    let hpath = format!("{path}.healthcheck");
    let health_check = match &svc.healthcheck {
        Some(_) if is_job => {
            r.ignore(&hpath, "a job's exit status is its result");
            None
        }
        Some(h) => health::convert(&hpath, h, r),
        None => None,
    };

    let mut replicas = 1;
    if let Some(n) = svc.scale {
        match u32::try_from(n) {
            Ok(n) => replicas = n,
            Err(_) => r.invalid(&format!("{path}.scale"), "too large"),
        }
    }
    let mut resources = Resources::default();
    if let Some(cpus) = svc.cpus {
        resources.cpus = Some(cpus.into_inner());
    }
    if let Some(mem) = &svc.mem_limit {
        resources.memory_mb = memory_mb(&format!("{path}.mem_limit"), mem, r);
    }
    let mut strategy = None;
    if let Some(deploy) = &svc.deploy {
        let dpath = format!("{path}.deploy");
        strategy = classify_deploy(&dpath, deploy, r);
        if let Some(n) = deploy.replicas {
            match u32::try_from(n) {
                Ok(n) => replicas = n,
                Err(_) => r.invalid(&format!("{dpath}.replicas"), "too large"),
            }
        }
        if let Some(limits) = deploy
            .resources
            .as_ref()
            .and_then(|res| res.limits.as_ref())
        {
            convert_limits(
                &format!("{dpath}.resources.limits"),
                limits,
                &mut resources,
                r,
            );
        }
    }

    let mut hardening = slipway_types::api::Hardening {
        user: svc.user.as_ref().map(|u| u.to_string()),
        read_only: svc.read_only,
        ..Default::default()
    };
    hardening.cap_drop = capabilities(&format!("{path}.cap_drop"), &svc.cap_drop, r);
    hardening.cap_add = capabilities(&format!("{path}.cap_add"), &svc.cap_add, r);
    for (i, opt) in svc.security_opt.iter().enumerate() {
        match no_new_privileges(opt) {
            Some(v) => hardening.no_new_privileges = v,
            None => r.unsupported(format!(
                "{path}.security_opt[{i}] ({opt}: only no-new-privileges is supported)"
            )),
        }
    }

    let rpath = format!("{path}.restart");
    match (svc.restart, is_job) {
        (None, _) => {}
        (Some(Restart::Always | Restart::UnlessStopped), true) => r.invalid(
            &rpath,
            format!(
                "{id} runs once per deployment (another service waits for it with \
                 service_completed_successfully): remove restart or set it to \"no\""
            ),
        ),
        (Some(_), true) => r.ignore(&rpath, "a job runs once per deployment"),
        (Some(_), false) => r.ignore(&rpath, "Slipway always restarts containers that stop"),
    }
    let stop_grace_period_secs = svc.stop_grace_period.and_then(|d| match secs_ceil(d) {
        Ok(s) => Some(s),
        Err(e) => {
            r.invalid(&format!("{path}.stop_grace_period"), e);
            None
        }
    });
    let extra_hosts = cx
        .extra_hosts
        .get(id)
        .map(|raw| network::convert_extra_hosts(path, raw, r))
        .unwrap_or_default();
    let aliases = network::convert_networks(path, svc.network_config.as_ref(), r);
    let depends_on = convert_depends_on(path, id, &svc, cx, r);
    let release_command = release_command(path, &svc, r);

    let spec = ServiceSpec {
        command,
        entrypoint,
        ports,
        env: env.vars,
        secrets: env.secrets,
        volumes: mounts.volumes,
        files: mounts.files,
        tmpfs: mounts.tmpfs,
        health_check,
        replicas,
        resources,
        hardening,
        kind: if is_job {
            ServiceKind::Job
        } else {
            ServiceKind::Service
        },
        strategy,
        depends_on,
        release_command,
        aliases,
        stop_grace_period_secs,
        init: svc.init,
        extra_hosts,
        ..ServiceSpec::of_image(image?)
    };
    if r.errors() > errors_before {
        return None;
    }
    // Cross-field and range checks of the API apply to imports too.
    if let Err(e) = spec.validate() {
        r.invalid(&format!("{path}.{}", e.field), e.message);
        return None;
    }
    Some(spec)
}

/// Checks across services: dependency cycles, aliases that are another
/// service's name.
fn check_stack(services: &[NewService], r: &mut Report) {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for s in services {
        for a in &s.spec.aliases {
            if a != &s.name && names.contains(a.as_str()) {
                r.invalid(
                    &format!("services.{}.networks", s.name),
                    format!("alias {a} is the name of another service"),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(services) {
        r.invalid("depends_on", format!("a cycle: {}", cycle.join(" → ")));
    }
}

/// A dependency cycle, as the names along it (first = last).
fn find_cycle(services: &[NewService]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = services
        .iter()
        .map(|s| {
            let d = s.spec.depends_on.keys().map(ResourceName::as_str).collect();
            (s.name.as_str(), d)
        })
        .collect();
    // 0 unvisited, 1 on the current path, 2 done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n).copied().unwrap_or(0) {
            2 => return None,
            1 => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in deps.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, deps, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    deps.keys()
        .find_map(|n| visit(n, &deps, &mut state, &mut Vec::new()))
}

#[cfg(test)]
mod tests;
