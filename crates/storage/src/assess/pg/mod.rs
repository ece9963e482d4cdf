//! The assessor's state on PostgreSQL, shared by every node that names
//! the same `metadata.url`: one queue, one set of results, one layer
//! cache.
//!
//! The queue leases its jobs. A claim takes the oldest claimable job
//! (`FOR UPDATE SKIP LOCKED`, so nodes claiming together never take the
//! same one and never wait for each other) and writes this node's id and
//! a lease end into its row; a task on the store's runtime renews this
//! node's leases while it lives. A job in progress whose lease has
//! passed lost its node (killed, cut off) and may be claimed again by
//! any; one whose lease is live is never touched by another node, not
//! even by a node starting up ([`AssessState::requeue_interrupted`](super::AssessState::requeue_interrupted)
//! takes back only its own jobs and expired ones). Each claim counts an
//! attempt; a job that reached the attempt limit is no longer claimed
//! but failed with its reason by [`AssessState::give_up_exhausted`](super::AssessState::give_up_exhausted).
//! Lease times are the database server's clock, so nodes whose clocks
//! differ agree on them.
//!
//! The change counters come from two sequences moved after every
//! committed write (see the migration), so a write on any node moves
//! every node's counters; a node reads them at most once per
//! [`PgAssessOptions::generation_ttl`] and takes its own writes at once.
//!
//! Tables are the SQLite store's, prefixed `assess_` (they live beside
//! the registry's), migrated with `refinery` under their own history
//! table and the registry's migration advisory lock.

mod state;

use super::{AssessStateError, Result};
use crate::MetaError;
use crate::pg::{LOCK_MIGRATE, Pg, PgConfig, err};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// The migration history table, apart from the registry's
/// (`drydock_schema_history`) in the same database.
pub const HISTORY_TABLE: &str = "assess_schema_history";

fn migrations() -> Vec<refinery::Migration> {
    [(
        "V1__assess",
        include_str!("../../../migrations/assess_postgres/V1__assess.sql"),
    )]
    .into_iter()
    .map(|(name, sql)| refinery::Migration::unapplied(name, sql).expect("migration names"))
    .collect()
}

/// The database server's time in milliseconds: the one clock leases are
/// measured in, whichever node writes them.
pub(crate) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// How this node takes part in the shared queue.
#[derive(Debug, Clone)]
pub struct PgAssessOptions {
    /// This node's name in leases. Stable across restarts (a host name)
    /// lets a restarted node take its own interrupted jobs back at once;
    /// the default is unique per process, so they come back when their
    /// leases end.
    pub node: String,
    /// How long a claim holds a job without renewal: a dead node's jobs
    /// are claimed again this long after its last renewal.
    pub lease: Duration,
    /// Renew this node's leases every so often (about a third of the
    /// lease suits); `None` never renews, for tests of lost nodes.
    pub renew_every: Option<Duration>,
    /// Claims a job may take: one at the limit is not claimed again (the
    /// assessor's [`AssessState::give_up_exhausted`](super::AssessState::give_up_exhausted) fails it, and sets
    /// this from its own limit).
    pub max_attempts: u32,
    /// How stale this node's view of the change counters may be: they
    /// are read from the database at most once per this (zero: every
    /// time). This node's own writes show at once.
    pub generation_ttl: Duration,
}

impl Default for PgAssessOptions {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        let lease = Duration::from_secs(60);
        PgAssessOptions {
            node: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            lease,
            renew_every: Some(lease / 3),
            max_attempts: 3,
            generation_ttl: Duration::from_millis(200),
        }
    }
}

/// The two change counters as this node last knew them.
struct Counters {
    generation: AtomicU64,
    verdicts: AtomicU64,
    /// When they were last read from the database.
    read_at: Mutex<Option<Instant>>,
}

struct Inner {
    pg: Pg,
    describe: String,
    node: String,
    lease_ms: i64,
    max_attempts: AtomicU32,
    ttl: Duration,
    counters: Counters,
    /// Set when the node stops ([`AssessState::release_claims`]): the
    /// renewal task ends.
    stopped: Arc<AtomicBool>,
}

/// The PostgreSQL backend of [`AssessState`](super::AssessState). Cheap to clone; each
/// [`PgAssessState::connect`] is one node of the shared queue.
#[derive(Clone)]
pub struct PgAssessState {
    inner: Arc<Inner>,
}

/// Whether a write may change a verdict (see
/// [`AssessState::verdict_generation`](super::AssessState::verdict_generation)).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdicts {
    Move,
    Keep,
}

