//! The service spec editor, shared by "create service" and "edit service".
//!
//! Inputs are plain text; [`ServiceFormState::build`] parses them with the
//! types crate's newtypes (`ResourceName`, `ImageRef`, `Port`, `EnvVarName`)
//! and `ServiceSpec::validate`, so the user sees the same messages the server
//! would give, next to the same field.
use super::{FieldError, FormErrors};
use crate::api::invalid;
use leptos::prelude::*;
use slipway_types::{
    api::{
        HealthCheck, HealthKind, PortMapping, PortMode, Probe, Protocol, RolloutStrategy,
        ServiceSpec, Validate,
    },
    ApiErrorBody, Capability, EnvVarName, ImageRef, Port, ResourceName,
};
use std::collections::BTreeMap;

/// Field names the service form shows errors for.
pub const SERVICE_FIELDS: &[&str] = &[
    "name",
    "image",
    "ports",
    "env",
    "health_check.path",
    "health_check.port",
    "replicas",
    "resources.cpus",
    "resources.memory_mb",
    "hardening.user",
    "strategy",
];

#[derive(Clone, Copy)]
pub struct ServiceFormState {
    pub name: RwSignal<String>,
    pub image: RwSignal<String>,
    pub ports: RwSignal<String>,
    pub env: RwSignal<String>,
    pub hc_path: RwSignal<String>,
    pub hc_port: RwSignal<String>,
    pub replicas: RwSignal<String>,
    pub cpus: RwSignal<String>,
    pub memory_mb: RwSignal<String>,
    pub user: RwSignal<String>,
    pub read_only: RwSignal<bool>,
    pub no_new_privileges: RwSignal<bool>,
    pub drop_all_caps: RwSignal<bool>,
    /// `""` (the default for the spec), `start-first` or `stop-first`.
    pub strategy: RwSignal<String>,
    /// The spec being edited: fields this form does not show are kept.
    base: StoredValue<Option<ServiceSpec>>,
}

impl Default for ServiceFormState {
    fn default() -> Self {
        Self {
            name: RwSignal::new(String::new()),
            image: RwSignal::new(String::new()),
            ports: RwSignal::new(String::new()),
            env: RwSignal::new(String::new()),
            hc_path: RwSignal::new(String::new()),
            hc_port: RwSignal::new(String::new()),
            replicas: RwSignal::new("1".into()),
            cpus: RwSignal::new(String::new()),
            memory_mb: RwSignal::new(String::new()),
            user: RwSignal::new(String::new()),
            read_only: RwSignal::new(true),
            no_new_privileges: RwSignal::new(true),
            drop_all_caps: RwSignal::new(true),
            strategy: RwSignal::new(String::new()),
            base: StoredValue::new(None),
        }
    }
}

/// The address a `tcp` port is bound on when none is given.
const DEFAULT_TCP_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub fn ports_to_text(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            let mut s = match (p.mode, p.published) {
                // Bound by Docker: written with its address, like `docker run -p`.
                (PortMode::Tcp, Some(h)) => match p.host_ip.unwrap_or(DEFAULT_TCP_IP) {
                    std::net::IpAddr::V6(ip) => format!("[{ip}]:{h}:{}", p.container),
                    ip => format!("{ip}:{h}:{}", p.container),
                },
                (_, Some(h)) => format!("{h}:{}", p.container),
                (_, None) => p.container.to_string(),
            };
            if p.protocol == Protocol::Udp {
                s.push_str("/udp");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_port(s: &str, field: &str) -> Result<Port, ApiErrorBody> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| invalid(field, format!("\"{s}\" is not a port number")))?;
    Port::try_from(n).map_err(|m| invalid(field, m))
}

