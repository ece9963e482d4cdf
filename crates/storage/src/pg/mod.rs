//! PostgreSQL backends of the metadata and access stores
//! (`tokio-postgres` with a `deadpool-postgres` pool; queries written by
//! hand, as for SQLite, so no database is needed at compile time).
//!
//! Each store runs its queries on its own small Tokio runtime (as the S3
//! driver does), so it may be called from any runtime, from a plain
//! thread through [`crate::block_on`], or from a current-thread test
//! runtime that is blocked in a synchronous caller, without stalling the
//! connection tasks. Schema migrations run at connect under a session
//! advisory lock, so nodes starting together migrate once.

pub(crate) mod access;
pub(crate) mod meta;
pub(crate) mod releases;
pub(crate) mod uploads;

pub use access::PgAccess;
pub use meta::PgMeta;

use crate::MetaError;
use crate::meta::{ClusterLock, Duty, Leadership, MetaLock};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Advisory lock keys (one namespace for drydock: "dd" in the high bits).
pub(crate) const LOCK_MIGRATE: i64 = 0x6464_0001;
/// Held shared by manifest pushes and blob links, exclusively by GC's
/// mark-and-sweep: the PostgreSQL form of SQLite's single write lock.
pub(crate) const LOCK_GC: i64 = 0x6464_0002;

/// [`ClusterLock::GcShared`] / [`ClusterLock::GcExclusive`]: session
/// locks held across a blob commit (shared) or a whole GC (exclusive),
/// blob writes and deletions included. A key of its own: a GC holding it
/// takes [`LOCK_GC`] in its mark-and-sweep transaction on another
/// connection.
pub(crate) const LOCK_SWEEP: i64 = 0x6464_0003;
/// [`ClusterLock::Upload`]: the first of two `int4` keys (the second is
/// folded from the session id). Two-key locks never conflict with
/// one-key ones; two sessions that fold alike merely take turns.
const LOCK_UPLOAD: i32 = 0x6464_0004;
/// [`Duty`] leadership: the first of two `int4` keys, the duty's number
/// the second.
const LOCK_LEAD: i32 = 0x6464_0005;

/// Connections per store.
const POOL_SIZE: usize = 16;
/// Connections holding GC locks, per store: a pool of their own, so
/// commits waiting for a lock never starve the queries they go on to make.
const GC_LOCK_POOL_SIZE: usize = 8;
/// Connections holding upload session locks, per store: one per upload
/// request in flight (it holds the lock while its body streams), so this
/// many chunks stream at once on a node and more wait their turn. Apart
/// from the GC locks', so a blob commit never waits behind a stream.
const UPLOAD_LOCK_POOL_SIZE: usize = 24;

/// How a connection to PostgreSQL is protected: the URL's `sslmode`,
/// as libpq reads it (the default is `prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgTlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not
    /// checked (as libpq does): protects against listeners, not against
    /// an impostor.
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS with the certificate checked against the roots
    /// (`sslrootcert=FILE`, else the bundled public roots) and the host
    /// name the URL gives.
    VerifyFull,
}

