//! Attempt limits: at most N attempts per key (a user name, a client
//! address) per window of a minute.
//!
//! Logins and agent enrollments use [`AttemptLimiter`], which counts in the
//! store (`login_attempts`) so that the limit is exact under parallel
//! requests and across replicas sharing one database. An attempt is
//! *reserved* before the credential is checked, in one conditional
//! statement per key:
//!
//! ```text
//! reserve(keys) ──▶ for each key: UPDATE … SET attempts = attempts + 1
//!                    WHERE key = ? AND (window expired OR attempts < limit)
//!                   RETURNING window_start      (no row: used up → 429,
//!                                                 the keys reserved so far are given back)
//!   check password / token
//!   ├─ wrong ──▶ nothing: the reserved attempt is the counted failure
//!   └─ right ──▶ release (give the attempt back), optionally reset a key
//! ```
//!
//! So at most N credential checks per key and window ever start, however
//! many requests arrive at once. Rows are written outside any `AuditTx`
//! (operational bookkeeping, like sessions; every refused login is audited).
//!
//! [`RateLimiter`] is the in-memory counter of cheap rejections (bad webhook
//! signatures), per replica.
use super::sha256_hex;
use crate::{error::ApiError, store::entities::login_attempt};
use sea_orm::{
    sea_query::{Expr, OnConflict, Query},
    ConnectionTrait, DbErr, EntityTrait,
};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_MS: i64 = 60_000;

/// Seconds until a window that started at `start_ms` ends, at least 1.
pub fn retry_after_secs(start_ms: i64, now_ms: i64) -> u64 {
    let left_ms = (start_ms + WINDOW_MS - now_ms).max(0);
    u64::try_from((left_ms + 999) / 1000).unwrap_or(1).max(1)
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("too many attempts; retry in {0} seconds")]
    Limited(u64),
    #[error(transparent)]
    Store(#[from] DbErr),
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited(secs) => ApiError::RateLimited(secs),
            LimitError::Store(e) => ApiError::Store(e),
        }
    }
}

/// One kind of attempt (`login`, `enroll`) with its limit, counted in the store.
pub struct AttemptLimiter {
    scope: &'static str,
    limit: u32,
    /// When this process last swept expired rows (ms since the epoch).
    last_sweep_ms: AtomicI64,
}

/// Attempts reserved by one request, one per key. Dropping it keeps them
/// counted (a failure); [`AttemptLimiter::release`] gives them back.
#[must_use = "a reservation is either kept (a failure) or released (a success)"]
pub struct Reservation {
    slots: Vec<(String, i64)>,
}

impl Reservation {
    /// The attempt failed: it stays counted until its window ends.
    pub fn keep(self) {}
}

impl AttemptLimiter {
    pub fn new(scope: &'static str, limit: u32) -> Self {
        Self {
            scope,
            limit,
            last_sweep_ms: AtomicI64::new(0),
        }
    }

    /// The stored key of (`kind`, `value`), e.g. ("user", "alice").
    fn key(&self, kind: &str, value: &str) -> String {
        sha256_hex(&format!("{}:{kind}:{value}", self.scope))
    }

