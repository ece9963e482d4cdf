//! SQLite backends of the metadata and access stores: one file
//! (`<data>/meta.db`, WAL) with one writer connection and a few reader
//! connections, so reads run concurrently with each other and with a
//! write. Every call runs on a blocking thread (`spawn_blocking`), never
//! on an async worker. The schema is versioned (`refinery`, history in
//! `drydock_schema_history`); an existing database from before
//! versioning adopts V1/V2 unchanged (their statements are `IF NOT
//! EXISTS`) and then takes later migrations.

pub(crate) mod access;
pub(crate) mod meta;
pub(crate) mod releases;
pub(crate) mod uploads;

use crate::MetaError;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Reader connections per database. WAL readers never wait for the
/// writer; a handful covers a 2-core machine's concurrent requests.
const READERS: usize = 4;

/// The migration history table (shared by both backends' runners).
pub(crate) const HISTORY_TABLE: &str = "drydock_schema_history";

fn migrations() -> Vec<refinery::Migration> {
    [
        (
            "V1__registry",
            include_str!("../../migrations/sqlite/V1__registry.sql"),
        ),
        (
            "V2__access",
            include_str!("../../migrations/sqlite/V2__access.sql"),
        ),
        (
            "V3__import_jobs",
            include_str!("../../migrations/sqlite/V3__import_jobs.sql"),
        ),
        (
            "V4__upload_sessions",
            include_str!("../../migrations/sqlite/V4__upload_sessions.sql"),
        ),
        (
            "V5__vulndb_releases",
            include_str!("../../migrations/sqlite/V5__vulndb_releases.sql"),
        ),
    ]
    .into_iter()
    .map(|(name, sql)| refinery::Migration::unapplied(name, sql).expect("migration names"))
    .collect()
}

/// Map a SQLite error onto the store's error kinds.
pub(crate) fn err(e: rusqlite::Error) -> MetaError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DiskFull => MetaError::StorageFull(e.to_string()),
            ErrorCode::ConstraintViolation
            | ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked => MetaError::Conflict(e.to_string()),
            ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                MetaError::Unavailable(e.to_string())
            }
            _ => MetaError::Backend(e.to_string()),
        },
        rusqlite::Error::QueryReturnedNoRows => MetaError::NotFound(e.to_string()),
        _ => MetaError::Backend(e.to_string()),
    }
}

/// Run blocking work off the async workers: on Tokio's blocking pool when
/// called inside a runtime, inline on a plain thread.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => match h.spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(MetaError::Unavailable(format!(
                "runtime shutting down: {e}"
            ))),
        },
        Err(_) => f(),
    }
}

/// One database file: a writer and a small pool of readers.
pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    Ok(())
}

impl Db {
    /// Open (creating) the database and bring its schema up to date.
    pub(crate) fn open(path: &Path) -> Result<Arc<Db>, MetaError> {
        let mut writer = Connection::open(path).map_err(err)?;
        configure(&writer).map_err(err)?;
        refinery::Runner::new(&migrations())
            .set_grouped(true)
            .set_migration_table_name(HISTORY_TABLE)
            .run(&mut writer)
            .map_err(|e| MetaError::Backend(format!("migrating {}: {e}", path.display())))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path).map_err(err)?;
            configure(&r).map_err(err)?;
            r.pragma_update(None, "query_only", "ON").map_err(err)?;
            readers.push(Mutex::new(r));
        }
        Ok(Arc::new(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers,
            next: AtomicUsize::new(0),
        }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A free reader if there is one, else wait for the next in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for i in 0..n {
            if let Ok(g) = self.readers[(start + i) % n].try_lock() {
                return g;
            }
        }
        lock(&self.readers[start % n])
    }

    /// Run `f` on a reader connection, on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, MetaError> {
        let db = self.clone();
        run_blocking(move || f(&db.reader()).map_err(err)).await
    }

    /// Run `f` in one immediate (write-locked) transaction on the writer
    /// connection, committed when `f` succeeds.
    pub(crate) async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, MetaError> {
        let db = self.clone();
        run_blocking(move || {
            let mut conn = lock(&db.writer);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let out = f(&tx).map_err(err)?;
            tx.commit().map_err(err)?;
            Ok(out)
        })
        .await
    }

    /// Run `f` on the writer connection outside a transaction.
    pub(crate) async fn on_writer<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, MetaError> {
        let db = self.clone();
        run_blocking(move || f(&lock(&db.writer)).map_err(err)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_database_is_storage_full() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        // Cap the file at its current size: the next page it needs fails
        // as a full disk does (SQLITE_FULL).
        db.on_writer(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            c.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        })
        .await
        .unwrap();
        let e = db
            .write(|tx| {
                let big = vec![7u8; 1 << 20];
                tx.execute(
                    "INSERT INTO manifests(repo, digest, media_type, size, body, origin, pushed_at)
                     VALUES ('r', 'd', 't', 1, ?1, 'push', 1)",
                    [big],
                )
            })
            .await
            .unwrap_err();
        assert!(e.is_storage_full(), "{e:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_do_not_wait_for_a_write_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("meta.db")).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let writer = {
            let db = db.clone();
            tokio::spawn(async move {
                db.write(move |tx| {
                    tx.execute("INSERT INTO repos(name, created_at) VALUES ('r', 1)", [])?;
                    held_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(())
                })
                .await
            })
        };
        held_rx.recv().unwrap();
        // The write lock is held: a reader still answers, from the last
        // committed state.
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            db.read(|c| c.query_row("SELECT count(*) FROM repos", [], |r| r.get::<_, i64>(0))),
        )
        .await
        .expect("a reader waited for the writer")
        .unwrap();
        assert_eq!(n, 0);
        release_tx.send(()).unwrap();
        writer.await.unwrap().unwrap();
        let n = db
            .read(|c| c.query_row("SELECT count(*) FROM repos", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
}