/// How to reach PostgreSQL. The URL's password never appears in `Debug`,
/// [`PgConfig::describe`] or any error.
#[derive(Clone)]
pub struct PgConfig {
    config: tokio_postgres::Config,
    tls: PgTlsMode,
    /// `sslrootcert`: PEM roots for `verify-full`.
    root_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PgConfig {
    /// Parse a `postgres://user:password@host:port/db?options` URL.
    /// `sslmode` (`disable`, `prefer`, `require`, `verify-full`) and
    /// `sslrootcert` are read here; the driver takes the rest.
    pub fn new(url: &str) -> Result<PgConfig, MetaError> {
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, q),
            None => (url, ""),
        };
        let mut tls = PgTlsMode::Prefer;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => {
                    tls = match v {
                        "disable" => PgTlsMode::Disable,
                        "prefer" | "allow" => PgTlsMode::Prefer,
                        "require" => PgTlsMode::Require,
                        "verify-full" => PgTlsMode::VerifyFull,
                        // Checking the chain without the name is a
                        // half-measure drydock does not offer.
                        "verify-ca" => {
                            return Err(MetaError::Backend(
                                "metadata.url: sslmode=verify-ca is not supported; use \
                                 verify-full (the certificate must name the host)"
                                    .into(),
                            ));
                        }
                        _ => {
                            return Err(MetaError::Backend(
                                "metadata.url: sslmode must be disable, prefer, require or \
                                 verify-full"
                                    .into(),
                            ));
                        }
                    }
                }
                Some(("sslrootcert", v)) => root_cert = Some(std::path::PathBuf::from(v)),
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        // The parser's message may quote the URL: say only what it is.
        let mut config = tokio_postgres::Config::from_str(&url).map_err(|_| {
            MetaError::Backend("metadata.url is not a valid postgres:// URL".into())
        })?;
        config.ssl_mode(match tls {
            PgTlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            PgTlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            PgTlsMode::Require | PgTlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        Ok(PgConfig {
            config,
            tls,
            root_cert,
        })
    }

    /// The TLS mode the URL asked for.
    pub fn tls_mode(&self) -> PgTlsMode {
        self.tls
    }

    /// `postgres://user@host:port/db`, without the password.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let host = c
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let tls = match self.tls {
            PgTlsMode::Disable => "",
            PgTlsMode::Prefer => "",
            PgTlsMode::Require => "?sslmode=require",
            PgTlsMode::VerifyFull => "?sslmode=verify-full",
        };
        format!(
            "postgres://{}@{host}:{port}/{}{tls}",
            c.get_user().unwrap_or(""),
            c.get_dbname().unwrap_or("")
        )
    }

