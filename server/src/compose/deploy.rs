//! `deploy`, resource limits and hardening keys.
use super::{set_keys, Report};
use compose_spec::service::{
    deploy::{resources::Limits, Mode as DeployMode, Order},
    ByteValue,
};
use slipway_types::{
    api::{Resources, RolloutStrategy},
    Capability,
};

/// Checks the keys of `deploy` (replicas and limits are read by the caller);
/// returns the rollout strategy of `update_config.order`.
pub fn classify_deploy(
    path: &str,
    deploy: &compose_spec::service::Deploy,
    r: &mut Report,
) -> Option<RolloutStrategy> {
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
                    "update_config" => {}
                    "rollback_config" => r.ignore(&kpath, "Slipway rolls back its own way"),
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
    let update = deploy.update_config.as_ref()?;
    let upath = format!("{path}.update_config");
    if let Ok(keys) = set_keys(update) {
        for key in keys.iter().filter(|k| *k != "order") {
            r.ignore(
                &format!("{upath}.{key}"),
                "Slipway rolls out one release at a time and stops on a failed health check",
            );
        }
    }
    update.order.map(|o| match o {
        Order::StartFirst => RolloutStrategy::StartFirst,
        Order::StopFirst => RolloutStrategy::StopFirst,
    })
}

pub fn convert_limits(path: &str, limits: &Limits, res: &mut Resources, r: &mut Report) {
    if let Some(c) = limits.cpus {
        res.cpus = Some(c.into_inner());
    }
    if let Some(m) = &limits.memory {
        res.memory_mb = memory_mb(&format!("{path}.memory"), m, r);
    }
}

/// Rounded up to whole MiB (compose units are powers of 1024).
pub fn memory_mb(path: &str, v: &ByteValue, r: &mut Report) -> Option<u32> {
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

pub fn capabilities<'a>(
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
pub fn no_new_privileges(opt: &str) -> Option<bool> {
    let rest = opt.strip_prefix("no-new-privileges")?;
    match rest {
        "" | ":true" | "=true" => Some(true),
        ":false" | "=false" => Some(false),
        _ => None,
    }
}
