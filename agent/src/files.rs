//! Config files of containers on this host (nginx.conf, prometheus.yml): one
//! file per content under the agent's files directory, named by its SHA-256,
//! bind-mounted read-only. The directory is 0700 (the engine, as root,
//! mounts the files; nobody else reads them on the host), the files 0644 (a
//! non-root process in the container reads them).
use crate::docker::MountedFile;
use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` 0700 (narrowing an existing one).
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes `f` as `dir/<digest>` unless it is there with that content:
/// through a temporary file renamed into place, so a container never mounts
/// a half-written file.
pub fn write(dir: &Path, f: &MountedFile) -> std::io::Result<()> {
    ensure_dir(dir)?;
    let path = dir.join(&f.digest);
    if std::fs::read(&path).is_ok_and(|have| have == f.content.as_bytes()) {
        return Ok(());
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        f.digest,
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // Whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(f.content.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Removes the files of `dir` that no container mounts (`in_use`: digests),
/// and temporary files left by a crash; their names.
pub fn prune(dir: &Path, in_use: &HashSet<String>) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if in_use.contains(&name) {
            continue;
        }
        std::fs::remove_file(entry.path())?;
        removed.push(name);
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_read_only_for_others_then_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("files");
        let f = crate::spec::mounted_file("/etc/app.conf", "listen 80;\n");
        write(&dir, &f).unwrap();
        write(&dir, &f).unwrap();
        let path = dir.join(&f.digest);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "listen 80;\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o644);
        assert_eq!(mode(&dir), 0o700);
        // A file tampered with is written again.
        std::fs::write(&path, "other").unwrap();
        write(&dir, &f).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "listen 80;\n");

        std::fs::write(dir.join(".x.tmp"), "").unwrap();
        let g = crate::spec::mounted_file("/b", "b");
        write(&dir, &g).unwrap();
        let removed = prune(&dir, &HashSet::from([f.digest.clone()])).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(removed.contains(&g.digest));
        assert!(path.exists());
        assert!(prune(&tmp.path().join("missing"), &HashSet::new())
            .unwrap()
            .is_empty());
    }
}
