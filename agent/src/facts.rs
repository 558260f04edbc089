//! Host facts reported at enrollment and in every Hello.
use crate::docker::Docker;
use slipway_types::agent::HostFacts;
use std::path::Path;

pub async fn gather(docker: &Docker, data_dir: &Path) -> HostFacts {
    let docker_version = match docker.version().await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Docker version");
            String::new()
        }
    };
    HostFacts {
        hostname: hostname(),
        os: std::fs::read_to_string("/etc/os-release")
            .map(|t| os_name(&t))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned()),
        arch: std::env::consts::ARCH.to_owned(),
        docker_version,
        cpus: std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1),
        memory_bytes: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| mem_total(&t))
            .unwrap_or(0),
        disk_free_bytes: disk_free(data_dir),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of os-release, else `NAME VERSION_ID`.
pub fn os_name(os_release: &str) -> String {
    let get = |key: &str| {
        os_release.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    get("PRETTY_NAME")
        .or_else(|| {
            get("NAME").map(|n| match get("VERSION_ID") {
                Some(v) => format!("{n} {v}"),
                None => n,
            })
        })
        .unwrap_or_else(|| "linux".to_owned())
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Free bytes for unprivileged users on the filesystem of `path`.
fn disk_free(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to writable
    // memory of the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    (st.f_bavail as u64).checked_mul(st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release_and_meminfo() {
        assert_eq!(
            os_name("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_name("NAME=Alpine\nVERSION_ID=3.20\n"), "Alpine 3.20");
        assert_eq!(
            mem_total("MemTotal:       16318412 kB\nMemFree: 1 kB\n"),
            Some(16318412 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
        assert!(disk_free(Path::new("/")).is_some());
        assert!(disk_free(Path::new("/definitely/not/here")).is_none());
    }
}
