//! The hash chain and its verification.
//!
//! ```text
//! entry 1 ── entry 2 ── … ── entry n        each hash covers its fields + prev_hash
//!    ▲ checkpoint (seq, hash, MAC)  ▲ head (n, hash_n, MAC)   MACs need the audit key
//! ```
//! [`verify`] walks every entry, checks every checkpoint against the entry it
//! names and its MAC, and the head against the last entry and its MAC. A
//! rewound head fails on its MAC; a checkpoint past the end shows deleted
//! entries. A head *replayed* from an older copy of the store passes here:
//! only an external witness (`witness`) can tell.
use super::mac::{AuditKey, Signed};
use crate::store::entities::{audit_checkpoint, audit_entry, audit_head};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};
pub use slipway_migrations::GENESIS_HASH;

pub struct HashInput<'a> {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Option<&'a str>,
    pub summary: &'a str,
    pub source_ip: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// SHA-256 over an unambiguous JSON encoding of every field and the previous hash.
pub fn entry_hash(i: &HashInput<'_>) -> String {
    let canonical = serde_json::json!([
        "slipway-audit-v1",
        i.seq,
        i.at.timestamp_micros(),
        i.actor,
        i.action,
        i.target_type,
        i.target_id,
        i.summary,
        i.source_ip,
        i.request_id,
        i.prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

fn stored_hash(r: &audit_entry::Model) -> String {
    entry_hash(&HashInput {
        seq: r.seq,
        at: r.at,
        actor: &r.actor,
        action: &r.action,
        target_type: &r.target_type,
        target_id: r.target_id.as_deref(),
        summary: &r.summary,
        source_ip: r.source_ip.as_deref(),
        request_id: r.request_id.as_deref(),
        prev_hash: &r.prev_hash,
    })
}

/// True if `head` may be chained onto: its MAC matches, or it is the
/// genesis head of a new store (which has no MAC yet).
pub fn head_is_authentic(key: &AuditKey, head: &audit_head::Model) -> bool {
    match &head.mac {
        Some(mac) => key.verify(
            Signed::Head {
                seq: head.seq,
                hash: &head.hash,
            },
            mac,
        ),
        None => head.seq == 0 && head.hash == GENESIS_HASH,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Intact { entries: u64, checkpoints: u64 },
    Tampered { seq: i64, reason: String },
}

/// Whether [`verify`] also requires the head's MAC (`slipway audit seal`
/// checks everything else before it adopts a head that has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadMac {
    Required,
    Ignored,
}

fn tampered(seq: i64, reason: impl Into<String>) -> Verdict {
    Verdict::Tampered {
        seq,
        reason: reason.into(),
    }
}

/// Walks the whole chain in order and reports the first entry that does not
/// match its hash, its predecessor, a checkpoint or the head.
pub async fn verify<C: ConnectionTrait>(
    db: &C,
    key: &AuditKey,
    head_mac: HeadMac,
) -> Result<Verdict, DbErr> {
    const BATCH: u64 = 1000;
    let mut prev = GENESIS_HASH.to_owned();
    let mut expected_seq = 1i64;
    let mut count = 0u64;
    let mut checkpoints = 0u64;
    loop {
        let rows = audit_entry::Entity::find()
            .filter(audit_entry::Column::Seq.gte(expected_seq))
            .order_by_asc(audit_entry::Column::Seq)
            .limit(BATCH)
            .all(db)
            .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            break;
        };
        let cps = audit_checkpoint::Entity::find()
            .filter(audit_checkpoint::Column::Seq.between(first.seq, last.seq))
            .order_by_asc(audit_checkpoint::Column::Seq)
            .all(db)
            .await?;
        let mut cps = cps.into_iter().peekable();
        for r in &rows {
            if r.seq != expected_seq {
                return Ok(tampered(
                    expected_seq,
                    format!("entry {expected_seq} is missing (next is {})", r.seq),
                ));
            }
            if r.prev_hash != prev {
                return Ok(tampered(
                    r.seq,
                    "prev_hash does not match the previous entry",
                ));
            }
            if stored_hash(r) != r.hash {
                return Ok(tampered(
                    r.seq,
                    "content does not match its hash (row was modified)",
                ));
            }
            // Entries are contiguous here, so every checkpoint meets its entry.
            if let Some(cp) = cps.next_if(|cp| cp.seq == r.seq) {
                if let Some(bad) = check_checkpoint(key, &cp, Some(r)) {
                    return Ok(bad);
                }
                checkpoints += 1;
            }
            prev = r.hash.clone();
            expected_seq += 1;
            count += 1;
        }
    }
    let end = expected_seq - 1;
    // A checkpoint beyond the last entry: the entries after it were deleted.
    if let Some(cp) = audit_checkpoint::Entity::find()
        .filter(audit_checkpoint::Column::Seq.gt(end))
        .order_by_asc(audit_checkpoint::Column::Seq)
        .one(db)
        .await?
    {
        return Ok(check_checkpoint(key, &cp, None).unwrap_or_else(|| {
            tampered(
                end + 1,
                format!(
                    "the chain ends at entry {end} but checkpoint #{} was taken later: entries were deleted",
                    cp.seq
                ),
            )
        }));
    }
    let head = audit_head::Entity::find_by_id(1)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("audit_head".into()))?;
    if head.seq != end || head.hash != prev {
        return Ok(tampered(
            head.seq.max(expected_seq),
            format!(
                "chain ends at entry {end} but the head records entry {} (entries deleted or head altered)",
                head.seq
            ),
        ));
    }
    if head_mac == HeadMac::Required && !head_is_authentic(key, &head) {
        let reason = if head.mac.is_none() {
            "the head carries no MAC (a store written before head MACs: the next `slipway serve` seals it, or check it and run `slipway audit seal`)"
        } else {
            "the head's MAC does not match: the head was rewound or forged (or this is not the store's master key)"
        };
        return Ok(tampered(head.seq, reason));
    }
    Ok(Verdict::Intact {
        entries: count,
        checkpoints,
    })
}

/// A checkpoint whose MAC is wrong, or that disagrees with the entry it names.
fn check_checkpoint(
    key: &AuditKey,
    cp: &audit_checkpoint::Model,
    entry: Option<&audit_entry::Model>,
) -> Option<Verdict> {
    let signed = Signed::Checkpoint {
        seq: cp.seq,
        hash: &cp.hash,
        at: cp.at,
    };
    if !key.verify(signed, &cp.mac) {
        return Some(tampered(
            cp.seq,
            format!("checkpoint #{} has a wrong MAC (forged or altered)", cp.seq),
        ));
    }
    match entry {
        Some(e) if e.hash != cp.hash => Some(tampered(
            cp.seq,
            format!("entry {} does not match its checkpoint", cp.seq),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(summary: &'a str, prev: &'a str) -> HashInput<'a> {
        HashInput {
            seq: 1,
            at: DateTime::<Utc>::from_timestamp(1_700_000_000, 123_000).unwrap_or_default(),
            actor: "alice",
            action: "project.create",
            target_type: "project",
            target_id: Some("x"),
            summary,
            source_ip: None,
            request_id: None,
            prev_hash: prev,
        }
    }

    #[test]
    fn hash_depends_on_every_field_and_predecessor() {
        let a = entry_hash(&input("{}", GENESIS_HASH));
        assert_eq!(a.len(), 64);
        assert_eq!(a, entry_hash(&input("{}", GENESIS_HASH)));
        assert_ne!(a, entry_hash(&input("{\"a\":1}", GENESIS_HASH)));
        assert_ne!(a, entry_hash(&input("{}", &"1".repeat(64))));
    }

    #[test]
    fn only_a_genesis_head_may_lack_a_mac() {
        let key = AuditKey::derive(&[1; 32]);
        let head = |seq: i64, hash: &str, mac: Option<String>| audit_head::Model {
            id: 1,
            seq,
            hash: hash.into(),
            mac,
        };
        assert!(head_is_authentic(&key, &head(0, GENESIS_HASH, None)));
        assert!(!head_is_authentic(&key, &head(3, "ab", None)));
        let mac = key.sign(Signed::Head { seq: 3, hash: "ab" });
        assert!(head_is_authentic(&key, &head(3, "ab", Some(mac.clone()))));
        assert!(!head_is_authentic(&key, &head(2, "ab", Some(mac))));
    }
}