    /// The TLS connector for this mode (rustls, ring).
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, MetaError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| MetaError::Backend(format!("PostgreSQL TLS: {e}")))?;
        let config = match self.tls {
            PgTlsMode::VerifyFull => {
                let mut roots = rustls::RootCertStore::empty();
                match &self.root_cert {
                    Some(path) => {
                        let bad = |e: &dyn std::fmt::Display| {
                            MetaError::Backend(format!(
                                "metadata.url: sslrootcert {}: {e}",
                                path.display()
                            ))
                        };
                        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                        }
                        if roots.is_empty() {
                            return Err(bad(&"no certificate in the file"));
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

/// `prefer` and `require`: encrypted, the certificate taken as offered
/// (libpq's meaning of those modes). Signatures are still checked, so
/// the handshake itself is sound.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Map a PostgreSQL error onto the store's error kinds. Only the
/// server's message and code are kept: its DETAIL may quote row values.
pub(crate) fn err(e: tokio_postgres::Error) -> MetaError {
    if let Some(db) = e.as_db_error() {
        let msg = format!("{} ({})", db.message(), db.code().code());
        let code = db.code();
        return if *code == SqlState::DISK_FULL
            || *code == SqlState::INSUFFICIENT_RESOURCES
            || *code == SqlState::PROGRAM_LIMIT_EXCEEDED
        {
            MetaError::StorageFull(msg)
        } else if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
        {
            MetaError::Conflict(msg)
        } else if code.code().starts_with("08")
            || code.code().starts_with("57")
            || *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            MetaError::Unavailable(msg)
        } else {
            MetaError::Backend(msg)
        };
    }
    // The causes say what went wrong (a refused connection, an untrusted
    // certificate); none carries the URL or its password.
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        msg.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if e.is_closed() {
        return MetaError::Unavailable(msg);
    }
    MetaError::Backend(msg)
}

fn pool_err(e: deadpool_postgres::PoolError) -> MetaError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match err(e) {
            MetaError::Backend(m) => MetaError::Unavailable(m),
            other => other,
        },
        e => MetaError::Unavailable(e.to_string()),
    }
}

fn migrations() -> Vec<refinery::Migration> {
    [
        (
            "V1__registry",
            include_str!("../../migrations/postgres/V1__registry.sql"),
        ),
        (
            "V2__access",
            include_str!("../../migrations/postgres/V2__access.sql"),
        ),
        (
            "V3__import_jobs",
            include_str!("../../migrations/postgres/V3__import_jobs.sql"),
        ),
        (
            "V4__upload_sessions",
            include_str!("../../migrations/postgres/V4__upload_sessions.sql"),
        ),
        (
            "V5__vulndb_releases",
            include_str!("../../migrations/postgres/V5__vulndb_releases.sql"),
        ),
    ]
    .into_iter()
    .map(|(name, sql)| refinery::Migration::unapplied(name, sql).expect("migration names"))
    .collect()
}

/// A pool on a runtime of its own.
pub(crate) struct Pg {
    pool: Pool,
    /// Dedicated connections for GC's session-level advisory locks.
    gc_locks: Pool,
    /// Dedicated connections for upload sessions' advisory locks.
    upload_locks: Pool,
    describe: String,
    /// For connections of their own (leadership).
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    rt: Option<Runtime>,
    handle: Handle,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.pool.close();
        self.gc_locks.close();
        self.upload_locks.close();
        // Dropping a runtime inside another one panics; this does not wait.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Pg {
    /// Connect, check the server answers, and migrate the schema.
    pub(crate) fn connect(cfg: &PgConfig) -> Result<Pg, MetaError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drydock-pg")
            .enable_all()
            .build()
            .map_err(|e| MetaError::Backend(format!("starting the PostgreSQL runtime: {e}")))?;
        let tls = cfg.connector()?;
        let pool = |size, wait| {
            let mgr = Manager::from_config(
                cfg.config.clone(),
                tls.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(mgr)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(wait)
                .create_timeout(Some(std::time::Duration::from_secs(10)))
                .build()
                .map_err(|e| MetaError::Backend(format!("PostgreSQL pool: {e}")))
        };
        // A lock may rightly be waited for as long as a GC runs, so the
        // lock pool's queue has no time limit (as `gc.lock` had none).
        let (gc_locks, upload_locks, pool) = (
            pool(GC_LOCK_POOL_SIZE, None)?,
            pool(UPLOAD_LOCK_POOL_SIZE, None)?,
            pool(POOL_SIZE, Some(std::time::Duration::from_secs(30)))?,
        );
        let pg = Pg {
            pool,
            gc_locks,
            upload_locks,
            describe: cfg.describe(),
            config: cfg.config.clone(),
            tls,
            handle: rt.handle().clone(),
            rt: Some(rt),
        };
        let describe = pg.describe.clone();
        crate::block_on(pg.run(move |pool| async move {
            let mut obj = pool.get().await.map_err(pool_err)?;
            let client: &mut tokio_postgres::Client = &mut obj;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&LOCK_MIGRATE])
                .await
                .map_err(err)?;
            let migrated = refinery::Runner::new(&migrations())
                .set_grouped(true)
                .set_migration_table_name(crate::sqlite::HISTORY_TABLE)
                .run_async(client)
                .await;
            let unlocked = client
                .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_MIGRATE])
                .await;
            migrated.map_err(|e| MetaError::Backend(format!("migrating {describe}: {e}")))?;
            unlocked.map_err(err)?;
            Ok(())
        }))?;
        Ok(pg)
    }

    /// Run `f` with the pool on the store's runtime.
    pub(crate) async fn run<T, F, Fut>(&self, f: F) -> Result<T, MetaError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, MetaError>> + Send + 'static,
    {
        let h = self.handle.spawn(f(self.pool.clone()));
        match h.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(MetaError::Unavailable(format!("store shutting down: {e}"))),
        }
    }
}

/// A statement's parameters, owned: they travel to the store's runtime
/// with it (see [`params!`]).
pub(crate) type Params = Vec<Box<dyn ToSql + Send + Sync>>;

/// [`Params`] from values: `params![repo, digest.to_string(), at]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        vec![$(Box::new($p) as Box<dyn tokio_postgres::types::ToSql + Send + Sync>),*]
    };
}
pub(crate) use params;

