//! Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW,
//! SeaweedFS), through `object_store`.
//!
//! Object layout under the configured prefix:
//!
//! ```text
//! blobs/<alg>/<hex>              committed blobs, named by digest
//! _uploads/<id>/tail.<offset>.<n>  bytes past the last part (under 5 MiB,
//!                                the smallest part S3 accepts but for the
//!                                last); a name of its own for each save, so
//!                                a save that loses its compare-and-swap
//!                                never overwrites the winner's
//! _uploads/<id>/data             the session's multipart upload target
//! ```
//!
//! A session itself (repository, owner, offset, and as the driver's
//! opaque state the sha256 state, multipart upload id, part ETags and
//! tail length) lives in the metadata store ([`UploadSessions`]), handed
//! over with [`S3Blobs::with_sessions`]: every node sees it, and each
//! save is a compare-and-swap on the revision its writer resumed from.
//! A save after the session was cancelled, or after another writer saved
//! a newer revision, fails and changes nothing, so a cancelled session
//! never comes back. (Sessions used to be `_uploads/<id>/info` objects;
//! one in progress across the upgrade is not carried over.)
//!
//! Uploads never hold a whole blob in memory or on local disk: bytes are
//! hashed as they stream and cut into parts of `part_size` bytes, a few of
//! them in flight at once.
//!
//! Where a blob is assembled: a monolithic push knows its digest before
//! its bytes, so its multipart upload targets the content address
//! directly and is completed only when the streamed bytes hashed to that
//! digest (otherwise it is aborted): S3 shows a multipart object only once
//! completed, so nothing unverified is ever visible, and no copy is paid.
//! A chunked session learns its digest only at the final PUT, while S3
//! fixes a multipart upload's key when it starts: it uploads into
//! `_uploads/<id>/data`, and once the digest matches, that object is
//! copied server-side to the content address and removed (CopyObject:
//! S3 caps it at 5 GiB per object). A blob smaller than one part is
//! written with one PUT, after verification, in both cases.
//!
//! The driver runs every request on its own small Tokio runtime, so it
//! can be called from any runtime (or none) and its connections outlive
//! the callers' runtimes.

use crate::blobs::{
    BlobDriver, BlobError, BlobStat, BlobStream, BlobWriter, ByteStream, Committed, PRESIGN_TTL,
};
use crate::hashstate::Sha256State;
use crate::uploads::{UploadCasError, UploadInfo, UploadRecord, UploadSessions};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, PutPayload};
use oci::{Algorithm, Digest, Digester};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The smallest part S3 accepts, but for the last one.
const MIN_PART: usize = 5 << 20;
/// Parts uploaded at once per writer.
const IN_FLIGHT: usize = 3;

/// `[storage.s3]`. Credentials left unset come from the standard
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT`) variables.
#[derive(Clone, Default)]
pub struct S3Config {
    /// `http(s)://host:port`; unset: AWS for the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: Option<String>,
    /// `host/bucket/key` addressing (MinIO, SeaweedFS, Ceph) rather than
    /// `bucket.host/key`.
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Key prefix for everything drydock stores (several registries, or
    /// tests, may share a bucket); empty or ending in `/`.
    pub prefix: String,
    /// Answer blob GETs with a 307 to a presigned URL.
    pub redirect: bool,
    /// Multipart part size in bytes (at least 5 MiB); 0: 8 MiB.
    pub part_size: usize,
}

impl fmt::Debug for S3Config {
    // The secret never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("prefix", &self.prefix)
            .field("redirect", &self.redirect)
            .field("part_size", &self.part_size)
            .finish()
    }
}

/// The S3 driver.
pub struct S3Blobs {
    store: Arc<AmazonS3>,
    cfg: S3Config,
    part_size: usize,
    rt: Option<Runtime>,
    handle: Handle,
    /// Where sessions are kept; without one the driver takes no sessions
    /// (a driver built only to read or list the bucket).
    sessions: Option<Arc<dyn UploadSessions>>,
}

