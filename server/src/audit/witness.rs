//! Publishing the audit head outside the store.
//!
//! The head's MAC stops someone who holds the database from cutting the
//! tail and rewinding the head to a value they make up, but not from putting
//! back a head (with its MAC) copied from an older state of the store. A
//! witness keeps what the head was: every `audit_witness_interval_seconds`
//! the server appends the current head, signed, to each configured
//! [`Witness`] when it moved. `slipway audit verify --witness FILE` then
//! fails if the store's chain is shorter than, or differs from, any head the
//! witness saw.
//!
//! A witness is an enum so that the notification channels and backup
//! destinations of later issues become further variants; today there is a
//! file (0600, append-only writes, fsynced), which must be outside
//! `data_dir` (checked by `config`).
use super::{
    chain::head_is_authentic,
    mac::{AuditKey, Signed},
    GENESIS_HASH,
};
use crate::store::{
    entities::{audit_entry, audit_head},
    files,
};
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, io::Write, path::PathBuf, time::Duration};

/// One published head: one JSON line of a witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadRecord {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// HMAC under the audit key (`Signed::Witness`).
    pub mac: String,
}

impl HeadRecord {
    pub fn new(key: &AuditKey, seq: i64, hash: String, at: DateTime<Utc>) -> Self {
        let at = at.trunc_subsecs(6);
        let mac = key.sign(Signed::Witness {
            seq,
            hash: &hash,
            at,
        });
        HeadRecord { seq, hash, at, mac }
    }

    /// Written by a holder of this store's master key.
    pub fn authentic(&self, key: &AuditKey) -> bool {
        key.verify(
            Signed::Witness {
                seq: self.seq,
                hash: &self.hash,
                at: self.at,
            },
            &self.mac,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("audit witness file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mode(#[from] files::FileError),
    #[error("audit witness file {path}, line {line}: not a head record ({message})")]
    Malformed {
        path: String,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] DbErr),
}

/// Where heads are published.
#[derive(Debug, Clone)]
pub enum Witness {
    File(FileWitness),
}

impl Witness {
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Self> {
        settings
            .audit_witness_file
            .clone()
            .map(|path| Witness::File(FileWitness { path }))
    }

    pub fn describe(&self) -> String {
        match self {
            Witness::File(f) => format!("file {}", f.path.display()),
        }
    }

    /// Checks at start that publishing can work (creates the file 0600).
    pub fn check(&self) -> Result<(), WitnessError> {
        match self {
            Witness::File(f) => f.open().map(drop),
        }
    }

    pub async fn publish(&self, record: &HeadRecord) -> Result<(), WitnessError> {
        match self {
            Witness::File(f) => {
                let (f, record) = (f.clone(), record.clone());
                tokio::task::spawn_blocking(move || f.append(&record))
                    .await
                    .map_err(|e| WitnessError::Io {
                        path: "(writer task)".into(),
                        source: std::io::Error::other(e),
                    })?
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileWitness {
    pub path: PathBuf,
}

impl FileWitness {
    fn io(&self, source: std::io::Error) -> WitnessError {
        WitnessError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn open(&self) -> Result<std::fs::File, WitnessError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                files::private_dir(dir)?;
            }
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(files::FILE_MODE);
        }
        let f = opts.open(&self.path).map_err(|e| self.io(e))?;
        files::ensure_private(&self.path)?;
        Ok(f)
    }

    /// Appends one line and waits until it is on disk.
    fn append(&self, record: &HeadRecord) -> Result<(), WitnessError> {
        let mut line = serde_json::to_string(record).map_err(|e| self.io(e.into()))?;
        line.push('\n');
        let mut f = self.open()?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| self.io(e))
    }

    /// Every record, in file order.
    pub fn read(&self) -> Result<Vec<HeadRecord>, WitnessError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        parse(&text).map_err(|(line, message)| WitnessError::Malformed {
            path: self.path.display().to_string(),
            line,
            message,
        })
    }
}

/// Witness file text → records; a bad line is `(line number, why)`.
pub fn parse(text: &str) -> Result<Vec<HeadRecord>, (usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| (i + 1, e.to_string())))
        .collect()
}

/// Publishes the head to `witness` now and then every `interval` when it
/// moved. A head whose MAC does not match is not published (and logged).
pub fn spawn(db: DatabaseConnection, key: AuditKey, witness: Witness, interval: Duration) {
    tokio::spawn(async move {
        let mut last: Option<(i64, String)> = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = publish_once(&db, &key, &witness, &mut last).await {
                tracing::error!(error = %e, witness = %witness.describe(), "cannot publish the audit head");
            }
        }
    });
}

