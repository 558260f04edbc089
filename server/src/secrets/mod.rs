//! Secrets at rest: XChaCha20-Poly1305 with a 256-bit master key. The
//! associated data binds each ciphertext to its environment, name and
//! version, so a ciphertext copied to another row does not decrypt.
use crate::audit::mac::AuditKey;
use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand::RngCore;
use std::{io::Write, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("setting `master_key` (SLIPWAY_MASTER_KEY) must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("cannot read or create master key file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mode(#[from] crate::store::files::FileError),
}

#[derive(Debug, thiserror::Error)]
#[error("secret cannot be decrypted (wrong master key or tampered row)")]
pub struct DecryptError;

#[derive(Clone)]
pub struct MasterKey {
    aead: XChaCha20Poly1305,
    /// Derived once; authenticates the audit chain (see `audit::mac`).
    audit: AuditKey,
}

pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
}

impl MasterKey {
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| KeyError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; 32] = bytes.try_into().map_err(|_| KeyError::BadKey)?;
        let aead = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| KeyError::BadKey)?;
        Ok(MasterKey {
            aead,
            audit: AuditKey::derive(bytes),
        })
    }

    /// The key that authenticates the audit chain's head, checkpoints and
    /// witness records: HKDF of this key, so it is never in the store.
    pub fn audit_key(&self) -> AuditKey {
        self.audit.clone()
    }

    /// The configured key, else `<data_dir>/master.key`, created once with mode
    /// 0600 (in a 0700 directory); an existing file open to others is narrowed.
    pub fn load_or_create(configured: Option<&str>, data_dir: &Path) -> Result<Self, KeyError> {
        if let Some(k) = configured {
            return Self::from_base64(k);
        }
        let path = data_dir.join("master.key");
        let file_err = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                crate::store::files::ensure_private(&path)?;
                Self::from_base64(&s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::store::files::private_dir(data_dir)?;
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&path).map_err(file_err)?;
                f.write_all(STANDARD.encode(bytes).as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(file_err)?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(file_err(e)),
        }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Sealed {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ciphertext = self
            .aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default();
        Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
        }
    }

    pub fn open(
        &self,
        ciphertext: &[u8],
        nonce: &[u8],
        aad: &str,
    ) -> Result<Vec<u8>, DecryptError> {
        if nonce.len() != 24 {
            return Err(DecryptError);
        }
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| DecryptError)
    }
}

/// Associated data of a secret's ciphertext.
pub fn secret_aad(environment_id: uuid::Uuid, name: &str, version: i32) -> String {
    format!("slipway-secret:v1:{environment_id}:{name}:{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let dir = tempfile::tempdir().expect("tmp");
        let k = MasterKey::load_or_create(None, dir.path()).expect("key");
        let s = k.seal(b"hunter2", "a");
        assert_eq!(
            k.open(&s.ciphertext, &s.nonce, "a").ok(),
            Some(b"hunter2".to_vec())
        );
        assert!(
            k.open(&s.ciphertext, &s.nonce, "b").is_err(),
            "aad binds the row"
        );
        assert!(!s.ciphertext.windows(7).any(|w| w == b"hunter2"));
        // The same file is read back, with mode 0600.
        let k2 = MasterKey::load_or_create(None, dir.path()).expect("key again");
        assert!(k2.open(&s.ciphertext, &s.nonce, "a").is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn bad_configured_key_is_rejected() {
        assert!(MasterKey::from_base64("short").is_err());
    }
}
