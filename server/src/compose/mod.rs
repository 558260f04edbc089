//! docker-compose import: turns a compose file into Slipway service specs.
//!
//! Pure conversion (no IO, no actix/SeaORM types): [`convert`] parses the
//! file with `compose_spec`, maps every key Slipway can honour onto a
//! [`ServiceSpec`], lists the keys it accepts but ignores, and collects
//! *every* problem (unsupported keys, values it cannot express) into one
//! [`ComposeError::Rejected`], so nothing is ever half-imported.
//! The mapping table is documented in `docs/compose.md`.
pub mod routes;

use compose_spec::{
    service::{
        deploy::{resources::Limits, Mode as DeployMode},
        healthcheck::Test,
        ports::{Port as LongPort, Protocol as ComposeProtocol, Range, ShortPort},
        volumes::{Mount, ShortVolume, Source},
        ByteValue, Command, Healthcheck,
    },
    Compose, ListOrMap, ShortOrLong, Value,
};
use slipway_types::{
    api::{
        HealthCheck, NewService, PortMapping, PortMode, Protocol, Resources, SecretRef,
        ServiceSpec, Validate, VolumeMount,
    },
    names::check_dns_label,
    Capability, EnvVarName, ImageRef, Port, ResourceName,
};
use std::{collections::BTreeMap, net::IpAddr, time::Duration};

/// Largest compose file accepted, in bytes.
pub const MAX_COMPOSE_BYTES: usize = 256 * 1024;
/// Most services one import may create.
pub const MAX_SERVICES: usize = 100;

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
}

/// Service keys mapped onto the spec.
const MAPPED: &[&str] = &[
    "image",
    "command",
    "ports",
    "environment",
    "volumes",
    "healthcheck",
    "deploy",
    "user",
    "read_only",
    "cap_drop",
    "cap_add",
    "security_opt",
    "cpus",
    "mem_limit",
];

/// Service keys accepted and ignored, with the reason.
const IGNORED: &[(&str, &str)] = &[
    ("restart", "Slipway always restarts containers that stop"),
    ("depends_on", "each service is deployed on its own"),
    (
        "networks",
        "the services of an environment share one network",
    ),
    ("container_name", "Slipway names containers itself"),
    ("labels", "Slipway sets its own container labels"),
    ("logging", "Slipway collects container output itself"),
    ("expose", "informational only"),
];

/// Hints for common unsupported keys.
fn hint(key: &str) -> Option<&'static str> {
    Some(match key {
        "build" => "build and push the image elsewhere, then set image",
        "entrypoint" => "bake the entrypoint into the image",
        "env_file" => "put the variables in environment or in the environment's variables",
        "secrets" => "reference environment secrets as ${NAME} in environment",
        "network_mode" => "services run on the environment's network",
        _ => return None,
    })
}

