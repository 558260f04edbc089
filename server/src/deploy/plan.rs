//! Pure planning for the deploy engine: how replicas spread over hosts, how
//! long each step may take, what a container's environment is, and what
//! must run on a host after a restart. No IO, unit-tested alone.
use slipway_types::agent::{
    ContainerHealth, ContainerPort, ContainerSpec, ContainerState, ContainerStatus, Sensitive,
    ServiceKey,
};
use slipway_types::api::{PortMode, RolloutStrategy, ServiceSpec, VolumeMount};
use slipway_types::target::TargetState;
use slipway_types::template::{self, RenderError};
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
    #[error(
        "env {env} references ${{{reference}}}, which is neither a variable nor a secret of environment {environment}"
    )]
    UnknownReference {
        env: String,
        reference: String,
        environment: String,
    },
    /// A stored spec from before templates were checked on save.
    #[error("env {env}: {error}")]
    Template {
        env: String,
        error: slipway_types::template::TemplateError,
    },
}

/// The container's environment: the environment's plain variables, then the
/// service's own `env` (which wins), then the referenced secrets.
/// `secrets` maps secret names to their decrypted values.
///
/// A service env value may be a template (`${NAME}`, `$$` for `$`, see
/// [`slipway_types::template`]): each reference is resolved from the
/// environment's variables and secrets here, into the container's env only
/// (the release snapshot keeps the template; errors name the reference,
/// never a value).
pub fn container_env(
    spec: &ServiceSpec,
    environment: &str,
    environment_vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Sensitive>, EnvError> {
    let mut env: BTreeMap<String, Sensitive> = environment_vars
        .iter()
        .map(|(k, v)| (k.clone(), Sensitive(v.clone())))
        .collect();
    for (k, v) in &spec.env {
        let lookup = |name: &str| {
            environment_vars
                .get(name)
                .or_else(|| secrets.get(name))
                .map(String::as_str)
        };
        let value = template::render(v, lookup).map_err(|e| match e {
            RenderError::Unknown(reference) => EnvError::UnknownReference {
                env: k.to_string(),
                reference,
                environment: environment.to_string(),
            },
            RenderError::Syntax(error) => EnvError::Template {
                env: k.to_string(),
                error,
            },
        })?;
        env.insert(k.to_string(), Sensitive(value));
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

/// The container of a one-off run (release command or job): the release's
/// container (image, env with its variables and secrets, volumes, files,
/// network) without published ports (the running release holds them), a
/// health check (it runs to completion) or DNS aliases (requests for the
/// service must never reach it). The agent still joins it to the
/// environment network, found from the service key.
pub fn one_off_container(c: &ContainerSpec) -> ContainerSpec {
    ContainerSpec {
        ports: Vec::new(),
        health_check: None,
        aliases: Vec::new(),
        ..c.clone()
    }
}

/// How long a job may run (a job service has no timeout of its own).
pub const JOB_TIMEOUT_SECS: u32 = 3600;
/// After a one-off run's own timeout the agent kills and removes the
/// container and answers: a little longer for that.
const RUN_ONCE_MARGIN: Duration = Duration::from_secs(30);

/// The deadline of a one-off run's call: pulling the image, the command's
/// own timeout, and killing it.
pub fn run_once_timeout(timeout_secs: u32) -> Duration {
    ROLLOUT_OVERHEAD + Duration::from_secs(u64::from(timeout_secs)) + RUN_ONCE_MARGIN
}

/// Lines of a one-off run's output kept in the deployment's reason.
pub const REASON_TAIL_LINES: usize = 20;

/// The reason of a failed one-off run: `what` and its last output lines.
pub fn with_tail(what: String, tail: &[String]) -> String {
    let tail = &tail[tail.len().saturating_sub(REASON_TAIL_LINES)..];
    if tail.is_empty() {
        return what;
    }
    format!("{what}\nlast output lines:\n{}", tail.join("\n"))
}

/// Whether a deployment of release `number` runs the release command:
/// not when a newer release of the service already succeeded (a rollback,
/// as on Heroku). Its migrations ran then; the older code's `alembic
/// upgrade head` / `sqlx migrate run` would fail on a schema that is ahead
/// of it, and a rollback must not be blocked by that.
pub fn runs_release_command(number: i64, newest_succeeded: Option<i64>) -> bool {
    newest_succeeded.is_none_or(|n| n <= number)
}

/// Whether a rollout over `hosts` hosts first prepares them all at once.
/// Only start-first: preparing means starting the new containers beside the
/// old ones, which is exactly what stop-first must not do (two containers on
/// one volume or port). Stop-first rolls hosts one by one, each `Full`
/// (stop old, start new, health, route), and a failure reverts the hosts
/// already done.
pub fn prepare_first(hosts: usize, strategy: RolloutStrategy) -> bool {
    hosts > 1 && strategy == RolloutStrategy::StartFirst
}

/// One host of a deployment whose control plane died: how far it got, how
/// many replicas it should run, and what its agent last reported of this
/// deployment's containers (`None`: not connected).
#[derive(Debug, Clone)]
pub struct HostReport<'a> {
    pub state: TargetState,
    pub replicas: u32,
    pub containers: Option<Vec<&'a ContainerStatus>>,
}

/// What recovery does with a deployment whose lease expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every host switched and serves it healthy: it succeeded.
    Keep,
    /// Fail it and reconcile its hosts back (the behaviour before switches
    /// were recorded).
    Revert,
    /// Every host switched, but some agent has not reported (yet) since the
    /// restart: ask again later (up to a grace period, then revert).
    Wait,
}

/// Keep a deployment that every host switched to, when each host's agent
/// reports its containers there running, healthy (or without a check) and,
/// for a service with HTTP ports, routed; revert anything less.
pub fn recovery(hosts: &[HostReport<'_>], routed: bool, grace_over: bool) -> Recovery {
    if hosts.is_empty() || hosts.iter().any(|h| h.state != TargetState::Switched) {
        return Recovery::Revert;
    }
    let mut wait = false;
    for h in hosts {
        let cs = match &h.containers {
            Some(cs) if !cs.is_empty() => cs,
            // Offline, or no status frame with them yet.
            _ => {
                wait = true;
                continue;
            }
        };
        let bad = cs
            .iter()
            .any(|c| c.state != ContainerState::Running || c.health == ContainerHealth::Unhealthy);
        if bad || (cs.len() as u32) < h.replicas || (routed && !cs.iter().any(|c| c.serving)) {
            return Recovery::Revert;
        }
        if cs.iter().any(|c| c.health == ContainerHealth::Starting) {
            wait = true;
        }
    }
    match (wait, grace_over) {
        (false, _) => Recovery::Keep,
        (true, false) => Recovery::Wait,
        (true, true) => Recovery::Revert,
    }
}

/// Whether the service's traffic goes through the ingress proxy (so its
/// serving containers are routed).
pub fn routed(spec: &ServiceSpec) -> bool {
    spec.ports
        .iter()
        .any(|p| p.mode == PortMode::Http && p.published.is_some())
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
        let env = container_env(&s, "production", &vars, &secrets).unwrap();
        assert_eq!(env["MODE"].0, "service");
        assert_eq!(env["REGION"].0, "eu");
        assert_eq!(env["DB_PASSWORD"].0, "hunter2");
        assert!(!format!("{env:?}").contains("hunter2"));
        assert_eq!(
            container_env(&s, "production", &vars, &BTreeMap::new()),
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

    fn key() -> ServiceKey {
        ServiceKey {
            project: "shop".into(),
            environment: "production".into(),
            service: "api".into(),
            service_id: uuid::Uuid::nil(),
            environment_id: uuid::Uuid::nil(),
        }
    }

    #[test]
    fn templates_resolve_variables_and_secrets_in_the_container_env_only() {
        let mut s = spec();
        let name = |n: &str| EnvVarName::try_from(n).unwrap();
        s.env.insert(
            name("DATABASE_URL"),
            "postgresql://app:${DB_PASSWORD}@${DB_HOST}/app".into(),
        );
        s.env
            .insert(name("PRICE"), "5$ or $$5, $HOME, $${DB_HOST}".into());
        s.env.insert(name("NESTED"), "${INDIRECT}".into());
        let snapshot = s.clone();
        let vars = BTreeMap::from([
            ("DB_HOST".to_string(), "postgres".to_string()),
            ("INDIRECT".to_string(), "${DB_PASSWORD}".to_string()),
        ]);
        let secrets = BTreeMap::from([("DB_PASSWORD".to_string(), "hunter2".to_string())]);
        let env = container_env(&s, "production", &vars, &secrets).unwrap();
        assert_eq!(
            env["DATABASE_URL"].0,
            "postgresql://app:hunter2@postgres/app"
        );
        assert_eq!(env["PRICE"].0, "5$ or $5, $HOME, ${DB_HOST}");
        // A value is inserted as it is, never expanded again.
        assert_eq!(env["NESTED"].0, "${DB_PASSWORD}");
        assert!(!format!("{env:?}").contains("hunter2"));
        // The spec (the release snapshot) keeps the template.
        assert_eq!(s, snapshot);
        let c = container_spec(&s, env, &key());
        assert!(!format!("{c:?}").contains("hunter2"));

        s.env.insert(
            name("DATABASE_URL"),
            "postgresql://app:${DB_PASS}@db".into(),
        );
        let e = container_env(&s, "production", &vars, &secrets).unwrap_err();
        assert_eq!(
            e.to_string(),
            "env DATABASE_URL references ${DB_PASS}, which is neither a variable nor a secret of environment production"
        );
        s.env.insert(name("DATABASE_URL"), "${DB_PASSWORD".into());
        let e = container_env(&s, "production", &vars, &secrets).unwrap_err();
        assert!(e.to_string().starts_with("env DATABASE_URL: "), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn every_stack_field_reaches_the_container() {
        let s: ServiceSpec = serde_json::from_value(serde_json::json!({
            "image": "nginx:1",
            "entrypoint": ["/docker-entrypoint.sh"],
            "command": ["nginx", "-g", "daemon off;"],
            "tmpfs": [{"target": "/run", "size_mb": 16}],
            "stop_grace_period_secs": 3,
            "init": true,
            "extra_hosts": [{"host": "gw", "ip": "host-gateway"}],
            "files": [{"target": "/etc/nginx/nginx.conf", "content": "events {}"}],
            "aliases": ["www", "front"],
            "ports": [{"container": 5432, "published": 15432, "mode": "tcp", "host_ip": "127.0.0.1"}],
            "strategy": "stop-first",
        }))
        .unwrap();
        let c = container_spec(&s, BTreeMap::new(), &key());
        assert_eq!(c.entrypoint, s.entrypoint);
        assert_eq!(c.command, s.command);
        assert_eq!(c.tmpfs, s.tmpfs);
        assert_eq!(c.stop_grace_period_secs, Some(3));
        assert!(c.init);
        assert_eq!(c.extra_hosts, s.extra_hosts);
        assert_eq!(c.files, s.files);
        assert_eq!(c.aliases, vec!["api", "www", "front"]);
        assert_eq!(c.ports[0].mode, PortMode::Tcp);
        assert_eq!(c.ports[0].host_ip, s.ports[0].host_ip);

        let once = one_off_container(&c);
        assert!(once.ports.is_empty() && once.aliases.is_empty());
        assert!(once.health_check.is_none());
        assert_eq!((once.image, once.files), (c.image.clone(), c.files.clone()));
        assert!(run_once_timeout(600) > Duration::from_secs(600));
    }

    #[test]
    fn stop_first_never_prepares() {
        assert!(prepare_first(2, RolloutStrategy::StartFirst));
        assert!(!prepare_first(1, RolloutStrategy::StartFirst));
        assert!(!prepare_first(3, RolloutStrategy::StopFirst));
    }

    #[test]
    fn rollbacks_skip_the_release_command() {
        assert!(runs_release_command(1, None));
        assert!(runs_release_command(3, Some(2)));
        // The same release again (a redeploy) runs it again.
        assert!(runs_release_command(3, Some(3)));
        assert!(!runs_release_command(2, Some(3)));
    }

    #[test]
    fn a_failed_run_keeps_its_last_lines() {
        let lines: Vec<String> = (1..=30).map(|i| format!("line {i}")).collect();
        let r = with_tail("release command exited with 3".into(), &lines);
        assert!(r.starts_with("release command exited with 3\nlast output lines:\nline 11\n"));
        assert!(r.ends_with("line 30"));
        assert_eq!(with_tail("x".into(), &[]), "x");
    }

    fn status(state: ContainerState, health: ContainerHealth, serving: bool) -> ContainerStatus {
        ContainerStatus {
            id: "c".into(),
            name: "c".into(),
            service_id: uuid::Uuid::nil(),
            deployment_id: uuid::Uuid::nil(),
            release_number: 2,
            image: "web:2".into(),
            state,
            health,
            serving,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn recovery_keeps_only_what_switched_and_serves_healthy_everywhere() {
        use ContainerState::{Exited, Running};
        let ok = status(Running, ContainerHealth::Healthy, true);
        let unrouted = status(Running, ContainerHealth::None, false);
        let sick = status(Running, ContainerHealth::Unhealthy, true);
        let starting = status(Running, ContainerHealth::Starting, true);
        let exited = status(Exited, ContainerHealth::Healthy, false);
        fn host<'a>(state: TargetState, cs: Option<Vec<&'a ContainerStatus>>) -> HostReport<'a> {
            HostReport {
                state,
                replicas: 1,
                containers: cs,
            }
        }
        let sw = TargetState::Switched;
        assert_eq!(
            recovery(&[host(sw, Some(vec![&ok]))], true, false),
            Recovery::Keep
        );
        assert_eq!(
            recovery(
                &[host(sw, Some(vec![&ok])), host(sw, Some(vec![&ok]))],
                true,
                false
            ),
            Recovery::Keep
        );
        // A service without HTTP ports is never routed.
        assert_eq!(
            recovery(&[host(sw, Some(vec![&unrouted]))], false, false),
            Recovery::Keep
        );
        assert_eq!(
            recovery(&[host(sw, Some(vec![&unrouted]))], true, false),
            Recovery::Revert
        );
        // A host that had not switched, or nothing at all: today's revert.
        assert_eq!(
            recovery(
                &[host(sw, Some(vec![&ok])), host(TargetState::Running, None)],
                true,
                false
            ),
            Recovery::Revert
        );
        assert_eq!(recovery(&[], true, false), Recovery::Revert);
        for bad in [&sick, &exited] {
            assert_eq!(
                recovery(&[host(sw, Some(vec![bad]))], true, false),
                Recovery::Revert
            );
        }
        // Fewer containers than replicas.
        let two = HostReport {
            state: sw,
            replicas: 2,
            containers: Some(vec![&ok]),
        };
        assert_eq!(recovery(&[two], true, false), Recovery::Revert);
        // Not reported yet (agent reconnecting) or still starting: wait, up to the grace.
        for cs in [None, Some(vec![]), Some(vec![&starting])] {
            assert_eq!(
                recovery(&[host(sw, cs.clone())], true, false),
                Recovery::Wait
            );
            assert_eq!(recovery(&[host(sw, cs)], true, true), Recovery::Revert);
        }
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