    /// Reserves one attempt under every key, all or none: `Limited` when any
    /// key has used up its window.
    pub async fn reserve<C: ConnectionTrait>(
        &self,
        db: &C,
        keys: &[(&str, &str)],
    ) -> Result<Reservation, LimitError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.sweep(db, now_ms).await?;
        let mut reserved = Reservation { slots: Vec::new() };
        for (kind, value) in keys {
            let key = self.key(kind, value);
            match self.reserve_one(db, &key, now_ms).await {
                Ok(start) => reserved.slots.push((key, start)),
                Err(e) => {
                    self.release(db, reserved).await?;
                    return Err(e);
                }
            }
        }
        Ok(reserved)
    }

    async fn reserve_one<C: ConnectionTrait>(
        &self,
        db: &C,
        key: &str,
        now_ms: i64,
    ) -> Result<i64, LimitError> {
        use login_attempt::Column as C;
        let backend = db.get_database_backend();
        let cutoff = now_ms - WINDOW_MS;
        let limit = i32::try_from(self.limit).unwrap_or(i32::MAX);
        // A sweep may delete an expired row between the two statements: try again.
        for _ in 0..3 {
            let create = Query::insert()
                .into_table(login_attempt::Entity)
                .columns([C::KeyHash, C::WindowStartMs, C::Attempts])
                .values([key.into(), now_ms.into(), 0i32.into()])
                .map_err(|e| DbErr::Custom(e.to_string()))?
                .on_conflict(OnConflict::column(C::KeyHash).do_nothing().to_owned())
                .to_owned();
            db.execute(backend.build(&create)).await?;
            let expired = Expr::col(C::WindowStartMs).lte(cutoff);
            let take = Query::update()
                .table(login_attempt::Entity)
                .value(
                    C::WindowStartMs,
                    Expr::case(expired.clone(), now_ms).finally(Expr::col(C::WindowStartMs)),
                )
                .value(
                    C::Attempts,
                    Expr::case(expired.clone(), 1i32).finally(Expr::col(C::Attempts).add(1i32)),
                )
                .and_where(Expr::col(C::KeyHash).eq(key))
                .and_where(expired.or(Expr::col(C::Attempts).lt(limit)))
                .returning_col(C::WindowStartMs)
                .to_owned();
            if let Some(row) = db.query_one(backend.build(&take)).await? {
                return Ok(row.try_get::<i64>("", "window_start_ms")?);
            }
            if let Some(row) = login_attempt::Entity::find_by_id(key.to_owned())
                .one(db)
                .await?
            {
                return Err(LimitError::Limited(retry_after_secs(
                    row.window_start_ms,
                    now_ms,
                )));
            }
        }
        Err(LimitError::Store(DbErr::Custom(
            "attempt counter vanished three times".into(),
        )))
    }

    /// Gives the reserved attempts back (the attempt was not a failure).
    pub async fn release<C: ConnectionTrait>(
        &self,
        db: &C,
        reservation: Reservation,
    ) -> Result<(), DbErr> {
        use login_attempt::Column as C;
        let backend = db.get_database_backend();
        for (key, start) in reservation.slots {
            // Only in the window it was taken from: a new window owes nothing.
            let give_back = Query::update()
                .table(login_attempt::Entity)
                .value(C::Attempts, Expr::col(C::Attempts).sub(1i32))
                .and_where(Expr::col(C::KeyHash).eq(key))
                .and_where(Expr::col(C::WindowStartMs).eq(start))
                .and_where(Expr::col(C::Attempts).gt(0i32))
                .to_owned();
            db.execute(backend.build(&give_back)).await?;
        }
        Ok(())
    }

    /// Forgets every attempt under (`kind`, `value`), e.g. a user's failures
    /// after they logged in.
    pub async fn reset<C: ConnectionTrait>(
        &self,
        db: &C,
        kind: &str,
        value: &str,
    ) -> Result<(), DbErr> {
        login_attempt::Entity::delete_by_id(self.key(kind, value))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Deletes windows that ended, at most once a window per process.
    async fn sweep<C: ConnectionTrait>(&self, db: &C, now_ms: i64) -> Result<(), DbErr> {
        let last = self.last_sweep_ms.load(Ordering::Acquire);
        if now_ms - last < WINDOW_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(());
        }
        use sea_orm::{ColumnTrait, QueryFilter};
        login_attempt::Entity::delete_many()
            .filter(login_attempt::Column::WindowStartMs.lte(now_ms - 2 * WINDOW_MS))
            .exec(db)
            .await?;
        Ok(())
    }
}

/// In-memory failure counter per key and replica: for rejections that cost
/// nothing to check (a bad webhook signature), where the limit only keeps a
/// flood from writing a row per request.
pub struct RateLimiter {
    limit: u32,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `key` has used up its failures.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((start, n)) if now.duration_since(*start) < WINDOW && *n >= self.limit => {
                Err((WINDOW - now.duration_since(*start)).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn fail(&self, key: &str) {
        self.fail_at(key, Instant::now())
    }

    fn fail_at(&self, key: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let e = map.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_within_window_then_recovers() {
        let r = RateLimiter::new(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.check_at("ip", t0).is_ok());
            r.fail_at("ip", t0);
        }
        assert!(r.check_at("ip", t0).is_err());
        assert!(r.check_at("other", t0).is_ok());
        assert!(r.check_at("ip", t0 + WINDOW).is_ok());
        r.reset("ip");
        assert!(r.check_at("ip", t0).is_ok());
    }

    #[test]
    fn retry_after_counts_whole_seconds_to_the_window_end() {
        assert_eq!(retry_after_secs(0, 0), 60);
        assert_eq!(retry_after_secs(0, 59_001), 1);
        assert_eq!(retry_after_secs(0, 58_999), 2);
        assert_eq!(retry_after_secs(0, 60_000), 1, "never 0");
        assert_eq!(retry_after_secs(0, 120_000), 1);
    }

    #[test]
    fn keys_are_hashed_and_scoped() {
        let login = AttemptLimiter::new("login", 10);
        let enroll = AttemptLimiter::new("enroll", 10);
        let k = login.key("ip", "203.0.113.9");
        assert_eq!(k.len(), 64);
        assert!(!k.contains("203"));
        assert_ne!(k, enroll.key("ip", "203.0.113.9"));
        assert_ne!(k, login.key("user", "203.0.113.9"));
    }
}