/// Converts a compose file. All or nothing: any problem yields
/// [`ComposeError::Rejected`] listing every problem found.
pub fn convert(yaml: &str) -> Result<Converted, ComposeError> {
    if yaml.len() > MAX_COMPOSE_BYTES {
        return Err(ComposeError::TooLarge);
    }
    let compose = Compose::options()
        .from_yaml_str(yaml)
        .map_err(|e| ComposeError::Syntax(e.to_string()))?;
    if compose.services.is_empty() {
        return Err(ComposeError::NoServices);
    }
    if compose.services.len() > MAX_SERVICES {
        return Err(ComposeError::TooManyServices);
    }
    let mut r = Report::default();
    if compose.version.is_some() {
        r.ignore("version", "obsolete");
    }
    if compose.name.is_some() {
        r.ignore("name", "the environment is the project");
    }
    if !compose.include.is_empty() {
        r.unsupported("include");
    }
    if !compose.secrets.is_empty() {
        r.unsupported("secrets (use the environment's secrets)");
    }
    if !compose.configs.is_empty() {
        r.unsupported("configs");
    }
    for (name, decl) in &compose.volumes {
        if decl.is_some() {
            r.ignore(
                &format!("volumes.{name}"),
                "volume options are ignored: Slipway creates plain local volumes",
            );
        }
    }
    for (name, decl) in &compose.networks {
        if decl.is_some() {
            r.ignore(
                &format!("networks.{name}"),
                "the services of an environment share one network",
            );
        }
    }
    for key in compose.extensions.keys() {
        r.ignore(key.as_str(), "extension");
    }

    let mut services = Vec::new();
    for (id, svc) in compose.services {
        let path = format!("services.{id}");
        let name = ResourceName::try_from(id.as_str());
        if let Err(e) = &name {
            r.invalid(&path, format!("service name {:?} {e}", id.as_str()));
        }
        let spec = convert_service(&path, svc, &mut r);
        if let (Ok(name), Some(spec)) = (name, spec) {
            services.push(NewService { name, spec });
        }
    }
    if r.unsupported.is_empty() && r.invalid.is_empty() {
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

/// The keys a service sets to something other than their default.
fn set_keys<T: serde::Serialize>(value: &T) -> Result<Vec<String>, String> {
    match serde_json::to_value(value).map_err(|e| e.to_string())? {
        serde_json::Value::Object(m) => Ok(m.keys().cloned().collect()),
        serde_json::Value::Null => Ok(Vec::new()),
        other => Err(format!("unexpected value {other}")),
    }
}

fn convert_service(path: &str, svc: compose_spec::Service, r: &mut Report) -> Option<ServiceSpec> {
    match set_keys(&svc) {
        Ok(keys) => {
            for key in keys {
                if MAPPED.contains(&key.as_str()) {
                    continue;
                }
                if key.starts_with("x-") {
                    r.ignore(&format!("{path}.{key}"), "extension");
                } else if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
                    r.ignore(&format!("{path}.{key}"), why);
                } else if let Some(h) = hint(&key) {
                    r.unsupported(format!("{path}.{key} ({h})"));
                } else {
                    r.unsupported(format!("{path}.{key}"));
                }
            }
        }
        Err(e) => r.invalid(path, e),
    }
    let errors_before = r.unsupported.len() + r.invalid.len();

    let image = match &svc.image {
        Some(img) => {
            let s = img.as_ref();
            match unescape(s) {
                Err(var) => {
                    r.invalid(
                        &format!("{path}.image"),
                        format!("uses {var}: interpolation is not supported"),
                    );
                    None
                }
                Ok(s) => match ImageRef::try_from(s.as_str()) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        r.invalid(&format!("{path}.image"), e);
                        None
                    }
                },
            }
        }
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
        .and_then(|c| convert_command(&format!("{path}.command"), c, r));
    let ports = convert_ports(path, &svc.ports, r);
    let (env, secrets) = convert_environment(path, &svc.environment, r);
    let volumes = convert_volumes(path, &svc.volumes, r);
    let health_check = svc
        .healthcheck
        .as_ref()
        .and_then(|h| convert_healthcheck(&format!("{path}.healthcheck"), h, r));

    let mut replicas = 1;
    let mut resources = Resources::default();
    if let Some(cpus) = svc.cpus {
        resources.cpus = Some(cpus.into_inner());
    }
    if let Some(mem) = &svc.mem_limit {
        resources.memory_mb = memory_mb(&format!("{path}.mem_limit"), mem, r);
    }
    if let Some(deploy) = &svc.deploy {
        let dpath = format!("{path}.deploy");
        classify_deploy(&dpath, deploy, r);
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
            None => r.unsupported(format!("{path}.security_opt[{i}] ({opt})")),
        }
    }

    let spec = ServiceSpec {
        command,
        ports,
        env,
        secrets,
        volumes,
        health_check,
        replicas,
        resources,
        hardening,
        ..ServiceSpec::of_image(image?)
    };
    if r.unsupported.len() + r.invalid.len() > errors_before {
        return None;
    }
    // Cross-field and range checks of the API apply to imports too.
    if let Err(e) = spec.validate() {
        r.invalid(&format!("{path}.{}", e.field), e.message);
        return None;
    }
    Some(spec)
}

/// Replaces `$$` by `$`; any other `$` starts an interpolation compose would
/// resolve from the shell: returned as the error.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some((_, '$')) => {
                chars.next();
                out.push('$');
            }
            Some((_, '{')) => {
                let rest = &s[i..];
                let end = rest.find('}').map_or(rest.len(), |e| e + 1);
                return Err(rest[..end].to_string());
            }
            Some((_, n)) if n.is_ascii_alphabetic() || *n == '_' => {
                let rest = &s[i + 1..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                return Err(format!("${}", &rest[..end]));
            }
            // A lone `$` (end of string, `$1`, `$ `) is literal.
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// `${NAME}` or `$NAME` as the whole value: the name.
fn whole_reference(s: &str) -> Option<&str> {
    let name = s
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| s.strip_prefix('$'))?;
    slipway_types::names::check_env_var_name(name)
        .is_ok()
        .then_some(name)
}

/// Splits a command line as a POSIX shell would (quotes and backslashes; no
/// expansion).
pub fn split_shell(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err("trailing backslash".into()),
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn convert_command(path: &str, c: &Command, r: &mut Report) -> Option<Vec<String>> {
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
                r.invalid(path, format!("uses {var}: interpolation is not supported"));
                return None;
            }
        }
    }
    Some(out)
}

fn port(path: &str, p: u16, r: &mut Report) -> Option<Port> {
    match Port::try_from(i64::from(p)) {
        Ok(p) => Some(p),
        Err(e) => {
            r.invalid(path, e);
            None
        }
    }
}

fn single(path: &str, range: Range, r: &mut Report) -> Option<u16> {
    if range.end().is_some() {
        r.invalid(path, format!("port range {range} is not supported"));
        None
    } else {
        Some(range.start())
    }
}

fn host_ip_ok(path: &str, ip: Option<IpAddr>, r: &mut Report) -> bool {
    match ip {
        None => true,
        Some(ip) if ip.is_unspecified() => true,
        Some(ip) if ip.is_loopback() => {
            r.ignore(path, "Slipway's proxy decides where ports are published");
            true
        }
        Some(ip) => {
            r.invalid(
                path,
                format!("host IP {ip} is not supported (only 0.0.0.0 or 127.0.0.1)"),
            );
            false
        }
    }
}

