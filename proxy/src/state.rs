//! Persisted route table (JSON, written atomically: temp file + rename).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::admin::RouteSpec;
use crate::error::ProxyError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    pub routes: BTreeMap<String, RouteSpec>,
}

pub const STATE_VERSION: u32 = 1;

/// Why the state file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write state file {path}: {source}")]
pub struct PersistError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Reads the state file; a missing file is an empty table.
pub async fn load(path: &Path) -> Result<StateFile, ProxyError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ProxyError::StateDecode {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(source) => Err(ProxyError::StateRead {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the state file atomically: temp file in the same directory, fsync, rename.
pub async fn save(path: &Path, state: &StateFile) -> Result<(), PersistError> {
    let err = |source| PersistError {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let write = async {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&bytes).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, path).await
    };
    write.await.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("slipway-proxy-state-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let path = dir.join("routes.json");
        let _ = tokio::fs::remove_file(&path).await;
        assert_eq!(load(&path).await.unwrap(), StateFile::default());
        let mut state = StateFile {
            version: STATE_VERSION,
            routes: BTreeMap::new(),
        };
        state.routes.insert(
            "web".into(),
            RouteSpec {
                listen: "127.0.0.1:8080".parse().unwrap(),
                upstreams: vec!["127.0.0.1:3000".parse().unwrap()],
            },
        );
        save(&path, &state).await.unwrap();
        assert_eq!(load(&path).await.unwrap(), state);
        assert!(!dir.join("routes.json.tmp").exists());
        tokio::fs::write(&path, b"{not json").await.unwrap();
        assert!(matches!(
            load(&path).await,
            Err(ProxyError::StateDecode { .. })
        ));
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
}
