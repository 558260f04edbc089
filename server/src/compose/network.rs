//! What a service publishes and how it is found: `ports`, `networks`
//! (aliases) and `extra_hosts`.
//!
//! Every service of an environment is on the environment's one network,
//! found by its service name: compose network names are merged into it and
//! only their `aliases` are kept. A port published on an explicit loopback
//! address (`"127.0.0.1:5432:5432"`) is bound by Docker on that address (an
//! admin tunnel, `mode: tcp`); any other published port is served by the
//! ingress proxy (`mode: http`).
use super::Report;
use compose_spec::{
    service::{
        network_config::{NetworkConfig, Networks},
        ports::{Port as LongPort, Protocol as ComposeProtocol, Range, ShortPort},
    },
    ShortOrLong,
};
use slipway_types::{
    api::{ExtraHost, PortMapping, PortMode, Protocol},
    Port, ResourceName,
};
use std::net::IpAddr;

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

/// The mode a published port gets from its host IP, or `None` (reported).
fn mode_of(path: &str, ip: Option<IpAddr>, r: &mut Report) -> Option<(PortMode, Option<IpAddr>)> {
    match ip {
        None => Some((PortMode::Http, None)),
        Some(ip) if ip.is_unspecified() => Some((PortMode::Http, None)),
        Some(ip) if ip.is_loopback() => Some((PortMode::Tcp, Some(ip))),
        Some(ip) => {
            r.invalid(
                path,
                format!(
                    "host IP {ip} is not supported: publish on all addresses (through Slipway's \
                     proxy) or bind on 127.0.0.1 (an admin tunnel)"
                ),
            );
            None
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

/// Container ports of well-known non-HTTP servers.
const NOT_HTTP: &[(u16, &str)] = &[
    (5432, "PostgreSQL"),
    (3306, "MySQL"),
    (6379, "Redis"),
    (27017, "MongoDB"),
    (5672, "AMQP"),
    (11211, "memcached"),
];

pub fn convert_ports(
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
        let mode = mode_of(&format!("{ppath}.host_ip"), host_ip, r);
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
        let (Some((mode, host_ip)), Some(protocol), Some(container), Some(published)) =
            (mode, proto, container, published)
        else {
            continue;
        };
        if mode == PortMode::Tcp && published.is_none() {
            let ip = host_ip.map(|i| i.to_string()).unwrap_or_default();
            r.invalid(
                &ppath,
                format!(
                    "a port bound on {ip} needs its host port, e.g. \"{ip}:{c}:{c}\"",
                    c = container.get()
                ),
            );
            continue;
        }
        if let (PortMode::Http, Some(h)) = (mode, published) {
            if let Some((_, what)) = NOT_HTTP.iter().find(|(p, _)| *p == container.get()) {
                r.ignore(
                    &ppath,
                    &format!(
                        "published through Slipway's HTTP proxy, but {} looks like {what}: \
                         services reach it by name on the environment network; for an admin \
                         tunnel write \"127.0.0.1:{h}:{}\"",
                        container.get(),
                        container.get()
                    ),
                );
            }
        }
        out.push(PortMapping {
            container,
            published,
            protocol,
            mode,
            host_ip,
        });
    }
    out
}

/// `networks:` of a service: the aliases; network names are merged.
pub fn convert_networks(
    path: &str,
    config: Option<&NetworkConfig>,
    r: &mut Report,
) -> Vec<ResourceName> {
    let npath = format!("{path}.networks");
    let networks: &Networks = match config {
        Some(NetworkConfig::Networks(n)) => n,
        // `network_mode` is reported with the other keys.
        Some(NetworkConfig::NetworkMode(_)) | None => return Vec::new(),
    };
    let names: Vec<String> = match networks {
        ShortOrLong::Short(set) => set.iter().map(ToString::to_string).collect(),
        ShortOrLong::Long(map) => map.keys().map(ToString::to_string).collect(),
    };
    if !names.is_empty() {
        r.ignore(
            &npath,
            &format!(
                "the services of an environment share one network: {} merged into it",
                names.join(", ")
            ),
        );
    }
    let mut aliases: Vec<ResourceName> = Vec::new();
    let ShortOrLong::Long(map) = networks else {
        return aliases;
    };
    for (net, cfg) in map {
        let Some(cfg) = cfg else { continue };
        let cpath = format!("{npath}.{net}");
        for alias in &cfg.aliases {
            match ResourceName::try_from(alias.as_str()) {
                Ok(a) if !aliases.contains(&a) => aliases.push(a),
                Ok(_) => {}
                Err(e) => r.invalid(
                    &format!("{cpath}.aliases"),
                    format!(
                        "alias {:?} {e} (Slipway aliases are DNS labels)",
                        alias.as_str()
                    ),
                ),
            }
        }
        if cfg.ipv4_address.is_some() || cfg.ipv6_address.is_some() {
            r.unsupported(format!(
                "{cpath}.ipv4_address/ipv6_address (services reach each other by name on the \
                 environment network: use the service name or an alias)"
            ));
        }
        if !cfg.link_local_ips.is_empty()
            || cfg.mac_address.is_some()
            || !cfg.driver_opts.is_empty()
            || cfg.priority.is_some()
        {
            r.ignore(&cpath, "network options are not applied");
        }
    }
    aliases
}

/// `extra_hosts` as written (list of `host:ip` / `host=ip`, or a map),
/// `host-gateway` included. Taken from the raw YAML: the compose parser
/// refuses `host-gateway`.
pub fn convert_extra_hosts(path: &str, raw: &serde_yaml::Value, r: &mut Report) -> Vec<ExtraHost> {
    let hpath = format!("{path}.extra_hosts");
    let mut pairs: Vec<(String, String)> = Vec::new();
    match raw {
        serde_yaml::Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let entry = item.as_str().and_then(|s| {
                    let at = s.find('=').or_else(|| s.find(':'))?;
                    Some((s[..at].trim().to_string(), s[at + 1..].trim().to_string()))
                });
                match entry {
                    Some(e) => pairs.push(e),
                    None => r.invalid(&format!("{hpath}[{i}]"), "expected \"host:ip\""),
                }
            }
        }
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    (Some(k), Some(v)) => pairs.push((k.to_string(), v.to_string())),
                    _ => r.invalid(&hpath, "expected host: ip entries"),
                }
            }
        }
        serde_yaml::Value::Null => {}
        _ => r.invalid(&hpath, "expected a list of \"host:ip\" or a map"),
    }
    let mut out = Vec::new();
    for (host, ip) in pairs {
        let ip = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(&ip)
            .to_string();
        if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
            r.invalid(
                &format!("{hpath}.{host}"),
                format!("{ip:?} is not an IP address or host-gateway"),
            );
            continue;
        }
        out.push(ExtraHost { host, ip });
    }
    out
}
