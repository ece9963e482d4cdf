//! Cataloging layers from their upload streams.
//!
//! The registry shows every upload's bytes to the assessor as they arrive
//! (its `BlobObserver`). Each watched upload gets a bounded pipe and a
//! thread that runs the cataloger over it, so a layer is cataloged while
//! the client is still sending it, and when the manifest arrives only
//! merging and matching remain.
//!
//! Rules:
//! - **Bounded.** A pipe holds at most `Options::stream_buffer_bytes`.
//!   When the cataloger is slower than the client and the pipe is full,
//!   the watch stops taking bytes instead of slowing the upload (the
//!   registry counts it as `fell_behind` in `drydock_upload_streams_total`):
//!   the reader finishes what it has, then, once the upload commits, reads
//!   the rest of the layer back from the store (skipping what it saw). At
//!   most [`MAX_STREAMS`] uploads are watched at once; others are left to
//!   the commit-time reader (`prefetch.rs`).
//! - **Kept only if verified.** The digest is not known while the bytes
//!   arrive (a chunked upload names it in its last request), so the layer
//!   is cataloged under a random placeholder digest and the result is
//!   stored under the real one only when the registry says the blob
//!   verified and committed. A mismatch, a cancel, a failed chunk or an
//!   idle session drops the watch and the result with it.
//! - **Read once at a time.** On commit the digest is marked in flight
//!   (before the registry raises `BlobPushed`, so the commit-time reader
//!   skips it, and a worker needing the layer waits for this result).

use super::Inner;
use bytes::Bytes;
use catalog::LayerCache;
use oci::{BlobSource, Digest};
use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

/// Uploads watched at once; more are left to the commit-time reader.
pub(crate) const MAX_STREAMS: usize = 8;
/// A watched upload whose client sends nothing for this long is given up
/// (its thread would otherwise wait for a session nobody finishes).
const IDLE: Duration = Duration::from_secs(600);

/// How a watched upload ended, as far as the reader is concerned.
enum End {
    /// Still receiving.
    Open,
    /// Verified and committed under this digest; `true` if it was marked
    /// in flight for this reader (which must unmark it).
    Committed(Digest, bool),
    /// Dropped without a commit: nothing derived from the bytes counts.
    Abandoned,
}

struct PipeState {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    /// Offset into the front chunk already read.
    front_read: usize,
    /// Bytes taken into the pipe so far.
    fed: u64,
    /// The pipe was full at this offset: the rest comes from the store.
    spilled_at: Option<u64>,
    end: End,
    /// The cataloger stopped reading (done, not a layer, or failed):
    /// further chunks are dropped.
    reader_done: bool,
}

struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
    limit: usize,
}

impl Pipe {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait while the upload is open and nothing is queued.
    fn wait<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, PipeState>,
    ) -> std::sync::MutexGuard<'a, PipeState> {
        while st.chunks.is_empty() && matches!(st.end, End::Open) {
            let (next, timeout) = self
                .changed
                .wait_timeout(st, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            if timeout.timed_out() && st.chunks.is_empty() && matches!(st.end, End::Open) {
                st.end = End::Abandoned;
            }
        }
        st
    }
}

/// The read end: blocks for bytes; EOF once the upload committed and every
/// byte was read; an error if it was abandoned. After a spill, the rest of
/// the blob is read from the store once it is committed.
struct PipeReader {
    pipe: Arc<Pipe>,
    source: Arc<dyn BlobSource>,
    /// The committed blob, past the bytes the pipe delivered.
    tail: Option<Box<dyn Read + Send>>,
    spilled: bool,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(tail) = &mut self.tail {
            return tail.read(buf);
        }
        let mut st = self.pipe.wait(self.pipe.lock());
        if let Some(front) = st.chunks.front() {
            let (start, len) = (st.front_read, front.len());
            let n = (len - start).min(buf.len());
            buf[..n].copy_from_slice(&front[start..start + n]);
            if start + n == len {
                st.chunks.pop_front();
                st.front_read = 0;
            } else {
                st.front_read += n;
            }
            st.queued -= n;
            return Ok(n);
        }
        let digest = match &st.end {
            End::Committed(d, _) => d.clone(),
            _ => return Err(std::io::Error::other("the upload was abandoned")),
        };
        let Some(at) = st.spilled_at else {
            return Ok(0);
        };
        drop(st);
        // The pipe fell behind at `at`: the rest from the committed blob.
        self.spilled = true;
        let mut blob = self.source.open_blob(&digest)?;
        let skipped = std::io::copy(&mut (&mut blob).take(at), &mut std::io::sink())?;
        if skipped != at {
            return Err(std::io::Error::other(
                "the committed blob is shorter than its upload",
            ));
        }
        let tail = self.tail.insert(blob);
        tail.read(buf)
    }
}

/// The write end the registry feeds.
struct Watch {
    pipe: Arc<Pipe>,
    inner: Weak<Inner>,
    committed: bool,
}

