//! Compose `healthcheck` → [`HealthCheck`].
//!
//! `curl`/`wget` of a local `http://` URL becomes an HTTP check Slipway runs
//! itself (`path`, `port`); any other `CMD` is an exec check, `CMD-SHELL s`
//! the exec check `["/bin/sh", "-c", s]`.
use super::{
    values::{not_interpolated, secs_ceil, split_shell, unescape},
    Report,
};
use compose_spec::service::{healthcheck::Test, Healthcheck};
use slipway_types::{api::HealthCheck, Port};
use std::time::Duration;

/// If `args` is `curl`/`wget` against a local `http://` URL: (path, port).
fn http_probe(args: &[String]) -> Option<(String, Port)> {
    // Only the first command of a shell list (`curl -f URL || exit 1`).
    let end = args
        .iter()
        .position(|a| matches!(a.as_str(), "||" | "&&" | ";" | "|"))
        .unwrap_or(args.len());
    let args = &args[..end];
    let program = args.first()?.rsplit('/').next()?;
    if program != "curl" && program != "wget" {
        return None;
    }
    let url = args
        .iter()
        .skip(1)
        .find_map(|a| url::Url::parse(a).ok().filter(|u| u.scheme() == "http"))?;
    let local = match url.host()? {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback() || ip.is_unspecified(),
        url::Host::Ipv6(ip) => ip.is_loopback() || ip.is_unspecified(),
    };
    if !local {
        return None;
    }
    let port = Port::try_from(i64::from(url.port_or_known_default()?)).ok()?;
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Some((path, port))
}

fn secs(path: &str, d: Option<Duration>, default: u32, r: &mut Report) -> u32 {
    match d.map(secs_ceil) {
        None => default,
        Some(Ok(s)) => s.max(1),
        Some(Err(e)) => {
            r.invalid(path, e);
            default
        }
    }
}

/// The check, or `None` (disabled, or an error reported in `r`).
pub fn convert(path: &str, h: &Healthcheck, r: &mut Report) -> Option<HealthCheck> {
    const DISABLED: &str = "disabled: the service is imported without a health check";
    let c = match h {
        Healthcheck::Disable => {
            r.ignore(path, DISABLED);
            return None;
        }
        Healthcheck::Command(c) => c,
    };
    let tpath = format!("{path}.test");
    let unescaped = |s: &str, r: &mut Report| match unescape(s) {
        Ok(s) => Some(s),
        Err(var) => {
            r.invalid(&tpath, not_interpolated(&var));
            None
        }
    };
    // (the argv of an exec check, the words an HTTP probe is looked for in)
    let (exec, words) = match &c.test {
        None => {
            r.ignore(path, "no test: the image's own health check is not used");
            return None;
        }
        Some(Test::Command(v)) => match v.first().map(String::as_str) {
            Some("NONE") => {
                r.ignore(path, DISABLED);
                return None;
            }
            Some("CMD-SHELL") => {
                let s = unescaped(&v[1..].join(" "), r)?;
                let words = split_shell(&s).unwrap_or_default();
                (vec!["/bin/sh".to_string(), "-c".to_string(), s], words)
            }
            first => {
                let from = usize::from(first == Some("CMD"));
                let mut argv = Vec::with_capacity(v.len());
                for a in &v[from..] {
                    argv.push(unescaped(a, r)?);
                }
                (argv.clone(), argv)
            }
        },
        Some(Test::ShellCommand(s)) => {
            let s = unescaped(s, r)?;
            let words = split_shell(&s).unwrap_or_default();
            (vec!["/bin/sh".to_string(), "-c".to_string(), s], words)
        }
    };
    if c.start_interval.is_some() {
        r.ignore(
            &format!("{path}.start_interval"),
            "checks run every interval from the start",
        );
    }
    let check = match http_probe(&words) {
        Some((probe_path, port)) => HealthCheck::http(probe_path, port),
        None => HealthCheck::exec(exec),
    };
    let retries = match c.retries {
        None => 3,
        Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
    };
    let timeout_secs = secs(&format!("{path}.timeout"), c.timeout, 3, r);
    // Without an interval, one at least as long as the timeout.
    let interval_secs = secs(
        &format!("{path}.interval"),
        c.interval,
        timeout_secs.max(10),
        r,
    );
    Some(HealthCheck {
        interval_secs,
        timeout_secs,
        start_period_secs: match c.start_period.map(secs_ceil) {
            None => 0,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                r.invalid(&format!("{path}.start_period"), e);
                0
            }
        },
        retries,
        ..check
    })
}