fn protocol(path: &str, p: Option<&ComposeProtocol>, r: &mut Report) -> Option<Protocol> {
    match p {
        None | Some(ComposeProtocol::Tcp) => Some(Protocol::Tcp),
        Some(ComposeProtocol::Udp) => Some(Protocol::Udp),
        Some(other) => {
            r.invalid(
                path,
                format!("protocol {} is not supported", other.as_str()),
            );
            None
        }
    }
}

fn convert_ports(
    path: &str,
    ports: &compose_spec::service::Ports,
    r: &mut Report,
) -> Vec<PortMapping> {
    let mut out = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let (host_ip, container, published, proto) = match p {
            ShortOrLong::Short(ShortPort {
                host_ip,
                ranges,
                protocol,
            }) => (
                *host_ip,
                ranges.container(),
                ranges.host(),
                protocol.as_ref(),
            ),
            ShortOrLong::Long(LongPort {
                target,
                published,
                host_ip,
                protocol,
                ..
            }) => (
                *host_ip,
                Range::from(*target),
                *published,
                protocol.as_ref(),
            ),
        };
        let ip_ok = host_ip_ok(&format!("{ppath}.host_ip"), host_ip, r);
        let proto = protocol(&ppath, proto, r);
        let container = single(&ppath, container, r).and_then(|c| port(&ppath, c, r));
        let published = match published {
            None => Some(None),
            // A range on both sides is reported once.
            Some(_) if container.is_none() => None,
            Some(h) => single(&ppath, h, r)
                .and_then(|h| port(&ppath, h, r))
                .map(Some),
        };
        if let (true, Some(protocol), Some(container), Some(published)) =
            (ip_ok, proto, container, published)
        {
            out.push(PortMapping {
                container,
                published,
                protocol,
                mode: PortMode::Http,
                host_ip: None,
            });
        }
    }
    out
}

fn convert_environment(
    path: &str,
    env: &ListOrMap,
    r: &mut Report,
) -> (BTreeMap<EnvVarName, String>, Vec<SecretRef>) {
    let mut vars = BTreeMap::new();
    let mut secrets = Vec::new();
    // `KEY=` is an empty value, a bare `KEY` is taken from the shell.
    let entries: Vec<(String, Option<String>)> = match env {
        ListOrMap::List(list) => list
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (e.clone(), None),
            })
            .collect(),
        ListOrMap::Map(map) => map
            .iter()
            .map(|(k, v)| {
                let v = v.as_ref().map(|v| match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                });
                (k.to_string(), v)
            })
            .collect(),
    };
    for (key, value) in entries {
        let kpath = format!("{path}.environment.{key}");
        let name = match EnvVarName::try_from(key.as_str()) {
            Ok(n) => n,
            Err(e) => {
                r.invalid(&kpath, e);
                continue;
            }
        };
        let raw = match value {
            // `- KEY` without a value: compose takes it from the shell.
            None => {
                secrets.push(SecretRef {
                    env: name.clone(),
                    secret: name,
                });
                continue;
            }
            Some(v) => v,
        };
        if let Some(secret) = whole_reference(&raw) {
            match EnvVarName::try_from(secret) {
                Ok(secret) => secrets.push(SecretRef { env: name, secret }),
                Err(e) => r.invalid(&kpath, e),
            }
            continue;
        }
        match unescape(&raw) {
            Ok(v) => {
                vars.insert(name, v);
            }
            Err(var) => r.invalid(
                &kpath,
                format!(
                    "uses {var} inside a value: interpolation is not supported \
                     (store the whole value as a secret and set {key}=${{NAME}})"
                ),
            ),
        }
    }
    (vars, secrets)
}

fn volume_name(path: &str, id: &str, r: &mut Report) -> Option<String> {
    let name: String = id
        .chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if let Err(e) = check_dns_label(&name) {
        r.invalid(path, format!("volume name {id:?} {e}"));
        return None;
    }
    if name != id {
        r.ignore(
            path,
            &format!("volume {id} is named {name}: Slipway volume names are DNS labels"),
        );
    }
    Some(name)
}

fn convert_volumes(
    path: &str,
    volumes: &compose_spec::service::Volumes,
    r: &mut Report,
) -> Vec<VolumeMount> {
    let mut out = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        let short: ShortVolume = match v {
            ShortOrLong::Short(s) => s.clone(),
            ShortOrLong::Long(m) => match m.clone().into_short() {
                Ok(s) => s,
                Err(Mount::Volume(v)) if v.source.is_none() => {
                    r.invalid(
                        &vpath,
                        "anonymous volumes are not supported: name the volume",
                    );
                    continue;
                }
                Err(m) => {
                    r.invalid(
                        &vpath,
                        format!(
                            "{} mounts with these options are not supported \
                             (only volume and bind mounts with source, target and read_only)",
                            m.kind()
                        ),
                    );
                    continue;
                }
            },
        };
        let Some(target) = short.container_path.as_path().to_str().map(str::to_owned) else {
            r.invalid(&vpath, "target is not UTF-8");
            continue;
        };
        let Some(opts) = short.options else {
            r.invalid(
                &vpath,
                "anonymous volumes are not supported: name the volume",
            );
            continue;
        };
        if opts.selinux.is_some() {
            r.ignore(&vpath, "SELinux relabelling is not applied");
        }
        let source = match &opts.source {
            Source::Volume(id) => volume_name(&vpath, id.as_str(), r),
            Source::HostPath(p) => match p.as_path().to_str() {
                Some(s) if s.starts_with('/') => Some(s.to_owned()),
                Some(s) => {
                    r.invalid(
                        &vpath,
                        format!(
                            "relative host path {s} cannot be resolved on the deploy host: \
                             use an absolute path or a named volume"
                        ),
                    );
                    None
                }
                None => {
                    r.invalid(&vpath, "host path is not UTF-8");
                    None
                }
            },
        };
        if let Some(source) = source {
            match unescape(&source) {
                Ok(source) => out.push(VolumeMount {
                    source,
                    target,
                    read_only: opts.read_only,
                }),
                Err(var) => r.invalid(
                    &vpath,
                    format!("uses {var}: interpolation is not supported"),
                ),
            }
        }
    }
    out
}

