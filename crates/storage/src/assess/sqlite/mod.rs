//! The assessor's state on SQLite (`<data>/assess.db`, WAL): one writer
//! connection and a few read-only ones, so reads never wait for a write
//! (re-matching thousands of results, a layer's large inventory) and
//! every call runs on a blocking thread, never on an async worker.
//!
//! The schema is versioned (`refinery`, history in
//! `assess_schema_history`). V1 is the schema drydock created before
//! versioning, `IF NOT EXISTS`, so an existing `assess.db` adopts it with
//! its rows; columns that older builds added in place are added first
//! when missing ([`adopt_legacy`]).

mod state;

use super::AssessStateError;
use crate::sqlite::{err, run_blocking};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Read-only connections. WAL readers never wait for the writer.
const READERS: usize = 4;

/// The migration history table: apart from the registry's, which lives
/// in another file but must never be confused with this one.
const HISTORY_TABLE: &str = "assess_schema_history";

fn migrations() -> Vec<refinery::Migration> {
    [(
        "V1__assess",
        include_str!("../../../migrations/assess_sqlite/V1__assess.sql"),
    )]
    .into_iter()
    .map(|(name, sql)| refinery::Migration::unapplied(name, sql).expect("migration names"))
    .collect()
}

/// Columns older builds added in place after their tables were first
/// created: (table, column, definition).
const LEGACY_COLUMNS: &[(&str, &str, &str)] = &[
    ("images", "pusher", "TEXT"),
    ("inventories", "incomplete", "TEXT"),
    // Rows from before have no time: 0, so an unreferenced one goes at
    // the first pruning pass.
    ("layer_cache", "at", "INTEGER NOT NULL DEFAULT 0"),
    ("vex", "recorded_by", "TEXT"),
    ("vex", "not_applied", "TEXT"),
];

/// Bring a database from before versioning to V1's columns: each table
/// that exists without a column V1 has gains it (V1's `CREATE TABLE IF
/// NOT EXISTS` would leave it as it is). Only before the first versioned
/// run; later schema changes are migrations.
fn adopt_legacy(conn: &Connection) -> rusqlite::Result<()> {
    let versioned = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [HISTORY_TABLE],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if versioned {
        return Ok(());
    }
    for (table, column, def) in LEGACY_COLUMNS {
        let mut cols = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let names: Vec<String> = cols
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !names.is_empty() && !names.iter().any(|n| n == column) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {def}"))?;
        }
    }
    Ok(())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // As before the move: re-matching writes thousands of results, and a
    // lost last transaction after a power cut is assessed again.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Db {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// Moves on after every write that changed a row.
    generation: AtomicU64,
    /// Moves on after every such write that may change a verdict.
    verdicts: AtomicU64,
}

/// The SQLite backend of [`super::AssessState`]. Cheap to clone (one
/// database behind).
#[derive(Clone)]
pub struct SqliteAssessState {
    db: Arc<Db>,
}

/// Whether a write may change a verdict (see
/// [`super::AssessState::verdict_generation`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdicts {
    Move,
    Keep,
}

impl SqliteAssessState {
    /// Open (creating) the database and bring its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteAssessState, AssessStateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                AssessStateError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut writer = Connection::open(path).map_err(err)?;
        configure(&writer).map_err(err)?;
        adopt_legacy(&writer).map_err(err)?;
        refinery::Runner::new(&migrations())
            .set_grouped(true)
            .set_migration_table_name(HISTORY_TABLE)
            .run(&mut writer)
            .map_err(|e| AssessStateError::Backend(format!("migrating {}: {e}", path.display())))?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path).map_err(err)?;
            configure(&r).map_err(err)?;
            r.pragma_update(None, "query_only", "ON").map_err(err)?;
            readers.push(Mutex::new(r));
        }
        Ok(SqliteAssessState {
            db: Arc::new(Db {
                writer: Mutex::new(writer),
                readers,
                next: AtomicUsize::new(0),
                generation: AtomicU64::new(0),
                verdicts: AtomicU64::new(0),
            }),
        })
    }

    /// A free reader if there is one, else wait for the next in turn.
    fn reader(db: &Db) -> MutexGuard<'_, Connection> {
        let start = db.next.fetch_add(1, Ordering::Relaxed);
        let n = db.readers.len();
        for i in 0..n {
            if let Ok(g) = db.readers[(start + i) % n].try_lock() {
                return g;
            }
        }
        lock(&db.readers[start % n])
    }

    /// Run `f` on a reader connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AssessStateError> {
        let db = self.db.clone();
        Ok(run_blocking(move || f(&Self::reader(&db)).map_err(err)).await?)
    }

    /// Run `f` in one immediate transaction on the writer, committed when
    /// it succeeds; then, if it changed a row, move the generations on
    /// (after the commit: a reader that sees the new generation reads
    /// the new rows).
    async fn write<T: Send + 'static>(
        &self,
        verdicts: Verdicts,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, AssessStateError> {
        let db = self.db.clone();
        Ok(run_blocking(move || {
            let mut conn = lock(&db.writer);
            let before = conn.total_changes();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let out = f(&tx).map_err(err)?;
            tx.commit().map_err(err)?;
            if conn.total_changes() != before {
                if verdicts == Verdicts::Move {
                    db.verdicts.fetch_add(1, Ordering::Release);
                }
                db.generation.fetch_add(1, Ordering::Release);
            }
            Ok(out)
        })
        .await?)
    }
}

/// Tests only: run `sql` on the SQLite file at `path` through a
/// connection of its own, as something outside drydock would: a fault
/// (a table gone), or a database as an older build left it.
#[cfg(feature = "testing")]
pub fn execute_for_tests(path: &Path, sql: &str) -> Result<(), AssessStateError> {
    let c = Connection::open(path).map_err(err)?;
    c.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    c.execute_batch(sql).map_err(err)?;
    Ok(())
}