/// The borrowed form `tokio-postgres` takes.
pub(crate) fn borrowed(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

// One statement on a pooled connection, outside any transaction, or a
// transaction.
impl Pg {
    /// The rows `sql` returns.
    pub(crate) async fn query(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Params,
    ) -> Result<Vec<Row>, MetaError> {
        let sql = sql.into();
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            Db(&c).query(&sql, &borrowed(&params)).await
        })
        .await
    }

    /// The one row `sql` returns, if any (more than one is an error).
    pub(crate) async fn query_opt(
        &self,
        sql: impl Into<Cow<'static, str>>,
        params: Params,
    ) -> Result<Option<Row>, MetaError> {
        let sql = sql.into();
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            Db(&c).query_opt(&sql, &borrowed(&params)).await
        })
        .await
    }

    /// The one row `sql` returns (none, or more than one, is an error).
    pub(crate) async fn query_one(
        &self,
        sql: &'static str,
        params: Params,
    ) -> Result<Row, MetaError> {
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            Db(&c).query_one(sql, &borrowed(&params)).await
        })
        .await
    }

    /// Run `sql`; the number of rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &'static str,
        params: Params,
    ) -> Result<u64, MetaError> {
        self.run(move |pool| async move {
            let c = pool.get().await.map_err(pool_err)?;
            Db(&c).execute(sql, &borrowed(&params)).await
        })
        .await
    }

    /// Run `f` in one transaction, committed when it returns `Ok` and
    /// rolled back otherwise. Written `pg.tx(move |t| Box::pin(async move
    /// { .. }))`: the boxed future may borrow the transaction.
    pub(crate) async fn tx<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<MetaError> + Send + 'static,
        F: for<'t> FnOnce(&'t Tx<'t>) -> BoxFuture<'t, Result<T, E>> + Send + 'static,
    {
        self.run(move |pool| async move {
            let mut c = pool.get().await.map_err(pool_err)?;
            let t = c.transaction().await.map_err(err)?;
            let out = f(&Db(&t)).await;
            if out.is_ok() {
                t.commit().await.map_err(err)?;
            }
            Ok(out)
        })
        .await
        .unwrap_or_else(|e| Err(e.into()))
    }
}

/// Statements on a pooled connection or in a transaction ([`Tx`]), their
/// errors already the store's. Each is prepared once per connection
/// (`prepare_cached`), so a repeated one costs a single round trip.
pub(crate) struct Db<'a, C>(&'a C);

/// An open transaction of [`Pg::tx`].
pub(crate) type Tx<'a> = Db<'a, deadpool_postgres::Transaction<'a>>;

impl<C: GenericClient> Db<'_, C> {
    /// The rows `sql` returns.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, MetaError> {
        let st = self.0.prepare_cached(sql).await.map_err(err)?;
        self.0.query(&st, params).await.map_err(err)
    }

    /// The one row `sql` returns, if any (more than one is an error).
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, MetaError> {
        let st = self.0.prepare_cached(sql).await.map_err(err)?;
        self.0.query_opt(&st, params).await.map_err(err)
    }

    /// The one row `sql` returns (none, or more than one, is an error).
    pub(crate) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, MetaError> {
        let st = self.0.prepare_cached(sql).await.map_err(err)?;
        self.0.query_one(&st, params).await.map_err(err)
    }

    /// Run `sql`; the number of rows it changed.
    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, MetaError> {
        let st = self.0.prepare_cached(sql).await.map_err(err)?;
        self.0.execute(&st, params).await.map_err(err)
    }
}

impl Pg {
    /// Take a session-level advisory lock on a connection of the lock
    /// pool and keep that connection until the lock is dropped. Made and
    /// released on the store's runtime: if the caller goes away while it
    /// waits, the lock, once granted, is released at once.
    pub(crate) async fn cluster_lock(&self, lock: ClusterLock) -> Result<MetaLock, MetaError> {
        self.advisory(lock, false).await
    }

    /// [`Pg::cluster_lock`] if it is free now, else `Conflict`.
    pub(crate) async fn try_cluster_lock(&self, lock: ClusterLock) -> Result<MetaLock, MetaError> {
        self.advisory(lock, true).await
    }