/// A statement's parameters, owned, to travel to the store's runtime.
type Params = Vec<Box<dyn ToSql + Send + Sync>>;

fn borrowed(p: &Params) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

fn unavailable(e: impl std::fmt::Display) -> AssessStateError {
    AssessStateError::Unavailable(e.to_string())
}

/// A pooled connection's error, as [`crate::pg`] words it (no URL).
fn pool_err(e: deadpool_postgres::PoolError) -> AssessStateError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match err(e) {
            MetaError::Backend(m) => AssessStateError::Unavailable(m),
            other => other.into(),
        },
        e => unavailable(e),
    }
}

/// Statements on a connection or in a transaction, prepared once per
/// connection, their errors the store's.
async fn exec<C: GenericClient>(c: &C, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<u64> {
    let st = c.prepare_cached(sql).await.map_err(err)?;
    Ok(c.execute(&st, p).await.map_err(err)?)
}

async fn query<C: GenericClient>(c: &C, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(err)?;
    Ok(c.query(&st, p).await.map_err(err)?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let st = c.prepare_cached(sql).await.map_err(err)?;
    Ok(c.query_opt(&st, p).await.map_err(err)?)
}

/// What a write closure returns: its value and how many rows it changed
/// (none: the counters stay).
type Written<T> = Result<(T, u64)>;

impl PgAssessState {
    /// Connect, migrate the schema (under the registry's migration lock,
    /// so nodes starting together migrate once), and start renewing this
    /// node's leases.
    pub fn connect(cfg: &PgConfig, opts: PgAssessOptions) -> Result<PgAssessState> {
        let pg = Pg::connect(cfg)?;
        let describe = cfg.describe();
        let state = PgAssessState {
            inner: Arc::new(Inner {
                pg,
                describe,
                node: opts.node,
                lease_ms: i64::try_from(opts.lease.as_millis()).unwrap_or(i64::MAX),
                max_attempts: AtomicU32::new(opts.max_attempts.max(1)),
                ttl: opts.generation_ttl,
                counters: Counters {
                    generation: AtomicU64::new(0),
                    verdicts: AtomicU64::new(0),
                    read_at: Mutex::new(None),
                },
                stopped: Arc::new(AtomicBool::new(false)),
            }),
        };
        crate::block_on(state.migrate())?;
        if let Some(every) = opts.renew_every {
            crate::block_on(state.spawn_renewal(every.max(Duration::from_millis(50))))?;
        }
        Ok(state)
    }

    /// `postgres://user@host:port/db`, without the password.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// This node's name in leases.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    async fn migrate(&self) -> Result<()> {
        let describe = self.inner.describe.clone();
        self.run(move |pool| async move {
            let mut obj = pool.get().await.map_err(pool_err)?;
            let client: &mut tokio_postgres::Client = &mut obj;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
                .await
                .map_err(err)?;
            let migrated = refinery::Runner::new(&migrations())
                .set_grouped(true)
                .set_migration_table_name(HISTORY_TABLE)
                .run_async(client)
                .await;
            let unlocked = client
                .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE])
                .await;
            migrated.map_err(|e| {
                AssessStateError::Backend(format!(
                    "migrating the assessor's state in {describe}: {e}"
                ))
            })?;
            unlocked.map_err(err)?;
            Ok(())
        })
        .await
    }

    /// A task on the store's runtime (it ends with the store) renewing
    /// this node's leases.
    async fn spawn_renewal(&self, every: Duration) -> Result<()> {
        let (node, lease) = (self.inner.node.clone(), self.inner.lease_ms);
        let stopped = self.inner.stopped.clone();
        self.run(move |pool| async move {
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = renew(&pool, &node, lease).await {
                        tracing::warn!(error = %e, "cannot renew this node's assessment leases");
                    }
                }
            });
            Ok(())
        })
        .await
    }

    /// Renew every lease this node holds (the background task does this
    /// on its own); returns how many.
    pub async fn renew_leases(&self) -> Result<u64> {
        let (node, lease) = (self.inner.node.clone(), self.inner.lease_ms);
        self.run(move |pool| async move { renew(&pool, &node, lease).await })
            .await
    }

    /// Give back a job this node holds without finishing it: it is queued
    /// again at once (its attempt stays counted). False when this node
    /// does not hold it.
    pub async fn release_lease(&self, digest: &str) -> Result<bool> {
        let p: Params = vec![
            Box::new(digest.to_owned()),
            Box::new(self.inner.node.clone()),
        ];
        self.write(Verdicts::Move, move |t| {
            Box::pin(async move {
                let n = exec(
                    t,
                    "UPDATE assess_images SET status = 'queued', lease_owner = NULL, lease_until = NULL
                     WHERE digest = $1 AND lease_owner = $2 AND status IN ('cataloging', 'matching')",
                    &borrowed(&p),
                )
                .await?;
                Ok((n > 0, n))
            })
        })
        .await
    }

    /// Run `f` with the pool on the store's runtime.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        // The store's error (shutting down) outside, ours inside.
        self.inner
            .pg
            .run(move |pool| {
                let fut = f(pool);
                async move { Ok(fut.await) }
            })
            .await?
    }

    /// Rows a read returns, on a pooled connection.
    async fn read(&self, sql: impl Into<String>, p: Params) -> Result<Vec<Row>> {
        let sql = sql.into();
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            query(&c, &sql, &borrowed(&p)).await
        })
        .await
    }

    /// The one row a read returns, if any.
    async fn read_opt(&self, sql: impl Into<String>, p: Params) -> Result<Option<Row>> {
        let sql = sql.into();
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            query_opt(&c, &sql, &borrowed(&p)).await
        })
        .await
    }

    /// Run `f` in one transaction, committed when it succeeds; then, if it
    /// changed a row, move the counters on (after the commit, so a node
    /// that sees the new value reads the new rows).
    async fn write<T, F>(&self, verdicts: Verdicts, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t Transaction<'t>) -> BoxFuture<'t, Written<T>> + Send + 'static,
    {
        let (out, moved) = self
            .run(move |pool| async move {
                let mut c = pool.get().await.map_err(pool_err)?;
                let t = c.transaction().await.map_err(err)?;
                let (out, changed) = f(&t).await?;
                t.commit().await.map_err(err)?;
                let moved = if changed > 0 {
                    Some(bump(&c, verdicts).await?)
                } else {
                    None
                };
                Ok((out, moved))
            })
            .await?;
        if let Some((g, v)) = moved {
            self.inner
                .counters
                .generation
                .fetch_max(g, Ordering::AcqRel);
            if let Some(v) = v {
                self.inner.counters.verdicts.fetch_max(v, Ordering::AcqRel);
            }
        }
        Ok(out)
    }

    /// Both counters, read again from the database when the last read is
    /// older than the ttl.
    async fn counters(&self) -> Result<(u64, u64)> {
        let c = &self.inner.counters;
        let fresh = c
            .read_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < self.inner.ttl);
        if !fresh {
            let started = Instant::now();
            let row = self
                .read_opt(
                    "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM assess_generation),
                            (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM assess_verdicts)",
                    vec![],
                )
                .await?
                .ok_or_else(|| AssessStateError::Backend("no change counters".into()))?;
            let (g, v): (i64, i64) = (state::col(&row, 0)?, state::col(&row, 1)?);
            c.generation.fetch_max(g as u64, Ordering::AcqRel);
            c.verdicts.fetch_max(v as u64, Ordering::AcqRel);
            // Stamped with when the read began: a write committed during
            // it may be missing, so the next ttl counts from before.
            *c.read_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
        }
        Ok((
            c.generation.load(Ordering::Acquire),
            c.verdicts.load(Ordering::Acquire),
        ))
    }
}

