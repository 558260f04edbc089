//! **Deploy environment**: which services of an environment to deploy, and
//! in which order. Pure: the caller reads the services and what serves of
//! them, this module decides.
//!
//! ```text
//! services + depends_on ──check──▶ unknown dependency / cycle (422, named: api → worker → api)
//!        │
//!        ▼ topological order, dependencies first, ties by name (stable)
//! considered = the chosen services (default: all)
//! batch      = considered that changed (all: every one)
//!            + dependencies of the considered ones that never served
//! waits_for  = the nearest dependencies that are in the batch
//! ```
//!
//! A service has *changed* when nothing of it serves yet, or when the spec
//! (image included) of the release its newest succeeded deployment deployed
//! differs from its current spec. Every `depends_on` condition waits for the
//! dependency's deployment to succeed: a service deployment succeeds once
//! its containers passed their health check (`service_started` and
//! `service_healthy` alike), a job's once its run exited 0
//! (`service_completed_successfully`).
use slipway_types::api::ServiceSpec;
use std::collections::{BTreeMap, BTreeSet};

/// Why an environment cannot be deployed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(
        "service {service} depends on {dependency}, which is not a service of this environment"
    )]
    UnknownDependency { service: String, dependency: String },
    /// The services of the cycle, the first one repeated at the end.
    #[error("dependency cycle: {}", .0.join(" → "))]
    Cycle(Vec<String>),
    #[error("no service named {0} in this environment")]
    UnknownService(String),
}

impl OrderError {
    /// The field of the error body: the request's `services` for a name it
    /// gave, else the `depends_on` of the service at fault.
    pub fn field(&self) -> String {
        match self {
            OrderError::UnknownDependency {
                service,
                dependency,
            } => format!("{service}.depends_on.{dependency}"),
            OrderError::Cycle(names) => format!(
                "{}.depends_on",
                names.first().map(String::as_str).unwrap_or_default()
            ),
            OrderError::UnknownService(_) => "services".into(),
        }
    }
}

/// One service of the environment, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub depends_on: Vec<String>,
    /// Whether it differs from what serves (see [`is_changed`]).
    pub changed: bool,
    /// Whether a deployment of it ever succeeded.
    pub served: bool,
}

/// A service to deploy and the services of the same batch it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub waits_for: Vec<String>,
}

/// What a **Deploy environment** does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Dependencies first.
    pub steps: Vec<Step>,
    /// Considered services left alone (in dependency order).
    pub unchanged: Vec<String>,
}

/// Whether `current` differs from `serving` (the spec of the release the
/// service's newest succeeded deployment deployed; `None`: never served).
pub fn is_changed(current: &ServiceSpec, serving: Option<&ServiceSpec>) -> bool {
    serving != Some(current)
}

/// The services in dependency order (dependencies first; among services
/// whose dependencies are all placed, by name), or the first unknown
/// dependency, or a cycle.
pub fn topological(graph: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, OrderError> {
    for (service, deps) in graph {
        if let Some(d) = deps
            .iter()
            .filter(|d| !graph.contains_key(*d))
            .min()
            .cloned()
        {
            return Err(OrderError::UnknownDependency {
                service: service.clone(),
                dependency: d,
            });
        }
    }
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(graph.len());
    // Waves: every service whose dependencies are all placed, by name.
    loop {
        let wave: Vec<&String> = graph
            .iter()
            .filter(|(n, deps)| {
                !placed.contains(n.as_str()) && deps.iter().all(|d| placed.contains(d.as_str()))
            })
            .map(|(n, _)| n)
            .collect();
        if wave.is_empty() {
            break;
        }
        for n in wave {
            placed.insert(n);
            order.push(n.clone());
        }
    }
    if order.len() == graph.len() {
        return Ok(order);
    }
    Err(OrderError::Cycle(find_cycle(graph, &placed)))
}

/// A cycle among the services not placed: each of them has a dependency not
/// placed, so following those (the smallest name each time) from the
/// smallest one must come back to a service already on the path. Rotated to
/// start at its smallest name, and closed (`a → b → a`).
fn find_cycle(graph: &BTreeMap<String, Vec<String>>, placed: &BTreeSet<&str>) -> Vec<String> {
    let left = |n: &str| !placed.contains(n);
    let mut path: Vec<String> = Vec::new();
    let mut at = graph.keys().find(|n| left(n)).cloned();
    while let Some(n) = at {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut cycle = path.split_off(i);
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| n.as_str())
                .map_or(0, |(i, _)| i);
            cycle.rotate_left(min);
            if let Some(first) = cycle.first().cloned() {
                cycle.push(first);
            }
            return cycle;
        }
        at = graph
            .get(&n)
            .and_then(|deps| deps.iter().filter(|d| left(d)).min().cloned());
        path.push(n);
    }
    path
}

