//! The readers under a layer's decompression: the blob's bytes counted
//! (and handed to the hasher), the decompressed bytes counted and capped.

use super::read_some;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Shared by the inflating thread (which counts) and the walking thread
/// (which reads `uncompressed` and `eof` to judge a tar stream's end).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) compressed: AtomicU64,
    pub(super) uncompressed: AtomicU64,
    /// The decompressed stream has ended.
    pub(super) eof: AtomicBool,
}

/// Counts the compressed bytes and, when hashing, hands each chunk read to
/// the hashing thread, so hashing runs alongside decompression instead of
/// adding to it.
pub(super) struct HashingReader<R> {
    inner: R,
    tx: Option<std::sync::mpsc::SyncSender<Arc<Vec<u8>>>>,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    counters: Arc<Counters>,
}

impl<R> HashingReader<R> {
    pub(super) fn new(
        inner: R,
        tx: Option<std::sync::mpsc::SyncSender<Arc<Vec<u8>>>>,
        counters: Arc<Counters>,
    ) -> Self {
        HashingReader {
            inner,
            tx,
            chunk: Arc::new(Vec::new()),
            pos: 0,
            counters,
        }
    }
}

const CHUNK: usize = 256 << 10;

/// An error of the blob's own reader, marked so that it is reported as
/// [`CatalogError::Read`] (where the blob lives failed), not as a fault
/// of the layer's content.
#[derive(Debug)]
pub(super) struct SourceError(pub(super) io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SourceError {}

/// The blob reader's error, marked as a [`SourceError`].
fn source_error(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), SourceError(e))
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.tx.is_none() {
            // Not hashing: straight into the caller's buffer, with no chunk
            // to allocate, zero and copy out of again.
            let n = read_some(&mut self.inner, buf).map_err(source_error)?;
            self.counters.compressed.fetch_add(n as u64, Relaxed);
            return Ok(n);
        }
        if self.pos == self.chunk.len() {
            let mut v = vec![0u8; CHUNK];
            let n = read_some(&mut self.inner, &mut v).map_err(source_error)?;
            if n == 0 {
                return Ok(0);
            }
            v.truncate(n);
            self.chunk = Arc::new(v);
            self.pos = 0;
            if let Some(tx) = &self.tx {
                // The hasher only stops early if it panicked; the missing
                // digest is reported at the end.
                let _ = tx.send(self.chunk.clone());
            }
            self.counters.compressed.fetch_add(n as u64, Relaxed);
        }
        let n = (self.chunk.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Why the uncompressed stream was cut short.
#[derive(Debug)]
pub(super) enum StreamLimit {
    TooLarge { max: u64 },
    Ratio { out: u64, inp: u64, max: u64 },
}

impl fmt::Display for StreamLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamLimit::TooLarge { max } => {
                write!(f, "uncompressed size exceeds the limit of {max} bytes")
            }
            StreamLimit::Ratio { out, inp, max } => write!(
                f,
                "{out} bytes decompressed from {inp} (ratio over {max}:1)"
            ),
        }
    }
}
impl std::error::Error for StreamLimit {}

/// Counts the uncompressed bytes and stops bombs.
pub(super) struct LimitedReader<R> {
    pub(super) inner: R,
    pub(super) counters: Arc<Counters>,
    pub(super) max_bytes: u64,
    pub(super) max_ratio: u64,
    pub(super) grace: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let out = self.counters.uncompressed.fetch_add(n as u64, Relaxed) + n as u64;
        if n == 0 && !buf.is_empty() {
            self.counters.eof.store(true, Relaxed);
        }
        if out > self.max_bytes {
            return Err(io::Error::other(StreamLimit::TooLarge {
                max: self.max_bytes,
            }));
        }
        let inp = self.counters.compressed.load(Relaxed).max(1);
        if out > self.grace && out / inp >= self.max_ratio {
            return Err(io::Error::other(StreamLimit::Ratio {
                out,
                inp,
                max: self.max_ratio,
            }));
        }
        Ok(n)
    }
}
