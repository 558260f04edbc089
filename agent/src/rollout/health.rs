//! Waiting for started containers to become healthy: Slipway's HTTP check
//! (a GET on the published loopback port), else the image's HEALTHCHECK,
//! else "still running after a second". What one look at a container means
//! is [`look`], a plain function.
use super::{cancelled, docker_err, err, Engine, Progress, LOG_LINES_ON_FAILURE};
use crate::docker::ManagedContainer;
use crate::spec::PortKey;
use slipway_types::agent::{AgentError, AgentErrorCode, ContainerHealth, ContainerState};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Health wait when a plan does not say (Revert, Reconcile).
pub(super) const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a container without any health check must stay running.
const RUNNING_GRACE: Duration = Duration::from_secs(1);
/// Health probes of a starting container: often, so a deploy is as quick as the
/// container (one probe is a loopback GET and an inspect).
const POLL: Duration = Duration::from_millis(25);

/// What one inspect of a starting container says.
#[derive(Debug, PartialEq)]
pub(super) enum Look {
    Healthy,
    /// Ask the container: GET `http://127.0.0.1:{host_port}{path}`.
    Probe {
        host_port: u16,
        path: String,
    },
    /// Not yet; the reason, if this look tells one.
    Wait(Option<&'static str>),
    /// It will not become healthy; `logs`: send its last log lines with the error.
    Fail {
        error: AgentError,
        logs: bool,
    },
}

/// `running_for`: since when the container has been seen running (`None`:
/// not running now).
pub(super) fn look(c: &ManagedContainer, running_for: Option<Duration>) -> Look {
    let crashed = matches!(
        c.state,
        ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting
    ) || c.restart_count > 0;
    if crashed {
        let message = match c.exit_code {
            Some(code) if c.state != ContainerState::Running => {
                format!(
                    "container {} exited with code {code} while starting",
                    c.name
                )
            }
            _ => format!("container {} exited while starting", c.name),
        };
        return Look::Fail {
            error: err(AgentErrorCode::Crashed, message),
            logs: true,
        };
    }
    let Some(running_for) = running_for.filter(|_| c.is_running()) else {
        return Look::Wait(None);
    };
    if let Some((port, path)) = &c.agent.health {
        return match c.host_ports.get(&PortKey::tcp(*port)) {
            Some(host_port) => Look::Probe {
                host_port: *host_port,
                path: path.clone(),
            },
            None => Look::Fail {
                error: err(
                    AgentErrorCode::Docker,
                    format!("health check port {port} is not published"),
                ),
                logs: false,
            },
        };
    }
    match c.health {
        ContainerHealth::Healthy => Look::Healthy,
        ContainerHealth::Unhealthy => Look::Fail {
            error: err(
                AgentErrorCode::Unhealthy,
                format!("container {} reports unhealthy (image HEALTHCHECK)", c.name),
            ),
            logs: true,
        },
        ContainerHealth::Starting => Look::Wait(Some("image HEALTHCHECK still starting")),
        ContainerHealth::None if running_for >= RUNNING_GRACE => Look::Healthy,
        ContainerHealth::None => Look::Wait(Some("not running for 1 s yet")),
    }
}

/// A health answer: any 2xx or 3xx (redirects are not followed).
pub(super) fn answer_ok(status: reqwest::StatusCode) -> bool {
    status.is_success() || status.is_redirection()
}

/// A client for health probes: no redirects, one second per probe.
pub(super) fn probe_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(1))
        .build()
}

/// One probe of Slipway's HTTP check; `Err` says what was wrong.
pub(super) async fn probe(
    http: &reqwest::Client,
    host_port: u16,
    path: &str,
) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{host_port}{path}");
    match http.get(&url).send().await {
        Ok(r) if answer_ok(r.status()) => Ok(()),
        Ok(r) => Err(format!("GET {path} answered {}", r.status())),
        Err(e) => Err(format!("GET {path} failed: {}", e.without_url())),
    }
}