/// Move the counters on after a committed write; their new values.
async fn bump<C: GenericClient>(c: &C, verdicts: Verdicts) -> Result<(u64, Option<u64>)> {
    let row = match verdicts {
        Verdicts::Move => {
            query(
                c,
                "SELECT nextval('assess_generation'), nextval('assess_verdicts')",
                &[],
            )
            .await?
        }
        Verdicts::Keep => query(c, "SELECT nextval('assess_generation'), 0::bigint", &[]).await?,
    };
    let row = row
        .first()
        .ok_or_else(|| AssessStateError::Backend("nextval returned no row".into()))?;
    let (g, v): (i64, i64) = (state::col(row, 0)?, state::col(row, 1)?);
    Ok((g as u64, (verdicts == Verdicts::Move).then_some(v as u64)))
}

/// Extend the leases `node` holds to `lease_ms` from now; how many.
async fn renew(pool: &Pool, node: &str, lease_ms: i64) -> Result<u64> {
    let c = pool.get().await.map_err(pool_err)?;
    exec(
        &c,
        &format!(
            "UPDATE assess_images SET lease_until = {DB_NOW_MS} + $2
             WHERE lease_owner = $1 AND status IN ('cataloging', 'matching')"
        ),
        &[&node, &lease_ms],
    )
    .await
}
