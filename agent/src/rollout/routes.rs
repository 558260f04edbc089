//! A service's routes in the ingress proxy: which routes a deployment needs,
//! switching to them (all or nothing), draining and removing the old ones.
use super::{err, proxy_err, Engine, Progress};
use crate::docker::ManagedContainer;
use crate::spec::{self, PortKey};
use slipway_proxy::{ProxyClientError, RouteSpec, RouteStatus};
use slipway_types::agent::{AgentError, AgentErrorCode};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use uuid::Uuid;

/// Routes a set of containers should have: name → spec.
pub(super) type RouteSet = BTreeMap<String, RouteSpec>;

/// Upstream addresses of the given containers for one container port.
fn upstreams(
    containers: &[ManagedContainer],
    container_port: u16,
) -> Result<Vec<SocketAddr>, AgentError> {
    containers
        .iter()
        .map(|c| {
            c.host_ports
                .get(&PortKey::tcp(container_port))
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .ok_or_else(|| {
                    err(
                        AgentErrorCode::Docker,
                        format!(
                            "container {} publishes no host port for {container_port}/tcp",
                            c.name
                        ),
                    )
                })
        })
        .collect()
}

/// Routes that make `containers` (one deployment) serve: one per published
/// port, listening on `bind_ip`, to every container.
pub(super) fn desired_routes(
    prefix: &str,
    bind_ip: IpAddr,
    service_id: Uuid,
    containers: &[ManagedContainer],
) -> Result<RouteSet, AgentError> {
    let mut out = RouteSet::new();
    let Some(first) = containers.first() else {
        return Ok(out);
    };
    for &(container_port, published) in &first.agent.publish {
        out.insert(
            spec::route_name(prefix, service_id, published),
            RouteSpec {
                listen: SocketAddr::new(bind_ip, published),
                upstreams: upstreams(containers, container_port)?,
            },
        );
    }
    Ok(out)
}

/// Whether the proxy's route sends to exactly the upstreams of `want` (in any order).
pub(super) fn same_upstreams(have: &RouteStatus, want: &RouteSpec) -> bool {
    have.upstreams
        .iter()
        .map(|u| u.addr)
        .collect::<BTreeSet<_>>()
        == want.upstreams.iter().copied().collect()
}

/// Whether every route of `want` is in the proxy already, with its upstreams.
pub(super) fn all_routed(want: &RouteSet, before: &[RouteStatus]) -> bool {
    want.iter().all(|(name, spec)| {
        before
            .iter()
            .any(|r| &r.name == name && same_upstreams(r, spec))
    })
}

/// Routes of `want` the proxy does not have as wanted (missing, another
/// listen address or other upstreams).
pub(super) fn to_update<'a>(
    want: &'a RouteSet,
    before: &'a [RouteStatus],
) -> impl Iterator<Item = (&'a String, &'a RouteSpec)> {
    want.iter().filter(|(name, spec)| {
        !before
            .iter()
            .any(|r| &r.name == *name && r.listen == spec.listen && same_upstreams(r, spec))
    })
}

/// Upstreams of `before` to drain once `routes` are in place: those of a
/// route that stays but no longer sends to them.
fn to_drain<'a>(routes: &RouteSet, before: &'a [RouteStatus]) -> Vec<(&'a str, SocketAddr)> {
    before
        .iter()
        .filter_map(|r| routes.get(&r.name).map(|new| (r, new)))
        .flat_map(|(r, new)| {
            r.upstreams
                .iter()
                .filter(|u| !new.upstreams.contains(&u.addr))
                .map(|u| (r.name.as_str(), u.addr))
        })
        .collect()
}

/// Routes of `before` that `keep` does not have.
fn stale<'a>(keep: &'a RouteSet, before: &'a [RouteStatus]) -> impl Iterator<Item = &'a str> {
    before
        .iter()
        .filter(|r| !keep.contains_key(&r.name))
        .map(|r| r.name.as_str())
}

/// What route `name` was in `before`, to put back (`None`: it did not exist).
fn previous(name: &str, before: &[RouteStatus]) -> Option<RouteSpec> {
    before.iter().find(|r| r.name == name).map(|r| RouteSpec {
        listen: r.listen,
        upstreams: r.upstreams.iter().map(|u| u.addr).collect(),
    })
}

impl Engine {
    /// Routes of this service currently in the proxy.
    pub(super) async fn current_routes(
        &self,
        service_id: Uuid,
    ) -> Result<Vec<RouteStatus>, AgentError> {
        let Some(proxy) = &self.proxy else {
            return Ok(Vec::new());
        };
        let p = spec::route_prefix(&self.prefix, service_id);
        Ok(proxy
            .routes()
            .await
            .map_err(proxy_err)?
            .into_iter()
            .filter(|r| r.name.starts_with(&p))
            .collect())
    }

    /// Routes that make `containers` (one deployment) serve.
    pub(super) fn desired_routes(
        &self,
        service_id: Uuid,
        containers: &[ManagedContainer],
    ) -> Result<RouteSet, AgentError> {
        desired_routes(&self.prefix, self.proxy_bind_ip, service_id, containers)
    }

    /// Puts `routes`; on failure restores what was there before and returns the error.
    pub(super) async fn switch_routes(
        &self,
        routes: &RouteSet,
        before: &[RouteStatus],
    ) -> Result<(), AgentError> {
        if routes.is_empty() {
            return Ok(());
        }
        let proxy = self.proxy()?;
        let mut done: Vec<&String> = Vec::new();
        for (name, spec) in routes {
            if let Err(e) = proxy.put_route(name, spec).await {
                for n in done {
                    self.restore_route(n, before).await;
                }
                let mut e = proxy_err(e);
                if e.code == AgentErrorCode::PortConflict {
                    e.message = format!(
                        "published port {} is in use on this host: {}",
                        spec.listen.port(),
                        e.message
                    );
                }
                return Err(e);
            }
            done.push(name);
        }
        Ok(())
    }

