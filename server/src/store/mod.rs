//! The store: connection, migrations and the entities. SQLite is the embedded
//! default; PostgreSQL is the production store.
pub mod cache;
pub mod entities;
pub mod files;

use crate::config::{redact_url, Settings};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};
use slipway_migrations::{Migrator, MigratorTrait};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Files(#[from] files::FileError),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: DbErr },
    #[error("migrations failed: {0}")]
    Migrate(DbErr),
}

/// Opens the pool (creating the SQLite file and its directory if needed).
/// The data directory, the SQLite file and its companions are made private
/// first (see [`files`]).
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, StoreError> {
    let url = settings.database_url.clone();
    let sqlite = sqlite_path(&url).map(std::path::PathBuf::from);
    if let Some(path) = &sqlite {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if dir.exists() && dir != settings.data_dir {
                // Someone else's directory (e.g. /var/lib): the files are private.
            } else {
                files::private_dir(dir)?;
            }
        }
        // Created here, not by SQLite, so that it is 0600 under any umask;
        // SQLite gives the -wal and -shm files the database's mode.
        files::private_file(path)?;
        for companion in files::sqlite_companions(path) {
            files::ensure_private(&companion)?;
        }
    }
    files::ensure_private(&settings.data_dir)?;
    let mut opts = ConnectOptions::new(url.clone());
    opts.max_connections(settings.db_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
                .create_if_missing(true)
        });
    Database::connect(opts)
        .await
        .map_err(|source| StoreError::Connect {
            url: redact_url(&url),
            source,
        })
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Applies pending migrations. On PostgreSQL an advisory lock, held on a
/// dedicated connection, makes replicas starting together migrate one at a
/// time (the later ones then find nothing pending).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Migrator::up(db, None).await.map_err(StoreError::Migrate);
    }
    const LOCK_KEY: i64 = 0x5_11b_3a7; // "slipway" migrations
    let pool = db.get_postgres_connection_pool();
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| StoreError::Migrate(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))))?;
    let lock_err = |e| StoreError::Migrate(DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)));
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(lock_err)?;
    let result = Migrator::up(db, None).await.map_err(StoreError::Migrate);
    sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await
        .map_err(lock_err)?;
    result
}

/// True when the store answers and every migration has been applied.
pub async fn ready(db: &DatabaseConnection) -> Result<(), String> {
    db.execute_unprepared("SELECT 1")
        .await
        .map_err(|e| format!("store unreachable: {e}"))?;
    let pending = Migrator::get_pending_migrations(db)
        .await
        .map_err(|e| format!("cannot read migrations: {e}"))?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} migration(s) pending", pending.len()))
    }
}

/// True if the error is a unique-constraint violation (a duplicate name).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