impl registry::UploadWatch for Watch {
    fn chunk(&mut self, bytes: &Bytes) -> bool {
        let mut st = self.pipe.lock();
        if st.reader_done || bytes.is_empty() {
            return true;
        }
        // One chunk is always taken into an empty pipe, so a client's
        // large frames do not count as falling behind.
        if st.queued > 0 && st.queued + bytes.len() > self.pipe.limit {
            st.spilled_at = Some(st.fed);
            return false;
        }
        st.queued += bytes.len();
        st.fed += bytes.len() as u64;
        st.chunks.push_back(bytes.clone());
        drop(st);
        self.pipe.changed.notify_all();
        true
    }

    fn committed(mut self: Box<Self>, digest: &Digest, _size: u64) {
        self.committed = true;
        let mut st = self.pipe.lock();
        // A reader that stopped early found no layer: nothing to mark.
        let mut marked = false;
        if !st.reader_done
            && let Some(inner) = self.inner.upgrade()
        {
            // Marked before the registry raises `BlobPushed`: the
            // commit-time reader then leaves the layer to us, and a
            // worker waits for our result. The reader unmarks it.
            marked = inner.prefetch.mark(digest);
            if !marked {
                // Someone else reads it already: ours is not needed.
                st.end = End::Abandoned;
                drop(st);
                self.pipe.changed.notify_all();
                return;
            }
        }
        st.end = End::Committed(digest.clone(), marked);
        drop(st);
        self.pipe.changed.notify_all();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.committed {
            self.pipe.lock().end = End::Abandoned;
            self.pipe.changed.notify_all();
        }
    }
}

/// The assessor as the registry's blob observer.
pub(crate) struct Streams {
    inner: Weak<Inner>,
    active: Arc<AtomicUsize>,
}

impl Streams {
    pub(crate) fn new(inner: Weak<Inner>) -> Streams {
        Streams {
            inner,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Gives a stream slot back when its thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl registry::BlobObserver for Streams {
    fn upload_started(&self, _repo: &oci::Name) -> Option<Box<dyn registry::UploadWatch>> {
        let inner = self.inner.upgrade()?;
        if !inner.opts.catalog_on_upload || !inner.opts.catalog_while_uploading {
            return None;
        }
        if self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .is_err()
        {
            return None;
        }
        let slot = Slot(self.active.clone());
        let pipe = Arc::new(Pipe {
            state: Mutex::new(PipeState {
                chunks: VecDeque::new(),
                queued: 0,
                front_read: 0,
                fed: 0,
                spilled_at: None,
                end: End::Open,
                reader_done: false,
            }),
            changed: Condvar::new(),
            limit: inner.opts.stream_buffer_bytes.max(64 << 10),
        });
        let reader = PipeReader {
            pipe: pipe.clone(),
            source: inner.source.blob_source(),
            tail: None,
            spilled: false,
        };
        let weak = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("layer-stream".into())
            .spawn(move || {
                let _slot = slot;
                read_upload(weak, reader);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a layer stream thread");
            return None;
        }
        Some(Box::new(Watch {
            pipe,
            inner: self.inner.clone(),
            committed: false,
        }))
    }
}

/// The reader thread of one watched upload.
fn read_upload(inner: Weak<Inner>, mut reader: PipeReader) {
    // A placeholder no real blob hashes to; swapped for the digest on commit.
    let placeholder = Digest::sha256_of(uuid::Uuid::new_v4().as_bytes());
    let result = {
        let Some(svc) = inner.upgrade() else { return };
        let cataloger = svc.cataloger.clone();
        drop(svc); // do not keep the service alive while the client uploads
        cataloger.catalog_upload(&mut reader, &placeholder)
    };
    let pipe = reader.pipe.clone();
    // Wait for the verdict, dropping whatever still arrives.
    let end = {
        let mut st = pipe.lock();
        st.reader_done = true;
        st.chunks.clear();
        st.queued = 0;
        while matches!(st.end, End::Open) {
            st = pipe.wait(st);
        }
        match &st.end {
            End::Committed(d, true) => Some(d.clone()),
            _ => None,
        }
    };
    let (Some(digest), Some(svc)) = (end, inner.upgrade()) else {
        return;
    };
    // Whatever happens below, the layer is no longer in flight here.
    struct Unmark<'a>(&'a super::prefetch::Prefetch, &'a Digest);
    impl Drop for Unmark<'_> {
        fn drop(&mut self) {
            self.0.unmark(self.1);
        }
    }
    let _unmark = Unmark(&svc.prefetch, &digest);
    let Some(inv) = result else {
        // Not a layer, or not readable: the image's assessment reads it
        // again and reports what went wrong.
        return;
    };
    let inv = catalog::relabel_layer(inv, &placeholder, &digest);
    // Counted first: whoever sees the result also sees the count.
    svc.prefetch.count(if reader.spilled {
        super::prefetch::Source::StreamThenReadback
    } else {
        super::prefetch::Source::Stream
    });
    svc.store.put(&digest, svc.cataloger.version(), &inv);
}
