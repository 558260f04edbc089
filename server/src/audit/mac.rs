//! Authenticating the chain with a key that is not in the store.
//!
//! The hash chain alone proves that entries were not edited in the middle,
//! but anyone who can write the database can delete the newest entries and
//! rewind `audit_head` to match. So the head, the checkpoints and the
//! witness records carry an HMAC-SHA256 under the **audit key**, derived from
//! the master key with HKDF (`secrets::MasterKey::audit_key`). Each kind of
//! record has its own label, so a checkpoint's MAC cannot be replayed as a
//! head's.
//!
//! `AuditTx::begin` only takes a `DatabaseConnection`, so the key of each
//! store is registered once per process ([`register`], by `Application::build`
//! and the CLI) under the store's identity (SQLite file, or PostgreSQL host,
//! port and database), and looked up by [`key_for`].
use chrono::{DateTime, Utc};
use hmac::{digest::generic_array::GenericArray, Hmac, Mac};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use sha2::Sha256;
use std::{
    collections::HashMap,
    sync::{LazyLock, RwLock},
};

type HmacSha256 = Hmac<Sha256>;

/// The key authenticating heads, checkpoints and witness records.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// What a MAC authenticates; the label keeps the kinds apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed<'a> {
    /// `audit_head`: the newest entry.
    Head { seq: i64, hash: &'a str },
    /// A row of `audit_checkpoint`.
    Checkpoint {
        seq: i64,
        hash: &'a str,
        at: DateTime<Utc>,
    },
    /// A head published to a witness.
    Witness {
        seq: i64,
        hash: &'a str,
        at: DateTime<Utc>,
    },
}

impl Signed<'_> {
    fn message(&self) -> String {
        let v = match *self {
            Signed::Head { seq, hash } => serde_json::json!(["slipway-audit-head-v1", seq, hash]),
            Signed::Checkpoint { seq, hash, at } => serde_json::json!([
                "slipway-audit-checkpoint-v1",
                seq,
                hash,
                at.timestamp_micros()
            ]),
            Signed::Witness { seq, hash, at } => {
                serde_json::json!(["slipway-audit-witness-v1", seq, hash, at.timestamp_micros()])
            }
        };
        v.to_string()
    }
}

impl AuditKey {
    /// HKDF-SHA256 of the master key with the audit label.
    pub fn derive(master: &[u8; 32]) -> Self {
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit, so this cannot fail.
        let _ = hkdf::Hkdf::<Sha256>::new(Some(b"slipway".as_slice()), master)
            .expand(b"slipway audit mac v1", &mut okm);
        AuditKey(okm)
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC zero-pads a short key to the hash's block size; padding it
        // here gives the same MAC through the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        <HmacSha256 as hmac::digest::KeyInit>::new(GenericArray::from_slice(&block))
    }

    /// Hex HMAC-SHA256 of `what`.
    pub fn sign(&self, what: Signed<'_>) -> String {
        let mut m = self.hmac();
        m.update(what.message().as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// Constant-time check of a hex MAC.
    pub fn verify(&self, what: Signed<'_>, mac: &str) -> bool {
        let Ok(bytes) = hex::decode(mac.trim()) else {
            return false;
        };
        let mut m = self.hmac();
        m.update(what.message().as_bytes());
        m.verify_slice(&bytes).is_ok()
    }
}

static KEYS: LazyLock<RwLock<HashMap<String, AuditKey>>> = LazyLock::new(Default::default);

/// Which store a connection talks to: the SQLite file as configured, or
/// PostgreSQL's host, port and database (two pools opened with the same
/// settings get the same identity). Cheap: no IO, called by every `begin`.
pub fn store_identity(db: &DatabaseConnection) -> String {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let opts = db.get_sqlite_connection_pool().connect_options();
            format!("sqlite:{}", opts.get_filename().display())
        }
        DbBackend::Postgres => {
            let opts = db.get_postgres_connection_pool().connect_options();
            format!(
                "postgres://{}:{}/{}",
                opts.get_host(),
                opts.get_port(),
                opts.get_database().unwrap_or_default()
            )
        }
        DbBackend::MySql => "mysql".into(),
    }
}

/// Makes `key` the audit key of `db`'s store in this process.
pub fn register(db: &DatabaseConnection, key: AuditKey) {
    let id = store_identity(db);
    let mut keys = KEYS.write().unwrap_or_else(|e| e.into_inner());
    keys.insert(id, key);
}

/// The audit key registered for `db`'s store.
pub fn key_for(db: &DatabaseConnection) -> Option<AuditKey> {
    let id = store_identity(db);
    let keys = KEYS.read().unwrap_or_else(|e| e.into_inner());
    keys.get(&id).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ab";

    #[test]
    fn macs_depend_on_key_kind_and_content() {
        let k = AuditKey::derive(&[7; 32]);
        let other = AuditKey::derive(&[8; 32]);
        let head = Signed::Head { seq: 3, hash: H };
        let mac = k.sign(head);
        assert_eq!(mac.len(), 64);
        assert!(k.verify(head, &mac));
        assert!(!other.verify(head, &mac), "another master key");
        assert!(!k.verify(Signed::Head { seq: 2, hash: H }, &mac), "rewound");
        assert!(!k.verify(Signed::Head { seq: 3, hash: "ac" }, &mac));
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        // A checkpoint's or witness record's MAC is no head MAC.
        let cp = k.sign(Signed::Checkpoint {
            seq: 3,
            hash: H,
            at,
        });
        assert!(!k.verify(head, &cp));
        let w = k.sign(Signed::Witness {
            seq: 3,
            hash: H,
            at,
        });
        assert_ne!(w, cp);
        assert!(!k.verify(head, "not hex"));
    }

    #[test]
    fn padded_key_gives_the_standard_hmac() {
        let k = AuditKey::derive(&[9; 32]);
        let mut std = <HmacSha256 as Mac>::new_from_slice(&k.0).unwrap();
        std.update(b"x");
        let mut ours = k.hmac();
        ours.update(b"x");
        assert_eq!(std.finalize().into_bytes(), ours.finalize().into_bytes());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert_eq!(
            format!("{:?}", AuditKey::derive(&[1; 32])),
            "AuditKey(<redacted>)"
        );
    }
}
