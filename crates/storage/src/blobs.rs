//! The content-addressed blob store: one async driver interface that owns
//! reads, uploads, deletion and listing, implemented for the local
//! filesystem ([`FsBlobs`]) and for S3-compatible object stores
//! ([`crate::S3Blobs`]).
//!
//! An upload is a [`BlobWriter`]: it streams bytes in, hashing them as they
//! pass, is saved at the end of each request (offset, hash state and,
//! for S3, the part list) so that any process can resume it by id, and ends
//! in [`BlobWriter::commit`] (the blob appears under its content address
//! only if the bytes hash to the expected digest) or in a cancel.
//!
//! Bytes appended since the last save are not part of the upload: a
//! request that fails half way is rolled back simply by not saving, and the
//! next resume starts from the saved state.

use crate::hashstate::Sha256State;
use crate::ingest::ingest;
use crate::uploads::{SessionFiles, UploadInfo};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use oci::{Algorithm, Digest, Digester};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// A request body handed to a writer. A failed read (the client went
/// away, bad framing) is an `io::Error`, kept as the writer's
/// [`BlobError::Body`].
pub type ByteStream<'a> = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send + 'a>>;

/// A stored blob's bytes, as they are read.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A synchronous reader over a stored blob.
pub type BlobReader = Box<dyn Read + Send>;

/// What a stored blob looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobStat {
    pub size: u64,
    /// Last write (or refresh by a re-push); GC's grace period counts from it.
    pub modified: SystemTime,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub size: u64,
    /// The blob was not in the store before.
    pub new: bool,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("upload session not found")]
    UploadUnknown,
    /// Another request saved the session since this one resumed it (two
    /// requests of one session at once, on two nodes): nothing was saved.
    #[error("the upload session was changed by another request")]
    UploadChanged,
    /// ENOSPC, EDQUOT, or the object store's quota: answered with 507.
    #[error("the storage is full: {0}")]
    StorageFull(String),
    #[error("content hashes to {got}, not {expected}")]
    DigestMismatch { expected: Digest, got: Digest },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("body longer than the {0} bytes allowed")]
    TooLarge(u64),
    #[error("storage I/O: {0}")]
    Io(io::Error),
    /// The object store refused or failed (never carries credentials).
    #[error("object store: {0}")]
    Backend(String),
}

impl From<io::Error> for BlobError {
    fn from(e: io::Error) -> Self {
        if crate::is_storage_full(&e) {
            BlobError::StorageFull(e.to_string())
        } else {
            BlobError::Io(e)
        }
    }
}

impl From<crate::IngestError> for BlobError {
    fn from(e: crate::IngestError) -> Self {
        match e {
            crate::IngestError::Body(m) => BlobError::Body(m),
            crate::IngestError::TooLarge(n) => BlobError::TooLarge(n),
            crate::IngestError::Io(e) => e.into(),
        }
    }
}

/// An upload in progress. Dropping it without [`BlobWriter::save`] or
/// [`BlobWriter::commit`] forgets what was appended since the last save
/// (a monolithic writer's bytes are removed).
#[async_trait::async_trait]
pub trait BlobWriter: Send {
    /// Bytes in the upload: as saved, plus what was appended since.
    fn offset(&self) -> u64;
    /// Stream `body` in, hashing it; at most `limit` bytes. Returns how many
    /// bytes were taken. After an error the writer must be dropped.
    async fn append(
        &mut self,
        body: ByteStream<'_>,
        limit: Option<u64>,
    ) -> (u64, Result<(), BlobError>);
    /// Make the upload durable and resumable as it stands.
    async fn save(&mut self) -> Result<(), BlobError>;
    /// Verify the whole upload against `expected` and, only if it matches,
    /// make it visible under its content address; then end the session.
    /// On a mismatch nothing becomes visible and a session stays as saved.
    async fn commit(self: Box<Self>, expected: &Digest) -> Result<Committed, BlobError>;
}