    async fn restore_route(&self, name: &str, before: &[RouteStatus]) {
        let Some(proxy) = &self.proxy else { return };
        let result = match previous(name, before) {
            Some(spec) => proxy.put_route(name, &spec).await.map(|_| ()),
            None => proxy.delete_route(name).await,
        };
        if let Err(e) = result {
            tracing::warn!(route = name, error = %e, "could not restore proxy route");
        }
    }

    /// Drains upstreams of `before` that are no longer in `routes`.
    pub(super) async fn drain_old(
        &self,
        routes: &RouteSet,
        before: &[RouteStatus],
        timeout: Duration,
        progress: &Progress,
    ) {
        let Some(proxy) = &self.proxy else { return };
        for (route, addr) in to_drain(routes, before) {
            match proxy.drain(route, addr, timeout).await {
                Ok(d) if d.drained => progress.step(format!("drained {addr} on {route}")),
                Ok(d) => progress.step(format!(
                    "drain of {addr} timed out with {} request(s) in flight",
                    d.in_flight
                )),
                Err(ProxyClientError::NotFound(_)) => {}
                Err(e) => tracing::warn!(route = %route, error = %e, "drain failed"),
            }
        }
    }

    /// Deletes routes of the service that are not in `keep`.
    pub(super) async fn delete_stale_routes(
        &self,
        keep: &RouteSet,
        before: &[RouteStatus],
        actions: &mut Vec<String>,
    ) {
        let Some(proxy) = &self.proxy else { return };
        for name in stale(keep, before) {
            match proxy.delete_route(name).await {
                Ok(()) | Err(ProxyClientError::NotFound(_)) => {
                    actions.push(format!("removed route {name}"))
                }
                Err(e) => tracing::warn!(route = %name, error = %e, "could not remove route"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::fixtures::container;
    use slipway_proxy::UpstreamStatus;

    fn status(name: &str, listen: u16, upstreams: &[u16]) -> RouteStatus {
        RouteStatus {
            name: name.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], listen)),
            upstreams: upstreams
                .iter()
                .map(|p| UpstreamStatus {
                    addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                    in_flight: 0,
                    served: 0,
                })
                .collect(),
            draining: vec![],
        }
    }

    fn spec(listen: u16, upstreams: &[u16]) -> RouteSpec {
        RouteSpec {
            listen: SocketAddr::from(([0, 0, 0, 0], listen)),
            upstreams: upstreams
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
        }
    }

    #[test]
    fn one_route_per_published_port_to_every_replica() {
        let svc = Uuid::nil();
        let ip = IpAddr::from([0, 0, 0, 0]);
        assert!(desired_routes("p-", ip, svc, &[]).unwrap().is_empty());
        let a = container("a", &[(8080, 32001), (9090, 32002)], &[(8080, 80)]);
        let b = container("b", &[(8080, 32011), (9090, 32012)], &[(8080, 80)]);
        let routes = desired_routes("p-", ip, svc, &[a.clone(), b]).unwrap();
        let name = spec::route_name("p-", svc, 80);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[&name], spec(80, &[32001, 32011]));

        // A replica without the host port is an error naming it.
        let c = container("c", &[(9090, 32022)], &[(8080, 80)]);
        let e = desired_routes("p-", ip, svc, &[a, c]).unwrap_err();
        assert_eq!(e.code, AgentErrorCode::Docker);
        assert!(e.message.contains("container c"), "{}", e.message);
    }

    #[test]
    fn routed_means_same_upstreams_in_any_order() {
        let want: RouteSet = [("r".to_owned(), spec(80, &[1, 2]))].into();
        assert!(all_routed(&want, &[status("r", 80, &[2, 1])]));
        assert!(!all_routed(&want, &[status("r", 80, &[1])]));
        assert!(!all_routed(&want, &[status("other", 80, &[1, 2])]));
        assert!(all_routed(&RouteSet::new(), &[]));
    }

    #[test]
    fn updates_missing_moved_or_changed_routes() {
        let want: RouteSet = [
            ("same".to_owned(), spec(80, &[1, 2])),
            ("moved".to_owned(), spec(81, &[3])),
            ("changed".to_owned(), spec(82, &[4])),
            ("missing".to_owned(), spec(83, &[5])),
        ]
        .into();
        let before = [
            status("same", 80, &[2, 1]),
            status("moved", 90, &[3]),
            status("changed", 82, &[4, 6]),
        ];
        let names: Vec<&String> = to_update(&want, &before).map(|(n, _)| n).collect();
        assert_eq!(names, ["changed", "missing", "moved"]);
    }

    #[test]
    fn drains_only_upstreams_dropped_from_kept_routes() {
        let routes: RouteSet = [("r".to_owned(), spec(80, &[2, 3]))].into();
        let before = [status("r", 80, &[1, 2]), status("gone", 81, &[5])];
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(to_drain(&routes, &before), vec![("r", addr(1))]);
        assert_eq!(stale(&routes, &before).collect::<Vec<_>>(), vec!["gone"]);
    }

    #[test]
    fn previous_route_is_restored_as_it_was() {
        let before = [status("r", 80, &[1, 2])];
        assert_eq!(previous("r", &before), Some(spec(80, &[1, 2])));
        assert_eq!(previous("new", &before), None);
    }
}
