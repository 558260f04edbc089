//! Pure planning for the deploy engine: how replicas spread over hosts, how
//! long each step may take, what a container's environment is, and what
//! must run on a host after a restart. No IO, unit-tested alone.
use slipway_types::agent::{ContainerPort, ContainerSpec, Sensitive, ServiceKey};
use slipway_types::api::{ServiceSpec, VolumeMount};
use std::collections::BTreeMap;
use std::time::Duration;

/// Stopped containers of this many earlier deployments stay on each host
/// for rollback.
pub const KEEP_PREVIOUS: u32 = 3;
/// In-flight requests to the old release get this long to finish.
pub const DRAIN_TIMEOUT_SECS: u32 = 10;
/// Pulling an image and creating containers, on top of the health wait.
const ROLLOUT_OVERHEAD: Duration = Duration::from_secs(300);

/// Spreads `replicas` over `hosts` (already in rollout order): as even as
/// possible, earlier hosts taking the remainder. Hosts that would get none
/// are left out.
pub fn spread<T: Clone>(replicas: u32, hosts: &[T]) -> Vec<(T, u32)> {
    if hosts.is_empty() || replicas == 0 {
        return Vec::new();
    }
    let n = hosts.len() as u32;
    let (base, extra) = (replicas / n, replicas % n);
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.clone(), base + u32::from((i as u32) < extra)))
        .filter(|(_, r)| *r > 0)
        .collect()
}

/// How long a new container may take to become healthy: the service's own
/// budget (interval × retries + timeout), at least 5 s, at most 10 min;
/// 60 s when the service declares no HTTP check.
pub fn health_timeout_secs(spec: &ServiceSpec) -> u32 {
    match &spec.health_check {
        Some(h) => h
            .interval_secs
            .saturating_mul(h.retries)
            .saturating_add(h.timeout_secs)
            .clamp(5, 600),
        None => 60,
    }
}

/// The deadline of one host's rollout call.
pub fn rollout_timeout(health_timeout_secs: u32) -> Duration {
    ROLLOUT_OVERHEAD
        + Duration::from_secs(u64::from(health_timeout_secs) + u64::from(DRAIN_TIMEOUT_SECS))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("secret {secret} (for env var {env}) is not set in this environment")]
    MissingSecret { env: String, secret: String },
}