/// What a blob backend does. All methods are safe to call from any
/// thread, inside a Tokio runtime or not, except [`BlobWriter`] methods and
/// [`BlobDriver::read`], which need a Tokio runtime.
#[async_trait::async_trait]
pub trait BlobDriver: Send + Sync + 'static {
    /// A description for logs ("filesystem /data", "s3 bucket at …"),
    /// never a secret.
    fn describe(&self) -> String;
    /// Whether the backend answers; `Err` says why not.
    async fn ready(&self) -> Result<(), BlobError>;
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobStat>, BlobError>;
    /// Stream `len` bytes (`None`: to the end) from `offset`.
    async fn read(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BlobStream, BlobError>;
    /// A URL the client may fetch the blob from directly (a presigned
    /// URL), when the driver is configured to hand those out.
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>, BlobError> {
        Ok(None)
    }
    /// Remove a blob; `false` when it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError>;
    /// Visit every stored blob.
    async fn list(&self, visit: &mut (dyn FnMut(Digest, BlobStat) + Send))
    -> Result<(), BlobError>;

    /// A writer for a blob whose digest is known before its bytes
    /// (monolithic push); no session survives it.
    async fn put(&self, expected: &Digest) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Start a resumable upload session for `repo`, owned by `owner`.
    async fn create_upload(&self, repo: &str, owner: &str) -> Result<UploadInfo, BlobError>;
    /// A session as last saved; `None` when unknown.
    async fn upload_info(&self, id: &Uuid) -> Result<Option<UploadInfo>, BlobError>;
    /// Reload a session into a writer, at its saved state.
    async fn resume_upload(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Remove a session and everything it stored; `false` when unknown.
    async fn cancel_upload(&self, id: &Uuid) -> Result<bool, BlobError>;
    /// Every session.
    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, BlobError>;
    /// Cancel a session if it has been idle for longer than `max_idle`;
    /// `true` when it went. A driver whose sessions can be saved from
    /// elsewhere meanwhile removes only the state it found idle.
    async fn expire_upload(&self, id: &Uuid, max_idle: Duration) -> Result<bool, BlobError> {
        let Some(info) = self.upload_info(id).await? else {
            return Ok(false);
        };
        let idle = SystemTime::now()
            .duration_since(info.updated)
            .unwrap_or_default();
        Ok(idle > max_idle && self.cancel_upload(id).await?)
    }
    /// Remove what sessions that no longer exist left in the store (a
    /// node that died between a session's end and its objects' removal;
    /// sessions of an older layout) once untouched for `max_idle`. Safe
    /// beside other processes. Returns how many sessions' leftovers went.
    async fn sweep_upload_leftovers(&self, _max_idle: Duration) -> Result<usize, BlobError> {
        Ok(0)
    }
    /// Remove leftovers of writes interrupted by a crash. Only call this
    /// when no other process writes. Returns how many went.
    async fn recover(&self) -> Result<usize, BlobError> {
        Ok(0)
    }

    /// Open a blob for synchronous reading from `offset` (assessment reads
    /// layers on blocking threads). Call it from a blocking thread.
    fn open_sync(&self, digest: &Digest, offset: u64) -> Result<BlobReader, BlobError> {
        let stream = block_on(self.read(digest, offset, None))?;
        Ok(Box::new(StreamReader {
            stream,
            buf: Bytes::new(),
        }))
    }
}

/// Run a driver future to completion on the calling thread. Sound for
/// driver calls only: the filesystem driver's non-writer calls do plain
/// blocking I/O, and the S3 driver runs its I/O on its own runtime, so
/// neither needs the caller's runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// A blocking [`Read`] over a blob stream.
struct StreamReader {
    stream: BlobStream,
    buf: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            match block_on(self.stream.next()) {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// Adapts a driver to [`oci::BlobSource`].
pub struct DriverSource(pub Arc<dyn BlobDriver>);

impl oci::BlobSource for DriverSource {
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send>> {
        self.0.open_sync(digest, 0).map_err(|e| match e {
            BlobError::NotFound => io::Error::new(io::ErrorKind::NotFound, format!("{digest}")),
            BlobError::Io(e) => e,
            e => io::Error::other(e.to_string()),
        })
    }
}

/// Reads of this size are handed from the blocking reader to the response.
const READ_CHUNK: usize = 1 << 20;

/// Blobs on a local filesystem: `<root>/blobs/<alg>/<hex[0..2]>/<hex>`.
/// Monolithic pushes write to `<root>/tmp`, sessions to
/// `<root>/uploads/<id>/data`, both on the same filesystem, so a commit is
/// a `rename`.
#[derive(Debug)]
pub struct FsBlobs {
    root: PathBuf,
    sessions: SessionFiles,
}

impl FsBlobs {
    /// Open (creating directories as needed) a store rooted at `root`.
    pub fn open(root: &Path) -> io::Result<FsBlobs> {
        fs::create_dir_all(root.join("blobs"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(FsBlobs {
            root: root.to_path_buf(),
            sessions: SessionFiles::open(root)?,
        })
    }

    /// Where a blob lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn writer(&self, data: PathBuf, file: File, session: Option<Session>) -> FsWriter {
        FsWriter {
            root: self.root.clone(),
            data,
            file: Some(file),
            session,
            hash: WriterHash::None,
            offset: 0,
            poisoned: false,
        }
    }
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    root.join("blobs")
        .join(digest.algorithm().as_str())
        .join(&hex[..2])
        .join(hex)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn hash_file(path: &Path, alg: Algorithm) -> io::Result<Digest> {
    let mut f = File::open(path)?;
    let mut h = Digester::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Move a verified file into the store, durably (blocking). An existing
/// blob is kept, its time refreshed so a concurrent GC's grace period
/// protects it, and the duplicate dropped.
fn commit_file(root: &Path, temp: &Path, digest: &Digest) -> io::Result<bool> {
    let target = blob_path(root, digest);
    if target.exists() {
        if let Ok(f) = OpenOptions::new().write(true).open(&target) {
            let _ = f.set_modified(SystemTime::now());
        }
        let _ = fs::remove_file(temp);
        return Ok(false);
    }
    File::open(temp)?.sync_all()?;
    let dir = target.parent().expect("blob path has a parent");
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        if let Some(p) = dir.parent() {
            sync_dir(p)?;
        }
    }
    fs::rename(temp, &target)?;
    sync_dir(dir)?;
    Ok(true)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
        .map_err(BlobError::from)
}

/// Stream `len` bytes from a blocking reader: a blocking thread reads large
/// chunks into a small bounded channel.
fn stream_blocking(mut reader: BlobReader, len: u64) -> BlobStream {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let want = (left.min(READ_CHUNK as u64)) as usize;
            let mut buf = BytesMut::zeroed(want);
            let mut filled = 0;
            while filled < want {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled == 0 {
                let _ = tx.blocking_send(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than expected",
                )));
                return;
            }
            buf.truncate(filled);
            left -= filled as u64;
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // the reader went away
            }
        }
    });
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// A session's identity for a filesystem writer.
#[derive(Debug, Clone)]
struct Session {
    id: Uuid,
}

/// The hash a filesystem writer keeps.
enum WriterHash {
    /// Not loaded yet (taken out while an append runs).
    None,
    /// A session: sha256, saved with the session.
    Resumable(Sha256State),
    /// A monolithic push: the expected digest's algorithm.
    Known(Digester),
}

struct FsWriter {
    root: PathBuf,
    /// The file being written (`tmp/<uuid>` or `uploads/<id>/data`).
    data: PathBuf,
    file: Option<File>,
    session: Option<Session>,
    hash: WriterHash,
    offset: u64,
    poisoned: bool,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        // A monolithic push that did not commit leaves nothing behind.
        if self.session.is_none() && self.file.is_some() {
            let _ = fs::remove_file(&self.data);
        }
    }
}

