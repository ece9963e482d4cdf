//! Distributes vulnerability database builds between nodes through the
//! storage layer, so that the database is built once and every node runs
//! the same build.
//!
//! - **Publish** ([`DbSync::publish`], by the node that leads
//!   [`storage::Duty::VulndbUpdate`]): when the local current build
//!   (`<data>/vulndb/CURRENT`, from this node's scheduled update or a
//!   `drydock db import/update` run into its data directory) is newer
//!   than the newest published one, it is packed as a tar stream
//!   ([`vulndb::dist::pack`]) into an anonymous temporary file while
//!   hashed, written through the blob driver under that digest (verified
//!   again as it streams), and recorded as a [`storage::Release`]. The
//!   blob and the row are written under the shared GC lock, as a blob
//!   commit is, and GC keeps every recorded release's blob. The newest
//!   [`KEEP_RELEASES`] are kept.
//! - **Fetch** ([`DbSync::fetch`], every node, every poll): when the newest
//!   release is newer than the local current build, its blob is streamed
//!   from the driver and unpacked beside the current build
//!   (`<version>.partial`) while its SHA-256 is computed; only when the
//!   whole stream hashes to the release's digest is the build renamed
//!   into place and `CURRENT` replaced, and the [`vulndb::Handle`] told.
//!   A damaged or cut download is removed and the node keeps its build.
//! - [`DbSync::run`] is the loop `drydock serve` runs: fetch; and while
//!   this node leads, build when due (a [`Build`] the binary hands in)
//!   and publish.
//!
//! On one node with SQLite and the filesystem this is harmless: the node
//! leads, publishes its build into its own blob store and finds nothing
//! newer to fetch. No HTTP here: the bytes move through the blob driver.

use futures::future::BoxFuture;
use oci::{Algorithm, Digest, Digester};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::{
    BlobError, BlobStorage, Leadership, MetaError, MetadataStorage, Release, Releases,
    StorageError, Store,
};

/// Releases kept in the store (their blobs are kept from GC).
pub const KEEP_RELEASES: usize = 3;

/// After a release was refused (its bytes did not verify, or its blob is
/// missing), how long a node waits before it tries it again.
const REFUSED_RETRY: Duration = Duration::from_secs(300);

/// After a failed scheduled build, the longest wait before the next try.
const BUILD_RETRY: Duration = Duration::from_secs(3600);

/// Why publishing or fetching a build failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("blob storage: {0}")]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] vulndb::Error),
    #[error("vulnerability database build: {0}")]
    Io(#[from] std::io::Error),
    /// The release's bytes are not what was published: refused.
    #[error(
        "vulnerability database release {version}: the stored bytes hash to {got} ({size} bytes), \
         not {expected}; refused, the current build stays in use"
    )]
    Damaged {
        version: String,
        expected: Digest,
        got: Digest,
        size: u64,
    },
}

/// A scheduled local build, run by the leader only.
pub struct Build {
    /// How old the local build may get before the next one.
    pub every: Duration,
    /// Build a new version into the data directory; its version.
    #[allow(clippy::type_complexity)]
    pub run: Box<
        dyn FnMut() -> BoxFuture<'static, Result<String, Box<dyn std::error::Error + Send + Sync>>>
            + Send,
    >,
}

/// One node's side of the distribution: its data directory, the blob and
/// metadata stores every node shares, and the handle serving its builds.
pub struct DbSync {
    data_dir: PathBuf,
    store: Arc<Store>,
    releases: Arc<dyn Releases>,
    handle: Option<vulndb::Handle>,
    refused: Mutex<Option<(String, Instant)>>,
}

impl DbSync {
    /// Over stores already open.
    pub fn new(data_dir: &Path, store: Arc<Store>, releases: Arc<dyn Releases>) -> DbSync {
        DbSync {
            data_dir: data_dir.to_path_buf(),
            store,
            releases,
            handle: None,
            refused: Mutex::new(None),
        }
    }

    /// Open the stores the configuration names (another handle on each).
    pub fn open(
        data_dir: &Path,
        blobs: &BlobStorage,
        metadata: &MetadataStorage,
    ) -> Result<DbSync, Error> {
        let store = Arc::new(Store::open(data_dir, blobs, metadata)?);
        let releases = storage::open_releases(data_dir, metadata)?;
        Ok(DbSync::new(data_dir, store, releases))
    }