/// The container's environment: the environment's plain variables, then the
/// service's own `env` (which wins), then the referenced secrets.
/// `secrets` maps secret names to their decrypted values.
pub fn container_env(
    spec: &ServiceSpec,
    environment_vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Sensitive>, EnvError> {
    let mut env: BTreeMap<String, Sensitive> = environment_vars
        .iter()
        .map(|(k, v)| (k.clone(), Sensitive(v.clone())))
        .collect();
    for (k, v) in &spec.env {
        env.insert(k.to_string(), Sensitive(v.clone()));
    }
    for r in &spec.secrets {
        let value = secrets
            .get(r.secret.as_str())
            .ok_or_else(|| EnvError::MissingSecret {
                env: r.env.to_string(),
                secret: r.secret.to_string(),
            })?;
        env.insert(r.env.to_string(), Sensitive(value.clone()));
    }
    Ok(env)
}

/// Named volumes belong to their project and environment, as in compose:
/// `data` of shop/staging is the Docker volume `shop-staging-data`, so two
/// environments on one host never share one by accident. Absolute host
/// paths (bind mounts) are used as given.
pub fn volume_source(source: &str, key: &ServiceKey) -> String {
    if source.starts_with('/') {
        source.to_string()
    } else {
        format!("{}-{}-{source}", key.project, key.environment)
    }
}

/// The container an agent creates for `spec`.
pub fn container_spec(
    spec: &ServiceSpec,
    env: BTreeMap<String, Sensitive>,
    key: &ServiceKey,
) -> ContainerSpec {
    ContainerSpec {
        image: spec.image.clone(),
        command: spec.command.clone(),
        env,
        ports: spec
            .ports
            .iter()
            .map(|p| ContainerPort {
                container: p.container,
                published: p.published,
                protocol: p.protocol,
                mode: p.mode,
                host_ip: p.host_ip,
            })
            .collect(),
        volumes: spec
            .volumes
            .iter()
            .map(|v| VolumeMount {
                source: volume_source(&v.source, key),
                ..v.clone()
            })
            .collect(),
        health_check: spec.health_check.clone(),
        resources: spec.resources.clone(),
        user: spec.hardening.user.clone(),
        read_only: spec.hardening.read_only,
        cap_drop: spec.hardening.cap_drop.clone(),
        cap_add: spec.hardening.cap_add.clone(),
        no_new_privileges: spec.hardening.no_new_privileges,
        entrypoint: spec.entrypoint.clone(),
        tmpfs: spec.tmpfs.clone(),
        stop_grace_period_secs: spec.stop_grace_period_secs,
        init: spec.init,
        extra_hosts: spec.extra_hosts.clone(),
        files: spec.files.clone(),
        aliases: std::iter::once(key.service.clone())
            .chain(spec.aliases.iter().map(|a| a.to_string()))
            .collect(),
    }
}

/// What should run for one service on one host, from its deployments on
/// that host, newest first, as (id, succeeded). The newest succeeded one
/// serves; the next [`KEEP_PREVIOUS`] succeeded ones are kept for rollback;
/// everything else (failed, cancelled, older) goes.
pub fn desired<Id: Copy>(history_newest_first: &[(Id, bool)]) -> (Option<Id>, Vec<Id>) {
    let mut ok = history_newest_first
        .iter()
        .filter(|(_, succeeded)| *succeeded)
        .map(|(id, _)| *id);
    let serving = ok.next();
    let keep = ok.take(KEEP_PREVIOUS as usize).collect();
    (serving, keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::api::{HealthCheck, SecretRef};
    use slipway_types::{EnvVarName, ImageRef, Port};

    fn spec() -> ServiceSpec {
        serde_json::from_value(serde_json::json!({"image": "web:1"})).unwrap()
    }

    #[test]
    fn replicas_spread_evenly_and_skip_idle_hosts() {
        assert_eq!(spread(5, &["a", "b"]), vec![("a", 3), ("b", 2)]);
        assert_eq!(spread(1, &["a", "b", "c"]), vec![("a", 1)]);
        assert_eq!(spread(3, &["a"]), vec![("a", 3)]);
        assert!(spread(2, &Vec::<&str>::new()).is_empty());
        assert!(spread(0, &["a"]).is_empty());
    }

    #[test]
    fn health_budget_follows_the_spec_within_bounds() {
        let mut s = spec();
        assert_eq!(health_timeout_secs(&s), 60);
        s.health_check = Some(HealthCheck {
            interval_secs: 1,
            timeout_secs: 1,
            retries: 2,
            ..HealthCheck::http("/h", Port::try_from(8080i64).unwrap())
        });
        assert_eq!(health_timeout_secs(&s), 5);
        if let Some(h) = s.health_check.as_mut() {
            h.interval_secs = 10;
            h.retries = 3;
            h.timeout_secs = 3;
        }
        assert_eq!(health_timeout_secs(&s), 33);
        assert!(rollout_timeout(33) > Duration::from_secs(33));
    }

    #[test]
    fn service_env_wins_and_secrets_must_exist() {
        let mut s = spec();
        s.env
            .insert(EnvVarName::try_from("MODE").unwrap(), "service".into());
        s.secrets.push(SecretRef {
            env: EnvVarName::try_from("DB_PASSWORD").unwrap(),
            secret: EnvVarName::try_from("PG_PASS").unwrap(),
        });
        let vars = BTreeMap::from([
            ("MODE".to_string(), "environment".to_string()),
            ("REGION".to_string(), "eu".to_string()),
        ]);
        let secrets = BTreeMap::from([("PG_PASS".to_string(), "hunter2".to_string())]);
        let env = container_env(&s, &vars, &secrets).unwrap();
        assert_eq!(env["MODE"].0, "service");
        assert_eq!(env["REGION"].0, "eu");
        assert_eq!(env["DB_PASSWORD"].0, "hunter2");
        assert!(!format!("{env:?}").contains("hunter2"));
        assert_eq!(
            container_env(&s, &vars, &BTreeMap::new()),
            Err(EnvError::MissingSecret {
                env: "DB_PASSWORD".into(),
                secret: "PG_PASS".into()
            })
        );
        s.volumes = vec![
            VolumeMount {
                source: "data".into(),
                target: "/data".into(),
                read_only: false,
            },
            VolumeMount {
                source: "/srv/cfg".into(),
                target: "/cfg".into(),
                read_only: true,
            },
        ];
        let key = ServiceKey {
            project: "shop".into(),
            environment: "staging".into(),
            service: "web".into(),
            service_id: uuid::Uuid::nil(),
            environment_id: uuid::Uuid::nil(),
        };
        let c = container_spec(&s, env, &key);
        assert_eq!(c.image, ImageRef::try_from("web:1".to_string()).unwrap());
        assert!(c.no_new_privileges);
        assert_eq!(c.volumes[0].source, "shop-staging-data");
        assert_eq!(c.volumes[1].source, "/srv/cfg");
    }

    #[test]
    fn newest_success_serves_and_a_few_are_kept() {
        let h = [
            (7, false),
            (6, true),
            (5, true),
            (4, false),
            (3, true),
            (2, true),
            (1, true),
        ];
        assert_eq!(desired(&h), (Some(6), vec![5, 3, 2]));
        assert_eq!(desired(&[(1, false)]), (None, vec![]));
    }
}