#[async_trait::async_trait]
impl BlobWriter for FsWriter {
    fn offset(&self) -> u64 {
        self.offset
    }

    async fn append(
        &mut self,
        body: ByteStream<'_>,
        limit: Option<u64>,
    ) -> (u64, Result<(), BlobError>) {
        let Some(file) = self.file.take().filter(|_| !self.poisoned) else {
            return (
                0,
                Err(BlobError::Io(io::Error::other("writer already failed"))),
            );
        };
        let (file, written, result) = match std::mem::replace(&mut self.hash, WriterHash::None) {
            WriterHash::Resumable(h) => {
                let out = ingest(body, file, h, limit).await;
                self.hash = WriterHash::Resumable(out.digester);
                (out.file, out.written, out.result)
            }
            WriterHash::Known(h) => {
                let out = ingest(body, file, h, limit).await;
                self.hash = WriterHash::Known(out.digester);
                (out.file, out.written, out.result)
            }
            WriterHash::None => unreachable!("the hash is always put back"),
        };
        self.file = Some(file);
        self.offset += written;
        if result.is_err() {
            self.poisoned = true;
        }
        (written, result.map_err(BlobError::from))
    }

    async fn save(&mut self) -> Result<(), BlobError> {
        if self.poisoned {
            return Err(BlobError::Io(io::Error::other("writer already failed")));
        }
        let (Some(s), WriterHash::Resumable(h)) = (&self.session, &self.hash) else {
            return Ok(());
        };
        let files = SessionFiles::open(&self.root)?;
        let (id, offset, state) = (s.id, self.offset, h.save());
        blocking(move || files.save_state(&id, offset, &state)).await
    }