impl Engine {
    /// Waits until the container is healthy. Errors carry the container's logs.
    async fn wait_healthy(&self, id: &str, timeout: Duration) -> Result<Duration, AgentError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let http = probe_client().map_err(|e| err(AgentErrorCode::Docker, e.to_string()))?;
        let mut running_since: Option<Instant> = None;
        let mut last_problem = String::from("no answer yet");
        loop {
            let c = self.docker.inspect(id).await.map_err(docker_err)?;
            let running_for = c
                .is_running()
                .then(|| running_since.get_or_insert_with(Instant::now).elapsed());
            let healthy = match look(&c, running_for) {
                Look::Healthy => true,
                Look::Probe { host_port, path } => match probe(&http, host_port, &path).await {
                    Ok(()) => true,
                    Err(problem) => {
                        last_problem = problem;
                        false
                    }
                },
                Look::Wait(problem) => {
                    if let Some(p) = problem {
                        last_problem = p.to_owned();
                    }
                    false
                }
                Look::Fail { mut error, logs } => {
                    if logs {
                        error.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                    }
                    return Err(error);
                }
            };
            if healthy {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                let mut e = err(
                    AgentErrorCode::Unhealthy,
                    format!(
                        "container {} not healthy after {} s: {last_problem}",
                        c.name,
                        timeout.as_secs()
                    ),
                );
                e.logs = self.docker.tail_logs(id, LOG_LINES_ON_FAILURE).await;
                return Err(e);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for all containers (`(id, name)`); the first failure wins, with
    /// the id of the container that failed.
    pub(super) async fn wait_all_healthy(
        &self,
        containers: &[(String, String)],
        timeout: Duration,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<(), (AgentError, Option<String>)> {
        let waits = containers.iter().map(|(id, name)| async move {
            match self.wait_healthy(id, timeout).await {
                Ok(took) => {
                    progress.step(format!("{name} healthy after {:.1} s", took.as_secs_f64()));
                    Ok(())
                }
                Err(e) => Err((e, Some(id.clone()))),
            }
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err((cancelled(), None)),
            r = futures_util::future::try_join_all(waits) => r.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::container;

    const RUNNING: Option<Duration> = Some(Duration::ZERO);

    fn fails(l: Look) -> (AgentErrorCode, String, bool) {
        match l {
            Look::Fail { error, logs } => (error.code, error.message, logs),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn exited_restarting_or_restarted_is_a_crash() {
        let mut c = container("web", &[], &[]);
        c.state = ContainerState::Exited;
        c.exit_code = Some(3);
        let (code, message, logs) = fails(look(&c, None));
        assert_eq!(code, AgentErrorCode::Crashed);
        assert_eq!(message, "container web exited with code 3 while starting");
        assert!(logs);
        c.state = ContainerState::Restarting;
        c.exit_code = None;
        assert_eq!(
            fails(look(&c, None)).1,
            "container web exited while starting"
        );
        // Running again, but it restarted once: a crash too.
        c.state = ContainerState::Running;
        c.exit_code = Some(1);
        c.restart_count = 1;
        assert_eq!(
            fails(look(&c, RUNNING)).1,
            "container web exited while starting"
        );
    }

    #[test]
    fn not_running_yet_waits_without_a_reason() {
        let mut c = container("web", &[], &[]);
        c.state = ContainerState::Created;
        assert_eq!(look(&c, None), Look::Wait(None));
    }

    #[test]
    fn http_check_probes_the_published_loopback_port() {
        let mut c = container("web", &[(8080, 32001)], &[]);
        c.agent.health = Some((8080, "/healthz".into()));
        assert_eq!(
            look(&c, RUNNING),
            Look::Probe {
                host_port: 32001,
                path: "/healthz".into()
            }
        );
        // The image's HEALTHCHECK does not matter then.
        c.health = ContainerHealth::Unhealthy;
        assert!(matches!(look(&c, RUNNING), Look::Probe { .. }));
        c.agent.health = Some((9090, "/healthz".into()));
        let (code, message, logs) = fails(look(&c, RUNNING));
        assert_eq!(code, AgentErrorCode::Docker);
        assert!(message.contains("9090"), "{message}");
        assert!(!logs);
    }

    #[test]
    fn image_healthcheck_then_running_grace() {
        let mut c = container("web", &[], &[]);
        c.health = ContainerHealth::Starting;
        assert!(matches!(look(&c, RUNNING), Look::Wait(Some(_))));
        c.health = ContainerHealth::Healthy;
        assert_eq!(look(&c, RUNNING), Look::Healthy);
        c.health = ContainerHealth::Unhealthy;
        assert_eq!(fails(look(&c, RUNNING)).0, AgentErrorCode::Unhealthy);
        c.health = ContainerHealth::None;
        assert!(matches!(look(&c, RUNNING), Look::Wait(Some(_))));
        assert_eq!(look(&c, Some(RUNNING_GRACE)), Look::Healthy);
    }

    #[test]
    fn health_answers() {
        use reqwest::StatusCode;
        assert!(answer_ok(StatusCode::OK));
        assert!(answer_ok(StatusCode::NO_CONTENT));
        assert!(answer_ok(StatusCode::FOUND));
        assert!(!answer_ok(StatusCode::NOT_FOUND));
        assert!(!answer_ok(StatusCode::SERVICE_UNAVAILABLE));
    }
}