/// If `args` is `curl`/`wget` against a local `http://` URL: (path, port).
fn http_probe(args: &[String]) -> Option<(String, Port)> {
    // Only the first command of a shell list (`curl -f URL || exit 1`).
    let end = args
        .iter()
        .position(|a| matches!(a.as_str(), "||" | "&&" | ";" | "|"))
        .unwrap_or(args.len());
    let args = &args[..end];
    let program = args.first()?.rsplit('/').next()?;
    if program != "curl" && program != "wget" {
        return None;
    }
    let url = args
        .iter()
        .skip(1)
        .find_map(|a| url::Url::parse(a).ok().filter(|u| u.scheme() == "http"))?;
    let local = match url.host()? {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback() || ip.is_unspecified(),
        url::Host::Ipv6(ip) => ip.is_loopback() || ip.is_unspecified(),
    };
    if !local {
        return None;
    }
    let port = Port::try_from(i64::from(url.port_or_known_default()?)).ok()?;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Some((path, port))
}

fn secs(path: &str, d: Option<Duration>, default: u32, r: &mut Report) -> u32 {
    match d {
        None => default,
        Some(d) => {
            let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            match u32::try_from(s.max(1)) {
                Ok(s) => s,
                Err(_) => {
                    r.invalid(path, "too long");
                    default
                }
            }
        }
    }
}

fn convert_healthcheck(path: &str, h: &Healthcheck, r: &mut Report) -> Option<HealthCheck> {
    let c = match h {
        Healthcheck::Disable => {
            r.ignore(
                path,
                "disabled: the service is imported without a health check",
            );
            return None;
        }
        Healthcheck::Command(c) => c,
    };
    let args = match &c.test {
        None => {
            r.ignore(path, "no test: the image's own health check is not used");
            return None;
        }
        Some(Test::Command(v)) => {
            let v = match v.first().map(String::as_str) {
                Some("CMD") => &v[1..],
                Some("NONE") => {
                    r.ignore(
                        path,
                        "disabled: the service is imported without a health check",
                    );
                    return None;
                }
                _ => &v[..],
            };
            v.to_vec()
        }
        Some(Test::ShellCommand(s)) => split_shell(s).unwrap_or_default(),
    };
    let Some((probe_path, port)) = http_probe(&args) else {
        r.ignore(
            path,
            &format!(
                "not an HTTP probe ({}): Slipway only runs HTTP GET health checks, \
                 the service is imported without one",
                args.join(" ")
            ),
        );
        return None;
    };
    if c.start_period.is_some() {
        r.ignore(&format!("{path}.start_period"), "not supported");
    }
    if c.start_interval.is_some() {
        r.ignore(&format!("{path}.start_interval"), "not supported");
    }
    let retries = match c.retries {
        None => 3,
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    Some(HealthCheck {
        interval_secs: secs(&format!("{path}.interval"), c.interval, 10, r),
        timeout_secs: secs(&format!("{path}.timeout"), c.timeout, 3, r),
        retries,
        ..HealthCheck::http(probe_path, port)
    })
}

fn classify_deploy(path: &str, deploy: &compose_spec::service::Deploy, r: &mut Report) {
    match set_keys(deploy) {
        Ok(keys) => {
            for key in keys {
                let kpath = format!("{path}.{key}");
                match key.as_str() {
                    "replicas" | "resources" => {}
                    "mode" => {
                        if matches!(deploy.mode, Some(DeployMode::Global)) {
                            r.unsupported(format!("{kpath} (global)"));
                        }
                    }
                    "restart_policy" => r.ignore(&kpath, "Slipway always restarts containers"),
                    "update_config" | "rollback_config" => {
                        r.ignore(&kpath, "Slipway rolls out and back its own way")
                    }
                    "labels" => r.ignore(&kpath, "Slipway sets its own labels"),
                    "endpoint_mode" => r.ignore(&kpath, "Slipway's proxy balances replicas"),
                    k if k.starts_with("x-") => r.ignore(&kpath, "extension"),
                    _ => r.unsupported(kpath),
                }
            }
        }
        Err(e) => r.invalid(path, e),
    }
    if let Some(res) = &deploy.resources {
        let rpath = format!("{path}.resources");
        if res.reservations.is_some() {
            r.ignore(
                &format!("{rpath}.reservations"),
                "Slipway applies limits only",
            );
        }
        if let Some(limits) = &res.limits {
            if limits.pids.is_some() {
                r.unsupported(format!("{rpath}.limits.pids"));
            }
        }
    }
}

fn convert_limits(path: &str, limits: &Limits, res: &mut Resources, r: &mut Report) {
    if let Some(c) = limits.cpus {
        res.cpus = Some(c.into_inner());
    }
    if let Some(m) = &limits.memory {
        res.memory_mb = memory_mb(&format!("{path}.memory"), m, r);
    }
}

/// Rounded up to whole MiB (compose units are powers of 1024).
fn memory_mb(path: &str, v: &ByteValue, r: &mut Report) -> Option<u32> {
    const MIB: u64 = 1024 * 1024;
    let bytes = match *v {
        ByteValue::Bytes(b) => Some(b),
        ByteValue::Kilobytes(k) => k.checked_mul(1024),
        ByteValue::Megabytes(m) => m.checked_mul(MIB),
        ByteValue::Gigabytes(g) => g.checked_mul(1024 * MIB),
    };
    match bytes.and_then(|b| u32::try_from(b.div_ceil(MIB)).ok()) {
        Some(mb) => Some(mb),
        None => {
            r.invalid(path, "too large");
            None
        }
    }
}

fn capabilities<'a>(
    path: &str,
    caps: impl IntoIterator<Item = &'a String>,
    r: &mut Report,
) -> Vec<Capability> {
    let mut out = Vec::new();
    for (i, c) in caps.into_iter().enumerate() {
        match Capability::try_from(c.as_str()) {
            Ok(c) => out.push(c),
            Err(e) => r.invalid(&format!("{path}[{i}]"), format!("{c:?} {e}")),
        }
    }
    out
}