    async fn commit(mut self: Box<Self>, expected: &Digest) -> Result<Committed, BlobError> {
        if self.poisoned {
            return Err(BlobError::Io(io::Error::other("writer already failed")));
        }
        let alg = expected.algorithm();
        let got = match &self.hash {
            WriterHash::Resumable(h) if alg == Algorithm::Sha256 => h.digest(),
            WriterHash::Known(d) if d.clone().finish().algorithm() == alg => d.clone().finish(),
            // A session whose digest is not sha256: hash what it stored.
            _ => {
                let path = self.data.clone();
                blocking(move || hash_file(&path, alg)).await?
            }
        };
        if &got != expected {
            return Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                got,
            });
        }
        let file = self.file.take().expect("not poisoned");
        drop(file);
        let (root, data, digest) = (self.root.clone(), self.data.clone(), expected.clone());
        let session = self.session.clone();
        let size = self.offset;
        let new = blocking(move || {
            let r = commit_file(&root, &data, &digest);
            if r.is_err() && session.is_none() {
                let _ = fs::remove_file(&data);
            }
            let new = r?;
            if let Some(s) = session {
                SessionFiles::open(&root)?.remove(&s.id)?;
            }
            Ok(new)
        })
        .await?;
        Ok(Committed { size, new })
    }
}