    async fn advisory(&self, lock: ClusterLock, try_only: bool) -> Result<MetaLock, MetaError> {
        let locks = match lock {
            ClusterLock::Upload(_) => self.upload_locks.clone(),
            _ => self.gc_locks.clone(),
        };
        let handle = self.handle.clone();
        let h = self.handle.spawn(async move {
            let obj = locks.get().await.map_err(pool_err)?;
            let f = if try_only {
                "pg_try_advisory"
            } else {
                "pg_advisory"
            };
            let row = match lock {
                ClusterLock::GcShared => {
                    let sql = format!("SELECT {f}_lock_shared($1)::text");
                    obj.query_one(&sql, &[&LOCK_SWEEP]).await
                }
                ClusterLock::GcExclusive => {
                    let sql = format!("SELECT {f}_lock($1)::text");
                    obj.query_one(&sql, &[&LOCK_SWEEP]).await
                }
                ClusterLock::Upload(id) => {
                    let key = upload_key(&id);
                    let sql = format!("SELECT {f}_lock($1, $2)::text");
                    obj.query_one(&sql, &[&LOCK_UPLOAD, &key]).await
                }
            }
            .map_err(err)?;
            // `pg_advisory_lock` returns void (''), the try form a boolean.
            if try_only && col::<String>(&row, 0)? != "true" {
                return Err(MetaError::Conflict(
                    "the lock is held by another request".into(),
                ));
            }
            Ok(MetaLock::new(move || {
                handle.spawn(async move {
                    // The connection goes back to the pool only once it
                    // holds nothing; one that cannot say so is closed,
                    // which releases its locks too.
                    if obj
                        .batch_execute("SELECT pg_advisory_unlock_all()")
                        .await
                        .is_err()
                    {
                        drop(deadpool_postgres::Object::take(obj));
                    }
                });
            }))
        });
        match h.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(MetaError::Unavailable(format!("store shutting down: {e}"))),
        }
    }

    /// Stand for `duty`'s lead: a task on the store's runtime tries the
    /// duty's advisory lock on a connection of its own every `retry`;
    /// once it holds it, it checks that connection as often and reports
    /// the lead lost when the check fails (the server then dropped the
    /// lock with the session). It ends, closing its connection and so
    /// giving the lead up, when the [`Leadership`] is dropped.
    pub(crate) fn lead(&self, duty: Duty, retry: std::time::Duration) -> Leadership {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (config, tls, describe) =
            (self.config.clone(), self.tls.clone(), self.describe.clone());
        let retry = retry.max(std::time::Duration::from_millis(50));
        self.handle.spawn(async move {
            loop {
                match try_lead(&config, tls.clone(), duty).await {
                    Ok(Some((client, conn))) => {
                        tracing::info!(duty = duty.name(), store = %describe, "this node leads");
                        let _ = tx.send(true);
                        let ended = tokio::select! {
                            _ = tx.closed() => true,
                            _ = hold(&client, retry) => false,
                        };
                        drop(client);
                        conn.abort();
                        if ended {
                            return;
                        }
                        tracing::warn!(duty = duty.name(), "lost the lead (its connection failed)");
                        let _ = tx.send(false);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(duty = duty.name(), error = %e, "cannot stand for the lead")
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        });
        Leadership::watching(duty, rx)
    }
}

/// A connection of its own holding `duty`'s lock, with its driver task;
/// `None` when another session holds it.
async fn try_lead(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    duty: Duty,
) -> Result<Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>, MetaError> {
    let (client, conn) = config.connect(tls).await.map_err(err)?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&LOCK_LEAD, &duty.key()],
        )
        .await
        .map_err(err)?;
    if col::<bool>(&row, 0)? {
        Ok(Some((client, conn)))
    } else {
        conn.abort();
        Ok(None)
    }
}

/// Returns when the leader's connection no longer answers.
async fn hold(client: &tokio_postgres::Client, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        // A check that hangs (a peer gone without a reset) counts as lost.
        match tokio::time::timeout(
            every.max(std::time::Duration::from_secs(1)),
            client.simple_query("SELECT 1"),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// An upload session's lock key: its id folded to 32 bits.
fn upload_key(id: &uuid::Uuid) -> i32 {
    id.as_bytes()
        .chunks(4)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .fold(0, |a, b| a ^ b)
}

/// A column of the right type, or a typed error (not a panic).
pub(crate) fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    r: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, MetaError> {
    r.try_get(i).map_err(err)
}
