//! The host's identity (host id + Ed25519 key) and enrollment.
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use slipway_types::agent::{EnrollRequest, EnrollResponse, HostFacts, Sensitive};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub const IDENTITY_FILE: &str = "identity.json";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// 4xx: the token is wrong, used or expired. Not retried.
    #[error("enrollment rejected by the server (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// Network trouble or 5xx: worth retrying.
    #[error("enrollment failed: {0}")]
    Transient(String),
}

/// What `identity.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct IdentityFile {
    host_id: Uuid,
    /// Ed25519 secret key, 32 bytes, standard base64.
    secret_key: String,
}

pub struct Identity {
    pub host_id: Uuid,
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host_id", &self.host_id)
            .field("key", &"***")
            .finish()
    }
}

impl Identity {
    /// A new identity with a fresh key (for a host id the server assigned).
    pub fn generate(host_id: Uuid) -> Self {
        Self {
            host_id,
            key: generate_key(),
        }
    }

    pub fn public_key_b64(&self) -> String {
        B64.encode(self.key.verifying_key().as_bytes())
    }

    /// Base64 signature of `msg`.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        B64.encode(self.key.sign(msg).to_bytes())
    }

    /// `Ok(None)` when the file does not exist.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        let corrupt = |message: String| IdentityError::Corrupt {
            path: path.clone(),
            message,
        };
        let file: IdentityFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let bytes = B64
            .decode(file.secret_key.trim())
            .map_err(|_| corrupt("secret_key is not base64".into()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| corrupt("secret_key must be 32 bytes".into()))?;
        Ok(Some(Self {
            host_id: file.host_id,
            key: SigningKey::from_bytes(&bytes),
        }))
    }

    /// Writes `identity.json` with mode 0600 (atomically via a temp file).
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let write_err = |source| IdentityError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(write_err)?;
        let tmp = data_dir.join(format!(".{IDENTITY_FILE}.tmp"));
        let body = serde_json::to_vec_pretty(&IdentityFile {
            host_id: self.host_id,
            secret_key: B64.encode(self.key.to_bytes()),
        })
        .map_err(|e| write_err(std::io::Error::other(e)))?;
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        f.write_all(&body).map_err(write_err)?;
        f.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, &path).map_err(write_err)?;
        Ok(())
    }
}

/// A fresh key pair (not yet enrolled).
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// `POST {server}/api/v1/agent/enroll`; returns the identity to save.
pub async fn enroll(
    http: &reqwest::Client,
    server: &str,
    token: &Sensitive,
    facts: HostFacts,
) -> Result<Identity, EnrollError> {
    let key = generate_key();
    let body = EnrollRequest {
        token: token.clone(),
        public_key: B64.encode(key.verifying_key().as_bytes()),
        facts,
    };
    let url = format!("{}/api/v1/agent/enroll", server.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| EnrollError::Transient(crate::tls::describe(&e.without_url())))?;
    let status = resp.status();
    if status.is_client_error() {
        let text = resp.text().await.unwrap_or_default();
        return Err(EnrollError::Rejected {
            status: status.as_u16(),
            message: error_message(&text),
        });
    }
    if !status.is_success() {
        return Err(EnrollError::Transient(format!(
            "server answered HTTP {status}"
        )));
    }
    let answer: EnrollResponse = resp.json().await.map_err(|e| {
        EnrollError::Transient(format!("bad enrollment answer: {}", e.without_url()))
    })?;
    tracing::info!(host_id = %answer.host_id, host = %answer.host_name, "enrolled");
    Ok(Identity {
        host_id: answer.host_id,
        key,
    })
}

/// The `message` of a JSON error body, else the (shortened) body.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.to_owned();
        }
        if let Some(m) = v.pointer("/error/message").and_then(|m| m.as_str()) {
            return m.to_owned();
        }
    }
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn save_load_sign() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity {
            host_id: Uuid::new_v4(),
            key: generate_key(),
        };
        id.save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(IDENTITY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = Identity::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.host_id, id.host_id);
        assert_eq!(loaded.public_key_b64(), id.public_key_b64());
        let msg = slipway_types::agent::challenge_message("nonce", id.host_id);
        let sig = B64.decode(loaded.sign_b64(&msg)).unwrap();
        let pk: [u8; 32] = B64.decode(id.public_key_b64()).unwrap().try_into().unwrap();
        let vk = VerifyingKey::from_bytes(&pk).unwrap();
        let sig = Signature::from_slice(&sig).unwrap();
        assert!(vk.verify(&msg, &sig).is_ok());
        assert!(!format!("{loaded:?}").contains(&B64.encode(id.key.to_bytes())));
    }

    #[test]
    fn missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Identity::load(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(IDENTITY_FILE), "{\"host_id\":\"x\"}").unwrap();
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Corrupt { .. })
        ));
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(r#"{"message":"token used"}"#), "token used");
        assert_eq!(error_message(r#"{"error":{"message":"nope"}}"#), "nope");
        assert_eq!(error_message("plain"), "plain");
    }
}