impl Drop for S3Blobs {
    fn drop(&mut self) {
        // Dropping a runtime inside another one panics; this does not wait.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => {
            let s = e.to_string();
            if s.contains("QuotaExceeded") || s.contains("507") || s.contains("InsufficientStorage")
            {
                BlobError::StorageFull(s)
            } else {
                BlobError::Backend(s)
            }
        }
    }
}

/// A session's state as the driver saves it (JSON) beside the offset in
/// the metadata store.
#[derive(Serialize, Deserialize, Clone, Default)]
struct SessionState {
    /// The multipart upload, once its first part was sent.
    multipart: Option<String>,
    /// Part ETags, in order.
    parts: Vec<String>,
    /// [`Sha256State::save`] over the session's offset.
    hash: String,
    /// Bytes in the tail object (the last `tail` bytes of the offset).
    tail: u64,
    /// The tail object's name under `_uploads/<id>/`.
    tail_key: String,
}

impl SessionState {
    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialisable")
    }

    fn decode(rec: &UploadRecord) -> Result<SessionState, BlobError> {
        serde_json::from_slice(&rec.state)
            .map_err(|e| BlobError::Backend(format!("upload session {}: {e}", rec.id)))
    }
}

/// A failed compare-and-swap, as the driver reports it.
fn cas_error(e: UploadCasError) -> BlobError {
    match e {
        UploadCasError::Gone => BlobError::UploadUnknown,
        UploadCasError::Conflict => BlobError::UploadChanged,
        UploadCasError::Store(e) => BlobError::Backend(format!("upload sessions: {e}")),
    }
}

fn store_error(e: crate::MetaError) -> BlobError {
    BlobError::Backend(format!("upload sessions: {e}"))
}

impl S3Blobs {
    /// Build the client (no request is made; see [`BlobDriver::ready`]).
    pub fn new(cfg: S3Config) -> Result<S3Blobs, BlobError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &cfg.region {
            b = b.with_region(r);
        }
        if let Some(k) = &cfg.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &cfg.secret_key {
            b = b.with_secret_access_key(k);
        }
        let http = cfg
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        // No overall timeout: a pull of a large layer to a slow client may
        // take long; a dead peer is caught by the connect timeout and TCP.
        let client = ClientOptions::new()
            .with_allow_http(http)
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10));
        let store = b
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_client_options(client)
            .build()
            .map_err(|e| BlobError::Backend(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("drydock-s3")
            .enable_all()
            .build()
            .map_err(BlobError::Io)?;
        let part_size = if cfg.part_size == 0 {
            8 << 20
        } else {
            cfg.part_size.max(MIN_PART)
        };
        Ok(S3Blobs {
            store: Arc::new(store),
            handle: rt.handle().clone(),
            rt: Some(rt),
            part_size,
            cfg,
            sessions: None,
        })
    }

    /// Keep upload sessions in `sessions` (the metadata store); without
    /// it the driver refuses to start or resume one.
    pub fn with_sessions(mut self, sessions: Arc<dyn UploadSessions>) -> S3Blobs {
        self.sessions = Some(sessions);
        self
    }

    fn sessions(&self) -> Result<&Arc<dyn UploadSessions>, BlobError> {
        self.sessions.as_ref().ok_or_else(|| {
            BlobError::Backend("upload sessions need a metadata store (none was given)".into())
        })
    }

    fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.cfg.prefix))
    }

    fn blob_key(&self, d: &Digest) -> Path {
        self.key(&format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()))
    }

    fn session_key(&self, id: &Uuid, what: &str) -> Path {
        self.key(&format!("_uploads/{id}/{what}"))
    }

    /// Run `f` on the driver's runtime.
    async fn run<T, F>(&self, f: F) -> Result<T, BlobError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, object_store::Error>> + Send + 'static,
    {
        spawn_on(&self.handle, f).await
    }

    async fn get_bytes(&self, path: Path) -> Result<Bytes, BlobError> {
        let store = self.store.clone();
        self.run(async move { store.get(&path).await?.bytes().await })
            .await
    }

    /// Remove what a session stored in the bucket: its multipart upload
    /// and every object under `_uploads/<id>/`. Its row is already gone.
    async fn remove_session_objects(
        &self,
        id: &Uuid,
        multipart: Option<String>,
    ) -> Result<(), BlobError> {
        let store = self.store.clone();
        let data = self.session_key(id, "data");
        let prefix = self.key(&format!("_uploads/{id}"));
        self.run(async move {
            if let Some(m) = &multipart {
                // Already completed or aborted: nothing left to abort.
                let _ = store.abort_multipart(&data, m).await;
            }
            let keys: Vec<_> = store
                .list(Some(&prefix))
                .filter_map(|m| async move { m.ok().map(|m| m.location) })
                .collect()
                .await;
            for k in &keys {
                store.delete(k).await?;
            }
            Ok(())
        })
        .await
    }

    fn writer(&self, target: Target) -> S3Writer {
        S3Writer {
            store: self.store.clone(),
            handle: self.handle.clone(),
            part_size: self.part_size,
            target,
            multipart: None,
            parts: Vec::new(),
            in_flight: VecDeque::new(),
            buf: BytesMut::new(),
            hash: Hash::Resumable(Sha256State::new()),
            offset: 0,
            poisoned: false,
            done: false,
            sessions: self.sessions.clone(),
        }
    }
}

