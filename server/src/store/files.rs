//! Private files. The data directory is 0700; the SQLite database (and the
//! `-wal`/`-shm` files SQLite gives the same mode), the master key and the
//! audit witness file are 0600, whatever the umask.
//!
//! At start every such path that exists is checked: one that group or others
//! may read is narrowed (owner bits kept) with a warning; if that is not
//! allowed (someone else owns it) the start is refused with the path, its
//! mode and the `chmod` to run.
use std::path::{Path, PathBuf};

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} has mode {mode:04o}, open to group or others, and cannot be narrowed ({source}); \
         run `chmod {want:o} {path}` or start as its owner"
    )]
    TooOpen {
        path: String,
        mode: u32,
        want: u32,
        source: std::io::Error,
    },
    #[error("cannot read the mode of {path}: {source}")]
    Stat {
        path: String,
        source: std::io::Error,
    },
}

/// The mode `mode` narrowed to its owner's bits, if group or others have any.
pub fn narrowed(mode: u32) -> Option<u32> {
    let perm = mode & 0o7777;
    (perm & 0o077 != 0).then_some(perm & 0o700)
}

/// Creates `dir` (and missing parents) with mode 0700, or narrows an
/// existing one (see [`ensure_private`]).
pub fn private_dir(dir: &Path) -> Result<(), FileError> {
    if !dir.exists() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(DIR_MODE);
        }
        b.create(dir).map_err(|source| FileError::Create {
            path: dir.display().to_string(),
            source,
        })?;
    }
    ensure_private(dir)
}

/// Creates an empty `file` with mode 0600 if it does not exist, or narrows
/// an existing one (see [`ensure_private`]).
pub fn private_file(file: &Path) -> Result<(), FileError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(FILE_MODE);
    }
    opts.open(file).map_err(|source| FileError::Create {
        path: file.display().to_string(),
        source,
    })?;
    ensure_private(file)
}

/// If `path` exists and group or others have any permission on it, removes
/// those bits (logged), or fails when the mode cannot be changed.
pub fn ensure_private(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(FileError::Stat {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let mode = meta.permissions().mode();
        if let Some(want) = narrowed(mode) {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(want)).map_err(
                |source| FileError::TooOpen {
                    path: path.display().to_string(),
                    mode: mode & 0o7777,
                    want: if meta.is_dir() { DIR_MODE } else { FILE_MODE },
                    source,
                },
            )?;
            tracing::warn!(
                path = %path.display(),
                was = %format!("{:04o}", mode & 0o7777),
                now = %format!("{want:04o}"),
                "narrowed the mode of a private file"
            );
        }
    }
    Ok(())
}

/// SQLite's companion files of the database `db`.
pub fn sqlite_companions(db: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with("-wal"), with("-shm")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_and_other_bits_are_removed() {
        assert_eq!(narrowed(0o100644), Some(0o600));
        assert_eq!(narrowed(0o40755), Some(0o700));
        assert_eq!(narrowed(0o600), None);
        assert_eq!(narrowed(0o400), None);
        assert_eq!(narrowed(0o604), Some(0o600));
    }

    #[test]
    fn companions() {
        let [w, s] = sqlite_companions(Path::new("/d/slipway.db"));
        assert_eq!(w, Path::new("/d/slipway.db-wal"));
        assert_eq!(s, Path::new("/d/slipway.db-shm"));
    }

    #[cfg(unix)]
    #[test]
    fn created_private_and_existing_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "x", "not truncated");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }
}
