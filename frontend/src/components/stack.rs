//! The stack fields of a service in words (rollout strategy, dependencies,
//! commands, tmpfs, config files), for the service page and the
//! environment's **Deploy environment** panel.
use super::ui::fmt_bytes;
use leptos::prelude::*;
use slipway_types::{
    api::{ConfigFile, DependsCondition, RolloutStrategy, ServiceSpec, Tmpfs},
    ResourceName,
};
use std::collections::BTreeMap;

/// `start-first` / `stop-first`, as written in a spec.
pub fn strategy_name(s: RolloutStrategy) -> &'static str {
    match s {
        RolloutStrategy::StartFirst => "start-first",
        RolloutStrategy::StopFirst => "stop-first",
    }
}

/// The strategy a rollout uses, and whether it was chosen or follows from
/// the spec (a named volume or a `tcp` port makes it `stop-first`).
pub fn strategy_text(spec: &ServiceSpec) -> String {
    let name = strategy_name(spec.effective_strategy());
    match spec.strategy {
        Some(_) => name.to_owned(),
        None => format!("{name} (default)"),
    }
}

pub fn condition_name(c: DependsCondition) -> &'static str {
    match c {
        DependsCondition::ServiceStarted => "started",
        DependsCondition::ServiceHealthy => "healthy",
        DependsCondition::ServiceCompletedSuccessfully => "completed successfully",
    }
}

/// `postgres (healthy), migrate (completed successfully)`.
pub fn depends_text(deps: &BTreeMap<ResourceName, DependsCondition>) -> String {
    deps.iter()
        .map(|(name, c)| format!("{name} ({})", condition_name(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A command line as a shell would read it back: arguments with spaces or
/// quotes (or empty ones) in single quotes.
pub fn argv_text(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && !a.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `/tmp (64 MB), /run`.
pub fn tmpfs_text(t: &[Tmpfs]) -> String {
    t.iter()
        .map(|t| match t.size_mb {
            Some(m) => format!("{} ({m} MB)", t.target),
            None => t.target.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Config files: target and size, the content folded away.
#[component]
pub fn ConfigFiles(files: Vec<ConfigFile>) -> impl IntoView {
    files
        .into_iter()
        .map(|f| {
            let size = fmt_bytes(f.content.len() as u64);
            view! {
                <details class="config-file" data-test="config-file">
                    <summary>{f.target}" · "<span class="muted">{size}</span></summary>
                    <pre>{f.content}</pre>
                </details>
            }
        })
        .collect_view()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::{api::VolumeMount, ImageRef};

    fn spec() -> ServiceSpec {
        ServiceSpec::of_image(ImageRef::try_from("postgres:16").unwrap_or_else(|_| unreachable!()))
    }

    #[test]
    fn strategies_say_whether_they_were_chosen() {
        let mut s = spec();
        assert_eq!(strategy_text(&s), "start-first (default)");
        s.volumes.push(VolumeMount {
            source: "pgdata".into(),
            target: "/var/lib/postgresql/data".into(),
            read_only: false,
        });
        assert_eq!(strategy_text(&s), "stop-first (default)");
        s.strategy = Some(RolloutStrategy::StopFirst);
        assert_eq!(strategy_text(&s), "stop-first");
    }

    #[test]
    fn dependencies_and_commands_read_like_compose() {
        let mut deps = BTreeMap::new();
        for (n, c) in [
            ("postgres", DependsCondition::ServiceHealthy),
            ("migrate", DependsCondition::ServiceCompletedSuccessfully),
        ] {
            deps.insert(
                ResourceName::try_from(n).unwrap_or_else(|_| unreachable!()),
                c,
            );
        }
        assert_eq!(
            depends_text(&deps),
            "migrate (completed successfully), postgres (healthy)"
        );
        let argv: Vec<String> = ["sh", "-c", "alembic upgrade head", "", "it's"]
            .map(str::to_owned)
            .into();
        assert_eq!(
            argv_text(&argv),
            r"sh -c 'alembic upgrade head' '' 'it'\''s'"
        );
        let t = [
            Tmpfs {
                target: "/tmp".into(),
                size_mb: Some(64),
            },
            Tmpfs {
                target: "/run".into(),
                size_mb: None,
            },
        ];
        assert_eq!(tmpfs_text(&t), "/tmp (64 MB), /run");
    }
}