#[async_trait::async_trait]
impl BlobDriver for FsBlobs {
    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }

    async fn ready(&self) -> Result<(), BlobError> {
        if self.tmp_dir().is_dir() {
            Ok(())
        } else {
            Err(BlobError::Io(io::Error::other(
                "the data directory's tmp/ is missing",
            )))
        }
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobStat>, BlobError> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(BlobStat {
                size: m.len(),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> Result<BlobStream, BlobError> {
        let reader = self.open_sync(digest, offset)?;
        let len = match len {
            Some(l) => l,
            None => fs::metadata(self.path(digest))?
                .len()
                .saturating_sub(offset),
        };
        Ok(stream_blocking(reader, len))
    }

    async fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(
        &self,
        visit: &mut (dyn FnMut(Digest, BlobStat) + Send),
    ) -> Result<(), BlobError> {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let base = self.root.join("blobs").join(alg.as_str());
            let Ok(prefixes) = fs::read_dir(&base) else {
                continue;
            };
            for prefix in prefixes {
                let prefix = prefix?;
                if !prefix.file_type()?.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(prefix.path())? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Ok(d) = Digest::parse(&format!("{}:{name}", alg.as_str())) else {
                        continue;
                    };
                    let Ok(meta) = entry.metadata() else { continue };
                    visit(
                        d,
                        BlobStat {
                            size: meta.len(),
                            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    async fn put(&self, expected: &Digest) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.tmp_dir().join(Uuid::new_v4().to_string());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut w = self.writer(path, file, None);
        w.hash = WriterHash::Known(Digester::new(expected.algorithm()));
        Ok(Box::new(w))
    }

    async fn create_upload(&self, repo: &str, owner: &str) -> Result<UploadInfo, BlobError> {
        Ok(self.sessions.create(repo, owner)?)
    }

    async fn upload_info(&self, id: &Uuid) -> Result<Option<UploadInfo>, BlobError> {
        Ok(self.sessions.get(id)?)
    }

    async fn resume_upload(&self, id: &Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        let sessions = SessionFiles::open(&self.root)?;
        let id = *id;
        let loaded = blocking(move || sessions.load(&id)).await?;
        let Some((data, file, offset, hash)) = loaded else {
            return Err(BlobError::UploadUnknown);
        };
        let mut w = self.writer(data, file, Some(Session { id }));
        w.offset = offset;
        w.hash = WriterHash::Resumable(hash);
        Ok(Box::new(w))
    }

    async fn cancel_upload(&self, id: &Uuid) -> Result<bool, BlobError> {
        Ok(self.sessions.remove(id)?)
    }

    async fn list_uploads(&self) -> Result<Vec<UploadInfo>, BlobError> {
        Ok(self.sessions.list()?)
    }

    async fn recover(&self) -> Result<usize, BlobError> {
        let mut n = 0;
        for entry in fs::read_dir(self.tmp_dir())? {
            let entry = entry?;
            if fs::remove_file(entry.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    fn open_sync(&self, digest: &Digest, offset: u64) -> Result<BlobReader, BlobError> {
        let mut f = match File::open(self.path(digest)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))?;
        }
        Ok(Box::new(f))
    }
}

/// How long a presigned URL stays valid.
pub(crate) const PRESIGN_TTL: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream<'static> {
        Box::pin(futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn read_all(s: &FsBlobs, d: &Digest, off: u64) -> Vec<u8> {
        let mut st = s.read(d, off, None).await.unwrap();
        let mut out = vec![];
        while let Some(b) = st.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn put_stat_read_delete_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello");
        assert_eq!(s.stat(&d).await.unwrap(), None);
        let mut w = s.put(&d).await.unwrap();
        assert!(w.append(body(&[b"hel", b"lo"]), None).await.1.is_ok());
        assert_eq!(
            w.commit(&d).await.unwrap(),
            Committed { size: 5, new: true }
        );
        assert_eq!(s.stat(&d).await.unwrap().unwrap().size, 5);
        assert_eq!(read_all(&s, &d, 2).await, b"llo");
        // A duplicate commit keeps the stored copy.
        let mut w = s.put(&d).await.unwrap();
        w.append(body(&[b"hello"]), None).await.1.unwrap();
        assert!(!w.commit(&d).await.unwrap().new);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
        let mut seen = vec![];
        s.list(&mut |d, st| seen.push((d, st.size))).await.unwrap();
        assert_eq!(seen, vec![(d.clone(), 5)]);
        assert!(s.delete(&d).await.unwrap());
        assert!(!s.delete(&d).await.unwrap());
        assert!(matches!(s.open_sync(&d, 0), Err(BlobError::NotFound)));
    }

    #[tokio::test]
    async fn a_wrong_digest_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"other");
        let mut w = s.put(&d).await.unwrap();
        w.append(body(&[b"hello"]), None).await.1.unwrap();
        assert!(matches!(
            w.commit(&d).await,
            Err(BlobError::DigestMismatch { .. })
        ));
        assert_eq!(s.stat(&d).await.unwrap(), None);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    /// A body whose read fails (the client went away) stops the writer
    /// with the read's own error as `Body`, and the writer takes nothing
    /// more.
    #[tokio::test]
    async fn a_body_that_fails_to_read_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello");
        let mut w = s.put(&d).await.unwrap();
        let broken: ByteStream<'static> = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"hel")),
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the client went away",
            )),
            Ok(Bytes::from_static(b"lo")),
        ]));
        match w.append(broken, None).await.1 {
            Err(BlobError::Body(m)) => assert_eq!(m, "the client went away"),
            other => panic!("{other:?}"),
        }
        assert!(w.append(body(&[b"lo"]), None).await.1.is_err());
        assert!(w.commit(&d).await.is_err());
        assert_eq!(s.stat(&d).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_session_resumes_from_its_last_save() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsBlobs::open(dir.path()).unwrap();
        let info = s.create_upload("a/b", "alice").await.unwrap();
        let mut w = s.resume_upload(&info.id).await.unwrap();
        w.append(body(&[b"abc"]), None).await.1.unwrap();
        w.save().await.unwrap();
        drop(w);
        // Appended but never saved: gone at the next resume.
        let mut w = s.resume_upload(&info.id).await.unwrap();
        w.append(body(&[b"XXXX"]), None).await.1.unwrap();
        drop(w);
        assert_eq!(s.upload_info(&info.id).await.unwrap().unwrap().len, 3);
        // Another driver over the same directory (another process) resumes.
        let s2 = FsBlobs::open(dir.path()).unwrap();
        let mut w = s2.resume_upload(&info.id).await.unwrap();
        assert_eq!(w.offset(), 3);
        w.append(body(&[b"def"]), None).await.1.unwrap();
        let want = Digest::sha256_of(b"abcdef");
        let c = w.commit(&want).await.unwrap();
        assert_eq!(c, Committed { size: 6, new: true });
        assert_eq!(read_all(&s, &want, 0).await, b"abcdef");
        assert!(s.upload_info(&info.id).await.unwrap().is_none());
        assert!(matches!(
            s.resume_upload(&info.id).await,
            Err(BlobError::UploadUnknown)
        ));
    }
}
