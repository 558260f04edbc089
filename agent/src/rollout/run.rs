//! One-off containers: a release command before the new release takes
//! traffic, or a job. The container is the release's (image, env, volumes,
//! files…) with the plan's command, on the environment network under no DNS
//! name of the service, never restarted, and always removed afterwards.
//!
//! ```text
//!  RunOnce ─▶ image ─▶ create ─▶ start ─▶ follow output ──▶ exit code ─▶ Completed
//!                                           │ each line: Log event        {exit_code, tail}
//!                                           ├ timeout: kill ─▶ Timeout error (last lines)
//!                                           └ cancel ─▶ Cancelled
//!             (the container is removed on every path; a leftover of a
//!              crashed agent is removed by reconcile)
//! ```
use super::{cancelled, docker_err, err, or_cancel, Engine, Progress};
use crate::docker::{Docker, DockerError};
use crate::spec;
use futures_util::StreamExt;
use slipway_types::agent::{
    AgentError, AgentErrorCode, AgentEvent, AgentResponse, RunOncePlan, RunPurpose,
};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Output lines sent back with the answer (or the timeout error).
const TAIL_LINES: usize = 20;
/// A longer output line is cut (the rest is dropped).
const MAX_LINE_CHARS: usize = 4096;

/// The last lines of the output.
#[derive(Debug, Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    fn take(self) -> Vec<String> {
        self.lines.into()
    }
}

/// `line`, cut to [`MAX_LINE_CHARS`] characters.
fn cut(line: String) -> String {
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((i, _)) => {
            let mut l = line;
            l.truncate(i);
            l.push('…');
            l
        }
        None => line,
    }
}

fn what(purpose: RunPurpose) -> &'static str {
    match purpose {
        RunPurpose::ReleaseCommand => "release command",
        RunPurpose::Job => "job",
    }
}

/// Removes the container when dropped before [`Removal::done`] (a dropped
/// request future): the one-off never outlives its run.
struct Removal {
    docker: Docker,
    id: Option<String>,
}

impl Removal {
    async fn done(mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = self.docker.remove(&id).await {
                tracing::warn!(container = %id, error = %e, "could not remove a one-off container");
            }
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let docker = self.docker.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = docker.remove(&id).await;
                });
            }
        }
    }
}

impl Engine {
    /// Runs the plan's one-off container to completion; its output goes out
    /// as [`AgentEvent::Log`] while it runs.
    pub async fn run_once(
        &self,
        plan: &RunOncePlan,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let spec = spec::run_spec(&self.prefix, self.host_id, self.docker.session(), plan)
            .map_err(|e| err(AgentErrorCode::InvalidSpec, e.0))?;
        let what = what(plan.purpose);
        let image = plan.container.image.as_str();
        or_cancel(
            cancel,
            self.ensure_image(image, plan.registry_auth.as_ref(), progress),
        )
        .await?;

        // A leftover of the same name (an earlier attempt) is replaced.
        let created = match self.docker.create(&spec).await {
            Err(DockerError::Conflict(_)) => {
                tracing::info!(container = %spec.name, "replacing a leftover one-off container");
                self.docker.remove(&spec.name).await.map_err(docker_err)?;
                self.docker.create(&spec).await
            }
            other => other,
        };
        let id = created.map_err(|e| match e {
            DockerError::NotFound(m) => err(AgentErrorCode::ImageMissing, m),
            other => err(
                AgentErrorCode::Docker,
                format!("cannot create {}: {other}", spec.name),
            ),
        })?;
        let removal = Removal {
            docker: self.docker.clone(),
            id: Some(id.clone()),
        };
        let timeout = Duration::from_secs(u64::from(plan.timeout_secs));
        let result = self
            .run_to_exit(&id, &spec.name, what, timeout, progress, cancel)
            .await;
        removal.done().await;
        result
    }

    async fn run_to_exit(
        &self,
        id: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> Result<AgentResponse, AgentError> {
        let started = Instant::now();
        if let Err(e) = self.docker.start(id).await {
            let mut e = err(AgentErrorCode::Crashed, format!("cannot start {name}: {e}"));
            e.logs = self.docker.tail_logs(id, TAIL_LINES as u32).await;
            return Err(e);
        }
        progress.step(format!("{what}: running in one-off container {name}"));
        let deadline = started + timeout;
        let mut tail = Tail::default();
        // Everything it prints, from its start, until it stops.
        let mut output = Box::pin(self.docker.follow_logs(id));
        let mut output_open = true;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(cancelled()),
                _ = tokio::time::sleep_until(deadline) => {
                    if let Err(e) = self.docker.kill(id).await {
                        tracing::warn!(container = %name, error = %e, "could not kill a one-off container");
                    }
                    let message = format!(
                        "{what} did not finish within {} s; killed",
                        timeout.as_secs()
                    );
                    progress.step(message.clone());
                    let mut e = err(AgentErrorCode::Timeout, message);
                    e.logs = tail.take();
                    return Err(e);
                }
                item = output.next(), if output_open => match item {
                    Some(Ok((stream, line))) => {
                        let line = cut(line);
                        tail.push(&line);
                        progress.event(AgentEvent::Log { stream, line });
                    }
                    Some(Err(e)) => {
                        tracing::debug!(container = %name, error = %e, "output stream ended");
                        output_open = false;
                    }
                    None => output_open = false,
                },
                code = self.docker.wait_exit(id), if !output_open => {
                    let exit_code = code.map_err(docker_err)?;
                    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    progress.step(format!(
                        "{what} exited with code {exit_code} after {:.1} s",
                        duration_ms as f64 / 1000.0
                    ));
                    return Ok(AgentResponse::Completed {
                        exit_code,
                        tail: tail.take(),
                        duration_ms,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..30 {
            t.push(&format!("line {i}"));
        }
        let lines = t.take();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines[TAIL_LINES - 1], "line 29");
    }

    #[test]
    fn long_lines_are_cut() {
        assert_eq!(cut("short".into()), "short");
        let long = "é".repeat(MAX_LINE_CHARS + 10);
        let c = cut(long);
        assert_eq!(c.chars().count(), MAX_LINE_CHARS + 1);
        assert!(c.ends_with('…'));
    }
}