fn spawn_on<T, F>(handle: &Handle, f: F) -> impl Future<Output = Result<T, BlobError>> + use<T, F>
where
    T: Send + 'static,
    F: Future<Output = Result<T, object_store::Error>> + Send + 'static,
{
    let h = handle.spawn(f);
    async move {
        h.await
            .map_err(|e| BlobError::Io(io::Error::other(e)))?
            .map_err(backend)
    }
}

#[async_trait::async_trait]
impl BlobDriver for S3Blobs {
    fn describe(&self) -> String {
        format!(
            "s3 bucket {} at {} (prefix {:?})",
            self.cfg.bucket,
            self.cfg.endpoint.as_deref().unwrap_or("AWS"),
            self.cfg.prefix
        )
    }

    async fn ready(&self) -> Result<(), BlobError> {
        // A listing, not a HEAD: a HEAD's 404 cannot tell a missing bucket
        // from a missing key. An empty answer proves the bucket answers
        // and the credentials are accepted.
        let store = self.store.clone();
        let prefix = self.key("_ready");
        self.run(async move {
            match store.list(Some(&prefix)).next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobStat>, BlobError> {
        self.stat_path(self.blob_key(digest)).await
    }

    async fn read(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BlobStream, BlobError> {
        let store = self.store.clone();
        let path = self.blob_key(digest);
        let range = match len {
            Some(0) => return Ok(Box::pin(futures::stream::empty())),
            Some(l) => Some(GetRange::Bounded(offset..offset + l)),
            None if offset > 0 => Some(GetRange::Offset(offset)),
            None => None,
        };
        let opts = GetOptions {
            range,
            ..Default::default()
        };
        let got = self
            .run(async move { store.get_opts(&path, opts).await })
            .await?;
        // The body is pulled on the driver's runtime and handed over
        // through a small channel: bounded memory, any caller.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
        self.handle.spawn(async move {
            let mut s = got.into_stream();
            while let Some(item) = s.next().await {
                let item = item.map_err(io::Error::other);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        if !self.cfg.redirect {
            return Ok(None);
        }
        let store = self.store.clone();
        let path = self.blob_key(digest);
        let url = self
            .run(async move {
                store
                    .signed_url(http::Method::GET, &path, PRESIGN_TTL)
                    .await
            })
            .await?;
        Ok(Some(url.to_string()))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.blob_key(digest);
        if self.stat_path(path.clone()).await?.is_none() {
            return Ok(false);
        }
        let store = self.store.clone();
        self.run(async move { store.delete(&path).await }).await?;
        Ok(true)
    }

    async fn list(
        &self,
        visit: &mut (dyn FnMut(Digest, BlobStat) + Send),
    ) -> Result<(), BlobError> {
        let store = self.store.clone();
        let base = format!("{}blobs/", self.cfg.prefix);
        let prefix = self.key("blobs");
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        self.handle.spawn(async move {
            let mut s = store.list(Some(&prefix));
            while let Some(item) = s.next().await {
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        while let Some(item) = rx.recv().await {
            let meta = item.map_err(backend)?;
            let key = meta.location.as_ref();
            let Some((alg, hex)) = key.strip_prefix(&base).and_then(|k| k.split_once('/')) else {
                continue;
            };
            let Ok(d) = Digest::parse(&format!("{alg}:{hex}")) else {
                continue;
            };
            visit(
                d,
                BlobStat {
                    size: meta.size,
                    modified: meta.last_modified.into(),
                },
            );
        }
        Ok(())
    }

    async fn put(&self, expected: &Digest) -> Result<Box<dyn BlobWriter>, BlobError> {
        let mut w = self.writer(Target::Put {
            key: self.blob_key(expected),
        });
        w.hash = Hash::Known(Digester::new(expected.algorithm()));
        Ok(Box::new(w))
    }

    async fn create_upload(&self, repo: &str, owner: &str) -> Result<UploadInfo, BlobError> {
        let state = SessionState {
            hash: Sha256State::new().save(),
            ..Default::default()
        };
        let rec = self
            .sessions()?
            .create(Uuid::new_v4(), repo, owner, &state.encode())
            .await
            .map_err(store_error)?;
        Ok(rec.info())
    }

    async fn upload_info(&self, id: &Uuid) -> Result<Option<UploadInfo>, BlobError> {
        let rec = self.sessions()?.get(id).await.map_err(store_error)?;
        Ok(rec.map(|r| r.info()))
    }

    async fn resume_upload(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        let Some(rec) = self.sessions()?.get(id).await.map_err(store_error)? else {
            return Err(BlobError::UploadUnknown);
        };
        let s = SessionState::decode(&rec)?;
        let hash = Sha256State::load(&s.hash)
            .filter(|h| h.len() == rec.offset)
            .ok_or_else(|| BlobError::Backend(format!("upload session {id}: bad hash state")))?;
        let mut w = self.writer(Target::Session {
            id: *id,
            revision: rec.revision,
            saved_offset: rec.offset,
            state: s.clone(),
            data_key: self.session_key(id, "data"),
            prefix: self.cfg.prefix.clone(),
        });
        w.hash = Hash::Resumable(hash);
        w.offset = rec.offset;
        w.multipart = s.multipart.clone();
        w.parts = s
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone(),
            })
            .collect();
        if s.tail > 0 {
            let tail = self.get_bytes(self.session_key(id, &s.tail_key)).await?;
            if tail.len() as u64 != s.tail {
                return Err(BlobError::Backend(format!(
                    "upload session {id}: tail lost"
                )));
            }
            w.buf.extend_from_slice(&tail);
        }
        Ok(Box::new(w))
    }

    async fn cancel_upload(&self, id: &Uuid) -> Result<bool, BlobError> {
        // The row first: from then on the session is unknown everywhere,
        // and a request of it still running on another node fails to save.
        let Some(rec) = self.sessions()?.delete(id).await.map_err(store_error)? else {
            return Ok(false);
        };
        let multipart = SessionState::decode(&rec).ok().and_then(|s| s.multipart);
        self.remove_session_objects(id, multipart).await?;
        Ok(true)
    }

    async fn expire_upload(&self, id: &Uuid, max_idle: Duration) -> Result<bool, BlobError> {
        let sessions = self.sessions()?;
        let Some(rec) = sessions.get(id).await.map_err(store_error)? else {
            return Ok(false);
        };
        let idle = SystemTime::now()
            .duration_since(rec.updated())
            .unwrap_or_default();
        if idle <= max_idle {
            return Ok(false);
        }
        // Only the revision found idle: a save since then keeps it.
        let rec = match sessions.delete_at(id, rec.revision).await {
            Ok(rec) => rec,
            Err(UploadCasError::Gone | UploadCasError::Conflict) => return Ok(false),
            Err(e) => return Err(cas_error(e)),
        };
        let multipart = SessionState::decode(&rec).ok().and_then(|s| s.multipart);
        self.remove_session_objects(id, multipart).await?;
        Ok(true)
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, BlobError> {
        let all = self.sessions()?.list().await.map_err(store_error)?;
        Ok(all.iter().map(UploadRecord::info).collect())
    }

    async fn sweep_upload_leftovers(&self, max_idle: Duration) -> Result<usize, BlobError> {
        let sessions = self.sessions()?;
        let store = self.store.clone();
        let prefix = self.key("_uploads");
        let objects: Vec<_> = self
            .run(async move {
                let v: Vec<_> = store.list(Some(&prefix)).collect().await;
                v.into_iter().collect::<Result<Vec<_>, _>>()
            })
            .await?;
        // Each session's objects, and when the newest was written.
        let base = format!("{}_uploads/", self.cfg.prefix);
        let mut by_id: std::collections::HashMap<Uuid, (SystemTime, Vec<Path>)> =
            Default::default();
        for m in objects {
            let Some(id) = m
                .location
                .as_ref()
                .strip_prefix(&base)
                .and_then(|k| k.split_once('/'))
                .and_then(|(id, _)| Uuid::parse_str(id).ok())
            else {
                continue;
            };
            let e = by_id
                .entry(id)
                .or_insert((SystemTime::UNIX_EPOCH, Vec::new()));
            e.0 = e.0.max(m.last_modified.into());
            e.1.push(m.location);
        }
        let Some(cutoff) = SystemTime::now().checked_sub(max_idle) else {
            return Ok(0);
        };
        let mut swept = 0;
        for (id, (newest, keys)) in by_id {
            // A row is created before its session writes anything, so
            // objects old and without a row belong to no live session.
            if newest > cutoff || sessions.get(&id).await.map_err(store_error)?.is_some() {
                continue;
            }
            let store = self.store.clone();
            self.run(async move {
                for k in &keys {
                    store.delete(k).await?;
                }
                Ok(())
            })
            .await?;
            swept += 1;
        }
        Ok(swept)
    }
}

impl S3Blobs {
    /// Every key under the configured prefix (without it) that starts
    /// with `under`: for operators and tests to see what is stored.
    pub async fn list_keys(&self, under: &str) -> Result<Vec<String>, BlobError> {
        let store = self.store.clone();
        let plen = self.cfg.prefix.len();
        let all = self.key("");
        let keys: Vec<String> = self
            .run(async move {
                let v: Vec<_> = store.list(Some(&all)).collect().await;
                v.into_iter()
                    .map(|m| m.map(|m| m.location.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.get(plen..).map(str::to_string))
            .filter(|k| k.starts_with(under))
            .collect())
    }

    async fn stat_path(&self, path: Path) -> Result<Option<BlobStat>, BlobError> {
        let store = self.store.clone();
        match self.run(async move { store.head(&path).await }).await {
            Ok(m) => Ok(Some(BlobStat {
                size: m.size,
                modified: m.last_modified.into(),
            })),
            Err(BlobError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

enum Target {
    /// A monolithic push straight to its content address.
    Put { key: Path },
    /// A resumable session.
    Session {
        id: Uuid,
        /// The revision last saved (by this writer, or before it resumed):
        /// the next save is a compare-and-swap on it.
        revision: i64,
        /// The offset and state of that revision.
        saved_offset: u64,
        state: SessionState,
        data_key: Path,
        prefix: String,
    },
}

enum Hash {
    Resumable(Sha256State),
    Known(Digester),
}

impl Hash {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hash::Resumable(h) => h.update(b),
            Hash::Known(h) => h.update(b),
        }
    }
}

struct S3Writer {
    store: Arc<AmazonS3>,
    handle: Handle,
    part_size: usize,
    target: Target,
    multipart: Option<String>,
    /// Parts uploaded, in order.
    parts: Vec<PartId>,
    in_flight: VecDeque<JoinHandle<Result<PartId, object_store::Error>>>,
    /// Bytes not yet sent as a part.
    buf: BytesMut,
    hash: Hash,
    offset: u64,
    poisoned: bool,
    /// Committed: nothing to clean up.
    done: bool,
    sessions: Option<Arc<dyn UploadSessions>>,
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        for h in &self.in_flight {
            h.abort();
        }
        // A monolithic push that did not commit leaves no upload behind.
        if let (Target::Put { key }, Some(m), false) = (&self.target, &self.multipart, self.done) {
            let (store, key, m) = (self.store.clone(), key.clone(), m.clone());
            self.handle.spawn(async move {
                let _ = store.abort_multipart(&key, &m).await;
            });
        }
    }
}

impl S3Writer {
    fn upload_key(&self) -> Path {
        match &self.target {
            Target::Put { key } => key.clone(),
            Target::Session { data_key, .. } => data_key.clone(),
        }
    }

    /// Send `part` as the next part, waiting while too many are in flight.
    async fn send_part(&mut self, part: Bytes) -> Result<(), BlobError> {
        let key = self.upload_key();
        let id = match &self.multipart {
            Some(m) => m.clone(),
            None => {
                let (store, key) = (self.store.clone(), key.clone());
                let m = spawn_on(
                    &self.handle,
                    async move { store.create_multipart(&key).await },
                )
                .await?;
                self.multipart = Some(m.clone());
                m
            }
        };
        let idx = self.parts.len() + self.in_flight.len();
        let store = self.store.clone();
        self.in_flight
            .push_back(self.handle.spawn(async move {
                store.put_part(&key, &id, idx, PutPayload::from(part)).await
            }));
        while self.in_flight.len() > IN_FLIGHT {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<(), BlobError> {
        if let Some(h) = self.in_flight.pop_front() {
            let part = h
                .await
                .map_err(|e| BlobError::Io(io::Error::other(e)))?
                .map_err(backend)?;
            self.parts.push(part);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        while !self.in_flight.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn append_inner(
        &mut self,
        mut body: ByteStream<'_>,
        limit: Option<u64>,
        taken: &mut u64,
    ) -> Result<(), BlobError> {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            if let Some(l) = limit
                && *taken + chunk.len() as u64 > l
            {
                return Err(BlobError::TooLarge(l));
            }
            *taken += chunk.len() as u64;
            self.offset += chunk.len() as u64;
            self.hash.update(&chunk);
            self.buf.extend_from_slice(&chunk);
            while self.buf.len() >= self.part_size {
                let part = self.buf.split_to(self.part_size).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), BlobError> {
        if self.poisoned {
            Err(BlobError::Io(io::Error::other("writer already failed")))
        } else {
            Ok(())
        }
    }

    /// Assemble the bytes at `key`: one PUT when no part was sent yet,
    /// else the rest as the last part and the multipart completed.
    async fn assemble(&mut self, key: &Path) -> Result<(), BlobError> {
        let store = self.store.clone();
        let key2 = key.clone();
        let rest = std::mem::take(&mut self.buf).freeze();
        match self.multipart.clone() {
            None => {
                spawn_on(&self.handle, async move {
                    store.put(&key2, PutPayload::from(rest)).await
                })
                .await?;
            }
            Some(m) => {
                if !rest.is_empty() {
                    self.send_part(rest).await?;
                }
                self.flush().await?;
                let parts = self.parts.clone();
                spawn_on(&self.handle, async move {
                    store.complete_multipart(&key2, &m, parts).await
                })
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobWriter for S3Writer {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn append(
        &mut self,
        body: ByteStream<'_>,
        limit: Option<u64>,
    ) -> (u64, Result<(), BlobError>) {
        if let Err(e) = self.check() {
            return (0, Err(e));
        }
        let mut taken = 0;
        let r = self.append_inner(body, limit, &mut taken).await;
        if r.is_err() {
            self.poisoned = true;
        }
        (taken, r)
    }

    async fn save(&mut self) -> Result<(), BlobError> {
        self.check()?;
        if matches!(self.target, Target::Put { .. }) {
            return Ok(());
        }
        // A tail big enough to be a part goes as one; a smaller one is
        // kept as its own object until more bytes arrive.
        if self.buf.len() >= MIN_PART {
            let part = std::mem::take(&mut self.buf).freeze();
            self.send_part(part).await?;
        }
        let r = self.flush().await;
        if r.is_err() {
            self.poisoned = true;
            return r;
        }
        let Hash::Resumable(h) = &self.hash else {
            return Ok(());
        };
        let hash = h.save();
        let tail = self.buf.clone().freeze();
        let tail_start = self.offset - tail.len() as u64;
        let Target::Session {
            id,
            revision,
            state,
            prefix,
            ..
        } = &self.target
        else {
            return Ok(());
        };
        let (id, revision) = (*id, *revision);
        let old_tail = (state.tail > 0).then(|| state.tail_key.clone());
        let tail_name = format!("tail.{tail_start}.{}", Uuid::new_v4().simple());
        let new_state = SessionState {
            multipart: self.multipart.clone(),
            parts: self.parts.iter().map(|p| p.content_id.clone()).collect(),
            hash,
            tail: tail.len() as u64,
            tail_key: if tail.is_empty() {
                String::new()
            } else {
                tail_name.clone()
            },
        };
        // A multipart upload this writer started (none was saved before):
        // no other session state names it.
        let own_multipart = self
            .multipart
            .clone()
            .filter(|m| state.multipart.as_ref() != Some(m));
        let tail_key = |name: &str| Path::from(format!("{prefix}_uploads/{id}/{name}"));
        let new_tail = (!tail.is_empty()).then(|| tail_key(&tail_name));
        let old_tail = old_tail.map(|n| tail_key(&n));
        let store = self.store.clone();
        if let Some(key) = &new_tail {
            // The tail under a new name first, then the row naming it: a
            // failure between the two leaves the previous save intact.
            let (store, key) = (store.clone(), key.clone());
            spawn_on(&self.handle, async move {
                store.put(&key, PutPayload::from(tail)).await.map(|_| ())
            })
            .await?;
        }
        let sessions = self.sessions.clone().ok_or(BlobError::UploadUnknown)?;
        match sessions
            .save(&id, revision, self.offset, &new_state.encode())
            .await
        {
            Ok(next) => {
                if let Target::Session {
                    revision,
                    saved_offset,
                    state,
                    ..
                } = &mut self.target
                {
                    *revision = next;
                    *saved_offset = self.offset;
                    *state = new_state;
                }
                if let Some(old) = old_tail {
                    let _ = spawn_on(&self.handle, async move { store.delete(&old).await }).await;
                }
                Ok(())
            }
            Err(e) => {
                // Nothing was saved: remove what only this writer made
                // (its tail's name is its own).
                self.poisoned = true;
                let data_key = self.upload_key();
                let _ = spawn_on(&self.handle, async move {
                    if let Some(m) = own_multipart {
                        let _ = store.abort_multipart(&data_key, &m).await;
                    }
                    if let Some(t) = new_tail {
                        let _ = store.delete(&t).await;
                    }
                    Ok(())
                })
                .await;
                Err(cas_error(e))
            }
        }
    }

    async fn commit(mut self: Box<Self>, expected: &Digest) -> Result<Committed, BlobError> {
        self.check()?;
        let alg = expected.algorithm();
        let known = match &self.hash {
            Hash::Resumable(h) if alg == Algorithm::Sha256 => Some(h.digest()),
            Hash::Known(d) if d.clone().finish().algorithm() == alg => Some(d.clone().finish()),
            _ => None,
        };
        if let Some(got) = &known
            && got != expected
        {
            return Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                got: got.clone(),
            });
        }
        let size = self.offset;
        let store = self.store.clone();
        match &self.target {
            Target::Put { key } => {
                let key = key.clone();
                let (s2, k2) = (store.clone(), key.clone());
                let existed = spawn_on(&self.handle, async move {
                    match s2.head(&k2).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::NotFound { .. }) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                // Re-writing an existing blob refreshes its time, so a
                // concurrent GC's grace period protects it.
                self.assemble(&key).await?;
                self.done = true;
                Ok(Committed {
                    size,
                    new: !existed,
                })
            }
            Target::Session {
                id,
                revision,
                saved_offset,
                state,
                data_key,
                prefix,
            } => {
                let (id, data_key) = (*id, data_key.clone());
                let sessions = self.sessions.clone().ok_or(BlobError::UploadUnknown)?;
                // Claim the session before anything becomes visible: a
                // compare-and-swap that fails if it was cancelled or moved
                // on since this writer resumed it (the state saved stays).
                let claimed = sessions
                    .save(&id, *revision, *saved_offset, &state.encode())
                    .await
                    .map_err(cas_error)?;
                let final_key =
                    Path::from(format!("{prefix}blobs/{}/{}", alg.as_str(), expected.hex()));
                let session_prefix = Path::from(format!("{prefix}_uploads/{id}"));
                let (s2, k2) = (store.clone(), final_key.clone());
                let existed = spawn_on(&self.handle, async move {
                    match s2.head(&k2).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::NotFound { .. }) => Ok(false),
                        Err(e) => Err(e),
                    }
                })
                .await?;
                if known.is_some() && self.multipart.is_none() {
                    // Verified and small: one PUT to the content address.
                    self.assemble(&final_key).await?;
                } else {
                    self.assemble(&data_key).await?;
                    if known.is_none() {
                        // Not sha256: hash what was assembled before it
                        // may become visible.
                        let (s3, k3) = (store.clone(), data_key.clone());
                        let got = spawn_on(&self.handle, async move {
                            let mut h = Digester::new(alg);
                            let mut s = s3.get(&k3).await?.into_stream();
                            while let Some(b) = s.next().await {
                                h.update(&b?);
                            }
                            Ok(h.finish())
                        })
                        .await?;
                        if &got != expected {
                            let (s4, k4) = (store.clone(), data_key.clone());
                            let _ =
                                spawn_on(&self.handle, async move { s4.delete(&k4).await }).await;
                            return Err(BlobError::DigestMismatch {
                                expected: expected.clone(),
                                got,
                            });
                        }
                    }
                    let (s5, from, to) = (store.clone(), data_key.clone(), final_key.clone());
                    spawn_on(&self.handle, async move { s5.copy(&from, &to).await }).await?;
                }
                self.done = true;
                // The session ends: its row (unless a cancel took it
                // meanwhile, which is as good), then its objects.
                // (A request that resumed the claimed revision and saved
                // since keeps its row: the blob is committed either way.)
                if let Err(UploadCasError::Store(e)) = sessions.delete_at(&id, claimed).await {
                    return Err(store_error(e));
                }
                spawn_on(&self.handle, async move {
                    let keys: Vec<_> = store
                        .list(Some(&session_prefix))
                        .filter_map(|m| async move { m.ok().map(|m| m.location) })
                        .collect()
                        .await;
                    for k in &keys {
                        let _ = store.delete(k).await;
                    }
                    Ok(())
                })
                .await?;
                Ok(Committed {
                    size,
                    new: !existed,
                })
            }
        }
    }
}