/// Plans a **Deploy environment** of `services` (the whole environment: its
/// graph is checked as a whole). `chosen`: only these (default: all); `all`:
/// deploy the considered ones even when unchanged.
pub fn plan(
    services: &[Candidate],
    chosen: Option<&[String]>,
    all: bool,
) -> Result<Plan, OrderError> {
    let by_name: BTreeMap<&str, &Candidate> =
        services.iter().map(|c| (c.name.as_str(), c)).collect();
    let graph: BTreeMap<String, Vec<String>> = services
        .iter()
        .map(|c| (c.name.clone(), c.depends_on.clone()))
        .collect();
    let order = topological(&graph)?;
    let considered: BTreeSet<&str> = match chosen {
        Some(names) => {
            let mut set = BTreeSet::new();
            for n in names {
                let (k, _) = by_name
                    .get_key_value(n.as_str())
                    .ok_or_else(|| OrderError::UnknownService(n.clone()))?;
                set.insert(*k);
            }
            set
        }
        None => by_name.keys().copied().collect(),
    };
    let mut batch: BTreeSet<&str> = considered
        .iter()
        .copied()
        .filter(|n| all || by_name.get(n).is_some_and(|c| c.changed))
        .collect();
    // A chosen service cannot run without its dependencies: those that never
    // served come along (transitively).
    let mut stack: Vec<&str> = considered.iter().copied().collect();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    while let Some(n) = stack.pop() {
        for d in by_name
            .get(n)
            .map(|c| c.depends_on.as_slice())
            .unwrap_or(&[])
        {
            if seen.insert(d.as_str()) {
                if by_name.get(d.as_str()).is_some_and(|c| !c.served) {
                    batch.insert(d.as_str());
                }
                stack.push(d.as_str());
            }
        }
    }
    let steps = order
        .iter()
        .filter(|n| batch.contains(n.as_str()))
        .map(|n| Step {
            name: n.clone(),
            waits_for: nearest_in_batch(&by_name, &batch, n),
        })
        .collect();
    let unchanged = order
        .iter()
        .filter(|n| considered.contains(n.as_str()) && !batch.contains(n.as_str()))
        .cloned()
        .collect();
    Ok(Plan { steps, unchanged })
}