    /// Tell `handle` of every build installed, so it loads it at once.
    pub fn with_handle(mut self, handle: vulndb::Handle) -> DbSync {
        self.handle = Some(handle);
        self
    }

    /// The store's leadership of the database update duty.
    pub fn lead(&self, retry: Duration) -> Leadership {
        self.store.meta.lead(storage::Duty::VulndbUpdate, retry)
    }

    /// Publish the local current build if it is newer than the newest
    /// release; the release written, if any. Call it only while leading
    /// the duty (two leaders for a moment publish the same bytes, or
    /// two builds of which the newer wins).
    pub async fn publish(&self) -> Result<Option<Release>, Error> {
        let Some(local) = vulndb::dist::current_version(&self.data_dir)? else {
            return Ok(None);
        };
        if let Some(newest) = self.releases.newest_release().await?
            && newest.version >= local
        {
            return Ok(None);
        }
        let status = vulndb::dist::build_status(&self.data_dir, &local)?;
        // Packed once to a file to learn the digest the driver verifies
        // against: memory stays flat whatever the build's size.
        let (dir, version) = (self.data_dir.clone(), local.clone());
        let (file, digest, size) =
            tokio::task::spawn_blocking(move || pack_to_file(&dir, &version))
                .await
                .map_err(std::io::Error::other)??;
        let mut writer = self.store.blobs.put(&digest).await?;
        let body =
            tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 20);
        let (_, appended) = writer.append(Box::pin(body), None).await;
        appended?;
        // As a blob commit does: from the blob made visible to the row
        // that keeps it, under the GC lock shared, so no sweep between.
        let store = self.store.clone();
        let _lock = tokio::task::spawn_blocking(move || store.gc_lock_shared())
            .await
            .map_err(std::io::Error::other)??;
        writer.commit(&digest).await?;
        let release = Release {
            version: local,
            digest,
            size,
            built_at: status.built_at,
            published_at: now_nanos(),
        };
        let new = self.releases.publish_release(release.clone()).await?;
        drop(_lock);
        if new {
            tracing::info!(
                version = %release.version,
                digest = %release.digest,
                size = release.size,
                "vulnerability database published"
            );
        }
        for gone in self.releases.prune_releases(KEEP_RELEASES).await? {
            tracing::info!(version = %gone.version, "vulnerability database release retired");
        }
        Ok(new.then_some(release))
    }

    /// Fetch and install the newest release if it is newer than the local
    /// current build; its version, if one was installed.
    pub async fn fetch(&self) -> Result<Option<String>, Error> {
        let Some(newest) = self.releases.newest_release().await? else {
            return Ok(None);
        };
        if let Some(local) = vulndb::dist::current_version(&self.data_dir)?
            && local >= newest.version
        {
            return Ok(None);
        }
        {
            let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, at)) = &*refused
                && *v == newest.version
                && at.elapsed() < REFUSED_RETRY
            {
                return Ok(None);
            }
        }
        let (store, dir, release) = (self.store.clone(), self.data_dir.clone(), newest.clone());
        let got = tokio::task::spawn_blocking(move || receive(&store, &dir, &release))
            .await
            .map_err(std::io::Error::other)?;
        if let Err(
            e @ (Error::Damaged { .. }
            | Error::Db(vulndb::Error::Corrupt(_))
            | Error::Blob(BlobError::NotFound)),
        ) = &got
        {
            *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((newest.version.clone(), Instant::now()));
            tracing::warn!(version = %newest.version, error = %e, "vulnerability database release refused");
        }
        got?;
        tracing::info!(version = %newest.version, "vulnerability database fetched");
        if let Some(h) = self.handle.clone() {
            // Loaded now rather than at the handle's next poll.
            let _ = tokio::task::spawn_blocking(move || h.reload()).await;
        }
        Ok(Some(newest.version))
    }

    /// Keep this node's database in step with the cluster's, for good:
    /// every `poll` fetch what is newer; while `lead` says this node leads
    /// the update, build when `build` is due (none: never) and publish.
    pub async fn run(self, mut lead: Leadership, poll: Duration, mut build: Option<Build>) {
        let mut leading = false;
        let mut next_build: Option<Instant> = None;
        loop {
            if let Err(e) = self.fetch().await {
                tracing::warn!(error = %e, "cannot fetch the vulnerability database");
            }
            if lead.is_leader() != leading {
                leading = !leading;
                next_build = None;
                if leading {
                    tracing::info!(
                        duty = "vulndb_update",
                        "this node leads: it builds and publishes the vulnerability database"
                    );
                } else {
                    tracing::info!(
                        duty = "vulndb_update",
                        "this node no longer leads the vulnerability database update"
                    );
                }
            }
            if leading {
                if let Some(b) = build.as_mut() {
                    let due = *next_build
                        .get_or_insert_with(|| Instant::now() + self.wait_for_build(b.every));
                    if Instant::now() >= due {
                        tracing::info!("updating the vulnerability database");
                        let wait = match (b.run)().await {
                            Ok(version) => {
                                tracing::info!(%version, "vulnerability database updated");
                                b.every
                            }
                            Err(e) => {
                                let retry = BUILD_RETRY.min(b.every);
                                tracing::warn!(
                                    error = %e,
                                    retry_secs = retry.as_secs(),
                                    "vulnerability database update failed; any current build stays in use"
                                );
                                retry
                            }
                        };
                        next_build = Some(Instant::now() + wait);
                    }
                }
                if let Err(e) = self.publish().await {
                    tracing::warn!(error = %e, "cannot publish the vulnerability database");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = lead.changed() => {}
            }
        }
    }

    /// How long until the local build is `every` old (none: now).
    fn wait_for_build(&self, every: Duration) -> Duration {
        let Ok(Some(v)) = vulndb::dist::current_version(&self.data_dir) else {
            return Duration::ZERO;
        };
        let Ok(status) = vulndb::dist::build_status(&self.data_dir, &v) else {
            return Duration::ZERO;
        };
        let Ok(built) = time::OffsetDateTime::parse(
            &status.built_at,
            &time::format_description::well_known::Rfc3339,
        ) else {
            return Duration::ZERO;
        };
        let age: Duration = (time::OffsetDateTime::now_utc() - built)
            .try_into()
            .unwrap_or(Duration::ZERO);
        every.saturating_sub(age)
    }
}

fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// Hashes and counts what passes through.
struct Hashing<T> {
    inner: T,
    digester: Digester,
    size: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            digester: Digester::new(Algorithm::Sha256),
            size: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Pack `version` into an anonymous temporary file beside the builds;
/// the file (rewound), its digest and size.
fn pack_to_file(data_dir: &Path, version: &str) -> Result<(std::fs::File, Digest, u64), Error> {
    let mut file = tempfile::tempfile_in(data_dir.join("vulndb"))?;
    let (digest, size) = {
        let mut w = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, &mut file));
        vulndb::dist::pack(data_dir, version, &mut w)?;
        w.flush()?;
        (w.digester.finish(), w.size)
    };
    file.rewind()?;
    Ok((file, digest, size))
}

/// Stream `release`'s blob into a build beside the current one, verify
/// the whole stream's digest, and only then install it. Blocking.
fn receive(store: &Store, data_dir: &Path, release: &Release) -> Result<(), Error> {
    let reader = store.blobs.open_sync(&release.digest, 0)?;
    let mut input = Hashing::new(std::io::BufReader::with_capacity(1 << 20, reader));
    // A stream damaged where the tar structure is shows here; a damage
    // inside a file's bytes shows only in the digest below.
    let incoming = vulndb::dist::receive(data_dir, &release.version, &mut input);
    // What follows the archive (its end blocks, padding) counts too.
    std::io::copy(&mut input, &mut std::io::sink())?;
    let got = input.digester.finish();
    if got != release.digest || input.size != release.size {
        // `incoming` is dropped unused: the partial build goes.
        return Err(Error::Damaged {
            version: release.version.clone(),
            expected: release.digest.clone(),
            got,
            size: input.size,
        });
    }
    incoming?.install()?;
    Ok(())
}