async fn publish_once(
    db: &DatabaseConnection,
    key: &AuditKey,
    witness: &Witness,
    last: &mut Option<(i64, String)>,
) -> Result<(), WitnessError> {
    let Some(head) = audit_head::Entity::find_by_id(1).one(db).await? else {
        return Ok(());
    };
    if last.as_ref() == Some(&(head.seq, head.hash.clone())) {
        return Ok(());
    }
    if !head_is_authentic(key, &head) {
        tracing::error!(
            seq = head.seq,
            "the audit head is not authenticated; not publishing it (run `slipway audit verify`)"
        );
        return Ok(());
    }
    let record = HeadRecord::new(key, head.seq, head.hash.clone(), Utc::now());
    witness.publish(&record).await?;
    tracing::debug!(seq = head.seq, witness = %witness.describe(), "audit head published");
    *last = Some((head.seq, head.hash));
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum WitnessVerdict {
    Consistent { records: usize, newest_seq: i64 },
    Disagrees { seq: i64, reason: String },
}

/// One witnessed head against the chain: `stored` is the hash of entry
/// `record.seq` if the chain has it, `end` the chain's last entry.
pub fn judge(
    key: &AuditKey,
    record: &HeadRecord,
    stored: Option<&str>,
    end: i64,
) -> Option<WitnessVerdict> {
    let at = record.at.to_rfc3339();
    let why = if !record.authentic(key) {
        format!(
            "the witness record for entry {} (at {at}) has a wrong MAC: not written with this store's master key",
            record.seq
        )
    } else if record.seq > end {
        format!(
            "the witness saw entry {} at {at}, but the chain ends at entry {end}: entries were deleted or the head rewound",
            record.seq
        )
    } else if stored != Some(record.hash.as_str()) {
        format!(
            "entry {} differs from the head the witness saw at {at}: the chain was rewritten",
            record.seq
        )
    } else {
        return None;
    };
    Some(WitnessVerdict::Disagrees {
        seq: record.seq,
        reason: why,
    })
}

/// Checks every witnessed head against the store's chain.
pub async fn check<C: ConnectionTrait>(
    db: &C,
    key: &AuditKey,
    records: &[HeadRecord],
) -> Result<WitnessVerdict, DbErr> {
    let end = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Seq)
        .one(db)
        .await?
        .map_or(0, |e| e.seq);
    let mut wanted: Vec<i64> = records
        .iter()
        .map(|r| r.seq)
        .filter(|s| (1..=end).contains(s))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut hashes: HashMap<i64, String> = HashMap::from([(0, GENESIS_HASH.to_owned())]);
    for chunk in wanted.chunks(500) {
        for e in audit_entry::Entity::find()
            .filter(audit_entry::Column::Seq.is_in(chunk.iter().copied()))
            .all(db)
            .await?
        {
            hashes.insert(e.seq, e.hash);
        }
    }
    for r in records {
        if let Some(bad) = judge(key, r, hashes.get(&r.seq).map(String::as_str), end) {
            return Ok(bad);
        }
    }
    Ok(WitnessVerdict::Consistent {
        records: records.len(),
        newest_seq: records.iter().map(|r| r.seq).max().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AuditKey {
        AuditKey::derive(&[3; 32])
    }

    #[test]
    fn records_round_trip_and_are_signed() {
        let r = HeadRecord::new(&key(), 7, "aa".into(), Utc::now());
        let line = serde_json::to_string(&r).unwrap();
        let back = parse(&format!("{line}\n\n{line}\n")).unwrap();
        assert_eq!(back, vec![r.clone(), r.clone()]);
        assert!(r.authentic(&key()));
        assert!(!r.authentic(&AuditKey::derive(&[4; 32])));
        let forged = HeadRecord { seq: 6, ..r };
        assert!(!forged.authentic(&key()));
        assert_eq!(parse("{\"seq\":1}\n").unwrap_err().0, 1);
    }

    #[test]
    fn judging_a_witnessed_head() {
        let k = key();
        let r = HeadRecord::new(&k, 7, "aa".into(), Utc::now());
        assert_eq!(judge(&k, &r, Some("aa"), 9), None);
        let cut = judge(&k, &r, None, 5);
        assert!(
            matches!(&cut, Some(WitnessVerdict::Disagrees { seq: 7, reason }) if reason.contains("ends at entry 5")),
            "{cut:?}"
        );
        assert!(matches!(
            judge(&k, &r, Some("bb"), 9),
            Some(WitnessVerdict::Disagrees { seq: 7, .. })
        ));
        let other = AuditKey::derive(&[5; 32]);
        assert!(judge(&other, &r, Some("aa"), 9).is_some());
    }
}