/// The dependencies of `name` that are in the batch, looking through the
/// ones that are not (c → b → a with only a and c in the batch: c waits
/// for a). By name.
fn nearest_in_batch(
    by_name: &BTreeMap<&str, &Candidate>,
    batch: &BTreeSet<&str>,
    name: &str,
) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![name];
    while let Some(n) = stack.pop() {
        for d in by_name
            .get(n)
            .map(|c| c.depends_on.as_slice())
            .unwrap_or(&[])
        {
            if !seen.insert(d.as_str()) {
                continue;
            }
            if batch.contains(d.as_str()) {
                found.insert(d.clone());
            } else {
                stack.push(d.as_str());
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::ImageRef;

    fn c(name: &str, deps: &[&str], changed: bool, served: bool) -> Candidate {
        Candidate {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            changed,
            served,
        }
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, deps)| (n.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn dependencies_come_first_and_ties_go_by_name() {
        let g = graph(&[
            ("web", &["api"]),
            ("api", &["postgres", "redis"]),
            ("redis", &[]),
            ("postgres", &[]),
            ("worker", &["redis"]),
            ("docs", &[]),
        ]);
        let order = topological(&g).unwrap();
        assert_eq!(
            order,
            ["docs", "postgres", "redis", "api", "worker", "web"],
            "waves: no dependencies, then what only needs those, … — by name within a wave"
        );
        // The same whatever order the input had (a map: by name), and again.
        assert_eq!(topological(&g).unwrap(), order);
    }

    #[test]
    fn a_cycle_is_named_from_its_smallest_service() {
        let g = graph(&[
            ("worker", &["api"]),
            ("api", &["worker"]),
            ("web", &["api"]),
        ]);
        let e = topological(&g).unwrap_err();
        assert_eq!(
            e,
            OrderError::Cycle(vec!["api".into(), "worker".into(), "api".into()])
        );
        assert_eq!(e.to_string(), "dependency cycle: api → worker → api");
        assert_eq!(e.field(), "api.depends_on");

        // A service waiting on a cycle is not part of it.
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["d"]), ("d", &["b"])]);
        assert_eq!(
            topological(&g).unwrap_err().to_string(),
            "dependency cycle: b → c → d → b"
        );

        let g = graph(&[("solo", &["solo"])]);
        assert_eq!(
            topological(&g).unwrap_err().to_string(),
            "dependency cycle: solo → solo"
        );
    }

    #[test]
    fn an_unknown_dependency_is_named() {
        let g = graph(&[("api", &["postgres", "cache"]), ("postgres", &[])]);
        let e = topological(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "service api depends on cache, which is not a service of this environment"
        );
        assert_eq!(e.field(), "api.depends_on.cache");
    }

    #[test]
    fn changed_means_never_served_or_a_different_spec() {
        let v1 = ServiceSpec::of_image(ImageRef::try_from("app:1").unwrap());
        assert!(is_changed(&v1, None), "nothing serves yet");
        assert!(!is_changed(&v1, Some(&v1.clone())));
        let v2 = ServiceSpec::of_image(ImageRef::try_from("app:2").unwrap());
        assert!(is_changed(&v2, Some(&v1)), "another image");
        let mut more = v1.clone();
        more.replicas = 3;
        assert!(is_changed(&more, Some(&v1)), "another spec, same image");
    }

    #[test]
    fn only_changed_services_unless_all() {
        let s = [
            c("a", &[], false, true),
            c("b", &["a"], true, true),
            c("c", &["b"], false, true),
        ];
        let p = plan(&s, None, false).unwrap();
        assert_eq!(names(&p.steps), ["b"]);
        assert_eq!(p.steps[0].waits_for, Vec::<String>::new());
        assert_eq!(p.unchanged, ["a", "c"]);

        let p = plan(&s, None, true).unwrap();
        assert_eq!(names(&p.steps), ["a", "b", "c"]);
        assert_eq!(p.steps[1].waits_for, ["a"]);
        assert_eq!(p.steps[2].waits_for, ["b"]);
        assert!(p.unchanged.is_empty());

        let none = [c("a", &[], false, true), c("b", &[], false, true)];
        let p = plan(&none, None, false).unwrap();
        assert!(p.steps.is_empty());
        assert_eq!(p.unchanged, ["a", "b"]);
    }

    #[test]
    fn a_dependency_outside_the_batch_is_looked_through() {
        let s = [
            c("a", &[], true, true),
            c("b", &["a"], false, true),
            c("c", &["b"], true, true),
        ];
        let p = plan(&s, None, false).unwrap();
        assert_eq!(names(&p.steps), ["a", "c"]);
        assert_eq!(p.steps[1].waits_for, ["a"], "c waits for a through b");
    }

    #[test]
    fn chosen_services_bring_the_dependencies_that_never_served() {
        let s = [
            c("db", &[], true, false),
            c("cache", &[], true, true),
            c("api", &["cache", "db"], true, false),
            c("web", &["api"], true, true),
        ];
        let p = plan(&s, Some(&["web".into()]), false).unwrap();
        assert_eq!(
            names(&p.steps),
            ["db", "api", "web"],
            "cache served: left alone"
        );
        assert_eq!(p.steps[1].waits_for, ["db"]);
        assert_eq!(p.steps[2].waits_for, ["api"]);
        assert!(p.unchanged.is_empty());

        let e = plan(&s, Some(&["nope".into()]), false).unwrap_err();
        assert_eq!(e.to_string(), "no service named nope in this environment");
        assert_eq!(e.field(), "services");
    }

    #[test]
    fn the_whole_environment_is_checked() {
        let s = [
            c("a", &[], true, false),
            c("x", &["y"], true, false),
            c("y", &["x"], true, false),
        ];
        let e = plan(&s, Some(&["a".into()]), false).unwrap_err();
        assert_eq!(e.to_string(), "dependency cycle: x → y → x");
    }
}