/// `8080:80, 9000, 53:53/udp` (published:container, like `docker run -p`;
/// through the ingress proxy); `127.0.0.1:5432:5432` or `[::1]:5432:5432`:
/// a raw TCP port bound by Docker on that address (`mode: tcp`).
pub fn parse_ports(text: &str) -> Result<Vec<PortMapping>, ApiErrorBody> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (body, protocol) = match item.split_once('/') {
                Some((b, "udp")) => (b, Protocol::Udp),
                Some((b, "tcp")) => (b, Protocol::Tcp),
                Some((_, p)) => {
                    return Err(invalid(
                        "ports",
                        format!("unknown protocol \"{p}\" (tcp or udp)"),
                    ))
                }
                None => (item, Protocol::Tcp),
            };
            // `ip:published:container`, the address maybe in brackets (IPv6).
            let (ip, body) = match body.rsplitn(3, ':').nth(2) {
                Some(ip) => (Some(ip), &body[ip.len() + 1..]),
                None => (None, body),
            };
            let host_ip = match ip {
                None => None,
                Some(ip) => Some(
                    ip.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .map_err(|_| invalid("ports", format!("\"{ip}\" is not an IP address")))?,
                ),
            };
            let (published, container) = match body.split_once(':') {
                Some((h, c)) => (Some(parse_port(h, "ports")?), parse_port(c, "ports")?),
                None => (None, parse_port(body, "ports")?),
            };
            Ok(PortMapping {
                container,
                published,
                protocol,
                mode: if ip.is_some() {
                    PortMode::Tcp
                } else {
                    PortMode::Http
                },
                // The default address stays unset.
                host_ip: host_ip.filter(|ip| *ip != DEFAULT_TCP_IP),
            })
        })
        .collect()
}

/// One `KEY=value` per line.
pub fn parse_env(text: &str) -> Result<BTreeMap<EnvVarName, String>, ApiErrorBody> {
    let mut env = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| invalid("env", format!("\"{line}\": expected KEY=value")))?;
        let key =
            EnvVarName::try_from(k.trim()).map_err(|m| invalid("env", format!("{k}: {m}")))?;
        env.insert(key, v.to_owned());
    }
    Ok(env)
}

