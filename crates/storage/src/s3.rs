//! Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW,
//! SeaweedFS), through `object_store`.
//!
//! Object layout under the configured prefix:
//!
//! ```text
//! blobs/<alg>/<hex>              committed blobs, named by digest
//! _uploads/<id>/info             a session as last saved (JSON): repository,
//!                                owner, multipart upload id and part ETags,
//!                                offset, sha256 state, tail object
//! _uploads/<id>/tail.<offset>    bytes past the last part (under 5 MiB, the
//!                                smallest part S3 accepts but for the last)
//! _uploads/<id>/data             the session's multipart upload target
//! ```
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
use crate::uploads::UploadInfo;
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

#[derive(Serialize, Deserialize, Clone)]
struct SessionInfo {
    repo: String,
    owner: String,
    /// The multipart upload, once its first part was sent.
    multipart: Option<String>,
    /// Part ETags, in order.
    parts: Vec<String>,
    offset: u64,
    /// [`Sha256State::save`] over `offset` bytes.
    hash: String,
    /// Bytes in the tail object (the last `tail` bytes of `offset`).
    tail: u64,
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

    async fn load_session(
        &self,
        id: &Uuid,
    ) -> Result<Option<(SessionInfo, SystemTime)>, BlobError> {
        let store = self.store.clone();
        let path = self.session_key(id, "info");
        let got = self
            .run(async move {
                let r = store.get(&path).await?;
                let modified = r.meta.last_modified;
                Ok((r.bytes().await?, modified))
            })
            .await;
        match got {
            Ok((bytes, modified)) => {
                let info: SessionInfo = serde_json::from_slice(&bytes)
                    .map_err(|e| BlobError::Backend(format!("upload session {id}: {e}")))?;
                Ok(Some((info, modified.into())))
            }
            Err(BlobError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
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

fn info(id: Uuid, s: &SessionInfo, updated: SystemTime) -> UploadInfo {
    UploadInfo {
        id,
        repo: s.repo.clone(),
        owner: Some(s.owner.clone()),
        len: s.offset,
        updated,
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
        let id = Uuid::new_v4();
        let s = SessionInfo {
            repo: repo.to_string(),
            owner: owner.to_string(),
            multipart: None,
            parts: Vec::new(),
            offset: 0,
            hash: Sha256State::new().save(),
            tail: 0,
        };
        let store = self.store.clone();
        let path = self.session_key(&id, "info");
        let body = serde_json::to_vec(&s).expect("serialisable");
        self.run(async move { store.put(&path, PutPayload::from(body)).await })
            .await?;
        Ok(info(id, &s, SystemTime::now()))
    }

    async fn upload_info(&self, id: &Uuid) -> Result<Option<UploadInfo>, BlobError> {
        Ok(self
            .load_session(id)
            .await?
            .map(|(s, at)| info(*id, &s, at)))
    }

    async fn resume_upload(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        let Some((s, _)) = self.load_session(id).await? else {
            return Err(BlobError::UploadUnknown);
        };
        let hash = Sha256State::load(&s.hash)
            .filter(|h| h.len() == s.offset)
            .ok_or_else(|| BlobError::Backend(format!("upload session {id}: bad hash state")))?;
        let mut w = self.writer(Target::Session {
            id: *id,
            info: s.clone(),
            info_key: self.session_key(id, "info"),
            data_key: self.session_key(id, "data"),
            prefix: self.cfg.prefix.clone(),
        });
        w.hash = Hash::Resumable(hash);
        w.offset = s.offset;
        w.multipart = s.multipart.clone();
        w.parts = s
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.clone(),
            })
            .collect();
        if s.tail > 0 {
            let tail = self
                .get_bytes(self.session_key(id, &format!("tail.{}", s.offset - s.tail)))
                .await?;
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
        let Some((s, _)) = self.load_session(id).await? else {
            return Ok(false);
        };
        let store = self.store.clone();
        let data = self.session_key(id, "data");
        let prefix = self.key(&format!("_uploads/{id}"));
        let info_key = self.session_key(id, "info");
        self.run(async move {
            if let Some(m) = &s.multipart {
                // Already completed or aborted: nothing left to abort.
                let _ = store.abort_multipart(&data, m).await;
            }
            // `info` last: until it goes, the session can be cancelled again.
            let keys: Vec<_> = store
                .list(Some(&prefix))
                .filter_map(|m| async move { m.ok().map(|m| m.location) })
                .collect()
                .await;
            for k in keys.iter().filter(|k| **k != info_key) {
                store.delete(k).await?;
            }
            store.delete(&info_key).await
        })
        .await?;
        Ok(true)
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, BlobError> {
        let store = self.store.clone();
        let prefix = self.key("_uploads");
        let keys: Vec<_> = self
            .run(async move {
                let v: Vec<_> = store.list(Some(&prefix)).collect().await;
                v.into_iter().collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut out = Vec::new();
        for m in keys {
            let key = m.location.as_ref();
            let Some(id) = key
                .strip_suffix("/info")
                .and_then(|k| k.rsplit('/').next())
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            if let Some((s, at)) = self.load_session(&id).await? {
                out.push(info(id, &s, at));
            }
        }
        Ok(out)
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
        info: SessionInfo,
        info_key: Path,
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
            info,
            info_key,
            prefix,
            ..
        } = &mut self.target
        else {
            return Ok(());
        };
        let old_tail = (info.tail > 0).then(|| info.offset - info.tail);
        info.multipart = self.multipart.clone();
        info.parts = self.parts.iter().map(|p| p.content_id.clone()).collect();
        info.offset = self.offset;
        info.hash = hash;
        info.tail = tail.len() as u64;
        let body = serde_json::to_vec(&*info).expect("serialisable");
        let store = self.store.clone();
        let info_key = info_key.clone();
        let tail_key = |off: u64| Path::from(format!("{prefix}_uploads/{id}/tail.{off}"));
        let new_tail = tail_key(tail_start);
        let old_tail = old_tail.map(tail_key);
        spawn_on(&self.handle, async move {
            // The tail under a new name first, then `info` naming it: a
            // crash between the two leaves the previous save intact.
            if !tail.is_empty() {
                store.put(&new_tail, PutPayload::from(tail)).await?;
            }
            store.put(&info_key, PutPayload::from(body)).await?;
            if let Some(old) = old_tail
                && old != new_tail
            {
                let _ = store.delete(&old).await;
            }
            Ok(())
        })
        .await
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
                data_key,
                prefix,
                ..
            } => {
                let (id, data_key) = (*id, data_key.clone());
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
                // The session's objects go; `info` last.
                let info_key = self.session_key_info();
                spawn_on(&self.handle, async move {
                    let keys: Vec<_> = store
                        .list(Some(&session_prefix))
                        .filter_map(|m| async move { m.ok().map(|m| m.location) })
                        .collect()
                        .await;
                    for k in keys.iter().filter(|k| **k != info_key) {
                        let _ = store.delete(k).await;
                    }
                    store.delete(&info_key).await
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

impl S3Writer {
    fn session_key_info(&self) -> Path {
        match &self.target {
            Target::Session { info_key, .. } => info_key.clone(),
            Target::Put { key } => key.clone(),
        }
    }
}