/// `no-new-privileges[:=]true|false`; `None` for any other option.
fn no_new_privileges(opt: &str) -> Option<bool> {
    let rest = opt.strip_prefix("no-new-privileges")?;
    match rest {
        "" | ":true" | "=true" => Some(true),
        ":false" | "=false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const ANALYTICS: &str = include_str!("testdata/analytics.yml");
    const RAG_MAIL: &str = include_str!("testdata/rag-mail.yml");
    const HARDENED: &str = include_str!("testdata/hardened.yml");

    fn ok(yaml: &str) -> Converted {
        convert(yaml).unwrap_or_else(|e| panic!("expected success, got: {e}"))
    }

    fn rejected(yaml: &str) -> (Vec<String>, Vec<String>) {
        match convert(yaml) {
            Err(ComposeError::Rejected {
                unsupported,
                invalid,
            }) => (unsupported, invalid),
            other => panic!("expected Rejected, got {other:?}"),
        }
    }

    fn svc<'a>(c: &'a Converted, name: &str) -> &'a ServiceSpec {
        &c.services
            .iter()
            .find(|s| s.name.as_str() == name)
            .unwrap_or_else(|| panic!("no service {name}"))
            .spec
    }

    fn one(yaml_service: &str) -> ServiceSpec {
        let c = ok(&format!("services:\n  web:\n{yaml_service}"));
        c.services[0].spec.clone()
    }

    fn p(container: u16, published: Option<u16>, protocol: Protocol) -> PortMapping {
        PortMapping {
            container: Port::try_from(i64::from(container)).unwrap(),
            published: published.map(|h| Port::try_from(i64::from(h)).unwrap()),
            protocol,
            mode: PortMode::Http,
            host_ip: None,
        }
    }

    #[test]
    fn seed_analytics_stack_rejects_only_the_relative_bind_mount() {
        let (unsupported, invalid) = rejected(ANALYTICS);
        assert!(unsupported.is_empty(), "{unsupported:?}");
        assert_eq!(invalid.len(), 1, "{invalid:?}");
        assert!(invalid[0].starts_with(
            "services.postgres.volumes[1]: relative host path ./crates/storage/migrations"
        ));
    }

    #[test]
    fn seed_analytics_stack_imports_without_the_bind_mount() {
        let c = ok(&ANALYTICS.replace(
            "      - ./crates/storage/migrations:/docker-entrypoint-initdb.d\n",
            "",
        ));
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["analytics-api", "postgres", "redis"]);

        let api = svc(&c, "analytics-api");
        assert_eq!(api.image.as_str(), "analytics-api:1.0.0");
        assert_eq!(
            api.ports,
            [
                p(8080, Some(8080), Protocol::Tcp),
                p(9091, Some(9091), Protocol::Tcp)
            ]
        );
        assert_eq!(api.env.len(), 6);
        assert_eq!(api.env[&EnvVarName::try_from("API_PORT").unwrap()], "8080");
        assert_eq!(
            api.secrets,
            [SecretRef {
                env: EnvVarName::try_from("JWT_SECRET").unwrap(),
                secret: EnvVarName::try_from("JWT_SECRET").unwrap(),
            }]
        );
        assert_eq!(
            api.health_check,
            Some(HealthCheck {
                interval_secs: 30,
                timeout_secs: 10,
                retries: 3,
                ..HealthCheck::http("/health", Port::try_from(8080).unwrap())
            })
        );

        let redis = svc(&c, "redis");
        assert_eq!(
            redis.command.as_deref().unwrap(),
            [
                "redis-server",
                "--maxmemory",
                "2gb",
                "--maxmemory-policy",
                "allkeys-lru"
            ]
        );
        assert_eq!(
            redis.volumes,
            [VolumeMount {
                source: "redis-data".into(),
                target: "/data".into(),
                read_only: false
            }]
        );
        let pg = svc(&c, "postgres");
        assert_eq!(pg.volumes[0].source, "postgres-data");
        assert_eq!(pg.secrets[0].secret.as_str(), "POSTGRES_PASSWORD");

        for expected in [
            "version (obsolete)",
            "services.analytics-api.restart (",
            "services.analytics-api.depends_on (",
            "services.postgres.volumes[0] (volume postgres_data is named postgres-data",
        ] {
            assert!(
                c.ignored.iter().any(|i| i.starts_with(expected)),
                "{expected} not in {:?}",
                c.ignored
            );
        }
    }

    #[test]
    fn seed_rag_mail_stack_lists_every_problem_at_once() {
        let (unsupported, invalid) = rejected(RAG_MAIL);
        assert_eq!(unsupported.len(), 1, "{unsupported:?}");
        assert!(unsupported[0].starts_with("services.app.build ("));
        let paths: Vec<&str> = invalid
            .iter()
            .map(|i| i.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "services.app.environment.DATABASE_URL",
                "services.nginx.volumes[0]",
                "services.nginx.volumes[1]",
            ],
            "{invalid:?}"
        );
        assert!(invalid[0].contains("${DB_PASSWORD}"));
        let msg = convert(RAG_MAIL).unwrap_err().to_string();
        assert!(
            msg.starts_with("the compose file uses keys Slipway cannot honour: services.app.build")
        );
        assert!(msg.contains("services.nginx.volumes[1]"), "{msg}");
    }

    #[test]
    fn hardened_stack_maps_every_supported_key() {
        let c = ok(HARDENED);
        let api = svc(&c, "api");
        assert_eq!(api.image.as_str(), "ghcr.io/deepersensor/api:1.4.2");
        assert_eq!(
            api.command.as_deref().unwrap(),
            ["/usr/local/bin/api", "--port", "8080"]
        );
        assert_eq!(
            api.ports,
            [
                p(8080, Some(8080), Protocol::Tcp),
                p(9500, None, Protocol::Tcp)
            ]
        );
        assert_eq!(
            api.env[&EnvVarName::try_from("PRICE_LABEL").unwrap()],
            "costs $5"
        );
        assert_eq!(api.secrets[0].env.as_str(), "JWT_SECRET");
        assert_eq!(api.replicas, 3);
        assert_eq!(api.resources.cpus, Some(2.0));
        assert_eq!(api.resources.memory_mb, Some(4096));
        assert_eq!(api.hardening.user.as_deref(), Some("1000:1000"));
        assert!(api.hardening.read_only);
        assert!(api.hardening.no_new_privileges);
        assert_eq!(api.hardening.cap_drop[0].as_str(), "ALL");
        assert_eq!(api.hardening.cap_add[0].as_str(), "NET_BIND_SERVICE");
        assert_eq!(
            api.volumes,
            [
                VolumeMount {
                    source: "api-cache".into(),
                    target: "/var/cache/api".into(),
                    read_only: false
                },
                VolumeMount {
                    source: "/etc/ssl/certs".into(),
                    target: "/etc/ssl/certs".into(),
                    read_only: true
                },
            ]
        );
        let hc = api.health_check.as_ref().unwrap();
        assert_eq!(
            (
                hc.path.as_deref().unwrap_or_default(),
                hc.port.map_or(0, |p| p.get())
            ),
            ("/health", 8080)
        );
        assert_eq!((hc.interval_secs, hc.timeout_secs, hc.retries), (15, 5, 5));
        for expected in [
            "services.api.healthcheck.start_period",
            "services.api.deploy.resources.reservations",
            "services.api.restart",
            "services.api.depends_on",
        ] {
            assert!(
                c.ignored.iter().any(|i| i.starts_with(expected)),
                "{expected} not in {:?}",
                c.ignored
            );
        }
        let loki = svc(&c, "loki");
        assert_eq!(loki.replicas, 1);
        // Slipway's secure default stays on when compose says nothing.
        assert!(loki.hardening.no_new_privileges);
    }

    #[test]
    fn unsupported_keys_are_listed_together_across_services() {
        let yaml = "\
services:
  db:
    image: postgres:16
    privileged: true
    pid: host
    devices:
      - /dev/fuse:/dev/fuse
  web:
    build: .
    network_mode: host
    env_file: .env
    entrypoint: /bin/sh
";
        let (unsupported, invalid) = rejected(yaml);
        assert!(invalid.is_empty(), "{invalid:?}");
        let keys: Vec<&str> = unsupported
            .iter()
            .map(|u| u.split(' ').next().unwrap())
            .collect();
        for k in [
            "services.db.privileged",
            "services.db.pid",
            "services.db.devices",
            "services.web.build",
            "services.web.network_mode",
            "services.web.env_file",
            "services.web.entrypoint",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        assert_eq!(keys.len(), 7, "{keys:?}");
        let msg = convert(yaml).unwrap_err().to_string();
        assert!(msg.starts_with("the compose file uses keys Slipway cannot honour: services.db."));
    }

    #[test]
    fn ports_short_and_long_syntax() {
        let s = one(
            "    image: nginx\n    ports:\n      - \"9000\"\n      - 8443:443\n      - \"127.0.0.1:5353:53/udp\"\n      - target: 80\n        published: \"8081\"\n        protocol: tcp\n        mode: host\n",
        );
        assert_eq!(
            s.ports,
            [
                p(9000, None, Protocol::Tcp),
                p(443, Some(8443), Protocol::Tcp),
                p(53, Some(5353), Protocol::Udp),
                p(80, Some(8081), Protocol::Tcp),
            ]
        );
    }

    #[test]
    fn port_ranges_and_foreign_host_ips_are_refused() {
        let (_, invalid) = rejected(
            "services:\n  web:\n    image: nginx\n    ports:\n      - \"3000-3005:3000-3005\"\n      - \"10.0.0.5:80:80\"\n      - target: 81\n        host_ip: 192.168.1.2\n",
        );
        assert_eq!(invalid.len(), 3, "{invalid:?}");
        assert!(invalid[0].starts_with("services.web.ports[0]: port range"));
        assert!(invalid[1].contains("host IP 10.0.0.5"));
        assert!(invalid[2].starts_with("services.web.ports[2].host_ip: host IP 192.168.1.2"));
    }

    #[test]
    fn healthcheck_http_probes_are_extracted() {
        let hc = |test: &str| {
            let c = ok(&format!(
                "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: {test}\n"
            ));
            (c.services[0].spec.health_check.clone(), c.ignored)
        };
        let (h, _) = hc(r#"["CMD", "curl", "-f", "http://localhost:8080/health"]"#);
        let h = h.unwrap();
        assert_eq!(
            (
                h.path.as_deref().unwrap_or_default(),
                h.port.map_or(0, |p| p.get())
            ),
            ("/health", 8080)
        );
        assert_eq!((h.interval_secs, h.timeout_secs, h.retries), (10, 3, 3));
        let (h, _) = hc(r#"["CMD", "wget", "-qO-", "http://127.0.0.1/ready?full=1"]"#);
        let h = h.unwrap();
        assert_eq!(
            (
                h.path.as_deref().unwrap_or_default(),
                h.port.map_or(0, |p| p.get())
            ),
            ("/ready?full=1", 80)
        );
        let (h, _) = hc(r#"curl --fail "http://localhost:3000/api/health" || exit 1"#);
        let h = h.unwrap();
        assert_eq!(
            (
                h.path.as_deref().unwrap_or_default(),
                h.port.map_or(0, |p| p.get())
            ),
            ("/api/health", 3000)
        );
        let (h, _) = hc(r#"["CMD-SHELL", "/usr/bin/curl -sf http://0.0.0.0:9000/ping"]"#);
        assert_eq!(h.unwrap().port.map(|p| p.get()), Some(9000));
    }

    #[test]
    fn non_http_healthchecks_are_ignored_with_a_note() {
        for test in [
            r#"["CMD-SHELL", "pg_isready -U postgres"]"#,
            r#"["CMD", "redis-cli", "ping"]"#,
            r#"["CMD", "curl", "-f", "https://localhost/health"]"#,
            r#"["CMD", "curl", "-f", "http://example.com/health"]"#,
            r#"["NONE"]"#,
        ] {
            let c = ok(&format!(
                "services:\n  db:\n    image: postgres:16\n    healthcheck:\n      test: {test}\n"
            ));
            assert_eq!(c.services[0].spec.health_check, None, "{test}");
            assert!(
                c.ignored
                    .iter()
                    .any(|i| i.starts_with("services.db.healthcheck (")),
                "{test}: {:?}",
                c.ignored
            );
        }
        let c =
            ok("services:\n  db:\n    image: postgres:16\n    healthcheck:\n      disable: true\n");
        assert_eq!(c.services[0].spec.health_check, None);
        assert_eq!(c.ignored.len(), 1);
    }

    #[test]
    fn healthcheck_timings_are_checked_like_the_api() {
        let (_, invalid) = rejected(
            "services:\n  web:\n    image: nginx\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"http://localhost/\"]\n      interval: 5s\n      timeout: 1m\n",
        );
        assert_eq!(invalid.len(), 1);
        assert!(
            invalid[0].starts_with("services.web.health_check.timeout_secs"),
            "{invalid:?}"
        );
    }

    #[test]
    fn environment_list_and_map_are_equivalent() {
        let list = one("    image: app:1\n    environment:\n      - A=1\n      - B=x=y\n      - EMPTY=\n      - TOKEN\n");
        let map = one("    image: app:1\n    environment:\n      A: 1\n      B: x=y\n      EMPTY: \"\"\n      TOKEN:\n");
        assert_eq!(list, map);
        assert_eq!(list.env.len(), 3);
        assert_eq!(list.env[&EnvVarName::try_from("EMPTY").unwrap()], "");
        assert_eq!(list.env[&EnvVarName::try_from("B").unwrap()], "x=y");
        assert_eq!(list.secrets[0].secret.as_str(), "TOKEN");
    }

    #[test]
    fn interpolation_is_refused_unless_it_is_a_whole_secret_reference() {
        let s = one("    image: app:1\n    environment:\n      DB_PASS: ${PG_PASSWORD}\n      API_KEY: $OPENAI_KEY\n");
        assert_eq!(s.secrets.len(), 2);
        assert!(s.env.is_empty());
        let (_, invalid) = rejected(
            "services:\n  web:\n    image: app:1\n    command: echo ${HOME}\n    environment:\n      URL: postgres://u:${PW}@db/x\n      DEF: ${X:-default}\n",
        );
        assert_eq!(invalid.len(), 3, "{invalid:?}");
        // compose_spec itself refuses `$` in image names, with the position.
        let e = convert("services:\n  web:\n    image: ${REGISTRY}/app:1\n").unwrap_err();
        assert!(matches!(e, ComposeError::Syntax(_)), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(invalid.iter().any(|i| i.contains("${HOME}")));
        assert!(invalid.iter().any(|i| i.contains("${PW}")));
        assert!(invalid.iter().any(|i| i.contains("${X:-default}")));
    }

    #[test]
    fn command_strings_are_split_like_a_shell() {
        let s = one("    image: app:1\n    command: sh -c 'echo \"hi there\" && sleep 1' --flag=\"a b\" c\\ d\n");
        assert_eq!(
            s.command.unwrap(),
            [
                "sh",
                "-c",
                "echo \"hi there\" && sleep 1",
                "--flag=a b",
                "c d"
            ]
        );
        assert_eq!(split_shell("  a   b ").unwrap(), ["a", "b"]);
        assert_eq!(split_shell("''").unwrap(), [""]);
        assert!(split_shell("echo 'oops").is_err());
        assert!(split_shell("echo \"oops").is_err());
    }

    #[test]
    fn service_names_must_be_dns_labels_and_image_is_required() {
        let (_, invalid) =
            rejected("services:\n  My_App:\n    image: app:1\n  worker:\n    command: run\n");
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        assert!(invalid[0].starts_with("services.My_App: service name \"My_App\""));
        assert_eq!(invalid[1], "services.worker: image is required");
    }

    #[test]
    fn yaml_syntax_errors_carry_the_position() {
        let e = convert("services:\n  web:\n    image: [unclosed\n").unwrap_err();
        assert!(matches!(e, ComposeError::Syntax(_)));
        assert!(e.to_string().contains("line"), "{e}");
        let e = convert("services:\n  web:\n    image: nginx\n    bogus_key: 1\n").unwrap_err();
        assert!(matches!(e, ComposeError::Syntax(_)), "{e}");
        assert!(matches!(
            convert("services: {}\n"),
            Err(ComposeError::NoServices)
        ));
    }

    #[test]
    fn memory_units_and_legacy_limits() {
        let s = one("    image: app:1\n    cpus: 0.5\n    mem_limit: 512m\n");
        assert_eq!(s.resources.cpus, Some(0.5));
        assert_eq!(s.resources.memory_mb, Some(512));
        let s = one("    image: app:1\n    deploy:\n      resources:\n        limits:\n          memory: 10000k\n");
        assert_eq!(s.resources.memory_mb, Some(10));
    }

    #[test]
    fn security_opt_other_than_no_new_privileges_is_refused() {
        let s = one("    image: app:1\n    security_opt: [\"no-new-privileges=false\"]\n");
        assert!(!s.hardening.no_new_privileges);
        let (unsupported, _) = rejected(
            "services:\n  web:\n    image: app:1\n    security_opt: [\"seccomp=unconfined\"]\n",
        );
        assert_eq!(
            unsupported,
            ["services.web.security_opt[0] (seccomp=unconfined)"]
        );
    }

    #[test]
    fn deploy_global_mode_and_placement_are_refused() {
        let (unsupported, _) = rejected(
            "services:\n  web:\n    image: app:1\n    deploy:\n      mode: global\n      placement:\n        constraints: [\"node.role==manager\"]\n",
        );
        assert_eq!(
            unsupported,
            [
                "services.web.deploy.mode (global)",
                "services.web.deploy.placement"
            ]
        );
    }

    #[test]
    fn tmpfs_and_anonymous_volumes_are_refused() {
        let (unsupported, invalid) = rejected(
            "services:\n  web:\n    image: app:1\n    tmpfs: [/tmp]\n    volumes:\n      - /data\n      - type: tmpfs\n        target: /cache\n",
        );
        assert_eq!(unsupported, ["services.web.tmpfs"]);
        assert_eq!(invalid.len(), 2, "{invalid:?}");
        assert!(invalid[0].contains("anonymous volumes"));
        assert!(invalid[1].contains("tmpfs mounts"));
    }
}