pub fn env_to_text(env: &BTreeMap<EnvVarName, String>) -> String {
    env.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ServiceFormState {
    pub fn from_service(name: &ResourceName, spec: &ServiceSpec) -> Self {
        let s = Self::default();
        s.name.set(name.to_string());
        s.image.set(spec.image.to_string());
        s.ports.set(ports_to_text(&spec.ports));
        s.env.set(env_to_text(&spec.env));
        if let Some(Probe::Http { path, port }) = spec.health_check.as_ref().and_then(|h| h.probe())
        {
            s.hc_path.set(path.to_owned());
            s.hc_port.set(port.to_string());
        }
        s.replicas.set(spec.replicas.to_string());
        s.cpus.set(
            spec.resources
                .cpus
                .map(super::ui::fmt_cpus)
                .unwrap_or_default(),
        );
        s.memory_mb.set(
            spec.resources
                .memory_mb
                .map(|m| m.to_string())
                .unwrap_or_default(),
        );
        s.user.set(spec.hardening.user.clone().unwrap_or_default());
        s.read_only.set(spec.hardening.read_only);
        s.no_new_privileges.set(spec.hardening.no_new_privileges);
        s.drop_all_caps
            .set(spec.hardening.cap_drop.iter().any(|c| c.as_str() == "ALL"));
        s.strategy.set(
            spec.strategy
                .map(super::stack::strategy_name)
                .unwrap_or_default()
                .to_owned(),
        );
        s.base.set_value(Some(spec.clone()));
        s
    }

    pub fn build(&self) -> Result<(ResourceName, ServiceSpec), ApiErrorBody> {
        let name = ResourceName::try_from(self.name.get_untracked().trim())
            .map_err(|m| invalid("name", m))?;
        let image = ImageRef::try_from(self.image.get_untracked().trim())
            .map_err(|m| invalid("image", m))?;
        let ports = parse_ports(&self.ports.get_untracked())?;
        let env = parse_env(&self.env.get_untracked())?;

        let path = self.hc_path.get_untracked().trim().to_owned();
        let port = self.hc_port.get_untracked().trim().to_owned();
        let base = self.base.get_value();
        let health_check = match (path.is_empty(), port.is_empty()) {
            // A tcp or exec check (set through the API or a compose import)
            // is not one this form edits: it stays.
            (true, true) => base
                .as_ref()
                .and_then(|b| b.health_check.clone())
                .filter(|h| h.kind != HealthKind::Http),
            (true, false) => {
                return Err(invalid(
                    "health_check.path",
                    "give the path to probe, e.g. /health",
                ))
            }
            (false, true) => {
                return Err(invalid("health_check.port", "give the port to probe"));
            }
            (false, false) => {
                let old = base.as_ref().and_then(|b| b.health_check.clone());
                Some(HealthCheck {
                    interval_secs: old.as_ref().map_or(10, |h| h.interval_secs),
                    timeout_secs: old.as_ref().map_or(3, |h| h.timeout_secs),
                    retries: old.as_ref().map_or(3, |h| h.retries),
                    start_period_secs: old.as_ref().map_or(0, |h| h.start_period_secs),
                    ..HealthCheck::http(path, parse_port(&port, "health_check.port")?)
                })
            }
        };

        let replicas: u32 = self
            .replicas
            .get_untracked()
            .trim()
            .parse()
            .map_err(|_| invalid("replicas", "must be a whole number, 1–100"))?;
        let cpus = match self.cpus.get_untracked().trim() {
            "" => None,
            c => Some(
                super::ui::parse_decimal(c)
                    .ok_or_else(|| invalid("resources.cpus", "must be a number such as 0.5"))?,
            ),
        };
        let memory_mb = match self.memory_mb.get_untracked().trim() {
            "" => None,
            m => Some(
                m.parse::<u32>()
                    .map_err(|_| invalid("resources.memory_mb", "must be a whole number of MB"))?,
            ),
        };
        let user = match self.user.get_untracked().trim() {
            "" => None,
            u => Some(u.to_owned()),
        };

        let mut spec = base.unwrap_or_else(|| ServiceSpec::of_image(image.clone()));
        spec.image = image;
        spec.ports = ports;
        spec.env = env;
        spec.health_check = health_check;
        spec.replicas = replicas;
        spec.resources.cpus = cpus;
        spec.resources.memory_mb = memory_mb;
        spec.hardening.user = user;
        spec.hardening.read_only = self.read_only.get_untracked();
        spec.hardening.no_new_privileges = self.no_new_privileges.get_untracked();
        spec.hardening.cap_drop.retain(|c| c.as_str() != "ALL");
        if self.drop_all_caps.get_untracked() {
            if let Ok(all) = Capability::try_from("ALL") {
                spec.hardening.cap_drop.insert(0, all);
            }
        }
        spec.strategy = match self.strategy.get_untracked().as_str() {
            "start-first" => Some(RolloutStrategy::StartFirst),
            "stop-first" => Some(RolloutStrategy::StopFirst),
            _ => None,
        };
        spec.validate().map_err(|e| invalid(&e.field, e.message))?;
        Ok((name, spec))
    }
}

#[component]
fn TextField(
    label: &'static str,
    field: &'static str,
    value: RwSignal<String>,
    errors: FormErrors,
    #[prop(optional)] placeholder: &'static str,
    #[prop(optional)] hint: &'static str,
) -> impl IntoView {
    let id = format!("svc-{}", field.replace('.', "-"));
    view! {
        <div class="field" class:has-error=move || errors.message_for(field).is_some()>
            <label for=id.clone()>{label}</label>
            <input id=id type="text" name=field placeholder=placeholder bind:value=value />
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            <FieldError errors field />
        </div>
    }
}

#[component]
fn Toggle(label: &'static str, name: &'static str, value: RwSignal<bool>) -> impl IntoView {
    view! {
        <label class="toggle">
            <input type="checkbox" name=name bind:checked=value />
            <span>{label}</span>
        </label>
    }
}

/// The inputs of a service (without the `<form>` and its buttons).
#[component]
pub fn ServiceFields(state: ServiceFormState, errors: FormErrors) -> impl IntoView {
    let s = state;
    view! {
        <div class="form-grid">
            <TextField label="Name" field="name" value=s.name errors placeholder="web" />
            <TextField
                label="Image"
                field="image"
                value=s.image
                errors
                placeholder="ghcr.io/acme/web:1.4.2"
            />
            <TextField
                label="Ports"
                field="ports"
                value=s.ports
                errors
                placeholder="8080:80, 9000"
                hint="published:container, comma separated; add /udp for UDP; ip:published:container binds a raw TCP port"
            />
            <div class="field" class:has-error=move || errors.message_for("strategy").is_some()>
                <label for="svc-strategy">"Rollout"</label>
                <select
                    id="svc-strategy"
                    name="strategy"
                    data-test="svc-strategy"
                    on:change=super::handler(move |ev| s.strategy.set(event_target_value(&ev)))
                >
                    {[
                        ("", "Default (stop-first with a named volume or TCP port)"),
                        ("start-first", "start-first: zero downtime"),
                        ("stop-first", "stop-first: stop the old, then start"),
                    ]
                        .map(|(v, label)| view! {
                            <option value=v selected=move || s.strategy.with(|x| x == v)>{label}</option>
                        })
                        .collect_view()}
                </select>
                <FieldError errors field="strategy" />
            </div>
            <div class="field span-2" class:has-error=move || errors.message_for("env").is_some()>
                <label for="svc-env">"Environment variables"</label>
                <textarea
                    id="svc-env"
                    name="env"
                    rows="3"
                    placeholder="RUST_LOG=info"
                    bind:value=s.env
                ></textarea>
                <p class="hint">"One KEY=value per line. Secrets are set on the environment."</p>
                <FieldError errors field="env" />
            </div>
        </div>
        <fieldset class="form-section">
            <legend>"Health check"</legend>
            <div class="form-grid">
                <TextField
                    label="Path"
                    field="health_check.path"
                    value=s.hc_path
                    errors
                    placeholder="/health"
                />
                <TextField
                    label="Port"
                    field="health_check.port"
                    value=s.hc_port
                    errors
                    placeholder="8080"
                />
            </div>
        </fieldset>
        <fieldset class="form-section">
            <legend>"Resources"</legend>
            <div class="form-grid three">
                <TextField label="Replicas" field="replicas" value=s.replicas errors />
                <TextField
                    label="CPUs"
                    field="resources.cpus"
                    value=s.cpus
                    errors
                    placeholder="0.5"
                />
                <TextField
                    label="Memory (MB)"
                    field="resources.memory_mb"
                    value=s.memory_mb
                    errors
                    placeholder="256"
                />
            </div>
        </fieldset>
        <fieldset class="form-section">
            <legend>"Hardening"</legend>
            <div class="form-grid">
                <TextField
                    label="Run as user"
                    field="hardening.user"
                    value=s.user
                    errors
                    placeholder="1000:1000"
                />
                <div class="toggles">
                    <Toggle label="Read-only root filesystem" name="read_only" value=s.read_only />
                    <Toggle label="No new privileges" name="no_new_privileges" value=s.no_new_privileges />
                    <Toggle label="Drop all capabilities" name="drop_all_caps" value=s.drop_all_caps />
                </div>
            </div>
        </fieldset>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_like_docker_run_p() {
        let p = parse_ports("8080:80, 9000 53:53/udp").unwrap_or_default();
        assert_eq!(ports_to_text(&p), "8080:80, 9000, 53:53/udp");
        assert_eq!(parse_ports("").map(|p| p.len()), Ok(0));
    }

    #[test]
    fn tcp_ports_are_written_with_their_address() {
        let p = parse_ports("127.0.0.1:5432:5432, 0.0.0.0:6379:6379 [::1]:7000:7000 80")
            .unwrap_or_default();
        assert_eq!(
            p.iter().map(|p| p.mode).collect::<Vec<_>>(),
            [PortMode::Tcp, PortMode::Tcp, PortMode::Tcp, PortMode::Http]
        );
        assert_eq!(p[0].host_ip, None);
        assert_eq!(
            p[1].host_ip.map(|i| i.to_string()).as_deref(),
            Some("0.0.0.0")
        );
        assert_eq!(
            ports_to_text(&p),
            "127.0.0.1:5432:5432, 0.0.0.0:6379:6379, [::1]:7000:7000, 80"
        );
    }

    #[test]
    fn bad_ports_name_the_ports_field() {
        for bad in [
            "8080:70000",
            "http",
            "80/sctp",
            "0",
            "localhost:1:2",
            "1:2:3:4",
        ] {
            let e = parse_ports(bad).err().and_then(|e| e.field);
            assert_eq!(e.as_deref(), Some("ports"), "{bad}");
        }
    }

    #[test]
    fn env_lines_round_trip_and_reject_bad_names() {
        let env = parse_env("A=1\n\n  B_2=x=y \n").unwrap_or_default();
        assert_eq!(env_to_text(&env), "A=1\nB_2=x=y");
        let e = parse_env("1A=2").err().and_then(|e| e.field);
        assert_eq!(e.as_deref(), Some("env"));
        assert!(parse_env("NOEQUALS").is_err());
    }
}
